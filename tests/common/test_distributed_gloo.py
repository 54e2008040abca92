"""Two CPU processes on the gloo backend: queue enqueues and metrics see every rank's data."""

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from common.distributed import gather_cat, gather_cat_with_grad
from common.metrics.retrieval import RecallAtK
from common.nn.queue import FeatureQueue


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, feats: torch.Tensor, labels: torch.Tensor, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        q = FeatureQueue(8, 3, with_labels=True)
        per = feats.shape[0] // world
        mine = slice(rank * per, (rank + 1) * per)
        q.enqueue(feats[mine], labels[mine])
        assert gather_cat(torch.tensor([rank])).tolist() == list(range(world))
        x = torch.full((2, 1), float(rank + 1), requires_grad=True)
        (gather_cat_with_grad(x) * torch.arange(2 * world, dtype=torch.float)[:, None]).sum().backward()
        m = RecallAtK(ks=(1, 2))
        m.update(feats[mine], labels[mine], torch.arange(feats.shape[0])[mine])
        rec = {k: v.item() for k, v in m.compute().items()}
        torch.save({"queue": q.state_dict(), "grad": x.grad, "recall": rec}, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_process_queue_and_metric_equal_single_process(tmp_path):
    torch.manual_seed(1)
    feats, labels = torch.randn(6, 3), torch.randint(0, 3, (6,))
    mp.spawn(_worker, args=(2, _free_port(), feats, labels, str(tmp_path)), nprocs=2, join=True)
    torch.manual_seed(0)
    single = FeatureQueue(8, 3, with_labels=True)
    single.enqueue(feats, labels)
    m = RecallAtK(ks=(1, 2))
    m.update(feats, labels, torch.arange(6))
    want = {k: v.item() for k, v in m.compute().items()}
    for r in range(2):
        res = torch.load(tmp_path / f"rank{r}.pt")
        for key, value in single.state_dict().items():
            torch.testing.assert_close(res["queue"][key], value)
        assert res["recall"] == want
        # both ranks' losses weight rank r's rows by positions 2r, 2r+1; the gradients are summed
        torch.testing.assert_close(res["grad"], 2 * torch.tensor([[2.0 * r], [2.0 * r + 1]]))
