"""StyleMask in the face world: the switch reaches every loss and metric (and never a real network), the analyzer
matches the experts' own preprocessing, the benchmark's arithmetic by hand, a cross pair's exact answer, export."""

from __future__ import annotations

import math
import sys
import types
from collections import Counter
from pathlib import Path

import pytest
import torch

from common.data import faceworld as fw
from common.face import faceworld_experts as fwe
from common.metrics.face import faceworld_expression_ranges
from projects.stylemask.evaluate import FACEWORLD_METHODS, ROW_KEYS, FaceWorldScores, faceworld_rows, summarize
from projects.stylemask.faces import TinyInverter, build_face_analyzer
from projects.stylemask.module import StyleMaskModule

FW_TINY = "projects/stylemask/configs/faceworld_tiny.yaml"


def _expert_files(tmp_path: Path) -> tuple[str, str]:
    """Randomly initialised experts saved in the shipped experts' file format."""
    torch.manual_seed(0)
    out = []
    for kind, net, config in (
        ("identity", fwe.FaceWorldIdentity(), {"width": 24, "dim": 128}),
        ("attributes", fwe.FaceWorldAttributes(), {"width": 24, "hidden": 256}),
    ):
        p = tmp_path / f"faceworld_{kind}.pt"
        torch.save({"format": fwe.FORMAT, "kind": kind, "config": config, "state_dict": net.state_dict()}, p)
        out.append(str(p))
    return out[0], out[1]


def _generator_file(tmp_path: Path) -> str:
    from common.stylegan2.generator import Generator

    torch.manual_seed(1)
    g = Generator(32, 32, 2, 1, channel_max=16)
    with torch.no_grad():  # a random generator's colours overshoot [-1, 1] by far; a trained one's do not
        for name, param in g.named_parameters():
            if name.startswith("to_rgb") and name.endswith("conv.weight"):
                param.mul_(0.1)
    p = tmp_path / "faceworld_generator.pt"
    torch.save({"g_ema": g.state_dict()}, p)
    return str(p)


def _forbid_real_networks(monkeypatch) -> None:
    """Every loader of a real network (ArcFace, DECA, FLAME, LPIPS, the FFHQ e4e) and every non-face-world file of
    the registry raises: a face-world path that still reaches one fails the test."""
    import common.face.deca
    import common.face.flame
    import common.face.identity
    import common.face.lpips
    import common.stylegan2.encoders
    import common.weights

    def boom(*args, **kwargs):
        raise AssertionError("a real face network was built in face-world mode")

    monkeypatch.setattr(common.face.identity, "load_arcface", boom)
    monkeypatch.setattr(common.face.deca, "load_deca_encoder", boom)
    monkeypatch.setattr(common.face.flame, "FLAME", boom)
    monkeypatch.setattr(common.face.flame, "load_flame_model", boom)
    monkeypatch.setattr(common.face.lpips, "LPIPS", boom)
    monkeypatch.setattr(common.stylegan2.encoders, "load_e4e", boom)
    real_resolve = common.weights.resolve

    def resolve(name, path=None, **kwargs):
        if not name.startswith("faceworld_"):
            raise AssertionError(f"the real artifact {name!r} was resolved in face-world mode")
        return real_resolve(name, path, **kwargs)

    monkeypatch.setattr(common.weights, "resolve", resolve)


def _fake_faceworld_e4e(monkeypatch, n_latent: int, style_dim: int) -> list:
    """Stands in for engineer A's ``common.stylegan2.faceworld_e4e`` loader; records the files it loads."""
    loaded: list = []

    def load_faceworld_e4e(path):
        loaded.append(Path(path))
        torch.manual_seed(2)
        enc = TinyInverter(n_latent, style_dim)
        enc.input_size = 32
        return enc.eval()

    fake = types.ModuleType("common.stylegan2.faceworld_e4e")
    fake.load_faceworld_e4e = load_faceworld_e4e
    monkeypatch.setitem(sys.modules, "common.stylegan2.faceworld_e4e", fake)
    return loaded


def _kwargs(hparams, **over) -> dict:
    """Constructor arguments from a module's hyperparameters (LightningCLI adds private ``_*`` entries)."""
    return {**{k: v for k, v in hparams.items() if not str(k).startswith("_")}, **over}


