import hashlib

import pytest

from common import weights
from common.weights import Artifact, MissingWeightsError, register, resolve


@pytest.fixture
def artifact():
    art = Artifact(
        name="_test_artifact",
        filename="thing.pt",
        source="https://example.org/thing.pt",
        licence="CC-BY-NC 4.0",
        users=("testproj",),
        sha256=hashlib.sha256(b"payload").hexdigest(),
        subdir="sub",
    )
    register(art)
    yield art
    weights.REGISTRY.pop(art.name)


def test_missing_file_message_names_everything(artifact, tmp_path):
    with pytest.raises(MissingWeightsError) as err:
        resolve(artifact.name)
    msg = str(err.value)
    for part in ("thing.pt", str(tmp_path / "pretrained" / "sub"), "example.org", "CC-BY-NC", artifact.sha256):
        assert part in msg


def test_local_path_and_hash_check(artifact, tmp_path):
    good = tmp_path / "mine.pt"
    good.write_bytes(b"payload")
    assert resolve(artifact.name, good, check_hash=True) == good
    bad = tmp_path / "other.pt"
    bad.write_bytes(b"tampered")
    with pytest.raises(ValueError, match="sha256"):
        resolve(artifact.name, bad, check_hash=True)
    default = tmp_path / "pretrained" / "sub" / "thing.pt"
    default.parent.mkdir(parents=True)
    default.write_bytes(b"payload")
    assert resolve(artifact.name) == default
    assert weights.missing([artifact.name]) == []


def test_unknown_and_conflicting_names(artifact):
    with pytest.raises(KeyError, match="unknown artifact"):
        resolve("no_such_thing")
    with pytest.raises(ValueError, match="twice"):
        register(Artifact(artifact.name, "x", "y", "z", ("a",)))
