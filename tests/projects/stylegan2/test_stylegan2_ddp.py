"""Two CPU processes (gloo, Lightning ddp_spawn): per-rank batches and latents, gradients averaged, G, D, g_ema and the
optimisers identical on both ranks and equal to one process that averages the two ranks' gradients itself."""

from __future__ import annotations

import os

import pytest
import torch
from lightning.pytorch import Callback, Trainer, seed_everything

import projects.stylegan2.module as module_mod
from common.data.resumable import ResumableSampler
from projects.stylegan2.data import StyleGAN2DataModule
from projects.stylegan2.loss import d_logistic_loss, g_nonsaturating_loss
from projects.stylegan2.module import StyleGAN2Module, accumulate

B = 4  # per rank
KW = dict(size=16, style_dim=16, n_mlp=2, channel_max=8, n_sample=4, sample_every=0, d_reg_every=0, g_reg_every=0)


def _model() -> StyleGAN2Module:
    seed_everything(0)
    return StyleGAN2Module(**KW)


def _data(cache: str) -> StyleGAN2DataModule:
    return StyleGAN2DataModule("faceworld", size=16, batch_size=B, train_length=16, val_length=0, cache_dir=cache)


class _Save(Callback):
    def __init__(self, folder: str) -> None:
        self.folder = folder

    def on_fit_end(self, trainer, pl_module) -> None:
        opts = [o.state_dict() for o in trainer.optimizers]
        torch.save(
            {"sd": pl_module.state_dict(), "opts": opts}, os.path.join(self.folder, f"rank{trainer.global_rank}.pt")
        )


def test_two_ranks_stay_identical_and_average_gradients(tmp_path, monkeypatch):
    cache = str(tmp_path / "cache")
    dm = _data(cache)
    dm.prepare_data()  # render once here; the spawned ranks read the cache
    trainer = Trainer(
        accelerator="cpu", devices=2, strategy="ddp_spawn", max_steps=1, limit_val_batches=0, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[_Save(str(tmp_path))], default_root_dir=str(tmp_path),
    )  # fmt: skip
    trainer.fit(_model(), datamodule=_data(cache))
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    for k, v in r0["sd"].items():
        assert torch.equal(v, r1["sd"][k]), k
    t0, t1 = list(_tensors(r0["opts"])), list(_tensors(r1["opts"]))
    assert len(t0) == len(t1) > 0 and all(torch.equal(a, b) for a, b in zip(t0, t1))

    # one process: each rank's batch and draws (rank r's seeded generators), gradients averaged by hand
    m = _model()
    opt_g, opt_d = m.configure_optimizers()
    dm = _data(cache)
    dm.setup("fit")
    reals = [
        torch.stack([dm.train_set[i] for i in list(ResumableSampler(dm.train_set, 0, True, 2, r))[:B]]) for r in (0, 1)
    ]
    rngs = []
    for r in (0, 1):
        monkeypatch.setattr(module_mod, "rank", lambda r=r: r)  # the per-rank seeding of iteration 0
        rngs.append(m._rngs(0))
    monkeypatch.undo()

    def average_into(params, losses):
        grads = [torch.autograd.grad(loss, params) for loss in losses]
        for p, *gs in zip(params, *grads):
            p.grad = sum(gs) / len(gs)

    d_params = list(m.discriminator.parameters())
    losses = []
    for real, (cpu, dev) in zip(reals, rngs):
        with torch.no_grad():
            fake, _ = m.generate(m.generator, B, cpu, dev)
        losses.append(d_logistic_loss(m.discriminator(real), m.discriminator(fake)))
    average_into(d_params, losses)
    opt_d.step()
    g_params = list(m.generator.parameters())
    losses = [g_nonsaturating_loss(m.discriminator(m.generate(m.generator, B, cpu, dev)[0])) for cpu, dev in rngs]
    average_into(g_params, losses)
    opt_g.step()
    accumulate(m.g_ema, m.generator, m.ema_decay)
    for k, v in m.state_dict().items():
        torch.testing.assert_close(r0["sd"][k], v, rtol=1e-5, atol=1e-6, msg=k)


def _tensors(opts):
    for o in opts:
        for st in o["state"].values():
            yield from (v for v in st.values() if isinstance(v, torch.Tensor))


@pytest.mark.slow
def test_feature_moments_all_reduce_over_two_ranks(tmp_path):
    """The validation statistics of two ranks equal those of the combined features (gloo)."""
    import torch.multiprocessing as mp

    out = str(tmp_path / "m.pt")
    mp.spawn(_moments_worker, args=(2, _free_port(), out), nprocs=2, join=True)
    got = torch.load(out, weights_only=True)
    from projects.stylegan2.metrics import FeatureMoments

    m = FeatureMoments()
    m.update(_feats(0))
    m.update(_feats(1))
    mu, cov = m.stats()
    torch.testing.assert_close(got["mu"], mu)
    torch.testing.assert_close(got["cov"], cov)


def _feats(r: int) -> torch.Tensor:
    return torch.randn(5 + r, 3, generator=torch.Generator().manual_seed(r))


def _moments_worker(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist

    from projects.stylegan2.metrics import FeatureMoments

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        m = FeatureMoments()
        m.update(_feats(rank))
        m.all_reduce()
        mu, cov = m.stats()
        if rank == 0:
            torch.save({"mu": mu, "cov": cov}, out)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