def _hook_calls(nets: dict[str, torch.nn.Module]) -> Counter:
    calls: Counter = Counter()
    for name, net in nets.items():
        net.register_forward_hook(lambda *args, n=name: calls.update([n]))
    return calls


def test_faceworld_switch_reaches_every_loss_and_metric(tmp_path, monkeypatch):
    id_path, attr_path = _expert_files(tmp_path)
    gen_path = _generator_file(tmp_path)
    e4e_path = tmp_path / "faceworld_e4e.pt"
    e4e_path.write_bytes(b"read by the stand-in loader")
    _forbid_real_networks(monkeypatch)
    e4e_loads = _fake_faceworld_e4e(monkeypatch, n_latent=8, style_dim=32)
    m = StyleMaskModule(
        image_size=32,
        style_dim=32,
        n_mlp=2,
        channel_multiplier=1,
        channel_max=16,
        generator_path=gen_path,
        generator_name="faceworld_generator",
        num_layers_control=5,
        face_models="faceworld",
        arcface_path=id_path,
        deca_path=attr_path,
        inverter="e4e",
        e4e_name="faceworld_e4e",
        e4e_path=str(e4e_path),
        loss_size=32,
        mean_latent_samples=64,
        lambda_perceptual=1.0,
        predict_truncation=1.0,
    )
    m.log = m.log_dict = lambda *a, **k: None
    faces = m.faces
    assert isinstance(faces.identity_net, fwe.FaceWorldIdentity) and isinstance(faces.deca, fwe.FaceWorldAttributes)
    assert isinstance(faces.flame, fwe.FaceWorldFLAME) and isinstance(m.lpips, fwe.FaceWorldPerceptual)
    assert m.lpips.identity is faces.identity_net and m.lpips.attributes is faces.deca  # one copy of each expert
    assert faces.face_box == fwe.FACEWORLD_FACE_BOX and (faces.id_size, faces.deca_size) == (56, 56)
    assert torch.equal(m.expression_ranges, faceworld_expression_ranges())
    calls = _hook_calls(
        {"identity": faces.identity_net, "attributes": faces.deca, "geometry": faces.flame, "perceptual": m.lpips}
    )

    # training: identity, 3D (shape/eye/mouth through the geometry model) and perceptual terms, recurrent cycle
    g = torch.Generator().manual_seed(3)
    batch = {k: torch.randn(2, 32, generator=g) for k in ("z_source", "z_target", "z_cycle")}
    loss = m.training_step(batch, 0)
    assert torch.isfinite(loss) and loss > 0
    loss.backward()
    assert all(p.grad is not None for p in m.reenactor.mask_net.parameters())
    assert {"identity", "attributes", "geometry", "perceptual"} <= set(calls)

    # validation metrics (CSIM, pose, normalised expression error with the face world's ranges)
    calls.clear()
    with torch.no_grad():
        out = m.reenact_pairs(batch["z_source"], batch["z_target"])
    assert {"csim", "pose", "expression"} <= set(out) and {"identity", "attributes"} <= set(calls)

    # the benchmark: e4e inversion of renders, every metric, landmarks by the attribute expert
    calls.clear()
    rows = faceworld_rows({0: m}, modes=("cross",), num_pairs=2, batch_size=2, log=None)
    assert [r["method"] for r in rows] == list(FACEWORLD_METHODS)
    assert e4e_loads == [e4e_path]
    assert calls["attributes"] >= 4 * 3 and calls["identity"] >= 4  # per method: analysis + 2 landmark passes
    assert all(math.isfinite(r[k]) for r in rows for k in ROW_KEYS)

    # checkpoints keep only what training changed: file-backed networks are left out
    ckpt = {"state_dict": m.state_dict()}
    m.on_save_checkpoint(ckpt)
    prefixes = {k.split(".")[0] for k in ckpt["state_dict"]}
    assert prefixes == {"reenactor", "mean_latent"}
    assert all(k.startswith("reenactor.mask_net.") for k in ckpt["state_dict"] if k.startswith("reenactor"))


