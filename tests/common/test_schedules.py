"""warmup_cosine against hand computations at the warm-up boundary, the middle and the end."""

from __future__ import annotations

import math

import pytest
import torch

from common.nn.schedules import warmup_cosine


def test_warmup_boundary_and_end_by_hand():
    warm, total = 10, 110
    assert warmup_cosine(0, warm, total) == 0.0  # the official schedules start at lr 0
    assert warmup_cosine(5, warm, total) == pytest.approx(0.5)
    assert warmup_cosine(9, warm, total) == pytest.approx(0.9)  # last warm-up step
    assert warmup_cosine(10, warm, total) == pytest.approx(1.0)  # first cosine step: the peak
    assert warmup_cosine(11, warm, total) == pytest.approx(0.5 * (1 + math.cos(math.pi / 100)))
    assert warmup_cosine(60, warm, total) == pytest.approx(0.5)  # half way through the cosine
    assert warmup_cosine(110, warm, total) == pytest.approx(0.0, abs=1e-12)  # the end
    assert warmup_cosine(500, warm, total) == pytest.approx(0.0, abs=1e-12)  # beyond it


def test_no_warmup_is_the_plain_cosine():
    assert warmup_cosine(0, 0, 100) == 1.0
    assert warmup_cosine(25, 0, 100) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert warmup_cosine(3, 10, 10) == pytest.approx(0.3)
    assert warmup_cosine(12, 10, 10) == 1.0  # total <= warm-up: constant after it


def test_lambdalr_follows_it():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, 4, 8))
    lrs = []
    for _ in range(9):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    expected = [0.2 * f for f in (0, 0.25, 0.5, 0.75, 1.0)] + [
        0.2 * 0.5 * (1 + math.cos(math.pi * k / 4)) for k in (1, 2, 3, 4)
    ]
    assert lrs == pytest.approx(expected, abs=1e-12)


def test_negative_steps_are_refused():
    with pytest.raises(ValueError, match="warmup_cosine"):
        warmup_cosine(0, -1, 10)
