"""Tests of common/face/identity.py and checkpoint.py: strict loading of stand-in files, crops, identity loss."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from common.face.checkpoint import CheckpointError, load_checkpoint
from common.face.identity import ArcFace, FaceNetIdentity, IdentityLoss, load_arcface, psp_id_crop
from common.face.irse import Backbone
from common.weights import MissingWeightsError


@pytest.fixture(scope="module")
def arcface_file(tmp_path_factory):
    """A stand-in model_ir_se50.pth: the official key layout with random values."""
    torch.manual_seed(0)
    net = Backbone(112, 50, 0.6, "ir_se")
    for m in net.modules():  # non-trivial BatchNorm statistics so a wrong load would show
        if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm1d)):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("w") / "model_ir_se50.pth"
    torch.save(net.state_dict(), path)
    return path, net.eval()


def test_arcface_loads_strictly_and_matches(arcface_file, tmp_path):
    path, ref = arcface_file
    net = load_arcface(path)
    x = torch.rand(1, 3, 112, 112) * 2 - 1
    assert torch.allclose(net(x), ref(x), atol=1e-5)
    assert not any(p.requires_grad for p in net.parameters())
    # HyperReenact's wrapper stores the same weights under "facenet."
    state = torch.load(path, weights_only=True)
    prefixed = tmp_path / "insight_face.pth"
    torch.save({"facenet." + k: v for k, v in state.items()}, prefixed)
    loaded = load_arcface(prefixed).state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())


def test_arcface_wrong_key_shape_and_missing_file(arcface_file, tmp_path):
    path, _ = arcface_file
    state = torch.load(path, weights_only=True)
    bad = dict(state)
    bad["body.0.res_layer.9.weight"] = bad.pop("body.0.res_layer.1.weight")
    f1 = tmp_path / "renamed.pth"
    torch.save(bad, f1)
    with pytest.raises(CheckpointError, match=r"renamed\.pth.*missing keys: body\.0\.res_layer\.1\.weight.*unexpected"):
        load_arcface(f1)
    bad = dict(state)
    bad["output_layer.3.weight"] = torch.zeros(512, 100)
    f2 = tmp_path / "shape.pth"
    torch.save(bad, f2)
    with pytest.raises(CheckpointError, match=r"shape\.pth.*output_layer\.3\.weight: file \(512, 100\)"):
        load_arcface(f2)
    with pytest.raises(MissingWeightsError, match=r"model_ir_se50\.pth(.|\n)*source(.|\n)*licence"):
        load_arcface()


class _Evil:
    def __reduce__(self):
        return (print, ("executed",))


def test_checkpoint_that_needs_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"w": _Evil()}, f)
    with pytest.raises(CheckpointError, match=r"evil\.pth.*weights_only"):
        load_checkpoint(path)
    # numpy values (a training step, statistics) are fine; they are data, not code.
    ok = tmp_path / "numpy.pth"
    torch.save({"w": torch.ones(2), "step": np.int64(7), "stats": np.arange(3.0)}, ok)
    got = load_checkpoint(ok)
    assert got["step"] == 7 and np.array_equal(got["stats"], np.arange(3.0))
    trunc = tmp_path / "trunc.pth"
    torch.save({"w": torch.zeros(100)}, trunc)
    trunc.write_bytes(trunc.read_bytes()[:50])
    with pytest.raises(CheckpointError, match=r"trunc\.pth"):
        load_checkpoint(trunc)


def test_psp_crop_reads_only_the_crop_window():
    x = torch.zeros(1, 3, 256, 256, requires_grad=True)
    out = psp_id_crop(x)
    assert out.shape == (1, 3, 112, 112)
    out.sum().backward()
    g = x.grad[0, 0]
    assert (g[35:223, 32:220] > 0).all()
    assert (
        g[:35].abs().sum() == 0
        and g[223:].abs().sum() == 0
        and g[:, :32].abs().sum() == 0
        and g[:, 220:].abs().sum() == 0
    )
    # A 1024 image is pooled to 256 first: a constant image stays constant.
    assert torch.allclose(psp_id_crop(torch.full((1, 3, 1024, 1024), 0.3)), torch.full((1, 3, 112, 112), 0.3))


class _TinyID(torch.nn.Module):
    """A small stand-in identity network (anything with ``embed``), so the loss tests stay fast."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 5, stride=4)
        self.fc = torch.nn.Linear(8 * 27 * 27, 16)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.fc(torch.tanh(self.conv(x)).flatten(1)), dim=1)


def test_identity_loss_values_and_gradients():
    torch.manual_seed(0)
    arc = _TinyID()
    loss_fn = IdentityLoss(arc, crop="psp")
    x = torch.rand(2, 3, 256, 256) * 2 - 1
    y = torch.rand(2, 3, 256, 256) * 2 - 1
    assert loss_fn(x, x).item() == pytest.approx(0.0, abs=1e-5)
    ex, ey = arc.embed(psp_id_crop(x)), arc.embed(psp_id_crop(y))
    expected = (1 - (ex * ey).sum(1) / (ex.norm(dim=1) * ey.norm(dim=1))).mean()
    assert loss_fn(x, y).item() == pytest.approx(expected.item(), abs=1e-5)
    xg, yg = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
    loss_fn(xg, yg).backward()
    assert xg.grad.abs().sum() > 0 and yg.grad is None
    # Five-point alignment variant; the features map for HyperReenact.
    lm = torch.tensor([[[90.0, 110], [160, 110], [125, 150], [100, 185], [150, 185]]]).expand(2, 5, 2)
    five = IdentityLoss(arc, crop="five_point", template="hyperreenact")
    assert five(x, x, lm).item() == pytest.approx(0.0, abs=1e-5)
    assert five(x, y, lm).item() > 0
    with pytest.raises(ValueError, match="landmarks"):
        five(x, y)


def test_arcface_wrapper_features_and_frozen_mode():
    torch.manual_seed(0)
    arc = ArcFace(net=Backbone())
    arc.train()
    assert not arc.net.training and not any(p.requires_grad for p in arc.parameters())
    x = torch.rand(1, 3, 256, 256) * 2 - 1
    lm = torch.tensor([[[90.0, 110], [160, 110], [125, 150], [100, 185], [150, 185]]])
    crop = arc.aligned(x, lm, template="hyperreenact")
    assert crop.shape == (1, 3, 112, 112)
    assert arc.features(crop).shape == (1, 512, 7, 7)


def test_facenet_alternative_from_local_file(tmp_path):
    from facenet_pytorch import InceptionResnetV1

    torch.manual_seed(0)
    ref = InceptionResnetV1(classify=True, num_classes=10).eval()
    path = tmp_path / "20180402-114759-vggface2.pt"
    torch.save(ref.state_dict(), path)  # includes the logits head, as the released file does
    net = FaceNetIdentity(path)
    x = torch.rand(1, 3, 160, 160) * 2 - 1
    emb = net.embed(x)
    ref.classify = False
    assert torch.allclose(emb, ref(x * 127.5 / 128), atol=1e-5)
    assert torch.allclose(emb.norm(dim=1), torch.ones(1), atol=1e-5)
    with pytest.raises(CheckpointError, match="missing keys"):
        torch.save({k: v for k, v in ref.state_dict().items() if not k.startswith("last_bn")}, path)
        FaceNetIdentity(path)
