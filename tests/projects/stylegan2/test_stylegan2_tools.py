"""The evaluation against real renders (random experts, tiny generator) and the demo on a tiny generator file."""

from __future__ import annotations

import json

import pytest
import torch

from common.stylegan2 import Generator
from projects.stylegan2.evaluate import evaluate, generate, plot_histograms, wasserstein_1d


def test_wasserstein_1d_by_hand():
    assert wasserstein_1d(torch.tensor([0.0, 1.0, 2.0]), torch.tensor([3.0, 1.0, 2.0])) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="equal sample counts"):
        wasserstein_1d(torch.zeros(2), torch.zeros(3))


def test_evaluate_reports_distances_and_the_closed_gap(tmp_path):
    from common.face.faceworld_experts import FaceWorldAttributes, FaceWorldIdentity
    from projects.stylegan2.data import load_faceworld_cache

    torch.manual_seed(0)
    g = Generator(16, style_dim=16, n_mlp=2, channel_max=8).eval()
    ident, attr = FaceWorldIdentity().eval(), FaceWorldAttributes().eval()
    a = load_faceworld_cache(tmp_path, "val", 16, 8, 0).float().div(127.5).sub(1)
    b = load_faceworld_cache(tmp_path, "test", 16, 8, 0).float().div(127.5).sub(1)
    r = evaluate(g, ident, attr, a, b)
    fd = r["fd_identity"]
    assert fd["real_floor"] >= 0 and fd["generator"] >= 0
    assert r["gap_closed"] == pytest.approx((fd["untrained"] - fd["generator"]) / (fd["untrained"] - fd["real_floor"]))
    assert set(r["wasserstein_1d"]) == {"yaw", "pitch", "roll", "smile", "mouth_open", "brow_raise", "eye_open",
                                        "frown", "brow_furrow", "nose_wrinkle", "lip_stretch"}  # fmt: skip
    assert torch.equal(generate(g, 3, seed=1), generate(g, 3, seed=1))
    assert plot_histograms(r, tmp_path / "h.png").stat().st_size > 1000


def test_demo_pictures_and_fine_tuning_from_a_generator_file(tmp_path, monkeypatch, capsys):
    from projects.stylegan2.demo import main

    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    g = Generator(16, style_dim=16, n_mlp=2, channel_max=8)
    torch.save({"g_ema": g.state_dict()}, tmp_path / "g.pt")
    assert main(["--generator", str(tmp_path / "g.pt"), "--steps", "2", "--out", str(tmp_path / "pics")]) == 0
    for name in ("samples.png", "truncation.png", "style_mixing.png"):
        assert (tmp_path / "pics" / name).stat().st_size > 500
    out = capsys.readouterr().out
    assert "after 2 fine-tuning iterations" in out and "train/g" in out


def test_demo_names_the_missing_generator(tmp_path, capsys):
    from projects.stylegan2.demo import main

    assert main(["--generator", str(tmp_path / "nope.pt")]) == 1
    assert "nope.pt" in capsys.readouterr().err


def test_evaluate_command_line_writes_json_and_figure(tmp_path, monkeypatch, capsys):
    import common.face.faceworld_experts as experts
    from projects.stylegan2.evaluate import main

    torch.manual_seed(0)
    monkeypatch.setattr(experts, "load_faceworld_identity", lambda path=None: experts.FaceWorldIdentity().eval())
    monkeypatch.setattr(experts, "load_faceworld_attributes", lambda path=None: experts.FaceWorldAttributes().eval())
    g = Generator(16, style_dim=16, n_mlp=2, channel_max=8)
    torch.save({"g_ema": g.state_dict()}, tmp_path / "g.pt")
    main(["--generator", str(tmp_path / "g.pt"), "--n", "8", "--cache_dir", str(tmp_path), "--out", str(tmp_path)])
    result = json.loads((tmp_path / "faceworld_eval.json").read_text())
    assert result["n"] == 8 and "gap_closed" in result and "yaw" in result["wasserstein_1d"]
    assert (tmp_path / "faceworld_eval_histograms.png").is_file()
    assert "gap closed" in capsys.readouterr().out
