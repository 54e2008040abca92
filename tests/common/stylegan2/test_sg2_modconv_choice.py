"""ModulatedConv2d chooses its formulation by what is computed (grouped without autograd, activation scaling
when gradients flow); both give the same result, and an explicit ``fused`` wins."""

from __future__ import annotations

import torch

from common.stylegan2.layers import ModulatedConv2d


def _count_paths(conv: ModulatedConv2d, monkeypatch) -> list[str]:
    seen: list[str] = []
    unfused = conv._forward_unfused
    monkeypatch.setattr(conv, "_forward_unfused", lambda x, s: seen.append("scaling") or unfused(x, s))
    return seen


def test_formulation_follows_what_is_computed(monkeypatch):
    torch.manual_seed(0)
    for upsample in (False, True):
        conv = ModulatedConv2d(4, 5, 3, 6, upsample=upsample).double().requires_grad_(False)
        seen = _count_paths(conv, monkeypatch)
        x = torch.randn(3, 4, 8, 8, dtype=torch.float64)
        s = torch.randn(3, 4, dtype=torch.float64)
        with torch.no_grad():
            grouped = conv(x, s=s)
        assert seen == []  # no autograd: the grouped convolution (rosinality's path)
        s_req = s.clone().requires_grad_(True)
        scaled = conv(x, s=s_req)
        assert seen == ["scaling"]  # gradients flow to the style: activation scaling
        torch.testing.assert_close(scaled, grouped)
        scaled.square().sum().backward()
        assert s_req.grad is not None and torch.isfinite(s_req.grad).all()
        conv.requires_grad_(True)  # a training generator: activation scaling too
        conv(x, s=s)
        assert seen == ["scaling", "scaling"]
        conv.fused = True  # explicit choice wins
        conv(x, s=s_req)
        assert len(seen) == 2
        conv.fused = False
        with torch.no_grad():
            conv(x, s=s)
        assert len(seen) == 3
        # per-sample weight offsets always take the grouped path
        conv.fused = None
        conv(x, s=s_req, weight_delta=torch.zeros(3, 5, 4, 3, 3, dtype=torch.float64))
        assert len(seen) == 3
