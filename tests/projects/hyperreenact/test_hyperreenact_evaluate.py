"""Evaluation metrics over a tiny synthetic test split, checked against direct formulas."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml
from torch.utils.data import DataLoader

from common.face.flame import axis_angle_to_euler
from projects.hyperreenact.data import EvaluationPairs, write_synthetic_vox
from projects.hyperreenact.evaluate import evaluate, format_table
from projects.hyperreenact.model import TinyLPIPS
from projects.hyperreenact.module import HyperReenactModule

CONFIGS = Path(__file__).resolve().parents[3] / "projects" / "hyperreenact" / "configs"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    cfg = yaml.safe_load((CONFIGS / "tiny.yaml").read_text())
    m = HyperReenactModule(**cfg["model"])
    root = write_synthetic_vox(tmp_path_factory.mktemp("syn"), m.net.generator, 3, 1, 3, splits=("test",))
    return m.net, root


def _manual(net, loader):
    out = {"psnr": [], "csim": [], "big": []}
    with torch.no_grad():
        for b in loader:
            _, f_app = net.app_encoder(b["source"], b["source_lm5"])
            e_src, _ = net.app_encoder(b["source"], b["source_lm5"])
            p_t, f_pose = net.pose_encoder(b["target"], b["target_box"])
            p_s, _ = net.pose_encoder(b["source"], b["source_box"])
            img, _ = net.render(b["source_w"], f_pose, f_app)
            img = img.clamp(-1, 1)
            e_out, _ = net.app_encoder(img, b["target_lm5"])
            mse = ((img - b["target"]) ** 2).flatten(1).mean(1)
            out["psnr"] += [10 * math.log10(4.0 / v) for v in mse.tolist()]
            out["csim"] += torch.nn.functional.cosine_similarity(e_out, e_src).tolist()
            d = (axis_angle_to_euler(p_s["pose"][:, :3]) - axis_angle_to_euler(p_t["pose"][:, :3])).abs()
            out["big"] += (d.max(1).values > 15).tolist()
    return out


def test_self_and_cross_metrics(setup):
    net, root = setup
    ds = EvaluationPairs(root, "test", 32, mode="self")
    assert len(ds) == 3 * 2  # first frame is the source of the two later ones
    assert all(p[1] == 0 and p[0] == p[2] for p in ds.pairs)
    loader = DataLoader(ds, batch_size=4)
    res = evaluate(net, loader, "self", lpips=TinyLPIPS(), num_expressions=6)
    ref = _manual(net, loader)
    assert res["all"]["pairs"] == 6
    assert res["all"]["psnr"] == pytest.approx(sum(ref["psnr"]) / 6, rel=1e-4)
    assert res["all"]["csim"] == pytest.approx(sum(ref["csim"]) / 6, abs=1e-5)
    assert res["large_pose"]["pairs"] == sum(ref["big"])
    assert set(res["all"]) >= {"csim", "csim_target", "lpips", "apd", "aed", "psnr", "ssim"}
    assert 0 <= res["all"]["ssim"] <= 1 and res["all"]["apd"] >= 0
    cross = EvaluationPairs(root, "test", 32, mode="cross", num_pairs=5, seed=3)
    again = EvaluationPairs(root, "test", 32, mode="cross", num_pairs=5, seed=3)
    assert cross.pairs == again.pairs  # seeded
    assert all(cross.videos[s].identity != cross.videos[t].identity for s, _, t, _ in cross.pairs)
    res_c = evaluate(net, DataLoader(cross, batch_size=5), "cross", num_expressions=6)
    assert res_c["all"]["pairs"] == 5 and "psnr" not in res_c["all"] and "lpips" not in res_c["all"]
    table = format_table({"self": res, "cross": res_c}, paper={"HyperReenact": {"csim": "n/a"}})
    assert "ours self/all" in table and "ours cross/large_pose" in table and "paper HyperReenact" in table
    with pytest.raises(ValueError):
        evaluate(net, loader, "both", num_expressions=6)
