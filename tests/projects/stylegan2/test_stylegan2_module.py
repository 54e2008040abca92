"""StyleGAN2Module without a trainer: optimiser corrections, EMA, the lazy-regularisation schedule, determinism."""

from __future__ import annotations

import pytest
import torch

from projects.stylegan2.module import StyleGAN2Module, accumulate, ema_decay

TINY = dict(size=16, style_dim=16, n_mlp=2, channel_max=8, n_sample=4, d_reg_every=4, g_reg_every=2)


def _module(**kw) -> StyleGAN2Module:
    torch.manual_seed(0)
    return StyleGAN2Module(**{**TINY, **kw})


def test_adam_lazy_regularisation_corrections():
    m = _module(d_reg_every=16, g_reg_every=4)
    opt_g, opt_d = m.configure_optimizers()
    assert opt_g.param_groups[0]["lr"] == pytest.approx(0.002 * 4 / 5)
    assert opt_g.param_groups[0]["betas"] == pytest.approx((0.0, 0.99 ** (4 / 5)))
    assert opt_d.param_groups[0]["lr"] == pytest.approx(0.002 * 16 / 17)
    assert opt_d.param_groups[0]["betas"] == pytest.approx((0.0, 0.99 ** (16 / 17)))
    assert {id(p) for p in opt_g.param_groups[0]["params"]} == {id(p) for p in m.generator.parameters()}
    assert {id(p) for p in opt_d.param_groups[0]["params"]} == {id(p) for p in m.discriminator.parameters()}
    opt_g, _ = _module(g_reg_every=0).configure_optimizers()
    assert opt_g.param_groups[0]["lr"] == pytest.approx(0.002) and opt_g.param_groups[0]["betas"] == (0.0, 0.99)


def test_ema_decay_and_accumulate():
    assert ema_decay(10.0, 32) == pytest.approx(0.5 ** (32 / 10_000))  # rosinality's accum
    assert ema_decay(10.0, 32) ** (10_000 / 32) == pytest.approx(0.5)  # half-life of 10k images
    a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    old = [p.detach().clone() for p in a.parameters()]
    accumulate(a, b, 0.9)
    for o, p, q in zip(old, a.parameters(), b.parameters()):
        torch.testing.assert_close(p, 0.9 * o + 0.1 * q)


def test_g_ema_starts_equal_to_g_and_has_no_grad():
    m = _module()
    for (k, a), (_, b) in zip(m.generator.state_dict().items(), m.g_ema.state_dict().items()):
        assert torch.equal(a, b), k
    assert not any(p.requires_grad for p in m.g_ema.parameters())


def _iterate(m: StyleGAN2Module, i: int, real: torch.Tensor, opts) -> dict:
    return m.train_iteration(real, i, *opts)


