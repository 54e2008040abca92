"""The face world's e4e: scaled encoder shapes, the released layout kept, e4e's loss terms against hand
computations, a tiny training run that lowers its loss and resumes exactly, the file format and its errors."""

from __future__ import annotations

import math

import pytest
import torch

from common.face.faceworld_experts import FaceWorldAttributes, FaceWorldIdentity
from common.face.irse import build_body, get_blocks
from common.stylegan2 import CheckpointError, Encoder4Editing, Generator, load_e4e
from common.stylegan2 import faceworld_e4e as fe
from common.stylegan2.encoders import _encoder_config
from common.weights import MissingWeightsError

TINY_ARCH = {"units": (1, 1, 1, 1), "widths": (8, 12, 16, 24), "block_width": 16}


def tiny_generator(size: int = 32, seed: int = 0) -> Generator:
    torch.manual_seed(seed)
    return Generator(size, style_dim=32, n_mlp=2, channel_max=16).eval()


def tiny_experts() -> tuple[FaceWorldIdentity, FaceWorldAttributes]:
    torch.manual_seed(0)
    return FaceWorldIdentity(width=8, dim=16).freeze(), FaceWorldAttributes(width=8, hidden=16).freeze()


# ------------------------------------------------------------------------------------------------ architecture
def test_irse_sizes_are_options_with_the_released_default():
    assert get_blocks(50) == get_blocks(50, units=(3, 4, 14, 3), widths=(64, 128, 256, 512))
    stages = get_blocks(units=(1, 2, 3, 1), widths=(24, 32, 64, 96))
    assert [[(s.in_channel, s.depth, s.stride) for s in st] for st in stages] == [
        [(24, 24, 2)],
        [(24, 32, 2), (32, 32, 1)],
        [(32, 64, 2), (64, 64, 1), (64, 64, 1)],
        [(64, 96, 2)],
    ]
    body = build_body(50, "ir_se", units=(1, 1, 1, 1), widths=(8, 12, 16, 24))
    assert len(body) == 4 and body[0].res_layer[5].fc1.weight.shape == (1, 8, 1, 1)  # SE keeps >= 1 channel
    with pytest.raises(ValueError, match="units must be 4"):
        get_blocks(units=(1, 2, 3))


def test_released_layout_unchanged_by_the_new_options():
    with torch.device("meta"):
        default = Encoder4Editing(50, "ir_se", stylegan_size=1024)
        explicit = Encoder4Editing(
            50, "ir_se", 1024, input_size=256, units=(3, 4, 14, 3), widths=(64, 128, 256, 512), block_width=512
        )
    sd = {k: tuple(v.shape) for k, v in default.state_dict().items()}
    assert sd == {k: tuple(v.shape) for k, v in explicit.state_dict().items()}
    cfg = _encoder_config(default.state_dict(), "released")
    assert cfg["units"] is None and cfg["widths"] is None and cfg["block_width"] is None
    assert (cfg["num_layers"], cfg["input_size"], cfg["stylegan_size"]) == (50, 256, 1024)


def test_faceworld_encoder_shapes_and_pyramid():
    g = Generator(64, style_dim=32, n_mlp=2, channel_max=16)
    enc = fe.build_faceworld_e4e(g).eval()
    enc.set_latent_avg(torch.zeros(32))
    assert enc.n_styles == g.n_latent == 10 and enc.input_size == 64
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        c1, c2, c3 = enc.pyramid(x)
        assert c1.shape == (2, 32, 16, 16) and c2.shape == (2, 64, 8, 8) and c3.shape == (2, 96, 4, 4)
        assert enc(x).shape == (2, 10, 32)
    # the style blocks' stride-2 stages follow the 64 px input: c3 4x4 -> 2, p2 8x8 -> 3, p1 16x16 -> 4 convs
    n_convs = [sum(isinstance(m, torch.nn.Conv2d) for m in b.convs) for b in enc.styles]
    assert n_convs == [2] * 3 + [3] * 4 + [4] * 3
    assert enc.styles[0].linear.weight.shape == (32, fe.FACEWORLD_ARCH["block_width"])
    with pytest.raises(ValueError, match="not 1x1"):
        enc(torch.randn(1, 3, 128, 128))
    with pytest.raises(ValueError, match="input_size must be a power of two"):
        Encoder4Editing(stylegan_size=64, input_size=48)
    with pytest.raises(ValueError, match="must each differ"):
        Encoder4Editing(stylegan_size=64, input_size=64, units=(1, 1, 1, 1), widths=(8, 16, 16, 32))


