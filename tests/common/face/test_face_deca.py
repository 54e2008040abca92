"""Tests of common/face/deca.py: E_flame key layout, strict loading from stand-in deca_model.tar files."""

from __future__ import annotations

import pytest
import torch

from common.face.align import deca_crop
from common.face.checkpoint import CheckpointError
from common.face.deca import DECA_PARAM_SIZES, DECAEncoder, estimate_deca, load_deca_encoder, split_deca_params
from common.face.flame import axis_angle_to_euler
from common.weights import MissingWeightsError


def _official_e_flame_keys() -> set[str]:
    """E_flame's parameter names written out: DECA's resnet.ResNet (torchvision names) + the regressor."""
    keys = {"encoder.conv1.weight"} | {f"encoder.bn1.{n}" for n in ("weight", "bias", "running_mean", "running_var")}
    for layer, blocks in zip(range(1, 5), (3, 4, 6, 3)):
        for b in range(blocks):
            p = f"encoder.layer{layer}.{b}."
            for i in (1, 2, 3):
                keys.add(p + f"conv{i}.weight")
                keys |= {p + f"bn{i}.{n}" for n in ("weight", "bias", "running_mean", "running_var")}
            if b == 0:
                keys.add(p + "downsample.0.weight")
                keys |= {p + f"downsample.1.{n}" for n in ("weight", "bias", "running_mean", "running_var")}
    return keys | {"layers.0.weight", "layers.0.bias", "layers.2.weight", "layers.2.bias"}


@pytest.fixture(scope="module")
def encoder_and_file(tmp_path_factory):
    torch.manual_seed(0)
    net = DECAEncoder().eval()
    sd = net.state_dict()
    assert {k for k in sd if not k.endswith("num_batches_tracked")} == _official_e_flame_keys()
    assert sd["layers.2.weight"].shape == (236, 1024)
    path = tmp_path_factory.mktemp("deca") / "deca_model.tar"
    other = {"layers.0.weight": torch.zeros(2, 2)}  # E_detail / D_detail are ignored
    torch.save({"E_flame": sd, "E_detail": other, "D_detail": other}, path)
    return net, path


def test_split_sizes():
    params = torch.arange(236.0)[None]
    d = split_deca_params(params)
    assert list(d) == ["shape", "tex", "exp", "pose", "cam", "light"]
    assert {k: v.shape[1] for k, v in d.items()} == DECA_PARAM_SIZES
    assert d["pose"][0].tolist() == [200, 201, 202, 203, 204, 205] and d["cam"][0, 0].item() == 206
    with pytest.raises(ValueError, match="236"):
        split_deca_params(torch.zeros(1, 235))


def test_load_strict_outputs_and_gradient(encoder_and_file, tmp_path):
    ref, path = encoder_and_file
    enc = load_deca_encoder(path)
    torch.manual_seed(1)
    img = torch.rand(1, 3, 256, 256, requires_grad=True)
    lm = torch.tensor([[[70.0, 80.0], [180.0, 80.0], [125.0, 200.0]]])
    out = estimate_deca(enc, img * 2 - 1, landmarks=lm)  # [-1,1] input, as StyleMask's images
    loaded, want = enc.state_dict(), ref.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in want.items())
    with torch.no_grad():
        crop = deca_crop(img, landmarks=lm)
        fmap = enc.features(crop)
        expect = enc.params_from_features(fmap)
    assert fmap.shape == (1, 2048, 7, 7)
    assert torch.allclose(out["crop"], crop, atol=1e-6)
    for k in DECA_PARAM_SIZES:
        assert torch.allclose(out[k], expect[k], atol=1e-4), k
    assert torch.allclose(out["euler"], axis_angle_to_euler(expect["pose"][:, :3]), atol=1e-3)
    (out["exp"].sum() + out["pose"].sum()).backward()
    assert img.grad is not None and img.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in enc.parameters())
    # Old (non-zip) serialisation and a bare E_flame state dict load too.
    legacy = tmp_path / "legacy.tar"
    torch.save({"E_flame": ref.state_dict()}, legacy, _use_new_zipfile_serialization=False)
    assert torch.equal(load_deca_encoder(legacy).layers[2].weight, ref.layers[2].weight)


def test_wrong_files_fail_clearly(encoder_and_file, tmp_path):
    ref, _ = encoder_and_file
    sd = dict(ref.state_dict())
    sd["layers.2.weight"] = torch.zeros(200, 1024)
    bad = tmp_path / "bad_shape.tar"
    torch.save({"E_flame": sd}, bad)
    with pytest.raises(CheckpointError, match=r"bad_shape\.tar.*layers\.2\.weight: file \(200, 1024\)"):
        load_deca_encoder(bad)
    sd = dict(ref.state_dict())
    del sd["encoder.layer4.2.conv3.weight"]
    miss = tmp_path / "missing.tar"
    torch.save({"E_flame": sd}, miss)
    with pytest.raises(CheckpointError, match=r"missing\.tar.*encoder\.layer4\.2\.conv3\.weight"):
        load_deca_encoder(miss)
    other = tmp_path / "other.tar"
    torch.save({"model": {}}, other)
    with pytest.raises(CheckpointError, match=r"other\.tar.*E_flame"):
        load_deca_encoder(other)
    with pytest.raises(MissingWeightsError, match=r"deca_model\.tar"):
        load_deca_encoder()
    with pytest.raises(ValueError, match="224"):
        ref(torch.zeros(1, 3, 256, 256))
