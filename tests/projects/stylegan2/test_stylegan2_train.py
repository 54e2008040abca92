"""StyleGAN2 end to end on the tiny config: fit through the CLI, exact resume, export/import, validation distances."""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch import Callback

from common.cli import cli_main
from common.stylegan2 import CheckpointError, load_generator
from projects.stylegan2.data import StyleGAN2DataModule
from projects.stylegan2.export import export, lightning_to_rosinality
from projects.stylegan2.export import main as export_main
from projects.stylegan2.main import main
from projects.stylegan2.module import StyleGAN2Module

CONFIGS = Path(__file__).resolve().parents[3] / "projects" / "stylegan2" / "configs"
TINY = str(CONFIGS / "tiny.yaml")


@pytest.fixture
def cache(tmp_path_factory) -> str:
    return str(tmp_path_factory.getbasetemp() / "faceworld_cache")


def _fit(cache: str, args: list[str], extra: list[Callback] = (), ckpt: Path | None = None) -> StyleGAN2Module:
    cli = cli_main(
        StyleGAN2Module, StyleGAN2DataModule, project="stylegan2", run=False,
        args=["--config", TINY, f"--data.cache_dir={cache}", "--trainer.enable_progress_bar=false", *args],
    )  # fmt: skip
    cli.trainer.callbacks.extend(extra)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=ckpt)
    return cli.model


def test_fit_writes_samples_checkpoints_and_logs(cache):
    cli = main(["fit", "--config", TINY, f"--data.cache_dir={cache}", "--trainer.enable_progress_bar=false"])
    run = Path(cli.trainer.log_dir)
    assert cli.trainer.global_step == 6  # max_steps counts iterations
    last = run / "checkpoints" / "last.ckpt"
    assert last.is_file()
    ck = torch.load(last, weights_only=False)
    assert ck["global_step"] == 6 and len(ck["optimizer_states"]) == 2
    assert (run / "samples" / "000004.png").is_file()
    metrics = cli.trainer.logged_metrics
    assert {"train/d", "train/g", "train/mean_path_length"} <= set(metrics)


class _Kill(Callback):
    """Saves ``last.ckpt`` after iteration ``k`` and then dies, as a killed job would."""

    def __init__(self, k: int, path: Path) -> None:
        self.k, self.path = k, path

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.k:
            trainer.save_checkpoint(self.path)
            raise RuntimeError("killed")


# kill after iteration 5: mid-epoch (8 batches per epoch), after R1 (i=4) and between path-length steps
@pytest.mark.parametrize("kill", [5, pytest.param(8, marks=pytest.mark.slow)])
def test_resume_after_kill_matches_straight_run(tmp_path, cache, kill):
    args = ["--trainer.max_steps=10", "--model.sample_every=0", "--trainer.val_check_interval=100"]
    straight = _fit(cache, args)
    last = tmp_path / "last.ckpt"
    with pytest.raises(RuntimeError, match="killed"):
        _fit(cache, args, [_Kill(kill, last)])
    resumed = _fit(cache, args, ckpt=last)
    s, r = straight.state_dict(), resumed.state_dict()
    assert s.keys() == r.keys() and any(k.startswith("g_ema.") for k in s) and "mean_path_length" in s
    for key in s:
        assert torch.equal(s[key], r[key]), key
    so, ro = straight.trainer.optimizers, resumed.trainer.optimizers
    for a, b in zip(so, ro):
        for p, q in zip(a.state.values(), b.state.values()):
            for k in p:
                assert torch.equal(torch.as_tensor(p[k]), torch.as_tensor(q[k])), k