def test_analyzer_preprocesses_as_the_experts_do():
    faces = build_face_analyzer("faceworld_random", seed=0).eval()
    ids = fw.identity_params([fw.SPLITS["test"].start + i for i in range(3)])
    g = torch.Generator().manual_seed(0)
    x = fw.render(ids, fw.sample_pose(3, g), fw.sample_expression(3, g), 64)
    with torch.no_grad():
        assert torch.allclose(faces.embed(x), faces.identity_net.embed_images(x), atol=1e-6)
        assert torch.allclose(faces.deca_input(x), fwe.attribute_crop(x), atol=1e-6)
        c, direct = faces.coefficients(x), faces.deca(fwe.attribute_crop(x))
        for k in ("shape", "exp", "pose"):
            assert torch.allclose(c[k], direct[k], atol=1e-6), k
        assert torch.allclose(c["angles"], direct["angles"], atol=1e-2)  # Euler -> axis-angle -> Euler
        ref = fwe.estimate_landmarks(faces.deca, x, faces.flame)
        collapsed = ~torch.isfinite(ref).flatten(1).all(1)[:, None, None]  # those keep the fixed-box estimate
        ref = torch.where(collapsed, fwe.estimate_landmarks(faces.deca, x, faces.flame, refine=0), ref)
        assert torch.allclose(faces.landmarks(x), ref, atol=1e-5)
    assert faces.geometry_size == 224 and not faces.kornia_compat
    with pytest.raises(ValueError, match="no file"):
        build_face_analyzer("faceworld_random", flame_path="generic_model.pkl")
    with pytest.raises(ValueError, match="fixed"):
        build_face_analyzer("faceworld_random", box="detector")


def test_cross_pair_ground_truth_is_the_source_identity_in_the_drivers_motion():
    pairs = fw.ReenactmentPairs("test", 32, 3, "cross", seed=5)
    p = pairs[1]
    assert p["source_index"] != p["driver_index"]
    assert fw.SPLITS["test"].start <= int(p["source_index"]) < fw.SPLITS["test"].stop
    ident = fw.identity_params(p["source_index"])
    truth = fw.render(ident, p["driver_pose"][None], p["driver_expression"][None], 32)[0]
    assert torch.allclose(p["target"], truth, atol=1e-5)
    lm = fw.landmarks(ident, p["driver_pose"][None], p["driver_expression"][None], 32)[0]
    assert torch.allclose(p["target_landmarks"], lm, atol=1e-4)
    # neither copy is the answer: the source has the wrong motion, the driver the wrong identity
    assert (p["target"] - p["source"]).abs().mean() > 0.01 and (p["target"] - p["driver"]).abs().mean() > 0.01
    s = fw.ReenactmentPairs("test", 32, 2, "self", seed=5)[0]
    assert torch.equal(s["target"], s["driver"])  # self-reenactment: the driver is the answer


class _Stub:
    """A module stand-in with hand-set face analysis: identity = mean colour, angles/exp/jaw from pixel values."""

    def __init__(self) -> None:
        self.expression_ranges = faceworld_expression_ranges()
        self.faces = types.SimpleNamespace(landmarks=self._landmarks)
        self.pred_landmarks: torch.Tensor | None = None

    def _landmarks(self, images):
        return self.pred_landmarks

    def _analyse(self, images):
        v = images[:, 0, 0, 0]  # one number per image drives every attribute
        b = images.shape[0]
        angles = torch.stack([10 * v, 0 * v, 0 * v], 1)
        exp = torch.zeros(b, 8)
        exp[:, 0] = v
        pose = torch.zeros(b, 6)
        emb = torch.stack([torch.ones_like(v), v], 1)
        return {"angles": angles, "exp": exp, "pose": pose}, emb


