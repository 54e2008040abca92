"""Two-process DDP on CPU (gloo): after one step the queue, the weights and Recall@K equal one process on the
combined batch. The encoder uses GroupNorm so that a sample's key does not depend on which rank's batch it is in
(with BatchNorm the same holds only with SyncBatchNorm, which needs GPUs)."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch import Trainer, seed_everything

from common.data.resumable import ResumableSampler
from projects.maskcon.data import MaskConDataModule
from projects.maskcon.module import MaskConModule

BATCH = 8  # global batch: 4 per rank under DDP


def _build(mode: str = "maskcon") -> tuple[MaskConModule, MaskConDataModule]:
    seed_everything(0)
    model = MaskConModule(
        mode=mode, arch="smallcnn", in_channels=1, width=8, norm="gn", proj_hidden=16, dim=8, num_coarse=3,
        queue_size=32, init_queue=False, lr=0.5, warmup_epochs=0, recall_ks=(1, 2), plot_embeddings=False,
    )  # fmt: skip
    dm = MaskConDataModule("digits", batch_size=BATCH, num_workers=0, limit_train=BATCH, limit_test=10, seed=5)
    return model, dm


def _fit(devices: int, mode: str) -> tuple[MaskConModule, dict[str, float]]:
    model, dm = _build(mode)
    trainer = Trainer(
        accelerator="cpu", devices=devices, strategy="ddp_spawn" if devices > 1 else "auto", max_epochs=1,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(model, datamodule=dm)
    return model, {k: float(v) for k, v in trainer.callback_metrics.items()}


@pytest.mark.parametrize("mode", ["maskcon", pytest.param("coins", marks=pytest.mark.slow)])
def test_ddp_step_equals_combined_batch(mode):
    ddp, m_ddp = _fit(2, mode)
    one, m_one = _fit(1, mode)
    # rank r takes items r, r+2, ... of the epoch's order; all_gather writes rank 0's keys, then rank 1's
    order = list(ResumableSampler(list(range(BATCH)), seed=5))
    gathered = order[0::2] + order[1::2]
    perm = [order.index(i) for i in gathered]
    assert int(ddp.queue.ptr) == int(one.queue.ptr) == BATCH
    assert torch.allclose(ddp.queue.features()[:BATCH], one.queue.features()[:BATCH][perm], atol=1e-6)
    assert torch.equal(ddp.queue.labels[:BATCH], one.queue.labels[:BATCH][perm])
    assert torch.equal(ddp.queue.features()[BATCH:], one.queue.features()[BATCH:])  # untouched initial rows
    for (name, a), (_, b) in zip(ddp.state_dict().items(), one.state_dict().items()):
        if name.startswith(("encoder_q", "encoder_k", "classifier")):
            assert torch.allclose(a, b, atol=1e-5), name
    assert m_ddp["val/recall@1"] == pytest.approx(m_one["val/recall@1"])
    assert m_ddp["val/recall@2"] == pytest.approx(m_one["val/recall@2"])
