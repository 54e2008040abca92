"""UAR/WAR accumulated on two CPU processes (gloo) equal the metric over all predictions."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from common.metrics.classification import UARWAR, uar_war


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, preds: torch.Tensor, targets: torch.Tensor, out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    torch.set_num_threads(1)
    m = UARWAR(3)
    m.update(preds[rank::2], targets[rank::2])  # each rank sees half of the clips
    res = m.compute()
    out[rank] = (res["uar"].item(), res["war"].item(), m.confusion().tolist())
    dist.destroy_process_group()


def test_uar_war_sync_over_two_processes():
    g = torch.Generator().manual_seed(0)
    preds, targets = torch.randint(0, 3, (41,), generator=g), torch.randint(0, 3, (41,), generator=g)
    cm = torch.zeros(3, 3, dtype=torch.long)
    for p, t in zip(preds, targets):
        cm[t, p] += 1
    expected = uar_war(cm)
    with mp.Manager() as manager:
        out = manager.dict()
        mp.start_processes(_worker, args=(_free_port(), preds, targets, out), nprocs=2, start_method="spawn")
        results = dict(out)
    for rank in (0, 1):
        uar, war, conf = results[rank]
        assert conf == cm.tolist()
        assert uar == pytest.approx(expected["uar"].item()) and war == pytest.approx(expected["war"].item())
