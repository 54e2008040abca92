"""StyleGAN2 generator (rosinality architecture and key names) with style-space and weight-offset access.

``Generator(size, style_dim=512, n_mlp=8, channel_multiplier=2, lr_mlp=0.01)`` has exactly the ``state_dict`` of
rosinality's ``g_ema`` (171 keys at 1024 px, channel_multiplier 2), so converted FFHQ-1024 and HyperReenact's
VoxCeleb-256 (channel_multiplier 1) checkpoints load with ``strict=True``. Entry points:

* ``G([z], truncation=..., truncation_latent=..., input_is_latent=..., noise=..., randomize_noise=...,
  return_latents=..., inject_index=...) -> (image, latent or None)``: rosinality's call convention.
* ``G.mapping(z) -> w``, ``G.mean_latent(n)``, ``G.synthesis(wplus, noise="const", weight_deltas=None)``.
* Style space: ``G.style_layers()`` (every modulated layer in forward order with metadata),
  ``G.styles_from_wplus(wplus) -> list of [B, C]``, ``G.synthesis_from_styles(styles, wplus=..., ...)``.
* Weight offsets: ``G.conv_weight_shapes()`` and ``weight_deltas=[...]`` applied as ``W * (1 + delta)``.

Images are ``[B, 3, size, size]``, roughly in [-1, 1] for trained weights.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from common.stylegan2.layers import ConstantInput, EqualLinear, ModulatedConv2d, PixelNorm, StyledConv, ToRGB

NoiseSpec = Literal["const", "random"] | Sequence[Tensor | None] | None


@dataclass(frozen=True)
class StyleLayer:
    """One modulated layer of the synthesis network, in forward order.

    index: position among all modulated layers (conv and ToRGB) in forward order (the HyperReenact/HyperStyle
        ``weights_deltas`` index). kind: ``"conv"`` (StyledConv) or ``"torgb"``. resolution: output resolution.
    channels: length of its style vector (= the layer's input channels). w_index: the W+ row it reads.
    name: module path (``conv1``, ``to_rgb1``, ``convs.K``, ``to_rgbs.K``). conv_index: position among the
        non-ToRGB convs (the ``weight_deltas`` index of ``conv_weight_shapes()``), None for ToRGB.
    """

    index: int
    kind: Literal["conv", "torgb"]
    resolution: int
    channels: int
    w_index: int
    name: str = ""
    out_channels: int = 0
    kernel_size: int = 0
    upsample: bool = False
    conv_index: int | None = None


def generator_channels(
    size: int, channel_multiplier: int = 2, channel_max: int = 512, channel_base: int | None = None
) -> dict[int, int]:
    """Feature channels per resolution 4..size (the discriminator uses the same widths).

    rosinality (``channel_base=None``): 512 up to 32 px, then ``16384 / res * channel_multiplier``, capped at
    ``channel_max``. NVIDIA's rule when ``channel_base`` is given: ``min(channel_base // res, channel_max)`` (e.g.
    ``channel_base=16384 * channel_multiplier`` equals rosinality's layout when ``channel_max=512``; smaller bases
    narrow the high-resolution layers of cheap models).
    """
    out = {}
    for r in range(2, int(math.log2(size)) + 1):
        res = 2**r
        if channel_base is not None:
            base = channel_base // res
        else:
            base = 512 if res <= 32 else (16384 // res) * channel_multiplier
        out[res] = min(base, channel_max)
        if out[res] < 1:
            raise ValueError(f"channel_base={channel_base} gives no channels at {res} px")
    return out


class Generator(nn.Module):
    """rosinality's StyleGAN2 generator; see the module docstring for the API.

    ``size``: output resolution, a power of two >= 8. ``channel_max`` (not in rosinality; default 512 keeps its
    layout) caps every layer's width, for tiny test and toy models; ``channel_base`` (not in rosinality; None keeps
    its layout) sets NVIDIA-style widths ``min(channel_base // res, channel_max)``. ``latent_avg`` is a non-persistent buffer
    (not in the state dict) that ``load_generator`` fills from the checkpoint's ``latent_avg`` when present.
    """

    def __init__(
        self,
        size: int,
        style_dim: int = 512,
        n_mlp: int = 8,
        channel_multiplier: int = 2,
        lr_mlp: float = 0.01,
        blur_kernel: Sequence[float] = (1, 3, 3, 1),
        channel_max: int = 512,
        channel_base: int | None = None,
    ) -> None:
        super().__init__()
        if size < 8 or size & (size - 1):
            raise ValueError(f"Generator size must be a power of two >= 8, got {size}")
        self.size = size
        self.style_dim = style_dim
        self.n_mlp = n_mlp
        self.channel_multiplier = channel_multiplier
        self.lr_mlp = lr_mlp
        self.channel_max = channel_max
        self.channel_base = channel_base
        self.style = nn.Sequential(
            PixelNorm(),
            *[EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activation="fused_lrelu") for _ in range(n_mlp)],
        )
        self.channels = generator_channels(size, channel_multiplier, channel_max, channel_base)
        ch4 = self.channels[4]
        self.input = ConstantInput(ch4)
        self.conv1 = StyledConv(ch4, ch4, 3, style_dim, blur_kernel=blur_kernel)
        self.to_rgb1 = ToRGB(ch4, style_dim, upsample=False)

        self.log_size = int(math.log2(size))
        self.num_layers = (self.log_size - 2) * 2 + 1  # noise inputs: conv1 + two per resolution 8..size
        self.convs = nn.ModuleList()
        self.upsamples = nn.ModuleList()  # unused; kept because rosinality has it (no parameters)
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        for layer_idx in range(self.num_layers):
            res = 2 ** ((layer_idx + 5) // 2)
            self.noises.register_buffer(f"noise_{layer_idx}", torch.randn(1, 1, res, res))
        in_channel = ch4
        for i in range(3, self.log_size + 1):
            out_channel = self.channels[2**i]
            self.convs.append(StyledConv(in_channel, out_channel, 3, style_dim, upsample=True, blur_kernel=blur_kernel))
            self.convs.append(StyledConv(out_channel, out_channel, 3, style_dim, blur_kernel=blur_kernel))
            self.to_rgbs.append(ToRGB(out_channel, style_dim, blur_kernel=blur_kernel))
            in_channel = out_channel
        self.n_latent = self.log_size * 2 - 2
        self.register_buffer("latent_avg", None, persistent=False)
        self._layers = self._build_layer_table()

    # ------------------------------------------------------------------ layer table
    def _layer_modules(self) -> list[StyledConv | ToRGB]:
        mods: list[StyledConv | ToRGB] = [self.conv1, self.to_rgb1]
        for k in range(len(self.to_rgbs)):
            mods += [self.convs[2 * k], self.convs[2 * k + 1], self.to_rgbs[k]]
        return mods

    def _build_layer_table(self) -> tuple[StyleLayer, ...]:
        ch = self.channels
        table = [
            StyleLayer(0, "conv", 4, ch[4], 0, "conv1", ch[4], 3, False, 0),
            StyleLayer(1, "torgb", 4, ch[4], 1, "to_rgb1", 3, 1, False, None),
        ]
        in_ch = ch[4]
        for k in range(len(self.to_rgbs)):
            res = 2 ** (k + 3)
            out_ch = ch[res]
            n = len(table)
            table += [
                StyleLayer(n, "conv", res, in_ch, 2 * k + 1, f"convs.{2 * k}", out_ch, 3, True, 2 * k + 1),
                StyleLayer(n + 1, "conv", res, out_ch, 2 * k + 2, f"convs.{2 * k + 1}", out_ch, 3, False, 2 * k + 2),
                StyleLayer(n + 2, "torgb", res, out_ch, 2 * k + 3, f"to_rgbs.{k}", 3, 1, False, None),
            ]
            in_ch = out_ch
        return tuple(table)

    def style_layers(self) -> list[StyleLayer]:
        """Every modulated layer (conv and ToRGB) in forward order: 26 at 1024 px, 20 at 256 px."""
        return list(self._layers)

    def conv_weight_shapes(self) -> list[tuple[int, int, int, int]]:
        """``(out, in, k, k)`` of the non-ToRGB modulated convs in forward order (17 at 1024 px, 13 at 256 px)."""
        return [
            (lay.out_channels, lay.channels, lay.kernel_size, lay.kernel_size)
            for lay in self._layers
            if lay.kind == "conv"
        ]

    def set_fused_modconv(self, fused: bool | None) -> None:
        """Set every modulated conv's formulation: True grouped (rosinality's fused path), False activation
        scaling, None (default) chosen per call by whether autograd records (``ModulatedConv2d``)."""
        for m in self.modules():
            if isinstance(m, ModulatedConv2d):
                m.fused = fused

    # ------------------------------------------------------------------ latents
    def make_noise(self) -> list[Tensor]:
        """Fresh N(0,1) noise maps, one per noise input (``num_layers`` of them), batch 1."""
        device = self.input.input.device
        return [
            torch.randn(1, 1, 2 ** ((i + 5) // 2), 2 ** ((i + 5) // 2), device=device) for i in range(self.num_layers)
        ]

    def mapping(self, z: Tensor, truncation: float = 1.0, truncation_latent: Tensor | None = None) -> Tensor:
        """``z [B, style_dim] -> w [B, style_dim]`` (PixelNorm + MLP), optionally truncated toward a mean latent."""
        w = self.style(z)
        if truncation != 1:
            w = self.truncate(w, truncation, truncation_latent)
        return w

    def get_latent(self, z: Tensor) -> Tensor:
        """rosinality's name for the mapping network: ``z -> w``."""
        return self.style(z)

    @staticmethod
    def truncate(w: Tensor, truncation: float, truncation_latent: Tensor | None) -> Tensor:
        """``truncation_latent + truncation * (w - truncation_latent)`` for W ``[B,D]`` or W+ ``[B,L,D]``."""
        if truncation_latent is None:
            raise ValueError(f"truncation={truncation} needs truncation_latent (e.g. G.mean_latent(4096))")
        return truncation_latent + truncation * (w - truncation_latent)

    @torch.no_grad()
    def mean_latent(self, n_latent: int, generator: torch.Generator | None = None) -> Tensor:
        """Mean of ``n_latent`` mapped random z: ``[1, style_dim]`` (pass a seeded ``generator`` to fix it)."""
        device = self.input.input.device
        draw_on = generator.device if generator is not None else device
        z = torch.randn(n_latent, self.style_dim, generator=generator, device=draw_on).to(device)
        return self.style(z).mean(0, keepdim=True)

    # ------------------------------------------------------------------ checks
    def _noise_list(self, noise: NoiseSpec, batch: int) -> list[Tensor | None]:
        if noise is None or (isinstance(noise, str) and noise == "random"):
            return [None] * self.num_layers
        if isinstance(noise, str):
            if noise == "const":
                return [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]
            raise ValueError(f"noise must be 'const', 'random', None or a list of tensors, got {noise!r}")
        if isinstance(noise, Tensor) or not isinstance(noise, Sequence):
            raise TypeError(f"noise must be 'const', 'random', None or a list of {self.num_layers} tensors")
        if len(noise) != self.num_layers:
            raise ValueError(f"noise list must have {self.num_layers} entries (one per noise input), got {len(noise)}")
        for i, n in enumerate(noise):
            res = 2 ** ((i + 5) // 2)
            if n is not None and (
                n.ndim != 4 or n.shape[1] != 1 or n.shape[-2:] != (res, res) or n.shape[0] not in (1, batch)
            ):
                raise ValueError(f"noise[{i}] must have shape [1 or {batch}, 1, {res}, {res}], got {tuple(n.shape)}")
        return list(noise)

    def _delta_list(self, weight_deltas: Sequence[Tensor | None] | None) -> list[Tensor | None]:
        """Per forward-order layer offsets from a conv-only list (len 13 at 256) or an all-layer list (len 20)."""
        n_all = len(self._layers)
        if weight_deltas is None:
            return [None] * n_all
        convs = [lay for lay in self._layers if lay.kind == "conv"]
        if len(weight_deltas) == len(convs):
            out: list[Tensor | None] = [None] * n_all
            for lay, d in zip(convs, weight_deltas):
                out[lay.index] = d
        elif len(weight_deltas) == n_all:
            out = list(weight_deltas)
        else:
            raise ValueError(
                f"weight_deltas must list the {len(convs)} non-ToRGB convs (conv_weight_shapes()) or all {n_all} "
                f"modulated layers (style_layers() order), got {len(weight_deltas)} entries"
            )
        for lay, d in zip(self._layers, out):
            if d is None:
                continue
            shape = (lay.out_channels, lay.channels, lay.kernel_size, lay.kernel_size)
            try:
                torch.broadcast_shapes(tuple(d.shape), (1, *shape))
            except RuntimeError:
                raise ValueError(
                    f"weight delta for layer {lay.index} ({lay.name}) must broadcast to (B, {', '.join(map(str, shape))}), "
                    f"got {tuple(d.shape)}"
                ) from None
            if d.ndim > 5:
                raise ValueError(f"weight delta for layer {lay.index} ({lay.name}) has {d.ndim} dims, at most 5")
        return out

    def _check_wplus(self, wplus: Tensor) -> Tensor:
        if wplus.ndim == 2 and wplus.shape[1] == self.style_dim:
            return wplus.unsqueeze(1).expand(-1, self.n_latent, -1)
        if wplus.ndim != 3 or wplus.shape[1:] != (self.n_latent, self.style_dim):
            raise ValueError(
                f"W+ must have shape [B, {self.n_latent}, {self.style_dim}] (or W [B, {self.style_dim}]), "
                f"got {tuple(wplus.shape)}"
            )
        return wplus

    # ------------------------------------------------------------------ synthesis
    def _render(
        self,
        latent: Tensor | None,
        styles: Sequence[Tensor | None] | None,
        noise: list[Tensor | None],
        deltas: list[Tensor | None],
        batch: int,
    ) -> Tensor:
        """Run the synthesis network; each layer takes ``styles[j]`` when given, else ``latent[:, w_index]``."""
        mods = self._layer_modules()

        def args(j: int) -> dict:
            s = styles[j] if styles is not None else None
            w = latent[:, self._layers[j].w_index] if s is None else None
            return {"w": w, "s": s, "weight_delta": deltas[j]}

        out = self.input(batch)
        out = mods[0](out, noise=noise[0], **args(0))
        skip = mods[1](out, **args(1))
        for k in range(len(self.to_rgbs)):
            j = 2 + 3 * k
            out = mods[j](out, noise=noise[2 * k + 1], **args(j))
            out = mods[j + 1](out, noise=noise[2 * k + 2], **args(j + 1))
            skip = mods[j + 2](out, skip=skip, **args(j + 2))
        return skip

    def synthesis(
        self, wplus: Tensor, noise: NoiseSpec = "const", weight_deltas: Sequence[Tensor | None] | None = None
    ) -> Tensor:
        """Render W+ ``[B, n_latent, style_dim]`` (or W ``[B, style_dim]``) to ``[B, 3, size, size]``.

        noise: ``"const"`` (the registered ``noises.noise_i`` buffers, default), ``"random"`` or a list of
        ``num_layers`` tensors ``[1 or B, 1, r, r]`` (None entries draw random noise). weight_deltas: see
        ``conv_weight_shapes()``; None entries leave a layer untouched.
        """
        wplus = self._check_wplus(wplus)
        batch = wplus.shape[0]
        return self._render(wplus, None, self._noise_list(noise, batch), self._delta_list(weight_deltas), batch)

    def styles_from_wplus(self, wplus: Tensor) -> list[Tensor]:
        """Style vectors ``[B, channels]`` of every modulated layer in ``style_layers()`` order (the affine outputs).

        ToRGB styles are rosinality's (they include no ``1/sqrt(C)`` factor; NVIDIA's ToRGB styles differ by it).
        """
        wplus = self._check_wplus(wplus)
        return [m.conv.modulation(wplus[:, lay.w_index]) for lay, m in zip(self._layers, self._layer_modules())]

    def synthesis_from_styles(
        self,
        styles: Sequence[Tensor | None],
        wplus: Tensor | None = None,
        torgb_from_wplus: bool = False,
        noise: NoiseSpec = "const",
        weight_deltas: Sequence[Tensor | None] | None = None,
    ) -> Tensor:
        """Render from per-layer style vectors.

        styles: all layers in ``style_layers()`` order (26 at 1024 px), or only the non-ToRGB convs (17 at 1024 px;
        StyleMask's S) together with ``torgb_from_wplus=True``. With ``torgb_from_wplus`` the ToRGB layers compute
        their styles from ``wplus`` (StyleMask's decoder); ToRGB entries of a full list are then ignored and may be
        None. ``styles_from_wplus(w)`` rendered here equals ``synthesis(w)`` exactly.
        """
        convs = [lay for lay in self._layers if lay.kind == "conv"]
        if len(styles) == len(self._layers):
            full: list[Tensor | None] = list(styles)
        elif len(styles) == len(convs):
            if not torgb_from_wplus:
                raise ValueError(
                    f"got {len(styles)} styles (conv layers only): pass torgb_from_wplus=True and wplus so the ToRGB "
                    f"layers take their styles from W+, or give all {len(self._layers)} layers"
                )
            full = [None] * len(self._layers)
            for lay, s in zip(convs, styles):
                full[lay.index] = s
        else:
            raise ValueError(
                f"styles must list all {len(self._layers)} modulated layers or the {len(convs)} conv layers, "
                f"got {len(styles)}"
            )
        if torgb_from_wplus:
            if wplus is None:
                raise ValueError("torgb_from_wplus=True needs wplus")
            for lay in self._layers:
                if lay.kind == "torgb":
                    full[lay.index] = None
        if wplus is not None:
            wplus = self._check_wplus(wplus)
        batch = None
        for lay, s in zip(self._layers, full):
            if s is None:
                if wplus is None:
                    raise ValueError(f"style for layer {lay.index} ({lay.name}) is None and no wplus was given")
                continue
            if s.ndim != 2 or s.shape[1] != lay.channels or (batch is not None and s.shape[0] != batch):
                raise ValueError(
                    f"style for layer {lay.index} ({lay.name}) must have shape [B, {lay.channels}], got {tuple(s.shape)}"
                )
            batch = s.shape[0]
        if batch is None:
            batch = wplus.shape[0]
        if wplus is not None and wplus.shape[0] != batch:
            raise ValueError(f"wplus batch {wplus.shape[0]} differs from the styles' batch {batch}")
        return self._render(wplus, full, self._noise_list(noise, batch), self._delta_list(weight_deltas), batch)

    # ------------------------------------------------------------------ rosinality forward
    def forward(
        self,
        styles: Sequence[Tensor] | Tensor,
        return_latents: bool = False,
        inject_index: int | None = None,
        truncation: float = 1,
        truncation_latent: Tensor | None = None,
        input_is_latent: bool = False,
        noise: Sequence[Tensor | None] | str | None = None,
        randomize_noise: bool = True,
        weight_deltas: Sequence[Tensor | None] | None = None,
        weights_deltas: Sequence[Tensor | None] | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """rosinality's call: ``G([z])``, ``G([w], input_is_latent=True)``, ``G([wplus], input_is_latent=True)``,
        ``G([z1, z2], inject_index=k)`` (style mixing). Returns ``(image [B,3,S,S], W+ [B,n_latent,D] or None)``.

        noise: None uses random noise if ``randomize_noise`` else the constant buffers; a list or "const"/"random"
        as in ``synthesis``. Truncation applies only when ``truncation < 1`` (as rosinality). ``weights_deltas``
        is HyperReenact's spelling of ``weight_deltas``.
        """
        if weights_deltas is not None:
            if weight_deltas is not None:
                raise ValueError("pass weight_deltas or weights_deltas, not both")
            weight_deltas = weights_deltas
        if isinstance(styles, Tensor):
            styles = [styles]
        if len(styles) == 0:
            raise ValueError("styles must hold at least one z/w tensor")
        if not input_is_latent:
            styles = [self.style(s) for s in styles]
        if truncation < 1:
            styles = [self.truncate(s, truncation, truncation_latent) for s in styles]
        if len(styles) < 2:
            latent = styles[0]
            if latent.ndim < 3:
                latent = latent.unsqueeze(1).repeat(1, self.n_latent, 1)
        else:
            if inject_index is None:
                inject_index = random.randint(1, self.n_latent - 1)
            latent = torch.cat(
                [
                    styles[0].unsqueeze(1).repeat(1, inject_index, 1),
                    styles[1].unsqueeze(1).repeat(1, self.n_latent - inject_index, 1),
                ],
                1,
            )
        latent = self._check_wplus(latent)
        if noise is None:
            noise = "random" if randomize_noise else "const"
        batch = latent.shape[0]
        image = self._render(latent, None, self._noise_list(noise, batch), self._delta_list(weight_deltas), batch)
        return image, (latent if return_latents else None)