def test_freeze_keeps_batchnorm_in_eval():
    enc = fe.build_faceworld_e4e(tiny_generator(), **TINY_ARCH).freeze()
    enc.train()
    assert not enc.training and not any(p.requires_grad for p in enc.parameters())


# ------------------------------------------------------------------------------------------------ losses
def test_latent_and_delta_terms_by_hand():
    w_hat, w = torch.zeros(1, 2, 2), torch.tensor([[[1.0, 2.0], [0.0, -3.0]]])
    assert fe.latent_loss(w_hat, w).item() == pytest.approx((1 + 4 + 0 + 9) / 4)
    wp = torch.tensor([[[0.0, 0.0], [3.0, 4.0], [1.0, 0.0], [0.0, 2.0]]])
    assert fe.delta_regularization(wp, 1).item() == 0.0
    assert fe.delta_regularization(wp, 3).item() == pytest.approx(5 + 1)  # rows 1..stage-1, as e4e's coach
    assert fe.delta_regularization(wp, 4).item() == pytest.approx(5 + 1 + 2)
    assert fe.delta_regularization(wp, 3, norm=1).item() == pytest.approx(7 + 1)
    two = torch.cat([wp, wp + 1])  # the batch mean: the shifted sample has the same deltas
    assert fe.delta_regularization(two, 4).item() == pytest.approx(8)


def test_adversarial_terms_and_r1_by_hand():
    sp = lambda v: math.log1p(math.exp(v))  # noqa: E731
    real, fake = torch.tensor([[1.0], [-2.0]]), torch.tensor([[0.5], [3.0]])
    expect = (sp(-1) + sp(2)) / 2 + (sp(0.5) + sp(3)) / 2
    assert fe.discriminator_loss(real, fake).item() == pytest.approx(expect, rel=1e-6)
    d = torch.nn.Linear(2, 1)
    with torch.no_grad():
        d.weight.copy_(torch.tensor([[3.0, -4.0]]))
        d.bias.fill_(1.0)
    wp = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]])  # D: 4, -3, -4 on the rows
    assert fe.encoder_adversarial_loss(d, wp, [0, 1]).item() == pytest.approx((sp(-4) + sp(3)) / 2, rel=1e-6)
    w = torch.randn(5, 2, requires_grad=True)
    assert fe.r1_penalty(d(w), w).item() == pytest.approx(25.0)  # |grad| = |weight| = 5 for every sample


def test_progressive_schedule_and_style_mixing():
    stages = [fe.progressive_stage(s, 4, 10, 5) for s in (0, 9, 10, 14, 15, 19, 20, 99)]
    assert stages == [0, 0, 1, 1, 2, 2, 3, 3]
    assert fe.progressive_stage(0, 4, None, 5) == 3
    g = tiny_generator()
    rng = torch.Generator().manual_seed(0)
    plain = fe.sample_wplus(g, 6, 0.0, rng)
    assert plain.shape == (6, g.n_latent, 32) and torch.equal(plain, plain[:, :1].expand_as(plain))
    mixed = fe.sample_wplus(g, 6, 1.0, rng)
    for w in mixed:  # one switch from w1 to w2 at a row in 1..n_latent-1
        change = (w[1:] != w[:-1]).any(1)
        assert change.sum() == 1 and torch.equal(w[0], w[int(change.nonzero())])


