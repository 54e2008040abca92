"""HyperReenact in the face world: the switch reaches every loss and metric (and no real network), pairs carry the
exact answer, the benchmark's metrics by hand, the shipped file round trip, the side-by-side script, the demo's
grid and video, and imports that run one way."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch.utils.data import default_collate

from common.data import faceworld as fw
from common.face import faceworld_experts as fe
from common.face.align import lm68_to_lm5
from common.face.flame import axis_angle_to_euler
from common.metrics.face import faceworld_expression_ranges
from projects.hyperreenact import faceworld as hfw
from projects.hyperreenact.evaluate import (
    METHODS,
    ROW_KEYS,
    evaluate,
    faceworld_rows,
    reenacted,
    summarize,
)
from projects.hyperreenact.module import HyperReenactModule, load_module

REPO = Path(__file__).resolve().parents[3]
CONFIGS = REPO / "projects" / "hyperreenact" / "configs"
PROJECT = REPO / "projects" / "hyperreenact"


def _tiny_cfg() -> dict:
    return yaml.safe_load((CONFIGS / "faceworld_tiny.yaml").read_text())


@pytest.fixture
def no_real_networks(monkeypatch):
    """Every loader and class of the real networks (and of the tiny stand-ins) raises."""
    import common.face.deca
    import common.face.flame
    import common.face.irse
    import common.face.lpips
    from projects.hyperreenact import model, pretrained

    def boom(*args, **kwargs):
        raise AssertionError("a real (or tiny stand-in) network was built in face-world mode")

    for name in pretrained.__all__:
        if name.startswith("load_"):
            monkeypatch.setattr(pretrained, name, boom)
    classes = [
        common.face.deca.DECAEncoder,
        common.face.flame.FLAME,
        common.face.irse.Backbone,
        common.face.lpips.LPIPS,
    ]
    classes += [model.TinyArcFace, model.TinyDECA, model.TinyFLAME, model.TinyLPIPS]
    for cls in classes:
        monkeypatch.setattr(cls, "__init__", boom)


@pytest.fixture
def calls(monkeypatch):
    """Counts the calls of the face-world networks."""
    counts: dict[str, int] = {}

    def spy(cls, attr, key):
        orig = getattr(cls, attr)

        def wrapper(self, *a, **k):
            counts[key] = counts.get(key, 0) + 1
            return orig(self, *a, **k)

        monkeypatch.setattr(cls, attr, wrapper)

    spy(fe.FaceWorldIdentity, "features", "identity")
    spy(fe.FaceWorldAttributes, "features", "attributes")
    spy(fe.FaceWorldFLAME, "forward", "flame")
    spy(fe.FaceWorldPerceptual, "forward", "perceptual")
    spy(hfw.ExpertLandmarks, "forward", "landmarks")
    return counts


def _mean_face_head(attributes: fe.FaceWorldAttributes) -> None:
    """Random attribute expert whose head predicts about the world's mean face (random weights scaled down, bias
    at the mean parameters): its landmark estimates are finite, so the landmark metrics can be checked."""
    corners = torch.tensor([fe.FACEWORLD_FACE_BOX[:2], fe.FACEWORLD_FACE_BOX[2:]]) * 64
    mean = {"shape": 0.5, "tex": 0.5, "exp": 0.0, "angles": 0.0}
    head = attributes.layers[-1]
    with torch.no_grad():
        head.weight.mul_(1e-3)
        bias = []
        for k, n in fe._HEADS.items():
            bias.append(
                fe._cam_from_crop(corners[None], 64)[0] / fe._CAM_SCALE if k == "cam" else torch.full((n,), mean[k])
            )
        head.bias.copy_(torch.cat(bias))


def _tiny_module() -> HyperReenactModule:
    torch.manual_seed(0)
    m = HyperReenactModule(**_tiny_cfg()["model"])
    _mean_face_head(m.net.pose_encoder.net)
    return m


@pytest.fixture(scope="module")
def tiny_module():
    return _tiny_module()


def _batch(ds, n: int) -> dict:
    return default_collate([ds[i] for i in range(n)])


# --------------------------------------------------------------------------------------------- the switch
def test_switch_reaches_every_loss_and_metric_and_no_real_network(no_real_networks, calls, tmp_path):
    m = _tiny_module()
    assert isinstance(m.net.app_encoder.net, fe.FaceWorldIdentity) and m.net.app_encoder.align == "net"
    assert isinstance(m.net.pose_encoder.net, fe.FaceWorldAttributes) and m.net.pose_encoder.crop_size == 56
    assert isinstance(m.flame, fe.FaceWorldFLAME) and isinstance(m.lpips, fe.FaceWorldPerceptual)
    batch = _batch(hfw.FaceWorldTrainingPairs(4, 32, seed=1), 4)
    expected = {"inversion": {"id", "shape", "eye", "mouth", "l1", "lpips"}, "cross": {"id", "shape", "eye", "mouth"}}
    expected["self"] = expected["inversion"]
    for phase, keys in expected.items():
        calls.clear()
        m.zero_grad()
        loss, terms, _ = m.reenact_and_losses(batch, phase)
        loss.backward()
        assert set(terms) == keys, phase
        assert calls["identity"] >= 2 and calls["attributes"] >= 2 and calls["flame"] == 2, (phase, calls)
        assert calls.get("perceptual", 0) == (phase != "cross"), (phase, calls)
        grads = [p.grad for p in m.net.hypernet.parameters() if p.grad is not None]
        assert grads and any(g.abs().sum() > 0 for g in grads)
        frozen = [*m.net.frozen_modules().values(), m.flame, m.lpips]
        assert all(p.grad is None for mod in frozen for p in mod.parameters())
    # every metric of the benchmark, every method, through the face-world networks
    pairs = hfw.FaceWorldEvaluationPairs("test", 32, 3, "cross", seed=0)
    for method in METHODS:
        calls.clear()
        res = evaluate(
            m.net, [_batch(pairs, 3)], "cross", method=method, num_expressions=8, measure_boxes=hfw.fixed_boxes
        )
        assert {"psnr", "ssim", "nme", "landmark_px", "csim", "apd", "aed"} <= set(res["all"]), method
        assert calls["identity"] >= 3 and calls["attributes"] >= 3 and calls["landmarks"] == 1, (method, calls)
    # and the command line: fit, then test from the checkpoint
    from projects.hyperreenact.main import main

    main(["fit", "--config", str(CONFIGS / "faceworld_tiny.yaml"), "--trainer.max_steps=2"])
    ckpt = next(Path(tmp_path / "runs").rglob("last.ckpt"))
    main(["test", "--config", str(CONFIGS / "faceworld_tiny.yaml"), f"--ckpt_path={ckpt}"])
    assert isinstance(load_module(ckpt).net.pose_encoder.net, fe.FaceWorldAttributes)


def _save_faceworld_files(folder: Path) -> dict[str, str]:
    """Random face-world networks written in their shipped formats under ``folder`` (the weights folder of the
    test, ``$PAPERLAB_WEIGHTS/faceworld``): generator as rosinality's ``{'g_ema'}``, experts as their trainer saves."""
    from common.stylegan2.faceworld_e4e import build_faceworld_e4e, save_faceworld_e4e
    from common.stylegan2.generator import Generator

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(3)
    files = {
        "generator_path": folder / "faceworld_generator.pt",
        "arcface_path": folder / "faceworld_identity.pt",
        "deca_path": folder / "faceworld_attributes.pt",
        "e4e_path": folder / "faceworld_e4e.pt",
    }
    gen = Generator(32, style_dim=32, n_mlp=8, channel_max=32)
    torch.save({"g_ema": gen.state_dict()}, files["generator_path"])
    ident, attr = fe.FaceWorldIdentity(), fe.FaceWorldAttributes()
    for net in (ident, attr):  # non-trivial BatchNorm statistics, so a wrong load would show
        for mod in net.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.1, 0.1)
    fe._save(ident, "identity", {"width": ident.width, "dim": ident.dim}, files["arcface_path"])
    fe._save(attr, "attributes", {"width": attr.width, "hidden": attr.hidden}, files["deca_path"])
    enc = build_faceworld_e4e(gen)
    enc.set_latent_avg(torch.randn(gen.style_dim))
    save_faceworld_e4e(enc, files["e4e_path"])
    return {k: str(v) for k, v in files.items()}


