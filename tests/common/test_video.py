"""Tests of common/data/video.py: round trip, fps and frame count, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from common.data.video import VideoError, iter_video, read_video, video_info, write_video


def _frames(t: int = 12, h: int = 48, w: int = 64) -> np.ndarray:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    # Smooth frames that differ over time so the lossy codec keeps them close.
    out = []
    for i in range(t):
        f = np.full((h, w, 3), 20 * i % 256, dtype=np.uint8)
        f[:, : w // 2] = 200
        out.append(f if i % 2 else np.maximum(f, base // 8))
    return np.stack(out)


@pytest.mark.parametrize("fps", [25.0, 29.97])
def test_round_trip_keeps_fps_count_and_content(tmp_path, fps):
    frames = _frames()
    path = tmp_path / "clip.mp4"
    assert write_video(path, iter(frames), fps) == len(frames)  # a generator is accepted
    back, fps_back = read_video(path)
    assert back.shape == frames.shape and back.dtype == np.uint8
    assert fps_back == pytest.approx(fps, rel=1e-3)
    assert np.abs(back.astype(float) - frames.astype(float)).mean() < 6.0
    n, fps_info, size = video_info(path)
    assert (n, size) == (len(frames), (48, 64))
    assert fps_info == pytest.approx(fps, rel=1e-3)
    assert sum(1 for _ in iter_video(path)) == len(frames)


def test_read_selected_indices(tmp_path):
    frames = _frames(t=10)
    path = tmp_path / "clip.mp4"
    write_video(path, frames, 25, codec="mpeg4")
    allf, _ = read_video(path)
    sel, fps = read_video(path, indices=[7, 2, 2, 0])
    assert sel.shape == (4, 48, 64, 3) and fps == pytest.approx(25)
    assert np.array_equal(sel, allf[[7, 2, 2, 0]])
    with pytest.raises(VideoError, match="index 12.*10 frames"):
        read_video(path, indices=[1, 12])
    with pytest.raises(VideoError, match="non-negative"):
        read_video(path, indices=[-1])


def test_mpeg4_fallback_and_tensor_frames(tmp_path):
    frames = torch.from_numpy(_frames(t=5))
    path = tmp_path / "clip.mp4"
    write_video(path, frames, 10, codec="mpeg4")
    back, fps = read_video(path, max_frames=3)
    assert back.shape == (3, 48, 64, 3) and fps == pytest.approx(10)


def test_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        read_video(tmp_path / "nope.mp4")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"this is not a video" * 10)
    with pytest.raises(VideoError, match="bad.mp4"):
        video_info(bad)
    with pytest.raises(VideoError, match="uint8"):
        write_video(tmp_path / "f.mp4", [np.zeros((8, 8, 3), np.float32)], 25)
    with pytest.raises(VideoError, match="even"):
        write_video(tmp_path / "o.mp4", [np.zeros((9, 8, 3), np.uint8)], 25)
    with pytest.raises(VideoError, match="size"):
        write_video(tmp_path / "s.mp4", [np.zeros((8, 8, 3), np.uint8), np.zeros((8, 10, 3), np.uint8)], 25)
    with pytest.raises(VideoError, match="no frames"):
        write_video(tmp_path / "e.mp4", [], 25)
    with pytest.raises(VideoError, match="fps"):
        write_video(tmp_path / "z.mp4", [np.zeros((8, 8, 3), np.uint8)], 0)


def test_real_driving_videos(shared_data, tmp_path):
    src = shared_data / "StelaBou_HyperReenact" / "inference_examples" / "target_video_2.mp4"
    n, fps, size = video_info(src)
    assert (n, fps, size) == (220, 25.0, (720, 1280))
    n1, fps1, _ = video_info(src.parent / "target_video_1.mp4")
    assert (n1, fps1) == (525, 25.0)
    frames, fps_r = read_video(src, max_frames=5)
    assert frames.shape == (5, 720, 1280, 3) and fps_r == 25.0
    # Stream every frame (no 600 MB array), re-encode a downscaled copy: fps and frame count survive.
    out = tmp_path / "copy.mp4"
    assert write_video(out, (f[::4, ::4] for f in iter_video(src)), fps_r) == 220
    assert video_info(out) == (220, 25.0, (180, 320))
    back, _ = read_video(out, max_frames=1)
    assert np.abs(back[0].astype(float) - frames[0, ::4, ::4].astype(float)).mean() < 8.0