def test_export_import_round_trip(tmp_path, cache):
    model = _fit(cache, ["--trainer.max_steps=2", "--model.sample_every=0", "--trainer.val_check_interval=100"])
    ckpt = Path(model.trainer.log_dir) / "checkpoints" / "last.ckpt"
    out = tmp_path / "rosinality.pt"
    export_main([str(ckpt), "--out", str(out)])
    blob = torch.load(out, weights_only=False)
    by_folder = tmp_path / "by_folder.pt"  # the experiment folder: its newest run's last.ckpt
    export_main([str(ckpt.parents[2]), "--out", str(by_folder), "--g-ema-only"])
    assert all(torch.equal(torch.load(by_folder)["g_ema"][k], v) for k, v in blob["g_ema"].items())
    assert set(blob) == {"g", "d", "g_ema", "g_optim", "d_optim", "args", "mean_path_length"}
    assert isinstance(blob["args"], argparse.Namespace) and blob["args"].size == 16 and blob["args"].start_iter == 2
    assert len(blob["g_optim"]["state"]) == len(list(model.generator.parameters()))

    g = load_generator(out)  # g_ema, read with weights_only and the Namespace allow-list
    for k, v in model.g_ema.state_dict().items():
        assert torch.equal(g.state_dict()[k], v), k
    g_raw = load_generator(out, key="g")
    for k, v in model.generator.state_dict().items():
        assert torch.equal(g_raw.state_dict()[k], v), k

    # import: a new module starts from the file (weights, mean path length; optimiser states at train start)
    torch.manual_seed(123)
    fresh = StyleGAN2Module(size=16, style_dim=32, n_mlp=2, channel_max=16)
    fresh.load_rosinality(str(out))
    for name in ("generator", "discriminator", "g_ema"):
        a, b = getattr(fresh, name).state_dict(), getattr(model, name).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    assert torch.equal(fresh.mean_path_length, model.mean_path_length)
    assert set(fresh._pending_optim) == {"g_optim", "d_optim"}

    # export of the imported module's view gives the same file content
    again = lightning_to_rosinality(torch.load(ckpt, weights_only=False), "x")
    for part in ("g", "d", "g_ema"):
        assert all(torch.equal(again[part][k], blob[part][k]) for k in blob[part])

    # the shipped form: g_ema only, float16; loads into a float32 generator equal to the rounded weights
    half = tmp_path / "half.pt"
    export_main([str(ckpt), "--out", str(half), "--g-ema-only", "--half"])
    small = torch.load(half, weights_only=True)
    assert set(small) == {"g_ema"} and all(v.dtype == torch.float16 for v in small["g_ema"].values())
    g16 = load_generator(half)
    for k, v in model.g_ema.state_dict().items():
        got = g16.state_dict()[k]
        assert got.dtype == torch.float32 and torch.equal(got, v.half().float()), k