def _faceworld_from_files(files) -> HyperReenactModule:
    cfg = dict(_tiny_cfg()["model"], encoders="faceworld", **files)
    cfg.pop("tiny_seed")
    return HyperReenactModule(**cfg)


def test_export_command_takes_the_experiment_folder(tmp_path, no_real_networks):
    import lightning

    from common.checkpoint import MODULE_KEY, class_path
    from projects.hyperreenact.export import main as export_main

    files = _save_faceworld_files(tmp_path / "pretrained" / "faceworld")
    m = _faceworld_from_files(files)
    with torch.no_grad():
        for p in m.net.hypernet.parameters():
            p.normal_(0, 0.05)
    exp = tmp_path / "runs" / "hyperreenact" / "faceworld"
    for n, scale in ((2, 1.0), (1, 0.0)):  # the newest run (version_2) is the one with the trained hypernetwork
        (exp / f"version_{n}" / "checkpoints").mkdir(parents=True)
        sd = {k: v * scale if k.startswith("net.hypernet.") else v for k, v in m.state_dict().items()}
        ckpt = {"state_dict": sd, "hyper_parameters": dict(m.hparams), MODULE_KEY: class_path(HyperReenactModule)}
        ckpt["pytorch-lightning_version"] = lightning.__version__
        torch.save(ckpt, exp / f"version_{n}" / "checkpoints" / "last.ckpt")
    out = export_main(["--checkpoint", str(exp), "--out", str(tmp_path / "shipped.pt")])
    back = load_module(out)
    for k, v in m.net.hypernet.state_dict().items():
        torch.testing.assert_close(back.net.hypernet.state_dict()[k], v.half().float())