def test_benchmark_metrics_by_hand():
    stub = _Stub()
    target = torch.zeros(2, 3, 16, 16)
    output = target + torch.tensor([0.1, 0.2]).view(2, 1, 1, 1)  # constant offsets
    source = torch.full((2, 3, 16, 16), 0.0)
    driver = torch.full((2, 3, 16, 16), 0.5)
    lm_true = torch.zeros(2, 68, 2)
    lm_true[:, 45, 0] = 10.0  # interocular 10 px
    stub.pred_landmarks = lm_true + torch.tensor([0.0, 1.0])  # every point 1 px off
    batch = {"source": source, "driver": driver, "target": target, "target_landmarks": lm_true}
    s = FaceWorldScores()
    s.update(stub, output, batch)
    r = s.compute()
    # PSNR per image on the [-1, 1] range (peak 2): 10 log10(4 / mse), averaged over images
    assert r["psnr"] == pytest.approx((10 * math.log10(4 / 0.01) + 10 * math.log10(4 / 0.04)) / 2, rel=1e-5)
    # SSIM of constant images a, b: luminance term only, (2ab + C1) / (a^2 + b^2 + C1), C1 = (0.01 * 2)^2
    c1 = (0.01 * 2) ** 2
    assert r["ssim"] == pytest.approx(sum(c1 / (a * a + c1) for a in (0.1, 0.2)) / 2, rel=1e-4)
    assert r["landmark_px"] == pytest.approx(1.0) and r["nme"] == pytest.approx(0.1)
    # identity: cos((1, v_out), (1, v_src = 0)) = 1 / sqrt(1 + v^2)
    assert r["id_cos"] == pytest.approx(sum(1 / math.sqrt(1 + a * a) for a in (0.1, 0.2)) / 2, rel=1e-5)
    # pose: |10 v_out - 10 v_drv| / 3 over (yaw, pitch, roll)
    assert r["pose_err"] == pytest.approx(sum(10 * abs(a - 0.5) / 3 for a in (0.1, 0.2)) / 2, rel=1e-5)
    # expression: |d smile| / range 1 over jaw + 8 coefficients = |v_out - v_drv| / 9
    assert r["exp_err"] == pytest.approx(sum(abs(a - 0.5) / 9 for a in (0.1, 0.2)) / 2, rel=1e-5)
    assert r["pairs"] == 2


def test_rows_schema_baselines_and_spread():
    from common.cli import cli_main
    from projects.stylemask.data import StyleMaskDataModule

    cli = cli_main(StyleMaskModule, StyleMaskDataModule, project="stylemask", args=["--config", FW_TINY], run=False)
    m0 = cli.model
    m1 = StyleMaskModule(**_kwargs(m0.hparams, seed=1))
    rows = faceworld_rows({0: m0, 1: m1}, num_pairs=2, batch_size=2, log=None)
    assert len(rows) == 2 * 2 * len(FACEWORLD_METHODS)
    assert all(set(r) == {"method", "mode", "seed", "pairs", *ROW_KEYS} for r in rows)
    by = {(r["seed"], r["mode"], r["method"]): r for r in rows}
    for seed in (0, 1):
        for mode in ("self", "cross"):
            assert by[seed, mode, "copy_source"]["id_cos"] == pytest.approx(1.0, abs=1e-5)
            assert by[seed, mode, "copy_driver"]["pose_err"] == 0.0 and by[seed, mode, "copy_driver"]["exp_err"] == 0.0
        assert by[seed, "self", "copy_driver"]["psnr"] == math.inf  # the driver is the exact answer
    summary = {(s["method"], s["mode"]): s for s in summarize(rows)}
    st = summary["stylemask", "cross"]
    vals = [by[s, "cross", "stylemask"]["psnr"] for s in (0, 1)]
    assert st["seeds"] == 2 and st["psnr"] == pytest.approx(sum(vals) / 2)
    assert st["psnr_std"] == pytest.approx(abs(vals[0] - vals[1]) / math.sqrt(2))


def test_fit_export_load_and_fine_tune_from_the_export(tmp_path):
    from projects.stylemask.faceworld import export_trained, load_trained
    from projects.stylemask.main import main

    main(["fit", "--config", FW_TINY])
    run = next((tmp_path / "runs" / "stylemask" / "faceworld_tiny").glob("version_*"))
    ckpt = run / "checkpoints" / "last.ckpt"
    out = export_trained(ckpt, tmp_path / "faceworld_stylemask.pt")
    trained = StyleMaskModule.load_from_checkpoint(ckpt)
    exported = load_trained(out)
    masks = {k: v for k, v in trained.state_dict().items() if k.startswith("reenactor.mask_net.")}
    assert masks and all(torch.equal(exported.state_dict()[k], v) for k, v in masks.items())
    assert torch.equal(exported.mean_latent, trained.mean_latent)
    inference = load_trained(out, face_models="none")  # what the app and predict need: no face networks
    assert inference.faces is None
    assert all(torch.equal(inference.state_dict()[k], v) for k, v in masks.items())
    # the export also starts a new fit (``--model.mask_net_path``), as the demo fine-tunes the shipped file
    again = StyleMaskModule(**_kwargs(trained.hparams, mask_net_path=str(out)))
    assert all(torch.equal(again.state_dict()[k], v) for k, v in masks.items())
    fresh = StyleMaskModule(**_kwargs(trained.hparams))
    assert not all(torch.equal(fresh.state_dict()[k], v) for k, v in masks.items())


