"""common.checkpoint / common.errors: every failure kind of a checkpoint file gives one message naming the file
and the problem; the CLI prints it alone and exits non-zero; NaN/Inf weights are refused unless allowed."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from torch.utils.data import DataLoader, TensorDataset

from common.checkpoint import (
    MODULE_KEY,
    CheckpointError,
    CheckpointMixin,
    MissingCheckpointError,
    NonFiniteWeightsError,
    check_finite,
    load_lightning_checkpoint,
    read_checkpoint,
    run_checkpoint,
)
from common.cli import cli_main
from common.errors import AnnotationError, LineErrors, UserError, is_user_error, user_message


class Payload:
    """A class torch.load(weights_only=True) must refuse to rebuild."""


class CkptToy(CheckpointMixin, LightningModule):
    plain_weights_hint = "--model.toy_weights"

    def __init__(self, hidden: int = 3) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Linear(2, hidden)

    def training_step(self, batch, _):
        return self.net(batch[0]).square().mean()

    def test_step(self, batch, _):
        self.log("test/loss", self.net(batch[0]).square().mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class OtherToy(CheckpointMixin, LightningModule):
    def __init__(self, width: int = 5) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.body = torch.nn.Linear(width, 1)

    def training_step(self, batch, _):
        return self.body(batch[0]).square().mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class ToyData(LightningDataModule):
    def _loader(self):
        return DataLoader(TensorDataset(torch.randn(8, 2)), batch_size=4)

    train_dataloader = test_dataloader = _loader


def main(args=None):
    """The toy project's ``main.py`` (run in a subprocess by the CLI tests)."""
    return cli_main(CkptToy, ToyData, project="toy", args=args)


def _fit(module: LightningModule, path: Path) -> Path:
    trainer = Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, default_root_dir=path.parent)  # fmt: skip
    trainer.fit(module, train_dataloaders=DataLoader(TensorDataset(torch.randn(4, 2 if isinstance(module, CkptToy) else 5)), batch_size=4))  # fmt: skip
    trainer.save_checkpoint(path)
    return path


@pytest.fixture(scope="module")
def good_ckpt(tmp_path_factory) -> Path:
    return _fit(CkptToy(), tmp_path_factory.mktemp("ckpt") / "good.ckpt")