def test_shipped_files_load_and_the_hypernetwork_ships_in_float16(tmp_path, monkeypatch, no_real_networks):
    files = _save_faceworld_files(tmp_path / "pretrained" / "faceworld")  # $PAPERLAB_WEIGHTS of the test
    m = _faceworld_from_files(files)
    saved = torch.load(files["arcface_path"], weights_only=True)["state_dict"]
    for k, v in saved.items():  # the file may store float16 (the loader reads float32)
        loaded = m.net.app_encoder.net.state_dict()[k]
        torch.testing.assert_close(loaded, v.to(loaded.dtype))
    assert m.net.generator.size == 32 and m.net.generator.n_latent == 8
    with torch.no_grad():
        for p in m.net.hypernet.parameters():
            p.normal_(0, 0.05)
    out = hfw.export_hypernet(m, tmp_path / "faceworld_hyperreenact.pt")
    shipped = torch.load(out, weights_only=True)
    assert shipped["format"] == hfw.SHIPPED_FORMAT and shipped["hparams"]["generator_path"] is None
    assert all(v.dtype == torch.float16 for v in shipped["hypernet"].values())
    # the shared hypernetwork repeats under every block's key but is stored once
    unique = {id(v.untyped_storage()): v for v in shipped["hypernet"].values()}
    n_unique = sum(p.numel() for p in m.net.hypernet.parameters())
    assert sum(v.numel() for v in unique.values()) == n_unique
    assert out.stat().st_size < 2 * n_unique * 2 + 200_000
    # read back: the shipped file names no paths, the registry's files (here the test's weights folder) are used
    back = load_module(out)
    for k, v in m.net.hypernet.state_dict().items():
        torch.testing.assert_close(back.net.hypernet.state_dict()[k], v.half().float())
    torch.testing.assert_close(back.net.trunc_latent, m.net.trunc_latent)
    pairs = hfw.FaceWorldEvaluationPairs("test", 32, 2, "cross", seed=0)
    b = _batch(pairs, 2)
    with torch.no_grad():
        torch.testing.assert_close(reenacted(back.net, b), reenacted(m.net, b), atol=2e-2, rtol=0)
    # a fine-tuning run starts from the shipped file
    again = HyperReenactModule(**{**dict(m.hparams), "hypernet_path": str(out)})
    torch.testing.assert_close(again.net.hypernet.conv_transf.weight, back.net.hypernet.conv_transf.weight)
    torch.save({"format": "something else"}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="bad.pt: not a shipped face-world"):
        hfw.read_shipped(tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="no file; drop flame_path"):
        HyperReenactModule(**{**dict(m.hparams), "flame_path": "flame.pkl"})
    with pytest.raises(ValueError, match="builds random networks"):
        HyperReenactModule(**{**_tiny_cfg()["model"], "generator_path": files["generator_path"]})


