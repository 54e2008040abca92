"""Learning-rate factors for ``torch.optim.lr_scheduler.LambdaLR`` (stepped once per optimiser step)."""

from __future__ import annotations

import math


def warmup_cosine(step: int, warmup_steps: int, total_steps: int) -> float:
    """LR factor of a linear warm-up followed by a half cosine, as in the official MoCo/ReSSL/CGH/MaskCon code.

    ``step < warmup_steps``: ``step / warmup_steps`` (0 at the first step); then
    ``0.5 * (1 + cos(pi * (step - warmup_steps) / (total_steps - warmup_steps)))``, 1 at ``warmup_steps`` and 0
    from ``total_steps`` on. ``warmup_steps = 0`` gives the plain cosine; ``total_steps <= warmup_steps`` keeps 1
    after the warm-up.
    """
    if warmup_steps < 0 or total_steps < 0:
        raise ValueError(f"warmup_cosine: steps must be >= 0, got warmup {warmup_steps}, total {total_steps}")
    if step < warmup_steps:
        return step / warmup_steps
    if total_steps <= warmup_steps:
        return 1.0
    progress = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
    return 0.5 * (1.0 + math.cos(math.pi * progress))