def test_latent_pool():
    pool = fe.LatentCodesPool(2, torch.Generator().manual_seed(0))
    a = torch.arange(4.0).reshape(2, 2)
    assert torch.equal(pool.query(a), a) and len(pool.ws) == 2
    seen = [a[0], a[1]]
    for i in range(10):
        b = torch.full((3, 2), 10.0 + i)
        out = pool.query(b)
        seen.append(b[0])
        assert len(pool.ws) == 2 and all(any(torch.equal(o, s) for s in seen) for o in out)
    rows = torch.stack([torch.zeros(3, 2), torch.ones(3, 2)])  # [B, R, D]: one row per sample
    assert fe.LatentCodesPool(5).query(rows).shape == (2, 2)
    assert fe.LatentCodesPool(0).query(a) is a


def test_psnr_by_hand():
    x = torch.zeros(2, 3, 4, 4)
    y = x.clone()
    y[1] += 0.02
    assert fe._psnr(x + 0.2, x).tolist() == pytest.approx([20.0, 20.0], rel=1e-5)  # 10 log10(2^2 / 0.04)
    assert fe._psnr(x + 0.2, y).tolist() == pytest.approx([20.0, 10 * math.log10(4 / 0.18**2)], rel=1e-5)


# ------------------------------------------------------------------------------------------------ training
def _recipe(**kw) -> fe.Recipe:
    base = dict(batch_size=4, learning_rate=2e-3, log_every=1000, val_every=1000, val_size=4, save_every=1000)
    return fe.Recipe(**{**base, **kw})


def test_tiny_training_lowers_the_regression_loss():
    g = tiny_generator()
    ident, attr = tiny_experts()
    recipe = _recipe(regression_steps=30, finetune_steps=2, progressive_start=None, regression_image_lambda=0.0)
    enc, hist = fe.train_faceworld_e4e(g, ident, attr, recipe, TINY_ARCH, log=lambda s: None)
    lat = [h["latent"] for h in hist if "latent" in h]
    assert len(lat) == 30 and sum(lat[-5:]) / 5 < 0.5 * sum(lat[:3]) / 3
    assert all(math.isfinite(h["loss"]) for h in hist) and "val_psnr" in hist[-1]
    assert not enc.training and enc.progressive_stage == enc.n_styles - 1


def test_finetune_with_latent_discriminator_resumes_exactly(tmp_path):
    g = tiny_generator()
    ident, attr = tiny_experts()
    arch = TINY_ARCH
    kw = dict(regression_steps=2, progressive_start=1, progressive_step_every=1, w_discriminator_lambda=0.1,
              d_reg_every=2, w_pool_size=3)  # fmt: skip
    quiet = lambda s: None  # noqa: E731
    full, hist = fe.train_faceworld_e4e(g, ident, attr, _recipe(finetune_steps=4, **kw), arch, log=quiet)
    terms = hist[-1]
    assert {"l2", "lpips", "id", "delta", "adv", "d_loss"} <= set(terms) and "latent" not in terms
    assert any("d_r1" in h for h in hist) and hist[-1]["stage"] == min(5, full.n_styles - 1)
    state = tmp_path / "run.state.pt"
    fe.train_faceworld_e4e(g, ident, attr, _recipe(finetune_steps=1, **kw), arch, state, log=quiet)
    resumed, _ = fe.train_faceworld_e4e(g, ident, attr, _recipe(finetune_steps=4, **kw), arch, state, True, quiet)
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k