def _broken_files(tmp: Path, good: Path) -> dict[str, tuple[Path, str]]:
    """Each failure kind: (file, words the message must contain)."""
    data = good.read_bytes()
    files = {}
    p = tmp / "truncated.ckpt"
    p.write_bytes(data[: len(data) // 2])
    files["truncated"] = (p, "truncated")
    p = tmp / "empty.ckpt"
    p.write_bytes(b"")
    files["empty"] = (p, "empty file")
    p = tmp / "notes.ckpt"
    p.write_text("model:\n  hidden: 3\n")
    files["text"] = (p, "a text file")
    p = tmp / "plain.ckpt"
    torch.save(CkptToy().state_dict(), p)
    files["plain state dict"] = (p, "a plain state dict")
    p = tmp / "code.ckpt"
    torch.save({"state_dict": {}, "pytorch-lightning_version": "2", "payload": Payload()}, p)
    files["code"] = (p, "refused")
    p = tmp / "other.ckpt"
    files["other project"] = (_fit(OtherToy(), p), "written by")
    p = tmp / "missing.ckpt"
    files["missing"] = (p, "no such file")
    return files


def test_read_checkpoint_tells_each_failure_apart(tmp_path, good_ckpt):
    for kind, (path, words) in _broken_files(tmp_path, good_ckpt).items():
        if kind in ("plain state dict", "other project"):
            continue
        with pytest.raises(CheckpointError) as err:
            read_checkpoint(path)
        msg = str(err.value)
        assert str(path) in msg and words in msg, (kind, msg)
    with pytest.raises(MissingCheckpointError):
        read_checkpoint(tmp_path / "absent.ckpt")
    # a truncated legacy (non-zip) torch.save file
    legacy = tmp_path / "legacy.pt"
    torch.save({"w": torch.ones(100)}, legacy, _use_new_zipfile_serialization=False)
    legacy.write_bytes(legacy.read_bytes()[:-50])
    with pytest.raises(CheckpointError, match=r"legacy\.pt.*(truncated|corrupt)"):
        read_checkpoint(legacy)
    # a file that refers to a class outside the allow-list names the class
    with pytest.raises(CheckpointError, match=r"Payload"):
        read_checkpoint(_broken_files(tmp_path, good_ckpt)["code"][0])
    # the happy path is a plain torch.load
    assert read_checkpoint(good_ckpt)["state_dict"].keys() == CkptToy().state_dict().keys()


def test_lightning_checks_say_what_the_file_is(tmp_path, good_ckpt):
    files = _broken_files(tmp_path, good_ckpt)
    with pytest.raises(CheckpointError) as err:
        load_lightning_checkpoint(files["plain state dict"][0], CkptToy)
    msg = str(err.value)
    assert "plain.ckpt" in msg and "not a Lightning checkpoint" in msg and "--model.toy_weights" in msg
    with pytest.raises(CheckpointError) as err:
        load_lightning_checkpoint(files["other project"][0], CkptToy)
    msg = str(err.value)
    assert "other.ckpt" in msg and "OtherToy" in msg and "CkptToy" in msg
    # an untagged file is judged by its hyperparameters
    ckpt = torch.load(files["other project"][0], weights_only=True)
    del ckpt[MODULE_KEY]
    untagged = tmp_path / "untagged.ckpt"
    torch.save(ckpt, untagged)
    with pytest.raises(CheckpointError, match=r"untagged\.ckpt.*\['width'\].*CkptToy"):
        load_lightning_checkpoint(untagged, CkptToy)
    assert load_lightning_checkpoint(good_ckpt, CkptToy)[MODULE_KEY].endswith("CkptToy")


def test_load_from_checkpoint_gives_one_message_per_failure(tmp_path, good_ckpt):
    for kind, (path, words) in _broken_files(tmp_path, good_ckpt).items():
        with pytest.raises(CheckpointError) as err:
            CkptToy.load_from_checkpoint(path)
        msg = str(err.value)
        assert str(path) in msg and words in msg, (kind, msg)
    assert CkptToy.load_from_checkpoint(good_ckpt).hparams.hidden == 3


def test_nonfinite_weights_are_refused_unless_allowed(tmp_path, good_ckpt, monkeypatch):
    ckpt = torch.load(good_ckpt, weights_only=True)
    ckpt["state_dict"]["net.weight"][0, 0] = float("nan")
    ckpt["state_dict"]["net.bias"][1] = float("inf")
    bad = tmp_path / "diverged.ckpt"
    torch.save(ckpt, bad)
    for load in (lambda: load_lightning_checkpoint(bad, CkptToy), lambda: CkptToy.load_from_checkpoint(bad)):
        with pytest.raises(NonFiniteWeightsError) as err:
            load()
        msg = str(err.value)
        assert "diverged.ckpt" in msg and "net.weight (1 NaN, 0 Inf of 6 values)" in msg
        assert "net.bias (0 NaN, 1 Inf of 3 values)" in msg
    assert torch.isnan(CkptToy.load_from_checkpoint(bad, allow_nonfinite=True).net.weight[0, 0])
    monkeypatch.setenv("PAPERLAB_ALLOW_NONFINITE", "1")
    load_lightning_checkpoint(bad, CkptToy)
    monkeypatch.delenv("PAPERLAB_ALLOW_NONFINITE")
    # nested dicts and integer tensors
    check_finite({"a": {"b": torch.arange(3)}, "c": [torch.zeros(2)]}, "x.pt")
    with pytest.raises(NonFiniteWeightsError, match=r"x\.pt.*a\.b"):
        check_finite({"a": {"b": torch.tensor([1.0, float("-inf")])}}, "x.pt")


def test_trainer_ckpt_path_goes_through_the_checks(tmp_path, good_ckpt):
    files = _broken_files(tmp_path, good_ckpt)
    for kind in ("truncated", "other project", "plain state dict"):
        path, words = files[kind]
        with pytest.raises(CheckpointError) as err:
            main(["test", "--trainer.logger=false", "--ckpt_path", str(path)])
        assert str(path) in str(err.value) and words in str(err.value), kind
    cli = main(["test", "--trainer.logger=false", "--trainer.enable_progress_bar=false", "--ckpt_path", str(good_ckpt)])
    assert "test/loss" in cli.trainer.callback_metrics


def _run_main(tmp_path: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    code = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); from test_common_checkpoint import main; main()"
    full_env = {**os.environ, "PAPERLAB_RUNS": str(tmp_path / "runs"), "OMP_NUM_THREADS": "1", **(env or {})}
    full_env.pop("PAPERLAB_DEBUG", None)
    return subprocess.run([sys.executable, "-c", code, *args], env=full_env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)  # fmt: skip


def test_cli_prints_the_message_alone_and_exits_nonzero(tmp_path, good_ckpt):
    files = _broken_files(tmp_path, good_ckpt)
    path, words = files["truncated"]
    proc = _run_main(tmp_path, "test", "--ckpt_path", str(path))
    assert proc.returncode != 0
    assert str(path) in proc.stderr and words in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    # --debug (or PAPERLAB_DEBUG=1) brings the traceback back
    proc = _run_main(tmp_path, "test", "--ckpt_path", str(files["empty"][0]), "--debug")
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "empty file" in proc.stderr


def test_user_errors_and_their_message():
    from common.weights import MissingWeightsError

    assert is_user_error(MissingWeightsError("x")) and is_user_error(FileNotFoundError("x"))
    assert is_user_error(CheckpointError("x")) and is_user_error(AnnotationError("x"))
    assert not is_user_error(RuntimeError("x")) and not is_user_error(ValueError("x"))
    assert isinstance(CheckpointError("x"), (UserError, ValueError))
    worker = FileNotFoundError(
        "Caught FileNotFoundError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
        '  File "x.py", line 1, in f\nFileNotFoundError: clip a/b: no frames'
    )
    assert user_message(worker) == "clip a/b: no frames"
    assert "/x/y.png" in user_message(FileNotFoundError(2, "No such file or directory", "/x/y.png"))
    # pickling keeps the class (DataLoader workers send exceptions across processes)
    assert isinstance(pickle.loads(pickle.dumps(CheckpointError("x"))), CheckpointError)


def test_line_errors_list_every_bad_line_up_to_a_limit(tmp_path):
    errors = LineErrors(tmp_path / "ann.txt", limit=3, expected="'<dir> <frames> <label>'")
    for n in range(1, 6):
        errors.add(n * 2, f"problem {n}", f"line text {n}")
    errors.lines_seen = 10
    with pytest.raises(AnnotationError) as err:
        errors.raise_if_any()
    msg = str(err.value)
    assert msg.startswith(f"{tmp_path / 'ann.txt'}: 5 bad lines (of 10)")
    assert f"{tmp_path / 'ann.txt'}:2: problem 1: 'line text 1'" in msg and "ann.txt:6: problem 3" in msg
    assert "ann.txt:8" not in msg and "and 2 more" in msg
    LineErrors("x").raise_if_any()  # nothing recorded: no error


REPO = Path(__file__).resolve().parents[2]


def _run(tmp_path: Path, *cmd: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PAPERLAB_RUNS": str(tmp_path / "runs"), "PAPERLAB_WEIGHTS": str(tmp_path / "no_weights")}
    env.pop("PAPERLAB_DEBUG", None)
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run([sys.executable, *cmd], env=env, cwd=REPO, capture_output=True, text=True, timeout=180)


def test_project_entry_points_show_user_errors_alone(tmp_path, good_ckpt):
    """The two cases of the issue (missing released weights; a paper config without its data) and a project's
    main.py given a broken --ckpt_path: the message alone on stderr, a non-zero exit, no traceback."""
    proc = _run(tmp_path, "-m", "projects.hyperreenact.inference", "--source", "a.png", "--driving", "b", "--out",
                str(tmp_path / "out"))  # fmt: skip
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "error: " in proc.stderr and "no_weights" in proc.stderr
    config = "projects/maskcon/configs/cifar100_maskcon.yaml"
    nodata = tmp_path / "nodata"
    proc = _run(tmp_path, "projects/maskcon/main.py", "fit", "--config", config, "--data.data_root", str(nodata))
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "error: " in proc.stderr and str(nodata) in proc.stderr
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    proc = _run(tmp_path, "projects/maskcon/main.py", "test", "--config", config, "--ckpt_path", str(empty))
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert f"error: Lightning checkpoint {empty}: empty file" in proc.stderr
    # a checkpoint of another project's module is named as such (the pre-check needs no data)
    proc = _run(tmp_path, "projects/maskcon/main.py", "validate", "--config", config, "--ckpt_path", str(good_ckpt))
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "CkptToy" in proc.stderr and "MaskConModule" in proc.stderr and "project maskcon" in proc.stderr


def test_shared_weight_loaders_refuse_nonfinite_tensors(tmp_path, monkeypatch):
    """The strict loaders every released-weights path goes through (common/face, common/stylegan2) refuse NaN/Inf,
    naming the key and the file; allow_nonfinite / PAPERLAB_ALLOW_NONFINITE lets them through."""
    from common.face.checkpoint import load_state_dict_strict
    from common.stylegan2 import Generator, load_generator

    net = torch.nn.Linear(3, 2)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    state["bias"][0] = float("nan")
    with pytest.raises(NonFiniteWeightsError, match=r"arcface\.pth: weights hold NaN or Inf: bias \(1 NaN"):
        load_state_dict_strict(net, state, "arcface.pth")
    load_state_dict_strict(net, state, "arcface.pth", allow_nonfinite=True)
    assert torch.isnan(net.bias[0])
    g = Generator(8, style_dim=8, n_mlp=1, channel_multiplier=1, channel_max=4)
    sd = g.state_dict()
    sd["convs.0.conv.weight"][0, 0, 0, 0, 0] = float("inf")
    path = tmp_path / "g.pt"
    torch.save({"g_ema": sd}, path)
    with pytest.raises(
        NonFiniteWeightsError, match=r"g\.pt: weights hold NaN or Inf: convs\.0\.conv\.weight \(0 NaN, 1 Inf"
    ):
        load_generator(path)
    monkeypatch.setenv("PAPERLAB_ALLOW_NONFINITE", "1")
    assert torch.isinf(load_generator(path).convs[0].conv.weight).any()


def test_run_checkpoint_finds_the_newest_run_of_an_experiment(tmp_path):
    exp = tmp_path / "runs" / "p" / "exp"
    for n in (0, 2, 10):  # version_10 sorts before version_2 as text; the number decides
        (exp / f"version_{n}" / "checkpoints").mkdir(parents=True)
        (exp / f"version_{n}" / "checkpoints" / "last.ckpt").write_bytes(b"x")
    (exp / "version_11").mkdir()  # a run that stopped before its first checkpoint
    (exp / "notes").mkdir()
    newest = exp / "version_10" / "checkpoints" / "last.ckpt"
    assert run_checkpoint(exp) == newest
    assert run_checkpoint(exp / "version_2") == exp / "version_2" / "checkpoints" / "last.ckpt"
    assert run_checkpoint(newest) == newest
    assert run_checkpoint(tmp_path / "absent.ckpt") == tmp_path / "absent.ckpt"  # read_checkpoint names it
    with pytest.raises(MissingCheckpointError, match=r"version_11: a folder without a checkpoint"):
        run_checkpoint(exp / "version_11")
    with pytest.raises(MissingCheckpointError, match=r"4 runs, none has one"):
        run_checkpoint(exp, name="best.ckpt")
