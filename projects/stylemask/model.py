"""StyleMask's mask network and style-space mixing.

One ``MaskPredictor`` per controlled style layer (Linear-ReLU-Linear-Sigmoid at the layer's width) takes the
difference of source and target style codes of that layer and predicts a per-channel mask ``m`` in (0, 1).
The reenacted code is ``s = m * s_target + (1 - m) * s_source`` on the controlled layers and ``s_source``
everywhere else. By default (official code) the controlled layers are the first 12 *conv* style layers of the
generator (5632 of the 6048 conv channels at 1024 px) and the ToRGB layers use the source's W+ codes, i.e. the
source's ToRGB styles; ``mix_torgb=True`` also gives a mask network to each ToRGB layer at or below the
resolution of the last controlled conv layer.

State-dict keys follow the official ``mask_network_1024.pt`` (``network_XX.masknet.{0,2}.{weight,bias}``);
ToRGB mask networks, when enabled, are named ``torgb_XX``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from common.checkpoint import check_finite, read_checkpoint


@dataclass(frozen=True)
class ControlledLayer:
    """A style layer the masks act on: its position in the generator's style list, kind, width, key."""

    position: int
    kind: str
    channels: int
    key: str


def controlled_layers(style_layers: Sequence, num_layers_control: int | None = 12, mix_torgb: bool = False):
    """Pick the controlled layers from ``Generator.style_layers()`` metadata (forward order, conv and ToRGB).

    ``num_layers_control`` counts conv layers only (the official meaning; None = all conv layers). With
    ``mix_torgb`` each ToRGB layer whose resolution is at most the last controlled conv layer's is added.
    Returns ``list[ControlledLayer]`` in forward order.
    """
    conv = [(p, layer) for p, layer in enumerate(style_layers) if layer.kind == "conv"]
    n = len(conv) if num_layers_control is None else int(num_layers_control)
    if not 1 <= n <= len(conv):
        raise ValueError(f"num_layers_control must be in [1, {len(conv)}] for this generator, got {num_layers_control}")
    chosen = [ControlledLayer(p, "conv", layer.channels, f"network_{i:02d}") for i, (p, layer) in enumerate(conv[:n])]
    if mix_torgb:
        max_res = conv[n - 1][1].resolution
        rgb = [
            (p, layer) for p, layer in enumerate(style_layers) if layer.kind == "torgb" and layer.resolution <= max_res
        ]
        chosen += [ControlledLayer(p, "torgb", layer.channels, f"torgb_{i:02d}") for i, (p, layer) in enumerate(rgb)]
        chosen.sort(key=lambda c: c.position)
    return chosen


class MaskPredictor(nn.Module):
    """``m = sigmoid(W2 relu(W1 x + b1) + b2)`` at width d: ``[B, d] -> [B, d]`` in (0, 1).

    As the official code: both weights ~ N(0, 0.01), biases keep PyTorch's default uniform init, so the
    initial mask is close to sigmoid(b2), about 0.5.
    """

    def __init__(self, dim: int, inner_dim: int | None = None) -> None:
        super().__init__()
        inner = dim if inner_dim is None else inner_dim
        self.masknet = nn.Sequential(nn.Linear(dim, inner), nn.ReLU(), nn.Linear(inner, dim))
        nn.init.normal_(self.masknet[0].weight, mean=0.0, std=0.01)
        nn.init.normal_(self.masknet[2].weight, mean=0.0, std=0.01)

    def forward(self, delta: Tensor) -> Tensor:
        return torch.sigmoid(self.masknet(delta))


class MaskNetwork(nn.ModuleDict):
    """The per-layer mask predictors, keyed ``network_XX`` (conv) / ``torgb_XX`` (ToRGB) as in the official file.

    ``forward(styles_source, styles_target) -> list[Tensor [B, C_l]]``, one mask per controlled layer, in the
    order of ``self.layers``. Style lists are the generator's full per-layer style lists.
    """

    def __init__(self, layers: Sequence[ControlledLayer]) -> None:
        super().__init__({c.key: MaskPredictor(c.channels) for c in layers})
        self.layers = list(layers)

    def forward(self, styles_source: Sequence[Tensor], styles_target: Sequence[Tensor]) -> list[Tensor]:  # type: ignore[override]
        return [self[c.key](styles_source[c.position] - styles_target[c.position]) for c in self.layers]

    @property
    def num_channels(self) -> int:
        return sum(c.channels for c in self.layers)


def mix_styles(
    styles_source: Sequence[Tensor],
    styles_target: Sequence[Tensor],
    masks: Sequence[Tensor],
    layers: Sequence[ControlledLayer],
) -> list[Tensor]:
    """``s_l = m_l * s_target_l + (1 - m_l) * s_source_l`` on controlled layers, ``s_source_l`` elsewhere.

    Style lists hold ``[B, C_l]`` tensors (or ``[1, C_l]`` broadcastable); masks follow ``layers``' order.
    """
    if len(masks) != len(layers):
        raise ValueError(f"got {len(masks)} masks for {len(layers)} controlled layers")
    out = list(styles_source)
    for c, m in zip(layers, masks):
        s, t = styles_source[c.position], styles_target[c.position]
        out[c.position] = m * t + (1.0 - m) * s
    return out