def test_demo_and_faceworld_configs_agree():
    import yaml

    cfg = Path("projects/stylemask/configs")
    demo, full = (yaml.safe_load((cfg / n).read_text()) for n in ("demo.yaml", "faceworld.yaml"))
    assert demo["model"] == full["model"]  # the demo is the face-world run, on a short schedule
    differ = ("steps_per_epoch", "num_val_pairs")
    assert {k: v for k, v in demo["data"].items() if k not in differ} == {
        k: v for k, v in full["data"].items() if k not in differ
    }


def test_demo_writes_grids_and_a_driving_video(tmp_path):
    from PIL import Image

    from common.cli import cli_main
    from common.data.video import video_info
    from projects.stylemask.data import StyleMaskDataModule
    from projects.stylemask.demo import write_grids, write_video

    cli = cli_main(StyleMaskModule, StyleMaskDataModule, project="stylemask", args=["--config", FW_TINY], run=False)
    m = cli.model.eval()
    grids = write_grids(m, tmp_path, num_pairs=2, scale=2)
    assert [g.name for g in grids] == ["self.png", "cross.png"]
    w, h = Image.open(grids[1]).size  # 2 rows of source | driver | output | truth, 64 px panels, 2 px padding
    assert (w, h) == (4 * 64 + 5 * 2, 2 * 64 + 3 * 2)
    n = write_video(m, tmp_path / "drive.mp4", num_frames=7, scale=2, chunk=3)
    frames, fps, size = video_info(tmp_path / "drive.mp4")
    assert n == frames == 7 and fps == pytest.approx(25.0) and size == (64, 4 * 64)  # (H, W)


def _fake_shipped(monkeypatch, tmp_path: Path, names: tuple[str, ...]) -> Path:
    """An empty repository ``pretrained/`` (and ``$PAPERLAB_WEIGHTS``, see conftest) holding only ``names``."""
    import common.weights as weights

    shipped = tmp_path / "repo_pretrained"
    (shipped / "faceworld").mkdir(parents=True)
    monkeypatch.setattr(weights, "SHIPPED_DIR", shipped)
    for name in names:
        (shipped / "faceworld" / f"{name}.pt").write_bytes(b"present")
    return shipped / "faceworld"


def test_demo_stops_naming_every_missing_shipped_file_and_its_rebuild_command(tmp_path, monkeypatch):
    import common.weights as weights
    from projects.stylemask import demo

    def must_not_run(*args, **kwargs):
        raise AssertionError("the demo built something although shipped files are missing")

    monkeypatch.setattr(demo, "fine_tune", must_not_run)
    folder = _fake_shipped(monkeypatch, tmp_path, ("faceworld_identity",))
    absent = ("faceworld_generator", "faceworld_e4e", "faceworld_attributes", "faceworld_stylemask")
    with pytest.raises(weights.MissingWeightsError) as err:
        demo.main([])
    msg = str(err.value)
    assert "4 shipped face-world file(s) missing" in msg
    for name in absent:
        rebuild = weights.REGISTRY[name].rebuild
        assert rebuild and f"{name}:" in msg and str(folder / f"{name}.pt") in msg and f"rebuild: {rebuild}" in msg
    assert "faceworld_identity:" not in msg  # present
    # --from-scratch does not need the trained masks
    with pytest.raises(weights.MissingWeightsError) as err:
        demo.main(["--from-scratch"])
    assert "3 shipped face-world file(s)" in str(err.value) and "faceworld_stylemask:" not in str(err.value)
    # all present: the files the module is given
    for name in absent:
        (folder / f"{name}.pt").write_bytes(b"present")
    files = demo.check_shipped()
    assert files == {name: folder / f"{name}.pt" for name in (*demo.FROZEN, demo.SHIPPED)}


