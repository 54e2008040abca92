"""Planted disentanglement: the real mask network, mixing and loss code find hidden 'pose' channels."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from common.face.losses import identity_loss, vertex_loss
from projects.stylemask.model import ControlledLayer, MaskNetwork, mix_styles


def test_masks_find_planted_pose_channels():
    torch.manual_seed(0)
    dims = [32, 32, 16]
    layers = [ControlledLayer(i, "conv", d, f"network_{i:02d}") for i, d in enumerate(dims)]
    total = sum(dims)
    is_pose = torch.zeros(total, dtype=torch.bool)
    is_pose[torch.randperm(total)[: total // 10]] = True  # hidden 10 % of the channels carry "pose"
    n_pose = int(is_pose.sum())
    pose_map = torch.randn(n_pose, 8) / n_pose**0.5  # frozen random readers
    id_map = torch.randn(total - n_pose, 32) / (total - n_pose) ** 0.5

    def read(styles):
        s = torch.cat(styles, dim=1)
        return s[:, is_pose] @ pose_map, F.normalize(s[:, ~is_pose] @ id_map, dim=1)

    net = MaskNetwork(layers)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    history = []
    for _ in range(600):
        s_s = [torch.randn(16, d) for d in dims]
        s_t = [torch.randn(16, d) for d in dims]
        masks = net(s_s, s_t)
        mixed = mix_styles(s_s, s_t, masks, layers)
        pose_r, id_r = read(mixed)
        pose_t, _ = read(s_t)
        _, id_s = read(s_s)
        loss = vertex_loss(pose_t[..., None], pose_r[..., None]) + 10.0 * identity_loss(id_r, id_s)
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(loss.item())

    first, last = sum(history[:10]) / 10, sum(history[-10:]) / 10
    print(f"loss {first:.4f} -> {last:.4f}")
    assert last < 0.2 * first, (first, last)  # falls by most of its value
    with torch.no_grad():
        s_s = [torch.randn(256, d) for d in dims]
        s_t = [torch.randn(256, d) for d in dims]
        m = torch.cat(net(s_s, s_t), dim=1)
    print(f"mask pose {m[:, is_pose].mean():.3f} other {m[:, ~is_pose].mean():.3f}")
    assert m[:, is_pose].mean() > 0.9, float(m[:, is_pose].mean())
    assert m[:, ~is_pose].mean() < 0.1, float(m[:, ~is_pose].mean())