def truncate(w: Tensor, mean_latent: Tensor, psi: float) -> Tensor:
    """Truncation trick toward ``mean_latent``: ``mean + psi (w - mean)`` (``w`` [B,512] or [B,L,512])."""
    if psi == 1.0:
        return w
    return mean_latent + psi * (w - mean_latent)


def load_mask_network_file(path: str | os.PathLike) -> dict:
    """Read an official StyleMask mask-network file: ``{'step', 'mask_net', 'num_layers_control'}``.

    Also accepts a plain state dict (keys ``network_XX.masknet.*``) and our module's layout (a Lightning checkpoint
    or an exported one: ``state_dict`` with ``reenactor.mask_net.*`` keys). Returns ``{'state_dict',
    'num_layers_control', 'step'}``. Loaded with ``weights_only=True``.
    """
    ckpt = read_checkpoint(path, "StyleMask mask-network file")
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path}: expected a dict, got {type(ckpt).__name__}")
    state = ckpt.get("mask_net", ckpt)
    if "mask_net" not in ckpt and isinstance(ckpt.get("state_dict"), dict):
        prefix = "reenactor.mask_net."
        state = {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if str(k).startswith(prefix)}
        ckpt = {"step": ckpt.get("global_step", ckpt.get("step"))}
    if not isinstance(state, dict) or not any(str(k).startswith("network_") for k in state):
        raise ValueError(f"{path}: no 'network_XX.masknet.*' keys found (keys: {list(state)[:5]}...)")
    check_finite(state, path)
    n = ckpt.get("num_layers_control")
    if n is None:
        n = len({k.split(".")[0] for k in state if k.startswith("network_")})
    return {"state_dict": state, "num_layers_control": int(n), "step": ckpt.get("step")}


class StyleMaskReenactor(nn.Module):
    """Generator + mask network: the reenactment map in style space.

    ``generator`` must offer ``style_layers()``, ``styles_from_wplus(wplus)``, ``synthesis_from_styles(styles,
    wplus=None, torgb_from_wplus=False, noise=...)``, ``mapping(z)`` and ``n_latent`` (common/stylegan2).
    """

    def __init__(self, generator: nn.Module, num_layers_control: int | None = 12, mix_torgb: bool = False) -> None:
        super().__init__()
        self.generator = generator
        self.layers = controlled_layers(generator.style_layers(), num_layers_control, mix_torgb)
        self.mask_net = MaskNetwork(self.layers)
        self.mix_torgb = mix_torgb

    def styles(self, wplus: Tensor) -> list[Tensor]:
        """Per-layer style codes ``list[[B, C_l]]`` of ``wplus`` [B, n_latent, 512] (forward order)."""
        return self.generator.styles_from_wplus(wplus)

    def masks(self, styles_source: Sequence[Tensor], styles_target: Sequence[Tensor]) -> list[Tensor]:
        return self.mask_net(styles_source, styles_target)

    def reenact_styles(
        self, styles_source: Sequence[Tensor], styles_target: Sequence[Tensor]
    ) -> tuple[list[Tensor], list[Tensor]]:
        """Mixed styles and the masks: ``(list[[B,C_l]] over all layers, list[[B,C_c]] over controlled layers)``."""
        masks = self.masks(styles_source, styles_target)
        return mix_styles(styles_source, styles_target, masks, self.layers), masks

    def render(self, styles: Sequence[Tensor], wplus_source: Tensor | None = None) -> Tensor:
        """Image ``[B,3,H,W]`` in about [-1,1] from a full style list, fixed (constant) noise.

        Without ``mix_torgb`` the ToRGB styles come from ``wplus_source`` as the official decoder does (they equal
        the source's ToRGB styles, which the mixed list already carries, so the two routes agree).
        """
        if wplus_source is not None and not self.mix_torgb:
            return self.generator.synthesis_from_styles(
                list(styles), wplus=wplus_source, torgb_from_wplus=True, noise="const"
            )
        return self.generator.synthesis_from_styles(list(styles), noise="const")

    def forward(self, wplus_source: Tensor, wplus_target: Tensor) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """Reenact: ``(image [B,3,H,W], mixed styles, masks)`` from source and target W+ codes."""
        s_s, s_t = self.styles(wplus_source), self.styles(wplus_target)
        mixed, masks = self.reenact_styles(s_s, s_t)
        return self.render(mixed, wplus_source), mixed, masks

    def load_official_masknet(self, path: str | os.PathLike) -> None:
        """Load the released ``mask_network_1024.pt`` (or one of our exports) into ``self.mask_net``, strictly."""
        info = load_mask_network_file(path)
        n_conv = sum(c.kind == "conv" for c in self.layers)
        if info["num_layers_control"] != n_conv:
            raise ValueError(f"{path}: file controls {info['num_layers_control']} layers, this model {n_conv}")
        try:
            self.mask_net.load_state_dict(info["state_dict"], strict=True)
        except RuntimeError as exc:
            raise ValueError(f"{path}: mask-network keys or shapes do not match this generator: {exc}") from exc


def export_mask_network(mask_net: MaskNetwork, path: str | os.PathLike, step: int = 0) -> None:
    """Write ``mask_net`` in the official file format ``{'step', 'mask_net', 'num_layers_control'}``."""
    n_conv = sum(c.kind == "conv" for c in mask_net.layers)
    state = {k: v.detach().cpu() for k, v in mask_net.state_dict().items()}
    torch.save({"step": int(step), "mask_net": state, "num_layers_control": n_conv}, path)
