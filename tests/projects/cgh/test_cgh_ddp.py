"""Two CPU processes (gloo) enqueue the same teacher features as one process with the combined batch."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from lightning.pytorch import Callback, Trainer

from projects.cgh.module import CGHModule

KW = dict(in_channels=1, width=8, global_dim=16, hyper_dim=12, mlp_hidden=32, queue_size=24, momentum=0.9)
B = 4  # per rank


def _model() -> CGHModule:
    torch.manual_seed(0)
    # eval mode: BN uses running statistics, so a sample's features do not depend on which rank's
    # (shuffled) batch it was forwarded in; what remains to compare is gather order and unshuffling
    return CGHModule(**KW, shuffle_bn=True).eval()


def _batch() -> tuple:
    g = torch.Generator().manual_seed(1)
    views = [torch.randn(2 * B, 1, 12, 12, generator=g) for _ in range(2)]
    return views, torch.zeros(2 * B, dtype=torch.long), torch.arange(2 * B)


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        model = _model()
        views, y, idx = _batch()
        local = ([v[rank * B : (rank + 1) * B] for v in views], y[rank * B : (rank + 1) * B], idx)
        torch.manual_seed(10 + rank)  # different local RNG: the shuffle permutation must come from rank 0
        loss, _ = model.step(local, alpha=0.5)
        losses = [torch.zeros(()) for _ in range(world)]
        dist.all_gather(losses, loss.detach())
        if rank == 0:
            torch.save({"queue": model.queue.state_dict(), "losses": torch.stack(losses)}, out)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_enqueue_matches_one_process(tmp_path):
    out = str(tmp_path / "ddp.pt")
    mp.spawn(_worker, args=(2, _free_port(), out), nprocs=2, join=True)
    ddp = torch.load(out, weights_only=True)

    single = _model()
    loss, _ = single.step(_batch(), alpha=0.5)
    for name in ("feat_global", "feat_hyper", "ptr", "filled"):
        torch.testing.assert_close(ddp["queue"][name], single.queue.state_dict()[name], msg=name)
    assert int(ddp["queue"]["ptr"]) == 2 * B
    # each rank's loss is a mean over its half: the average of the two equals the combined-batch loss
    torch.testing.assert_close(ddp["losses"].mean(), loss.detach(), rtol=1e-5, atol=1e-6)


class _SaveQueue(Callback):
    def __init__(self, folder: str) -> None:
        self.folder = folder

    def on_fit_end(self, trainer, pl_module) -> None:
        knn = trainer.callback_metrics.get("knn/top1")
        torch.save(
            {"queue": pl_module.queue.state_dict(), "knn": None if knn is None else float(knn)},
            os.path.join(self.folder, f"rank{trainer.global_rank}.pt"),
        )


@pytest.mark.slow
def test_lightning_ddp_fit_keeps_ranks_in_step(tmp_path):
    """Trainer(strategy="ddp_spawn", 2 CPU processes): queues and the kNN monitor agree on both ranks."""
    from common.callbacks.knn_monitor import KNNMonitor
    from projects.cgh.data import CGHDataModule

    torch.manual_seed(0)
    model = CGHModule(**{**KW, "queue_size": 64}, warmup_loss_epochs=1, warmup_epochs=0)
    dm = CGHDataModule("digits", "", batch_size=16, eval_batch_size=64, num_workers=0, limit_eval=100)
    trainer = Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp_spawn",
        max_epochs=2,
        limit_train_batches=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[KNNMonitor(every_n_epochs=1, batch_size=32), _SaveQueue(str(tmp_path))],
        default_root_dir=str(tmp_path),
    )
    trainer.fit(model, dm)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    for k, v in r0["queue"].items():
        torch.testing.assert_close(r1["queue"][k], v, msg=k)
    assert int(r0["queue"]["ptr"]) == (2 * 2 * 16 * 2) % 64 and int(r0["queue"]["filled"]) == 64
    assert r0["knn"] is not None and r0["knn"] == r1["knn"]