def test_demo_end_to_end_from_shipped_files(tmp_path, monkeypatch, capsys):
    """``make demo-stylemask``'s whole path on tiny shipped files: the checked files reach the module (no real
    network, no registry lookup of another file), the shipped masks are fine-tuned, scores, grids and the video."""
    import yaml

    from common.data.video import video_info
    from projects.stylemask import demo
    from projects.stylemask.faceworld import export_trained

    folder = _fake_shipped(monkeypatch, tmp_path, ())
    id_path, attr_path = _expert_files(folder)
    Path(_generator_file(folder)).rename(folder / "faceworld_generator.pt")
    (folder / "faceworld_e4e.pt").write_bytes(b"read by the stand-in loader")
    cfg = yaml.safe_load(Path(FW_TINY).read_text())
    cfg["trainer"].update(max_steps=2, max_epochs=-1)
    cfg["model"].update(
        random_generator=False,
        generator_name="faceworld_generator",
        face_models="faceworld",
        inverter="e4e",
        e4e_name="faceworld_e4e",
        lambda_perceptual=0.0,
    )
    config = tmp_path / "demo_tiny.yaml"
    config.write_text(yaml.safe_dump(cfg))
    _forbid_real_networks(monkeypatch)
    e4e_loads = _fake_faceworld_e4e(monkeypatch, n_latent=8, style_dim=32)
    # the shipped masks: an export of a module of this configuration with masks set to a known value
    m = StyleMaskModule(
        **{k: v for k, v in cfg["model"].items()},
        generator_path=str(folder / "faceworld_generator.pt"),
        arcface_path=id_path,
        deca_path=attr_path,
    )
    with torch.no_grad():
        for p in m.reenactor.mask_net.parameters():
            p.fill_(0.01)
    ckpt = tmp_path / "masks.ckpt"
    torch.save({"state_dict": m.state_dict(), "hyper_parameters": dict(m.hparams), "global_step": 7}, ckpt)
    export_trained(ckpt, folder / "faceworld_stylemask.pt")
    monkeypatch.setattr(demo, "CONFIG", config)
    started = {}
    real_fine_tune = demo.fine_tune

    def fine_tune(config, extra):
        module, run, seconds = real_fine_tune(config, extra)
        started["masks"] = [p.detach().clone() for p in module.reenactor.mask_net.parameters()]
        return module, run, seconds

    monkeypatch.setattr(demo, "fine_tune", fine_tune)
    out = demo.main(["--pairs", "2", "--frames", "3"])
    printed = capsys.readouterr().out
    assert f"fine-tuned from the shipped {folder / 'faceworld_stylemask.pt'}" in printed
    assert e4e_loads and all(p == folder / "faceworld_e4e.pt" for p in e4e_loads)
    # fine-tuned: two Adam steps moved the shipped masks a little, not back to a fresh initialisation
    assert all((p - 0.01).abs().max() < 0.05 for p in started["masks"])
    assert any((p - 0.01).abs().max() > 0 for p in started["masks"])
    assert {(r["mode"], r["method"]) for r in out["rows"]} == {
        (mode, method) for mode in ("self", "cross") for method in FACEWORLD_METHODS
    }
    assert all(r["pairs"] == 2 for r in out["rows"]) and "copy_driver" in printed
    assert [g.name for g in out["grids"]] == ["self.png", "cross.png"] and all(g.is_file() for g in out["grids"])
    assert video_info(out["video"])[0] == 3


def test_benchmark_command_one_model_per_seed_and_json(tmp_path, capsys):
    import json

    import yaml

    from projects.stylemask.evaluate import main as evaluate

    model = yaml.safe_load(Path(FW_TINY).read_text())["model"]
    ckpts = []
    for seed in (0, 1):
        m = StyleMaskModule(**model, seed=seed)
        ckpts.append(tmp_path / f"seed{seed}.ckpt")
        torch.save({"state_dict": m.state_dict(), "hyper_parameters": dict(m.hparams)}, ckpts[-1])
    out = tmp_path / "bench" / "stylemask.json"
    args = ["--faceworld", "--num-pairs", "2", "--batch-size", "2", "--modes", "cross", "--out", str(out)]
    rows = evaluate([*args, "--ckpt", *map(str, ckpts)])
    doc = json.loads(out.read_text())
    assert doc["project"] == "stylemask" and doc["checkpoints"] == list(map(str, ckpts)) and doc["num_pairs"] == 2
    assert doc["rows"] == json.loads(json.dumps(rows))
    assert {(r["seed"], r["method"]) for r in rows} == {(s, m) for s in (0, 1) for m in FACEWORLD_METHODS}
    printed = capsys.readouterr().out
    assert "mean +- std over seeds" in printed and "n=2" in printed
    with pytest.raises(ValueError, match="a second model trained with seed 0"):
        evaluate([*args, "--ckpt", str(ckpts[0]), str(ckpts[0])])
