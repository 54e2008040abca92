"""Real-video evaluation (self and cross reenactment) on tiny random networks: every frame of every pair."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchmetrics.image.fid import FrechetInceptionDistance

from common.data.video import write_video
from projects.stylemask.evaluate import cross_pairs, evaluate_voxceleb, list_videos
from projects.stylemask.module import StyleMaskModule


class _Features(torch.nn.Module):
    def forward(self, x):
        return torch.cat([x.float().mean((2, 3)), x.float().std((2, 3))], 1)


def test_self_and_cross_reenactment_scores_every_frame(tmp_path):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    root = tmp_path / "vox"
    for v in ("id1_a", "id2_b"):
        (root / v).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 255, (36, 36, 3), dtype=np.uint8)).save(root / v / f"{i:04d}.png")
    write_video(root / "id3_c.mp4", [rng.integers(0, 255, (32, 32, 3), dtype=np.uint8) for _ in range(5)], fps=25)
    videos = list_videos(root)
    assert [v.name for v in videos] == ["id1_a", "id2_b", "id3_c.mp4"]
    module = StyleMaskModule(
        image_size=32,
        style_dim=32,
        n_mlp=2,
        channel_multiplier=1,
        channel_max=16,
        random_generator=True,
        num_layers_control=5,
        face_models="tiny",
        inverter="tiny",
        loss_size=32,
        mean_latent_samples=64,
    )
    fid = FrechetInceptionDistance(feature=_Features(), reset_real_features=True)

    def lpips(a, b):
        return (a - b).abs().mean((1, 2, 3))

    res = evaluate_voxceleb(
        module, root, num_cross_pairs=3, seed=1, align="none", input_size=32, batch_size=2, lpips=lpips, fid=fid
    )
    assert res["self"]["pairs_scored"] == 3 + 3 + 4  # every frame but the source frame of each video
    pairs = cross_pairs(videos, 3, seed=1)
    frames = {"id1_a": 4, "id2_b": 4, "id3_c.mp4": 5}
    assert res["cross"]["pairs_scored"] == sum(frames[b.name] for _, b in pairs)
    for key in ("csim", "pose", "expression", "lpips", "fid"):
        assert np.isfinite(res["self"][key]), key
    assert -1.0 <= res["self"]["csim"] <= 1.0 and res["self"]["lpips"] > 0
    assert "lpips" not in res["cross"] and "fid" not in res["cross"]


def test_list_videos_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        list_videos(tmp_path / "missing")
    with pytest.raises(ValueError, match="no video files"):
        list_videos(tmp_path)
