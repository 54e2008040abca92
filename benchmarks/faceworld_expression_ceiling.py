"""How much of each face-world expression coefficient a face's exact 68 landmarks determine.

The attribute expert's target is an expression R² above 0.9 on held-out identities. Part of each coefficient can be
unreadable from one image: identity geometry moves the same landmarks (a wide mouth looks like ``lip_stretch``, a
high brow like ``brow_raise``). This script measures that limit without images: an MLP regresses the 8 expression
coefficients from the exact landmarks (centred and scaled, so pose and position are left to the network) of random
train-split faces, and is scored on test-split identities. The same with the true identity vector added shows what
knowing the identity would give::

    python benchmarks/faceworld_expression_ceiling.py [--n_train 60000 --steps 4000]
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import Tensor, nn

from common.face.faceworld_experts import landmark_features, r2_scores


def sample(split: str, n: int, generator: torch.Generator) -> dict[str, Tensor]:
    """Random faces of ``split`` identities at random pose and expression: landmark features, expression, identity."""
    from common.data import faceworld as fw

    ids = fw.SPLITS[split].start + torch.randint(0, len(fw.SPLITS[split]), (n,), generator=generator)
    ident = fw.identity_params(ids)
    pose, expr = fw.sample_pose(n, generator), fw.sample_expression(n, generator)
    return {"x": landmark_features(fw.landmarks(ident, pose, expr, 64)), "expression": expr, "identity": ident}


def fit_r2(x: Tensor, y: Tensor, x_test: Tensor, y_test: Tensor, steps: int = 4000, seed: int = 0) -> Tensor:
    """Held-out R² ``[D]`` of an MLP (two hidden layers of 512, AdamW, one-cycle) fitted by MSE on ``(x, y)``."""
    torch.manual_seed(seed)
    mu, sd = x.mean(0), x.std(0) + 1e-6
    net = nn.Sequential(
        nn.Linear(x.shape[1], 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, y.shape[1])
    )
    opt = torch.optim.AdamW(net.parameters(), 2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=steps)
    for _ in range(steps):
        j = torch.randint(0, len(x), (512,))
        loss = nn.functional.mse_loss(net((x[j] - mu) / sd), y[j])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    with torch.no_grad():
        return r2_scores(net((x_test - mu) / sd), y_test)


def main(argv: list[str] | None = None) -> dict[str, list[float]]:
    from common.data.faceworld import EXPRESSION_NAMES

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n_train", type=int, default=60000)
    ap.add_argument("--n_test", type=int, default=5000)
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    t0 = time.time()
    g = torch.Generator().manual_seed(a.seed)
    train, test = sample("train", a.n_train, g), sample("test", a.n_test, g)
    results = {}
    for name, extra in (("exact landmarks", False), ("exact landmarks + true identity", True)):
        x, xt = train["x"], test["x"]
        if extra:
            x, xt = torch.cat([x, train["identity"]], 1), torch.cat([xt, test["identity"]], 1)
        r2 = fit_r2(x, train["expression"], xt, test["expression"], a.steps, a.seed)
        results[name] = [round(v, 3) for v in r2.tolist()]
        parts = ", ".join(f"{k} {v:.3f}" for k, v in zip(EXPRESSION_NAMES, r2.tolist()))
        print(f"expression R² from {name}: mean {r2.mean():.3f} ({parts})")
    print(f"({a.n_train} train / {a.n_test} test faces, {a.steps} steps, {time.time() - t0:.0f} s)")
    return results


if __name__ == "__main__":
    main()
