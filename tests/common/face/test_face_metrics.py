"""Tests of common/metrics/face.py and common/face/lpips.py on hand-made inputs; DDP sync on gloo."""

from __future__ import annotations

import math
import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from common.face.checkpoint import CheckpointError
from common.face.lpips import LPIPS
from common.metrics.face import (
    CSIM,
    FID,
    ExpressionDistance,
    LPIPSMetric,
    PoseDistance,
    load_ranges,
    psnr_metric,
    ssim_metric,
)
from common.weights import MissingWeightsError


def test_csim_on_embeddings_and_images():
    m = CSIM()
    m.update(torch.tensor([[1.0, 0.0], [1.0, 1.0]]), torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    m.update(torch.tensor([[0.0, 2.0]]), torch.tensor([[0.0, -1.0]]))
    assert m.compute().item() == pytest.approx((1 + 1 / math.sqrt(2) - 1) / 3, abs=1e-6)

    class Net(torch.nn.Module):
        def embed(self, x):
            return x.flatten(1)

    m = CSIM(identity=Net())
    x = torch.rand(3, 3, 8, 8)
    m.update(x, x)
    assert m.compute().item() == pytest.approx(1.0, abs=1e-6)
    # Through an IdentityLoss: its crop, then the same cosine.
    from common.face.identity import IdentityLoss

    m = CSIM(identity=IdentityLoss(Net(), crop="none"))
    y = torch.rand(3, 3, 8, 8)
    m.update(x, y)
    want = torch.nn.functional.cosine_similarity(x.flatten(1), y.flatten(1)).mean()
    assert m.compute().item() == pytest.approx(want.item(), abs=1e-6)
    assert not list(m.children()) and set(m.state_dict()) <= {"total", "count"}
    with pytest.raises(RuntimeError, match="before any update"):
        CSIM().compute()
    with pytest.raises(ValueError, match="embeddings"):
        CSIM().update(torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 4, 4))


def test_pose_distance_by_hand():
    m = PoseDistance(euler=True)
    m.update(torch.tensor([[10.0, 0.0, 0.0], [0.0, 5.0, -5.0]]), torch.zeros(2, 3))
    assert m.compute().item() == pytest.approx(10 / 3, abs=1e-6)
    pa = m.per_angle()
    assert pa["yaw"].item() == pytest.approx(5.0) and pa["roll"].item() == pytest.approx(2.5)
    # DECA poses (axis-angle): identical -> 0; a 0.2 rad rotation about x is a pitch of 11.459 degrees.
    m = PoseDistance()
    pose = torch.tensor([[0.1, -0.2, 0.05, 0.3, 0.0, 0.0]])
    m.update(pose, pose)
    assert m.compute().item() == pytest.approx(0.0, abs=1e-5)
    m = PoseDistance()
    m.update(torch.tensor([[0.2, 0.0, 0.0]]), torch.zeros(1, 3))
    assert m.compute().item() == pytest.approx(math.degrees(0.2) / 3, abs=1e-4)
    with pytest.raises(ValueError, match=r"\[B,6\]"):
        m.update(torch.zeros(2, 4), torch.zeros(2, 4))


def _official_expression_error(exp_r, jaw_r, exp_t, jaw_t, ranges, num_expressions=20):
    """StyleMask's calculate_evaluation_metrics for one sample, written as the loop it is."""
    errors = []
    lo, hi = ranges[3]
    errors.append(abs((jaw_r - lo) / (hi - lo) - (jaw_t - lo) / (hi - lo)))
    for j in range(num_expressions):
        lo, hi = ranges[j + 4]
        errors.append(abs((exp_r[j] - lo) / (hi - lo) - (exp_t[j] - lo) / (hi - lo)))
    return float(np.mean(errors))


