"""Inference: real driving video in, frames/grids/video out at the driving frame rate with every frame kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from projects.hyperreenact.inference import FaceCropper, main, open_driving, reenact
from projects.hyperreenact.module import HyperReenactModule

CONFIGS = Path(__file__).resolve().parents[3] / "projects" / "hyperreenact" / "configs"


@pytest.fixture(scope="module")
def tiny_net():
    cfg = yaml.safe_load((CONFIGS / "tiny.yaml").read_text())
    return HyperReenactModule(**cfg["model"]).net


def test_real_driving_video_keeps_fps_and_frame_count(shared_data, tiny_net, tmp_path):
    from common.data.video import iter_video, video_info, write_video

    ex = shared_data / "StelaBou_HyperReenact" / "inference_examples"
    # a short clip of the real driving video, declared at 10 fps (the official code would write 25 fps)
    frames = []
    for i, fr in enumerate(iter_video(ex / "target_video_2.mp4")):
        frames.append(fr)
        if i == 3:
            break
    clip = tmp_path / "clip.mp4"
    write_video(clip, frames, fps=10.0)
    res = reenact(tiny_net, ex / "source.png", clip, tmp_path / "out", crop="detect", save_grids=True, batch_size=3)
    assert res.frames == 4 and res.fps == pytest.approx(10.0)
    n, fps, hw = video_info(res.video)
    assert n == 4 and fps == pytest.approx(10.0) and hw == (32, 32)
    assert len(list((tmp_path / "out" / "frames").glob("*.png"))) == 4
    grid = np.asarray(Image.open(tmp_path / "out" / "grids" / "000003.png"))
    assert grid.shape == (32, 96, 3)


def test_face_cropper_carries_landmarks_into_the_crop(shared_data):
    from common.face.detect import FaceDetector, load_rgb

    img = load_rgb(shared_data / "StelaBou_HyperReenact" / "inference_examples" / "source.png")
    face = FaceCropper(256, "detect")(img, "source.png")
    assert face.image.shape == (256, 256, 3)
    # the five points found again on the crop agree with the carried ones within a few pixels
    det = FaceDetector().detect(face.image, require=True)
    assert np.abs(det.landmarks5 - face.lm5).max() < 6.0
    assert (face.lm5 > 0).all() and (face.lm5 < 256).all()


def test_folder_and_image_inputs_and_errors(tiny_net, tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i:03d}.png")
    args = [
        "--source",
        str(folder / "000.png"),
        "--driving",
        str(folder),
        "--out",
        str(tmp_path / "o"),
        "--crop",
        "fixed",
    ]
    from common.weights import MissingWeightsError

    with pytest.raises(MissingWeightsError, match="hypernetwork.pt"):
        main(args)  # released weights by default: absent here
    from projects.hyperreenact.main import main as cli

    cli(["fit", "--config", str(CONFIGS / "tiny.yaml"), f"--data.root={tmp_path / 'syn'}", "--trainer.max_steps=1"])
    ckpt = next(Path(tmp_path / "runs").rglob("last.ckpt"))
    res = main(args + ["--checkpoint", str(ckpt), "--fps", "12"])
    assert res.frames == 3 and res.fps == 12.0
    res = reenact(tiny_net, folder / "000.png", folder / "001.png", tmp_path / "o2", crop="fixed", save_video=False)
    assert res.frames == 1 and res.video is None
    with pytest.raises(FileNotFoundError, match="not found"):
        open_driving(tmp_path / "nope.mp4")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(ValueError, match="must be a video"):
        open_driving(tmp_path / "x.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        open_driving(tmp_path / "empty")
    with pytest.raises(ValueError, match="crop mode"):
        FaceCropper(32, "center")