# --------------------------------------------------------------------------------------------- data
def test_training_pairs_are_self_and_cross_pairs_of_train_identities():
    ds = hfw.FaceWorldTrainingPairs(5, 32, seed=2)
    p = ds.params(3)
    idx = p["identity_index"].tolist()
    assert idx[0] == idx[1] != idx[2] and all(i in fw.SPLITS["train"] for i in idx)
    item = ds[3]
    images = fw.render(p["identity"], p["pose"], p["expression"], 32)
    lm = fw.landmarks(p["identity"], p["pose"], p["expression"], 32)
    for k, prefix in enumerate(("source", "target", "cross")):
        assert torch.equal(item[prefix], images[k])
        torch.testing.assert_close(item[f"{prefix}_lm5"], lm68_to_lm5(lm[k]))
        torch.testing.assert_close(item[f"{prefix}_box"], torch.cat([lm[k].min(0).values, lm[k].max(0).values]))
    assert not torch.equal(p["pose"][0], p["pose"][1])  # another frame of the same identity
    assert torch.equal(ds[3]["cross"], item["cross"])
    ds.set_epoch(1)
    assert not torch.equal(ds.params(3)["pose"], p["pose"])
    ds.set_epoch(0)
    assert torch.equal(ds.params(3)["pose"], p["pose"])
    with pytest.raises(IndexError):
        ds[5]


def test_cross_pair_ground_truth_is_the_source_identity_in_the_drivers_motion():
    pairs = hfw.FaceWorldEvaluationPairs("test", 32, 3, "cross", seed=5)
    item, raw = pairs[1], fw.ReenactmentPairs("test", 32, 3, "cross", 5)._draw(1)
    src_id = fw.identity_params(raw["source_index"])
    drv_id = fw.identity_params(raw["driver_index"])
    assert raw["source_index"] != raw["driver_index"] and int(raw["source_index"]) in fw.SPLITS["test"]
    pose, expr = raw["driver_pose"][None], raw["driver_expression"][None]
    assert torch.equal(item["truth"], fw.render(src_id, pose, expr, 32)[0])
    assert torch.equal(item["target"], fw.render(drv_id, pose, expr, 32)[0])
    torch.testing.assert_close(item["truth_landmarks"], fw.landmarks(src_id, pose, expr, 32)[0])
    src = fw.render(src_id, raw["source_pose"][None], raw["source_expression"][None], 32)[0]
    assert torch.equal(item["source"], src)
    assert (item["truth"] - item["target"]).abs().mean() > 0.01  # another identity in the same pose
    own = hfw.FaceWorldEvaluationPairs("test", 32, 2, "self", seed=5)[0]
    assert torch.equal(own["truth"], own["target"])