def test_official_training_checkpoint_loads_and_bad_keys_are_named(tmp_path):
    """A rosinality train.py checkpoint (random tensors under rosinality's key names: those of our G and D, which
    tests/common/stylegan2 check against hand-written official lists) starts a run; bad keys are named."""
    from common.stylegan2 import Discriminator, Generator

    def random_sd(module: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        return {k: torch.randn(v.shape, generator=g) for k, v in module.state_dict().items()}

    g_sd = random_sd(Generator(32, style_dim=16, n_mlp=2, channel_max=16), 0)
    g_ema_sd = random_sd(Generator(32, style_dim=16, n_mlp=2, channel_max=16), 1)
    d_sd = random_sd(Discriminator(32, channel_max=16), 2)
    args = argparse.Namespace(size=32, latent=16, n_mlp=2, channel_multiplier=2, iter=800000, batch=16)
    path = tmp_path / "050000.pt"
    torch.save({"g": g_sd, "d": d_sd, "g_ema": g_ema_sd, "g_optim": {}, "d_optim": {}, "args": args}, path)
    m = StyleGAN2Module(size=32, style_dim=16, n_mlp=2, channel_max=16)
    m.load_rosinality(str(path))
    assert torch.equal(m.generator.state_dict()["convs.1.conv.weight"], g_sd["convs.1.conv.weight"])
    assert torch.equal(m.g_ema.state_dict()["convs.1.conv.weight"], g_ema_sd["convs.1.conv.weight"])
    assert torch.equal(m.discriminator.state_dict()["final_conv.0.weight"], d_sd["final_conv.0.weight"])
    assert torch.equal(load_generator(path).state_dict()["style.1.weight"], g_ema_sd["style.1.weight"])

    bad = dict(d_sd)
    bad["convs.2.skip.1.weightx"] = bad.pop("convs.2.skip.1.weight")
    torch.save({"g": g_sd, "d": bad, "g_ema": g_ema_sd, "args": args}, tmp_path / "renamed.pt")
    with pytest.raises(CheckpointError, match=r"renamed.pt \[d\].*missing keys: \['convs.2.skip.1.weight'\]"):
        m.load_rosinality(str(tmp_path / "renamed.pt"))
    bad = dict(g_sd)
    bad["to_rgbs.0.conv.weight"] = torch.randn(1, 3, 7, 1, 1)
    torch.save({"g": bad, "d": d_sd, "g_ema": g_ema_sd, "args": args}, tmp_path / "reshaped.pt")
    with pytest.raises(CheckpointError, match=r"reshaped.pt \[g\].*to_rgbs.0.conv.weight: file \(1, 3, 7, 1, 1\)"):
        m.load_rosinality(str(tmp_path / "reshaped.pt"))


def test_export_refuses_foreign_files(tmp_path):
    torch.save({"state_dict": {"encoder.w": torch.zeros(1)}}, tmp_path / "other.ckpt")
    with pytest.raises(CheckpointError, match="other.ckpt: no 'generator.\\*' weights"):
        export(tmp_path / "other.ckpt", tmp_path / "o.pt")
    (tmp_path / "trunc.ckpt").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(CheckpointError, match="trunc.ckpt: truncated"):
        export(tmp_path / "trunc.ckpt", tmp_path / "o.pt")
    with pytest.raises(SystemExit, match="missing.ckpt: no such file"):
        export_main([str(tmp_path / "missing.ckpt"), "--out", str(tmp_path / "o.pt")])


def _validation_cli(cache):
    """The tiny config, 4 iterations and one validation, not yet run."""
    return cli_main(
        StyleGAN2Module, StyleGAN2DataModule, project="stylegan2", run=False,
        args=["--config", TINY, f"--data.cache_dir={cache}", "--trainer.enable_progress_bar=false",
              "--trainer.max_steps=4", "--model.sample_every=0"],
    )  # fmt: skip


def _validation_images(cli) -> tuple[torch.Tensor, torch.Tensor]:
    """The tiny config's validation images and the g_ema samples its validation draws (same latents and noise)."""
    model, dm = cli.model, cli.datamodule
    real = torch.stack([dm.val_set[i] for i in range(len(dm.val_set))])
    fakes = []
    with torch.no_grad():
        for b, batch in enumerate(real.split(dm.hparams.val_batch_size or dm.hparams.batch_size)):
            _, dev = model._rngs(-1, b)
            z = torch.randn(batch.shape[0], model.hparams.style_dim, generator=dev)
            fakes.append(model.g_ema([z], noise=model._noise(model.g_ema, batch.shape[0], dev))[0])
    return real, torch.cat(fakes)


def test_validation_experts_missing_weights_switch_the_metric_off(tmp_path):
    m = StyleGAN2Module(size=16, style_dim=32, n_mlp=2, channel_max=16, fd_expert="faceworld_identity",
                        fd_weights=str(tmp_path / "no_id.pt"), pose_expert="faceworld_attributes",
                        pose_weights=str(tmp_path / "no_attr.pt"))  # fmt: skip
    with pytest.warns(UserWarning, match=r"faceworld_identity expert, the validation Fréchet distance is off.*no_id"):
        assert m._feature_extractor() is None
    with pytest.warns(UserWarning, match=r"faceworld_attributes expert, the validation pose spread is off.*no_attr"):
        assert m._pose_reader() is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once off, no second attempt (and no second warning) in this process
        assert m._pose_reader() is None and m._feature_extractor() is None


def test_validation_frechet_distance_with_a_random_expert(cache):
    from common.face.faceworld_experts import FaceWorldIdentity

    cli = _validation_cli(cache)
    torch.manual_seed(0)
    expert = FaceWorldIdentity().eval()
    cli.model.fd_embed = expert.embed_images
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    fd = float(cli.trainer.callback_metrics["val/fd_identity"])
    assert fd > 0
    # the same number from the validation images and the g_ema samples computed here
    from projects.stylegan2.metrics import frechet_distance_of

    real, fake = _validation_images(cli)
    with torch.no_grad():
        expected = frechet_distance_of(expert.embed_images(fake), expert.embed_images(real))
    assert fd == pytest.approx(expected, rel=1e-4)


def test_validation_pose_spread_is_the_ratio_of_standard_deviations(cache):
    cli = _validation_cli(cache)
    cli.model.pose_of = lambda images: images.mean((2, 3)) * 30  # any [B, 3] reader: the channel means
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    real, fake = _validation_images(cli)
    expected = fake.mean((2, 3)).std(0) / real.mean((2, 3)).std(0)
    for name, v in zip(("yaw", "pitch", "roll"), expected.tolist()):
        assert float(cli.trainer.callback_metrics[f"val/pose_spread_{name}"]) == pytest.approx(v, rel=1e-4)


@pytest.mark.parametrize("config", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_every_config_parses(config):
    with torch.device("meta"):  # build the full-size networks without allocating them
        cli = cli_main(StyleGAN2Module, StyleGAN2DataModule, project="stylegan2", args=["--config", str(CONFIGS / config)],
                       run=False)  # fmt: skip
    cfg = yaml.safe_load((CONFIGS / config).read_text())
    assert cli.model.hparams.size == cfg["model"]["size"] == cli.datamodule.hparams.size
    assert cli.model.generator.size == cfg["model"]["size"]