def test_landmark_and_expression_terms_by_hand():
    """The expert terms: mean pixel distance between the expert's 68 points of the inversion and of the input, and
    smooth L1 between their expression coefficients; zero for a perfect inversion; weighted by their lambdas."""
    from common.face.faceworld_experts import attribute_crop, estimate_landmarks

    g = tiny_generator(64)
    ident, attr = tiny_experts()
    trainer = fe._Trainer(build := fe.build_faceworld_e4e(g, **TINY_ARCH), g, ident, attr,
                          _recipe(landmark_lambda=0.5, expression_lambda=3.0))  # fmt: skip
    assert build is trainer.E
    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    y = (x + 0.3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(-1, 1)
    terms = trainer.image_terms(y, x)
    d = estimate_landmarks(attr, y) - estimate_landmarks(attr, x)
    assert terms["landmarks"].item() == pytest.approx(float((d[..., 0] ** 2 + d[..., 1] ** 2).sqrt().mean()), rel=1e-5)
    e = (attr(attribute_crop(y))["exp"] - attr(attribute_crop(x))["exp"]).abs()
    huber = torch.where(e < 0.05, 0.5 * e**2 / 0.05, e - 0.025).mean()
    assert terms["expression"].item() == pytest.approx(huber.item(), rel=1e-5)
    total = trainer.weighted_image_loss(terms)
    rest = terms["l2"] + 0.8 * terms["lpips"] + 0.1 * terms["id"]
    assert total.item() == pytest.approx((rest + 0.5 * terms["landmarks"] + 3.0 * terms["expression"]).item(), rel=1e-5)
    same = trainer.image_terms(x, x)
    assert same["landmarks"].item() == 0 and same["expression"].item() == 0
    assert "landmarks" not in fe._Trainer(trainer.E, g, ident, attr, _recipe()).image_terms(y, x)


def test_finetune_starts_from_the_given_encoder():
    """``init``: a zero-step fine-tune returns the given encoder's weights and latent_avg; arch overrides refused."""
    g = tiny_generator()
    ident, attr = tiny_experts()
    quiet = lambda s: None  # noqa: E731
    start, _ = fe.train_faceworld_e4e(
        g, ident, attr, _recipe(regression_steps=2, finetune_steps=0), TINY_ARCH, log=quiet
    )
    start.latent_avg += 0.5  # a latent_avg no fresh run would compute
    kw = dict(regression_steps=0, finetune_steps=0, progressive_start=None)
    again, _ = fe.train_faceworld_e4e(g, ident, attr, _recipe(**kw), log=quiet, init=start)
    assert torch.equal(again.latent_avg, start.latent_avg)
    for (k, a), b in zip(start.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), k
    tuned, _ = fe.train_faceworld_e4e(g, ident, attr, _recipe(**{**kw, "finetune_steps": 2}), log=quiet, init=start)
    assert any(not torch.equal(a, b) for a, b in zip(start.state_dict().values(), tuned.state_dict().values()))
    with pytest.raises(ValueError, match="init fixes the architecture"):
        fe.train_faceworld_e4e(g, ident, attr, _recipe(**kw), TINY_ARCH, log=quiet, init=start)


def test_warns_when_the_progressive_schedule_leaves_deltas_untrained():
    g = tiny_generator()  # 32 px: 8 W+ rows, deltas 1..7
    ident, attr = tiny_experts()
    msgs: list[str] = []
    kw = dict(regression_steps=2, finetune_steps=1, regression_image_lambda=0.0)
    fe.train_faceworld_e4e(g, ident, attr, _recipe(progressive_start=1, progressive_step_every=1, **kw), TINY_ARCH,
                           log=msgs.append)  # fmt: skip
    warned = [m for m in msgs if m.startswith("warning:")]
    assert warned == ["warning: the progressive schedule reaches stage 2 of 7 in 3 steps; deltas 3..7 stay untrained"]
    msgs.clear()
    fe.train_faceworld_e4e(g, ident, attr, _recipe(progressive_start=None, **kw), TINY_ARCH, log=msgs.append)
    assert not [m for m in msgs if m.startswith("warning:")]


def test_generator_from_a_lightning_checkpoint(tmp_path):
    import argparse

    g = tiny_generator()
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": {f"g_ema.{k}": v for k, v in g.state_dict().items()}, "global_step": 3}, path)
    loaded, meta = fe._generator(argparse.Namespace(random_generator=None, generator=str(path)))
    assert meta == {"path": str(path)} and loaded.size == 32 and loaded.style_dim == 32
    for k, v in g.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k


# ------------------------------------------------------------------------------------------------ files
@pytest.fixture()
def saved(tmp_path):
    g = tiny_generator()
    torch.manual_seed(1)
    enc = fe.build_faceworld_e4e(g, **TINY_ARCH).eval()
    enc.set_latent_avg(torch.randn(32))
    path = tmp_path / "faceworld_e4e.pt"
    fe.save_faceworld_e4e(enc, path, {"note": "test"})
    return g, enc, path


def test_file_round_trip_float16(saved):
    g, enc, path = saved
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["state_dict"]["encoder.styles.0.linear.weight"].dtype == torch.float16
    assert ckpt["opts"]["encoder_type"] == "Encoder4Editing" and ckpt["opts"]["start_from_latent_avg"]
    loaded = fe.load_faceworld_e4e(path, generator=g)
    assert loaded.frozen and not loaded.training and loaded.style_dim == 32
    assert (loaded.units, loaded.widths, loaded.block_width, loaded.input_size) == (
        (1, 1, 1, 1),
        (8, 12, 16, 24),
        16,
        32,
    )
    assert next(loaded.parameters()).dtype == torch.float32
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), enc(x), atol=2e-2, rtol=1e-2)
        assert torch.equal(load_e4e(path)(x), loaded(x))  # the generic loader reads the same file