# --------------------------------------------------------------------------------------------- metrics by hand
def _ssim_by_hand(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """SSIM of images in [-1, 1] (data range 2): means, variances and covariance over an 11x11 Gaussian window
    (sigma 1.5) of the reflection-padded images, the SSIM formula at every pixel, averaged (torchmetrics')."""
    k = torch.arange(11, dtype=torch.float64) - 5
    g = torch.exp(-(k**2) / (2 * 1.5**2))
    g = g / g.sum()
    w = (g[:, None] * g[None, :]).expand(3, 1, 11, 11)
    x, y = (F.pad(t.double(), (5, 5, 5, 5), mode="reflect") for t in (x, y))
    blur = lambda t: F.conv2d(t, w, groups=3)  # noqa: E731
    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    c1, c2 = (0.01 * 2) ** 2, (0.03 * 2) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return s.mean((1, 2, 3))


class _NaNLandmarks(torch.nn.Module):
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.full((images.shape[0], 68, 2), float("nan"))


def test_benchmark_metrics_against_hand_computations(tiny_module):
    net = tiny_module.net
    ranges = faceworld_expression_ranges()
    b = _batch(hfw.FaceWorldEvaluationPairs("test", 32, 4, "cross", seed=1), 4)
    res = evaluate(
        net, [b], "cross", ranges=ranges, num_expressions=8, method="copy_source", measure_boxes=hfw.fixed_boxes
    )
    img, truth = b["source"], b["truth"]
    with torch.no_grad():
        mse = ((img - truth) ** 2).mean((1, 2, 3))
        assert res["all"]["psnr"] == pytest.approx(float((10 * torch.log10(4 / mse)).mean()), rel=1e-5)
        assert res["all"]["ssim"] == pytest.approx(float(_ssim_by_hand(img, truth).mean()), abs=2e-4)
        assert res["all"]["csim"] == pytest.approx(1.0, abs=1e-5)  # the source against itself
        # pose and expression of both images from the attribute expert on the fixed face-world crop
        attr = net.pose_encoder.net
        p_out, p_drv = attr(fe.attribute_crop(img)), attr(fe.attribute_crop(b["target"]))
        eul = lambda p: axis_angle_to_euler(p["pose"][:, :3])  # noqa: E731
        assert res["all"]["apd"] == pytest.approx(float((eul(p_out) - eul(p_drv)).abs().mean()), rel=1e-4)
        lo, span = ranges[3:, 0], ranges[3:, 1] - ranges[3:, 0]
        vec = lambda p: (torch.cat([p["pose"][:, 3:4], p["exp"]], 1) - lo) / span  # noqa: E731
        assert res["all"]["aed"] == pytest.approx(float((vec(p_out) - vec(p_drv)).abs().mean()), rel=1e-4)
        est = fe.estimate_landmarks(attr, img)
        d = (est - b["truth_landmarks"]).norm(dim=-1).mean(1)
        iod = (b["truth_landmarks"][:, 36] - b["truth_landmarks"][:, 45]).norm(dim=-1)
        assert res["all"]["landmark_px"] == pytest.approx(float(d.mean()), rel=1e-4)
        assert res["all"]["nme"] == pytest.approx(float((d / iod).mean()), rel=1e-4)
    # copying the driver has no pose or expression error; the baselines are what they say
    drv = evaluate(
        net, [b], "cross", ranges=ranges, num_expressions=8, method="copy_driver", measure_boxes=hfw.fixed_boxes
    )
    assert drv["all"]["apd"] == 0 and drv["all"]["aed"] == 0
    with torch.no_grad():
        torch.testing.assert_close(reenacted(net, b, "invert_truth"), net.render_plain(net.invert(truth)).clamp(-1, 1))
    with pytest.raises(ValueError, match="needs pairs with a ground truth"):
        reenacted(net, {k: v for k, v in b.items() if k != "truth"}, "invert_truth")
    with pytest.raises(ValueError, match="method must be one of"):
        reenacted(net, b, "copy")
    landmarker = net.landmarker
    try:
        net.landmarker = _NaNLandmarks()
        with pytest.raises(ValueError, match=r"copy_driver, cross\): the landmark estimate of 4 of 4 output images"):
            evaluate(net, [b], "cross", ranges=ranges, num_expressions=8, method="copy_driver")
    finally:
        net.landmarker = landmarker


def test_benchmark_rows_summary_and_the_side_by_side_script(tiny_module, tmp_path, capsys):
    rows = faceworld_rows(tiny_module.net, seeds=[0, 1], n_pairs=2, batch_size=2, log=None)
    assert len(rows) == 2 * 2 * len(METHODS)
    assert all(set(r) == {"method", "mode", "seed", "pairs", *ROW_KEYS} for r in rows)
    assert {(r["method"], r["mode"], r["seed"]) for r in rows} == {
        (m, mode, s) for m in METHODS for mode in ("self", "cross") for s in (0, 1)
    }
    self_copy = [r for r in rows if r["method"] == "copy_driver" and r["mode"] == "self"]
    assert all(math.isinf(r["psnr"]) and r["pose_err"] == 0 for r in self_copy)  # the driver is the answer
    cross = [r for r in rows if r["method"] == "hyperreenact" and r["mode"] == "cross"]
    s = next(x for x in summarize(rows) if x["method"] == "hyperreenact" and x["mode"] == "cross")
    vals = [r["nme"] for r in cross]
    assert s["nme"] == pytest.approx(sum(vals) / 2) and s["nme_std"] == pytest.approx(abs(vals[0] - vals[1]) / 2**0.5)
    sys.path.insert(0, str(REPO))
    from benchmarks import faceworld_reenactment as bench

    (tmp_path / "hr.json").write_text(json.dumps({"rows": rows}))
    made_up = [dict(r, method="stylemask") for r in rows if r["method"] == "hyperreenact"]
    made_up += [r for r in rows if r["method"] != "hyperreenact"]
    for r in made_up:
        if r["method"] == "stylemask" and r["mode"] == "cross":  # a method that meets every line of the bar
            r.update(psnr=99.0, nme=0.0, pose_err=0.0, id_cos=1.0)
    (tmp_path / "sm.json").write_text(json.dumps(made_up))
    out = bench.main(["--hyperreenact", str(tmp_path / "hr.json"), "--stylemask", str(tmp_path / "sm.json")])
    text = capsys.readouterr().out
    assert "stylemask: stylemask" in text and "hyperreenact: copy_source" in text and "cross-reenactment" in text
    assert all(ok for _, ok, _ in out["verdicts"]["stylemask"])
    copy_src = out["results"]["hyperreenact"][("copy_source", "cross")]
    assert copy_src["psnr"] == pytest.approx(
        sum(r["psnr"] for r in rows if r["method"] == "copy_source" and r["mode"] == "cross") / 2
    )
    (tmp_path / "broken.json").write_text(json.dumps([{"method": "x", "mode": "cross", "seed": 0}]))
    with pytest.raises(ValueError, match="broken.json: row 0 lacks"):
        bench.read_rows(tmp_path / "broken.json")
    with pytest.raises(FileNotFoundError, match="absent.json: no benchmark results"):
        bench.read_rows(tmp_path / "absent.json")


# --------------------------------------------------------------------------------------------- demo
def test_demo_stops_naming_every_missing_shipped_file_and_its_rebuild_command(tmp_path, monkeypatch, capsys):
    import common.weights as cw
    from projects.hyperreenact import demo

    monkeypatch.setenv("PAPERLAB_WEIGHTS", str(tmp_path / "weights"))
    monkeypatch.setattr(cw, "SHIPPED_DIR", tmp_path / "shipped")
    monkeypatch.setattr(demo, "SHIPPED_DIR", tmp_path / "shipped")
    fits: list[list[str]] = []

    class Started(Exception):
        pass

    def fake_fit(args):
        fits.append(args)
        raise Started

    monkeypatch.setattr(demo, "cli_main", fake_fit)
    with pytest.raises(SystemExit) as stop:
        demo.main([])
    assert stop.value.code == 2 and not fits
    err = capsys.readouterr().err
    assert "cannot start: 5 shipped face-world file(s) missing" in err
    for name in (*demo.FROZEN, "faceworld_hyperreenact"):
        assert f"{name}: " in err
    assert err.count("rebuild: ") == 5
    assert "projects.hyperreenact.export" in err and "configs/faceworld64.yaml" in err
    # with the frozen networks in place only the trained hypernetwork is missing; --from-scratch does not need it
    _save_faceworld_files(tmp_path / "shipped" / "faceworld")
    assert demo.missing_shipped(demo.FROZEN) == []
    (left,) = demo.missing_shipped()
    assert left.startswith("faceworld_hyperreenact: ") and "rebuild: " in left
    with pytest.raises(SystemExit):
        demo.main([])
    with pytest.raises(Started):
        demo.main(["--from-scratch", "--steps", "3"])
    assert fits == [["fit", "--config", str(demo.CONFIG), "--trainer.max_steps=3"]]


def test_demo_grid_and_driving_video(tiny_module, tmp_path):
    from PIL import Image

    from common.data.video import video_info
    from projects.hyperreenact.demo import UPSCALE, write_driving_video, write_grid

    grid = write_grid(tiny_module.net, "cross", tmp_path / "grid.png", n=2)
    assert Image.open(grid).size == (4 * 32 * UPSCALE, 2 * 32 * UPSCALE)
    video = write_driving_video(tiny_module.net, tmp_path / "drive.mp4", frames=5, batch=2, fps=5.0)
    n, fps, hw = video_info(video)
    assert (n, fps, hw) == (5, 5.0, (32 * UPSCALE, 4 * 32 * UPSCALE))


# --------------------------------------------------------------------------------------------- inference
def test_inference_on_face_world_frames_uses_the_models_landmarks(tiny_module, tmp_path):
    from PIL import Image

    from projects.hyperreenact.frames import to_uint8
    from projects.hyperreenact.inference import reenact

    ids = fw.identity_params([fw.SPLITS["test"].start, fw.SPLITS["test"].start + 1])
    pose, expr = fw.driving_sequence(3, seed=0)
    frames = to_uint8(fw.render_sequence(ids[1], pose, expr, 32))
    (tmp_path / "drive").mkdir()
    for i, fr in enumerate(frames):
        Image.fromarray(fr).save(tmp_path / "drive" / f"{i:03d}.png")
    src = to_uint8(fw.render(ids[:1], torch.zeros(1, 3), torch.zeros(1, 8), 32))[0]
    Image.fromarray(src).save(tmp_path / "src.png")
    res = reenact(tiny_module.net, tmp_path / "src.png", tmp_path / "drive", tmp_path / "out", crop="landmarks")
    assert res.frames == 3 and len(list((tmp_path / "out" / "frames").glob("*.png"))) == 3
    from projects.hyperreenact.frames import FaceCropper

    with pytest.raises(ValueError, match="needs a landmark estimator"):
        FaceCropper(32, "landmarks")


def test_only_frozen_networks_stay_in_eval_mode(tiny_module):
    # the generator, encoders, face-world experts and LPIPS are frozen evaluators: the CLI silences Lightning's
    # "module(s) in eval mode" warning for exactly this set
    from common.cli import frozen_eval_modules

    n, roots = frozen_eval_modules(tiny_module)
    assert n > 0 and roots is not None
