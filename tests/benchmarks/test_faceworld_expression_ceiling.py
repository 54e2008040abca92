"""The expression-ceiling analysis: its features and R² (shared with the expert's evaluation) by hand, a tiny run."""

import pytest
import torch

from benchmarks.faceworld_expression_ceiling import main
from common.face.faceworld_experts import landmark_features, r2_scores


def test_landmark_features_forget_position_and_scale():
    lm = torch.rand(2, 68, 2, generator=torch.Generator().manual_seed(0)) * 64
    f = landmark_features(lm)
    assert f.shape == (2, 136)
    torch.testing.assert_close(landmark_features(lm * 3 + torch.tensor([5.0, -7.0])), f)
    pts = f.view(2, 68, 2)
    torch.testing.assert_close(pts.mean(1), torch.zeros(2, 2), atol=1e-6, rtol=0)
    torch.testing.assert_close(pts.norm(dim=2).mean(1), torch.ones(2))


def test_r2_by_hand():
    truth = torch.tensor([[0.0, 1.0], [2.0, 1.0], [4.0, 3.0]])
    pred = torch.tensor([[1.0, 1.0], [2.0, 1.0], [3.0, 3.0]])
    # column 0: MSE 2/3, variance 8/3 -> 0.75; column 1: exact -> 1
    torch.testing.assert_close(r2_scores(pred, truth), torch.tensor([0.75, 1.0]))
    assert r2_scores(truth.mean(0).expand_as(truth), truth).abs().max() < 1e-6  # predicting the mean scores 0


def test_tiny_run_reports_every_coefficient(capsys):
    out = main(["--n_train", "256", "--n_test", "64", "--steps", "5"])
    assert set(out) == {"exact landmarks", "exact landmarks + true identity"}
    assert all(len(v) == 8 and max(v) <= 1 for v in out.values())
    assert "expression R² from exact landmarks: mean" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--steps", "x"])