def test_expression_distance_with_the_real_ranges(shared_data):
    ranges_path = shared_data / "StelaBou_StyleMask" / "libs" / "configs" / "ranges_FFHQ.npy"
    ranges = np.load(ranges_path)
    torch.manual_seed(0)
    exp_p, exp_t = torch.randn(4, 50).double(), torch.randn(4, 50).double()
    pose_p, pose_t = torch.randn(4, 6).double() * 0.1, torch.randn(4, 6).double() * 0.1
    m = ExpressionDistance(ranges_path)
    m.update(exp_p[:2], pose_p[:2], exp_t[:2], pose_t[:2])
    m.update(exp_p[2:], pose_p[2:], exp_t[2:], pose_t[2:])
    want = np.mean(
        [
            _official_expression_error(
                exp_p[i].numpy(), pose_p[i, 3].item(), exp_t[i].numpy(), pose_t[i, 3].item(), ranges
            )
            for i in range(4)
        ]
    )
    assert m.compute().item() == pytest.approx(want, rel=1e-5)
    same = ExpressionDistance(ranges_path)
    same.update(exp_p, pose_p, exp_p, pose_p)
    assert same.compute().item() == pytest.approx(0.0, abs=1e-7)


def test_expression_distance_unnormalised_and_bad_ranges(tmp_path):
    m = ExpressionDistance(None, num_expressions=2)
    exp = torch.tensor([[1.0, 2.0, 9.0]])
    pose = torch.tensor([[0.0, 0, 0, 0.5, 0, 0]])
    m.update(exp, pose, torch.zeros(1, 3), torch.zeros(1, 6))
    assert m.compute().item() == pytest.approx((0.5 + 1 + 2) / 3)
    with pytest.raises(ValueError, match="max > min"):
        load_ranges(np.array([[0.0, 1.0]] * 4 + [[1.0, 1.0]]))
    np.save(tmp_path / "r.npy", np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"r\.npy.*shape"):
        load_ranges(tmp_path / "r.npy")
    with pytest.raises(ValueError, match="rows"):
        ExpressionDistance(np.tile([[0.0, 1.0]], (10, 1)))


@pytest.fixture(scope="module")
def alexnet_file(tmp_path_factory):
    import torchvision

    torch.manual_seed(0)
    sd = torchvision.models.alexnet(weights=None).state_dict()
    path = tmp_path_factory.mktemp("lp") / "alexnet-owt-7be5be79.pth"
    torch.save(sd, path)
    return path, sd


def test_lpips_loads_trunk_from_local_file(alexnet_file, tmp_path):
    path, sd = alexnet_file
    lp = LPIPS("alex", backbone_path=path)
    trunk = lp.model.net.state_dict()
    assert torch.equal(trunk["slice1.0.weight"], sd["features.0.weight"])
    assert torch.equal(trunk["slice5.10.bias"], sd["features.10.bias"])
    torch.manual_seed(0)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    y = torch.rand(2, 3, 64, 64) * 2 - 1
    assert torch.allclose(lp(x, x), torch.zeros(2), atol=1e-7)
    d = lp(x, y)
    assert d.shape == (2,) and (d > 0).all()
    m = LPIPSMetric(lp)
    m.update(x, y)
    m.update(x, x)
    assert m.compute().item() == pytest.approx(d.sum().item() / 4, rel=1e-5)
    assert not any(k.startswith("lpips") for k in m.state_dict())
    with pytest.raises(ValueError, match=r"\[-1,1\]"):
        lp(x * 255, y * 255)
    bad = {k: v for k, v in sd.items() if k != "features.3.weight"}
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match=r"bad\.pth.*features\.3\.weight"):
        LPIPS("alex", backbone_path=tmp_path / "bad.pth")
    with pytest.raises(MissingWeightsError, match="alexnet-owt-7be5be79.pth"):
        LPIPS("alex")


def test_psnr_and_ssim_by_hand():
    x = torch.rand(2, 3, 32, 32) * 1.6 - 0.8
    p = psnr_metric()
    p.update(x + 0.1, x)
    assert p.compute().item() == pytest.approx(10 * math.log10(4 / 0.01), rel=1e-4)
    s = ssim_metric()
    s.update(x, x)
    assert s.compute().item() == pytest.approx(1.0, abs=1e-5)