def test_schedule_updates_and_ema():
    m = _module()
    opts = m.configure_optimizers()
    real = torch.rand(4, 3, 16, 16) * 2 - 1
    g0 = {k: v.clone() for k, v in m.generator.state_dict().items()}
    ema0 = {k: v.clone() for k, v in m.g_ema.state_dict().items()}
    d0 = {k: v.clone() for k, v in m.discriminator.state_dict().items()}

    logs = _iterate(m, 0, real, opts)  # i = 0: both regularisers
    assert {"d", "real_score", "fake_score", "r1", "g", "path", "path_length", "mean_path_length"} <= set(logs)
    assert float(m.mean_path_length) == pytest.approx(0.01 * float(logs["path_length"]), rel=1e-5)
    # two D steps (main + R1) and two G steps (main + path): Adam's step counts
    st_d = opts[1].state[next(iter(m.discriminator.parameters()))]["step"]
    st_g = opts[0].state[next(iter(m.generator.parameters()))]["step"]
    assert float(st_d) == 2 and float(st_g) == 2
    # every parameter had a gradient in every step (0 * D(x)[0] and 0 * img[0,0,0,0], as the official code)
    assert all(float(opts[0].state[p]["step"]) == 2 for p in m.generator.parameters())
    assert all(float(opts[1].state[p]["step"]) == 2 for p in m.discriminator.parameters())
    assert any(not torch.equal(g0[k], v) for k, v in m.generator.state_dict().items())
    assert any(not torch.equal(d0[k], v) for k, v in m.discriminator.state_dict().items())
    decay = m.ema_decay
    g_params = dict(m.generator.named_parameters())
    for k, p in m.g_ema.named_parameters():
        torch.testing.assert_close(p, decay * ema0[k] + (1 - decay) * g_params[k].detach())
    assert all(p.requires_grad for p in m.generator.parameters())
    assert all(p.requires_grad for p in m.discriminator.parameters())

    mpl = float(m.mean_path_length)
    logs = _iterate(m, 1, real, opts)  # no regulariser
    assert "r1" not in logs and "path" not in logs and float(m.mean_path_length) == mpl
    logs = _iterate(m, 2, real, opts)  # path length only (g_reg_every 2, d_reg_every 4)
    assert "path" in logs and "r1" not in logs and float(m.mean_path_length) != mpl
    assert float(opts[1].state[next(iter(m.discriminator.parameters()))]["step"]) == 4
    assert float(opts[0].state[next(iter(m.generator.parameters()))]["step"]) == 5


def test_iterations_are_seeded_by_index():
    real = torch.rand(4, 3, 16, 16) * 2 - 1
    runs = []
    for _ in range(2):
        m = _module()
        opts = m.configure_optimizers()
        logs = [_iterate(m, i, real, opts) for i in (0, 1)]
        runs.append((logs, m.state_dict()))
    for k in runs[0][1]:
        assert torch.equal(runs[0][1][k], runs[1][1][k]), k
    m = _module(seed=1)
    other = _iterate(m, 0, real, m.configure_optimizers())
    assert float(other["g"]) != float(runs[0][0][0]["g"])


def test_style_mixing_probability_and_noise_draws():
    m = _module(mixing=1.0)
    cpu, dev = m._rngs(0)
    img, lat = m.generate(m.generator, 3, cpu, dev, return_latents=True)
    assert img.shape == (3, 3, 16, 16)
    first, last = lat[:, 0], lat[:, -1]
    assert not torch.equal(first, last)  # two latents ...
    same_as_first = [torch.equal(lat[:, j], first) for j in range(lat.shape[1])]
    assert all(torch.equal(lat[:, j], last) for j, f in enumerate(same_as_first) if not f)
    assert same_as_first == sorted(same_as_first, reverse=True)  # ... and one crossover layer
    m = _module(mixing=0.0)
    cpu, dev = m._rngs(0)
    _, lat = m.generate(m.generator, 3, cpu, dev, return_latents=True)
    assert all(torch.equal(lat[:, 0], lat[:, j]) for j in range(lat.shape[1]))


def test_diffaugment_option_runs_and_changes_what_d_sees():
    real = torch.rand(4, 3, 16, 16) * 2 - 1
    plain = _module()
    aug = _module(augment="diffaugment")
    a = _iterate(plain, 1, real, plain.configure_optimizers())
    b = _iterate(aug, 1, real, aug.configure_optimizers())
    assert float(a["real_score"]) != float(b["real_score"])
    with pytest.raises(ValueError, match="augment must be one of"):
        _module(augment="ada")


def test_sample_grid_is_fixed():
    m = _module()
    a, b = m.sample_grid(), m.sample_grid()
    assert a.shape == (4, 3, 16, 16) and torch.equal(a, b)


def test_rosinality_checkpoint_layout_without_trainer():
    m = _module()
    ck = m.rosinality_checkpoint()
    assert set(ck) >= {"g", "d", "g_ema", "g_optim", "d_optim", "args"}
    assert ck["args"].size == 16 and ck["args"].latent == 16 and ck["args"].n_mlp == 2
    assert ck["args"].d_reg_every == 4 and ck["args"].channel_multiplier == 2