def test_loader_errors_name_the_file(saved, tmp_path):
    g, enc, path = saved
    with pytest.raises(CheckpointError, match=r"faceworld_e4e.pt: the encoder gives W\+ \[8, 32\]"):
        fe.load_faceworld_e4e(path, generator=Generator(64, style_dim=32, n_mlp=1, channel_max=8))
    ckpt = torch.load(path, weights_only=True)
    sd = ckpt["state_dict"]
    sd["encoder.styles.2.linear.weightx"] = sd.pop("encoder.styles.2.linear.weight")
    torch.save(ckpt, tmp_path / "renamed.pt")
    with pytest.raises(CheckpointError, match=r"renamed.pt.*missing keys: \['styles.2.linear.weight'\]"):
        fe.load_faceworld_e4e(tmp_path / "renamed.pt")
    torch.save({"state_dict": {}, "opts": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="other.pt: not a face-world e4e file"):
        fe.load_faceworld_e4e(tmp_path / "other.pt")
    (tmp_path / "cut.pt").write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=r"cut\.pt"):
        fe.load_faceworld_e4e(tmp_path / "cut.pt")
    with pytest.raises(MissingWeightsError, match="nowhere.pt"):
        fe.load_faceworld_e4e(tmp_path / "nowhere.pt")


def test_command_line_train_then_evaluate(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(fe, "FACEWORLD_GENERATOR", {"size": 32, "style_dim": 32, "n_mlp": 2, "channel_max": 16})
    monkeypatch.setattr(fe, "FACEWORLD_ARCH", dict(TINY_ARCH))
    out = tmp_path / "e4e.pt"
    common = ["--random-generator", "0", "--random-experts", "0", "--n", "4"]
    state = tmp_path / "state.pt"
    fe.main(["train", "--out", str(out), "--state", str(state), *common, "--regression-steps", "2", "--finetune-steps", "1",
             "--batch-size", "2", "--val-size", "2", "--progressive-start", "none"])  # fmt: skip
    text = capsys.readouterr().out
    assert "'progressive_start': None" in text and "held-out inversion quality" in text and out.is_file()
    assert state.is_file()
    fe.main(["evaluate", "--encoder", str(out), *common])
    table = capsys.readouterr().out
    assert all(row in table for row in ("inversion", "mean_face", "expert_on_input"))
