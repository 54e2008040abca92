"""The web app's handlers and the predict functions it calls, without a browser (fast, no Chromium needed)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

pytest.importorskip("gradio", reason="the app extra is not installed (pip install -e '.[app]')")

from projects.app.app import InputError, PaperlabApp, check_video, error_text, parse_seeds  # noqa: E402


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory) -> dict[str, Path]:
    import tiny_models

    return tiny_models.all_ckpts(tmp_path_factory.mktemp("ckpts"))


def _clip(path: Path, n: int = 5, fps: float = 10.0, size: int = 32) -> Path:
    from common.data.video import write_video

    rng = np.random.default_rng(0)
    write_video(path, rng.integers(0, 255, (n, size, size, 3), dtype=np.uint8), fps)
    return path


def test_time_windows_by_hand():
    from projects.dferclip.predict import time_windows

    assert time_windows(10, 4, 3) == [(0, 4), (3, 7), (6, 10)]
    assert time_windows(11, 4, 3) == [(0, 4), (3, 7), (6, 10), (7, 11)]  # the last one ends at the video's end
    assert time_windows(3, 4, 1) == [(0, 3)]
    with pytest.raises(ValueError):
        time_windows(0, 4, 1)


def test_predict_over_time_rows_are_distributions_over_the_sampled_frames(ckpts, tmp_path):
    from projects.dferclip.data import sample_indices
    from projects.dferclip.predict import load_model, predict_over_time

    model, t, size = load_model(ckpt=str(ckpts["dferclip"]))
    clip = _clip(tmp_path / "c.mp4", n=12, fps=10.0)
    calls = []
    tl = predict_over_time(
        model, clip, t, size, window=0.5, stride=0.3, detect_faces=False, progress=lambda d, n: calls.append((d, n))
    )
    assert tl.windows == [(0, 5), (3, 8), (6, 11), (7, 12)]
    assert tl.seen[1] == [3 + i for i in sample_indices(5, t, train=False)]
    assert tl.probs.shape == (4, 7)
    torch.testing.assert_close(tl.probs.sum(1), torch.ones(4))
    assert tl.times == pytest.approx([0.25, 0.55, 0.85, 0.95])
    assert set(tl.crops) == {i for s in tl.seen for i in s} and tl.crops[3].size == (size, size)
    assert calls[-1] == (len(tl.crops) + 4, len(tl.crops) + 4)


def test_parse_seeds():
    assert parse_seeds("0-3") == [0, 1, 2, 3]
    assert parse_seeds("5, 7 9-10") == [5, 7, 9, 10]
    for bad in ("", "a", "0-200"):
        with pytest.raises(InputError):
            parse_seeds(bad)


def test_sampling_truncation_and_mixing(ckpts):
    from common.stylegan2.sample import load_any_generator, sample

    g = load_any_generator(ckpts["generator"])
    a = sample(g, [0, 1], truncation=1.0)
    assert a.shape == (2, 3, 32, 32) and not torch.allclose(a[0], a[1])
    torch.testing.assert_close(sample(g, [0, 1], truncation=1.0), a)  # a seed is one image
    same = sample(g, [0, 1], truncation=0.0)  # psi 0: every seed maps to the mean latent
    torch.testing.assert_close(same[0], same[1])
    torch.testing.assert_close(sample(g, [0], 1.0, mix_seed=0, mix_from=3), a[:1])  # mixing a seed with itself
    mixed = sample(g, [0], 1.0, mix_seed=1, mix_from=3)
    assert not torch.allclose(mixed, a[:1]) and not torch.allclose(mixed, a[1:])
    with pytest.raises(ValueError, match="mix_from"):
        sample(g, [0], 1.0, mix_seed=1, mix_from=g.n_latent)


def test_generator_from_a_lightning_checkpoint_and_a_clear_error(ckpts):
    from common.stylegan2.checkpoints import CheckpointError
    from common.stylegan2.sample import load_any_generator

    g = load_any_generator(ckpts["stylemask"])  # a random-generator StyleMask run keeps its generator
    assert g.size == 32
    with pytest.raises(CheckpointError, match="no StyleGAN2 generator"):
        load_any_generator(ckpts["maskcon"])


def test_neighbours_by_hand():
    from projects.maskcon.retrieve import Gallery, neighbours

    emb = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.7, 0.7]]), dim=1)
    g = Gallery(emb, np.array([0, 0, 1, 1]), np.array([5, 6, 7, 8]), datamodule=None)
    res = neighbours(g, 0, k=2)
    assert [r["index"] for r in res] == [1, 3] and [r["fine"] for r in res] == [6, 8]
    assert res[0]["similarity"] == pytest.approx(float(emb[0] @ emb[1]))
    with pytest.raises(IndexError):
        neighbours(g, 4)


def test_stylemask_reenact_keeps_every_frame_and_the_rate(ckpts, tmp_path):
    from common.data.video import video_info
    from projects.stylemask.inference import load_for_inference, reenact

    module = load_for_inference(ckpts["stylemask"])
    assert module.faces is None  # inference builds no face networks
    from PIL import Image

    clip = _clip(tmp_path / "d.mp4", n=5, fps=12.0)
    source = tmp_path / "s.png"
    Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(source)
    seen = []
    res = reenact(
        module, source, clip, tmp_path / "out", align="none", batch_size=2, progress=lambda d, t: seen.append(d)
    )
    n, fps, (h, w) = video_info(res.video)
    assert (res.frames, res.fps, n, fps, w) == (5, 12.0, 5, 12.0, 3 * h) and seen == [2, 4, 5]


def test_stylemask_checkpoint_without_masks_is_refused(ckpts, tmp_path):
    from projects.stylemask.inference import load_for_inference

    saved = torch.load(ckpts["stylemask"], weights_only=True)
    saved["state_dict"] = {k: v for k, v in saved["state_dict"].items() if "mask_net" not in k}
    torch.save(saved, tmp_path / "bad.ckpt")
    with pytest.raises(ValueError, match="missing"):
        load_for_inference(tmp_path / "bad.ckpt")


def test_bad_inputs_give_messages(tmp_path):
    import av

    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    with pytest.raises(InputError, match="not a video"):
        check_video(str(broken), "video", 10)
    # a video whose header announces 3 frames and whose data is cut off: no frame decodes
    full = tmp_path / "full.mp4"
    with av.open(str(full), "w", options={"movflags": "faststart"}) as c:
        s = c.add_stream("mpeg4", rate=10)
        s.width, s.height, s.pix_fmt = 32, 32, "yuv420p"
        for _ in range(3):
            c.mux(s.encode(av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")))
        c.mux(s.encode())
    data = full.read_bytes()
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(data[: data.find(b"mdat") + 4])
    with pytest.raises(InputError, match="empty.mp4 is a video with no frames"):
        check_video(str(empty), "video", 10)
    big = _clip(tmp_path / "big.mp4", n=3)
    with pytest.raises(InputError, match="over this app's limit of 1e-05 MB"):
        check_video(str(big), "video", 1e-5)
    with pytest.raises(InputError, match="no video given"):
        check_video(None, "video", 10)


def test_generate_falls_back_to_the_shipped_face_world_generator(tmp_path):
    from common.weights import default_path

    if not default_path("faceworld_generator").is_file():
        pytest.skip("the face-world generator is not in pretrained/faceworld/")
    app = PaperlabApp(workdir=str(tmp_path / "w"))  # no --ckpt, and $PAPERLAB_WEIGHTS is an empty folder
    out = app.generate("0,1", 0.7, False, 0, 1)
    assert out["info"]["model"].startswith("shipped face-world model") and out["info"]["size"] == 64
    assert len(out["images"]) == 2


def test_missing_weights_message_is_the_cli_message(tmp_path, monkeypatch):
    import projects.app.models as models
    from common.weights import MissingWeightsError, resolve

    monkeypatch.setattr(models, "_faceworld_path", lambda tab: None)  # as in a checkout without pretrained/
    app = PaperlabApp(workdir=str(tmp_path / "w"))  # no --ckpt, and $PAPERLAB_WEIGHTS is an empty folder
    with pytest.raises(MissingWeightsError) as page_err:
        app.generate("0", 0.7, False, 0, 1)
    with pytest.raises(MissingWeightsError) as cli_err:
        resolve("stylegan2_ffhq_config_f")
    assert str(page_err.value) == str(cli_err.value)
    assert str(cli_err.value) in error_text(page_err.value)
    with pytest.raises(FileNotFoundError, match="--ckpt maskcon="):
        app.retrieve(0, 4)
    with pytest.raises(ValueError, match="unknown tab"):
        PaperlabApp({"nope": "x.ckpt"}, workdir=str(tmp_path / "w2"))


def test_face_world_models_are_not_sent_through_the_face_detector(tmp_path, monkeypatch):
    """Shipped face-world models: StyleMask takes the renders as aligned, HyperReenact crops with the model's own
    landmark estimator; released models keep MTCNN (FFHQ alignment / detection)."""
    from types import SimpleNamespace

    from PIL import Image

    import projects.hyperreenact.inference as hr_inf
    import projects.stylemask.inference as sm_inf
    from common.data.video import write_video
    from projects.app.models import Loaded

    src = tmp_path / "src.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(src)
    drv = _clip(tmp_path / "drv.mp4")
    seen: dict[str, str] = {}

    def fake_sm(model, source, driving, out, align, grid, progress):
        seen["align"] = align
        video = Path(out) / "v.mp4"
        write_video(video, np.zeros((2, 16, 16, 3), np.uint8), 10.0)
        return SimpleNamespace(video=video)

    def fake_hr(model, source, driving, out, crop, save_frames, save_grids, progress):
        seen["crop"] = crop
        (Path(out) / "grids").mkdir(parents=True)
        Image.fromarray(np.zeros((16, 48, 3), np.uint8)).save(Path(out) / "grids" / "0.png")
        return SimpleNamespace(fps=10.0)

    monkeypatch.setattr(sm_inf, "reenact", fake_sm)
    monkeypatch.setattr(hr_inf, "reenact", fake_hr)
    app = PaperlabApp(workdir=str(tmp_path / "work"))
    for origin, landmarker, align, crop in [
        ("shipped face-world model pretrained/faceworld/x.pt", object(), "none", "landmarks"),
        ("released mask network (FFHQ 1024)", None, "ffhq", "detect"),
    ]:
        model = SimpleNamespace(landmarker=landmarker)
        monkeypatch.setattr(app.models, "get", lambda tab, m=model, o=origin: Loaded(m, o))
        app.reenact(str(src), str(drv), "StyleMask")
        app.reenact(str(src), str(drv), "HyperReenact")
        assert (seen["align"], seen["crop"]) == (align, crop)
