"""Where does the attribute expert lose a face's expression: in its trunk or in its head?

Probes regress the expression alone from an expert's frozen trunk maps (``[C, 7, 7]`` of degraded training crops,
drawn as training draws them: ``common.face.faceworld_experts.cache_trunk_maps``) and are scored, as
``evaluate_attributes`` scores the expert, on held-out renders cropped from their true landmarks. A probe that
beats the expert's own head shows what the trunk holds that the head does not read out; the spread over probe
sizes and over the number of cached maps says whether capacity or data limits the head. Prints the expert's own
head's R², then each probe's held-out and training R² per epoch, its time, and the run's peak memory::

    python benchmarks/faceworld_attribute_head_probe.py --attributes runs/faceworld_experts/attributes_4500.pt \\
        --renders 96000 --probes 256x1 512x2 1024x2 --epochs 6

Measured 2026-12-08 (the command above with ``--probes 256x1 512x2``; one core, the other busy; 96000 maps and
2000 held-out renders in 9.6 min, peak memory 1.9 GB): the expert's own head 0.845; probes 256x1 0.869, 512x2
0.884. An exploratory first version of this script on the same maps (other random draws of the probes) gave 0.867
and 0.886, 1024x2 0.883 (training R² 0.90: overfitting), and 512x2 on 192000 maps 0.895. What followed is in the
README ("The expert's head was the bottleneck").
"""

from __future__ import annotations

import argparse
import resource
import time

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def fit_probe(
    net: nn.Module, x: Tensor, y: Tensor, test_x: Tensor, test_y: Tensor, epochs: int, lr: float = 1e-3, seed: int = 0
) -> list[dict[str, float]]:
    """Train ``net`` on float16 maps ``x`` -> ``y`` (smooth L1, AdamW, one cycle, batch 256); per epoch the mean
    held-out and training (first 5000) R²."""
    from common.face.faceworld_experts import r2_scores

    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    bs = 256
    per_epoch = x.shape[0] // bs
    if per_epoch == 0:
        raise ValueError(f"fit_probe: {x.shape[0]} maps, fewer than one batch of {bs}")
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=epochs * per_epoch, pct_start=0.1)
    history = []
    for _ in range(epochs):
        net.train()
        perm = torch.randperm(x.shape[0], generator=g)
        for i in range(per_epoch):
            idx = perm[i * bs : (i + 1) * bs]
            loss = F.smooth_l1_loss(net(x[idx].float()), y[idx], beta=0.05)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        net.eval()
        with torch.no_grad():
            test = r2_scores(net(test_x.float()), test_y).mean().item()
            train = r2_scores(net(x[:5000].float()), y[:5000]).mean().item()
        history.append({"test_r2": test, "train_r2": train})
    return history


def main(argv: list[str] | None = None) -> list[dict]:
    from common.face import faceworld_experts as fe

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--attributes", default=None, help="expert file (default: the registry's)")
    ap.add_argument("--renders", type=int, default=96000, help="training crops whose maps are cached")
    ap.add_argument("--n-test", type=int, default=2000, help="held-out renders")
    ap.add_argument("--probes", nargs="+", default=["256x1", "512x2"], help="WIDTHxDEPTH of each probe")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--seed", type=int, default=11)
    a = ap.parse_args(argv)
    specs = []
    for spec in a.probes:
        try:
            width, depth = (int(v) for v in spec.split("x"))
        except ValueError:
            ap.error(f"--probes: {spec!r} is not WIDTHxDEPTH (e.g. 512x2)")
        specs.append((width, depth))
    net = fe.load_faceworld_attributes(a.attributes)
    t0 = time.time()
    x, y = fe.cache_trunk_maps(net, a.renders, torch.Generator().manual_seed(a.seed))
    test_x, test_y = [], []
    with torch.no_grad():
        for batch in fe.held_out_batches(a.n_test):  # those evaluate_attributes scores on
            test_x.append(net.features(fe.attribute_crop(batch["image"], batch["landmarks"])).half())
            test_y.append(batch["expression"])
        tx, ty = torch.cat(test_x), torch.cat(test_y)
        own = fe.r2_scores(net.raw(tx.float())["exp"], ty).mean().item()
    print(f"{a.renders} maps and {a.n_test} held-out renders in {time.time() - t0:.0f} s")
    print(f"the expert's own head: held-out expression R² {own:.3f}")
    results = []
    for width, depth in specs:
        torch.manual_seed(0)
        t1 = time.time()
        head = fe.mlp_head(x[0].numel(), width, depth, y["exp"].shape[1])
        history = fit_probe(head, x, y["exp"], tx, ty, a.epochs)
        for epoch, h in enumerate(history):
            print(f"probe {width}x{depth} epoch {epoch}: held-out R² {h['test_r2']:.3f}, train R² {h['train_r2']:.3f}")
        print(f"probe {width}x{depth}: {time.time() - t1:.0f} s")
        results.append({"width": width, "depth": depth, "history": history})
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory {peak:.0f} MB")
    return results


if __name__ == "__main__":
    main()