def _inception_standin(path) -> None:
    """A random-valued file with the key layout of weights-inception-2015-12-05-6726825d.pth."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    empty = path.parent / "empty.pth"
    torch.save({}, empty)
    orig = FeatureExtractorInceptionV3.load_state_dict
    FeatureExtractorInceptionV3.load_state_dict = lambda self, sd: None
    try:
        torch.manual_seed(0)
        net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(empty))
    finally:
        FeatureExtractorInceptionV3.load_state_dict = orig
    torch.save(net.state_dict(), path)


def test_fid_from_local_weights(tmp_path):
    path = tmp_path / "weights-inception-2015-12-05-6726825d.pth"
    _inception_standin(path)
    fid = FID(path, feature=64)
    torch.manual_seed(0)
    real = torch.rand(4, 3, 64, 64) * 2 - 1
    fid.update(real, real=True)
    fid.update(real, real=False)
    assert abs(fid.compute().item()) < 1e-2
    fid2 = FID(path, feature=64)
    fid2.update(real, real=True)
    fid2.update((real * 0.2 + 0.5).clamp(-1, 1), real=False)
    assert fid2.compute().item() > 1e-2
    state = torch.load(path, weights_only=True)
    state.pop("fc.weight")
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(CheckpointError, match=r"broken\.pth"):
        FID(tmp_path / "broken.pth", feature=64)
    with pytest.raises(MissingWeightsError, match="weights-inception"):
        FID(feature=64)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, data: dict, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        mine = slice(rank * 3, rank * 3 + 3) if rank == 0 else slice(3, 4)  # unequal shares: 3 and 1
        c, p, e = CSIM(), PoseDistance(), ExpressionDistance(data["ranges"], num_expressions=5)
        c.update(data["a"][mine], data["b"][mine])
        p.update(data["pose_p"][mine], data["pose_t"][mine])
        e.update(data["exp_p"][mine], data["pose_p"][mine], data["exp_t"][mine], data["pose_t"][mine])
        torch.save({"csim": c.compute(), "pose": p.compute(), "exp": e.compute()}, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_metrics_synchronise_across_two_processes(tmp_path):
    torch.manual_seed(0)
    ranges = np.stack([np.full(10, -1.0), np.full(10, 2.0)], 1)
    data = {
        "a": torch.randn(4, 8),
        "b": torch.randn(4, 8),
        "pose_p": torch.randn(4, 6) * 0.2,
        "pose_t": torch.randn(4, 6) * 0.2,
        "exp_p": torch.randn(4, 50),
        "exp_t": torch.randn(4, 50),
        "ranges": ranges,
    }
    mp.spawn(_worker, args=(2, _free_port(), data, str(tmp_path)), nprocs=2, join=True)
    c, p, e = CSIM(), PoseDistance(), ExpressionDistance(ranges, num_expressions=5)
    c.update(data["a"], data["b"])
    p.update(data["pose_p"], data["pose_t"])
    e.update(data["exp_p"], data["pose_p"], data["exp_t"], data["pose_t"])
    for r in range(2):
        res = torch.load(tmp_path / f"rank{r}.pt")
        assert res["csim"].item() == pytest.approx(c.compute().item(), rel=1e-5)
        assert res["pose"].item() == pytest.approx(p.compute().item(), rel=1e-5)
        assert res["exp"].item() == pytest.approx(e.compute().item(), rel=1e-5)


def test_lpips_passes_gradients_to_its_inputs():
    torch.manual_seed(0)
    net = LPIPS("alex", random_backbone=True)
    x = (torch.rand(2, 3, 32, 32) * 2 - 1).requires_grad_(True)
    net(x, torch.rand(2, 3, 32, 32) * 2 - 1).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in net.parameters())
    # a generator's overshoot is measured as the saved (clamped) image, not refused
    over = x.detach() * 1.3
    torch.testing.assert_close(net(over, x.detach()), net(over.clamp(-1, 1), x.detach()))
