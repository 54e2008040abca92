"""Inversion encoders into StyleGAN2's W+: e4e's ``Encoder4Editing`` and pSp's ``GradualStyleEncoder``.

Both sit on the IR-SE-50 body of ``common/face/irse.py`` with a feature pyramid: taps ``c1 = body[6]`` (128 ch),
``c2 = body[20]`` (256 ch), ``c3 = body[23]`` (512 ch); ``p2 = up(c3) + latlayer1(c2)``, ``p1 = up(p2) +
latlayer2(c1)`` (bilinear, ``align_corners=True``). Style rows 0-2 read c3, 3-6 read p2, the rest p1, each through
a ``GradualStyleBlock`` (stride-2 3x3 convs + LeakyReLU(0.01) down to 1x1, then an equalised linear layer).

* e4e: one ``w0 = styles[0](c3)`` broadcast to every row plus per-row deltas ``styles[i]`` for i = 1..stage.
* pSp: every row predicted on its own.

Input: ``[B, input_nc, 256, 256]`` in [-1, 1] (FFHQ-aligned faces for the released models). Output: W+
``[B, n_styles, style_dim]`` (18 for a 1024 px generator, 14 for 256 px), plus ``latent_avg`` when
``add_latent_avg`` is set (pSp/e4e's ``start_from_latent_avg``; HyperReenact's VoxCeleb e4e adds nothing).
Parameter names equal the official code, so ``load_e4e`` / ``load_psp`` read the released files strictly.

Smaller encoders (the face world's, ``common/stylegan2/faceworld_e4e.py``) keep the structure and the key names
and change only sizes: ``input_size`` (the style blocks' stride-2 stages follow it: c3 is ``input_size/16``, p2
``/8``, p1 ``/4``), the body's ``units`` and ``widths`` per stage (the pyramid taps stay at the ends of stages 2,
3 and 4; the pyramid width is ``widths[3]``) and ``block_width`` (the style blocks' conv width, then
``EqualLinear(block_width, style_dim)``). The defaults are the released layout; ``load_e4e`` / ``load_psp`` read
every size back off the state dict.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common.face.irse import IR_UNITS, IR_WIDTHS, build_body, get_blocks
from common.stylegan2.checkpoints import CheckpointError, load_state_dict_checked, torch_load_checkpoint
from common.stylegan2.layers import EqualLinear


class GradualStyleBlock(nn.Module):
    """``log2(spatial)`` stride-2 conv3x3 + LeakyReLU(0.01) stages to 1x1, then ``EqualLinear(width, out_c)``.

    ``width``: the convs' channels (default ``out_c``, the released layout).
    """

    def __init__(self, in_c: int, out_c: int, spatial: int, width: int | None = None) -> None:
        super().__init__()
        width = out_c if width is None else width
        self.out_c = out_c
        self.spatial = spatial
        layers: list[nn.Module] = [nn.Conv2d(in_c, width, 3, stride=2, padding=1), nn.LeakyReLU()]
        for _ in range(int(math.log2(spatial)) - 1):
            layers += [nn.Conv2d(width, width, 3, stride=2, padding=1), nn.LeakyReLU()]
        self.convs = nn.Sequential(*layers)
        self.linear = EqualLinear(width, out_c, lr_mul=1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.convs(x)
        if x.shape[-2:] != (1, 1):
            raise ValueError(
                f"GradualStyleBlock(spatial={self.spatial}) reduced its input to {tuple(x.shape[-2:])}, not 1x1: "
                f"the encoder input is larger than the input_size it was built for"
            )
        return self.linear(x.flatten(1))


def _upsample_add(x: Tensor, y: Tensor) -> Tensor:
    return F.interpolate(x, size=y.shape[-2:], mode="bilinear", align_corners=True) + y


class _PyramidEncoder(nn.Module):
    coarse_ind = 3
    middle_ind = 7

    def __init__(
        self,
        num_layers: int = 50,
        mode: str = "ir_se",
        stylegan_size: int = 1024,
        style_dim: int = 512,
        input_nc: int = 3,
        add_latent_avg: bool = False,
        input_size: int = 256,
        units: Sequence[int] | None = None,
        widths: Sequence[int] | None = None,
        block_width: int | None = None,
    ) -> None:
        super().__init__()
        if stylegan_size < 8 or stylegan_size & (stylegan_size - 1):
            raise ValueError(f"stylegan_size must be a power of two >= 8, got {stylegan_size}")
        if input_size < 32 or input_size & (input_size - 1):
            raise ValueError(f"input_size must be a power of two >= 32, got {input_size}")
        stages = get_blocks(num_layers, units, widths)
        w = [stage[0].depth for stage in stages]
        if any(w[k] == w[k - 1] for k in (1, 2, 3)):
            # The loaders find the stage boundaries (stride-2 units) by their change of width.
            raise ValueError(f"widths of stages 2-4 must each differ from the previous stage's, got {tuple(w)}")
        self.input_size = input_size
        self.units = tuple(len(stage) for stage in stages)
        self.widths = tuple(w)
        self.input_layer = nn.Sequential(
            nn.Conv2d(input_nc, w[0], 3, 1, 1, bias=False), nn.BatchNorm2d(w[0]), nn.PReLU(w[0])
        )
        self.body = build_body(num_layers, mode, units, widths)
        self.style_count = 2 * int(math.log2(stylegan_size)) - 2
        self.style_dim = style_dim
        self.block_width = style_dim if block_width is None else block_width
        # Pyramid sizes: c3 at 1/16 of the input (rows 0-2), p2 at 1/8 (rows 3-6), p1 at 1/4 (the rest).
        c3, p2, p1 = input_size // 16, input_size // 8, input_size // 4
        spatial = [c3 if i < self.coarse_ind else p2 if i < self.middle_ind else p1 for i in range(self.style_count)]
        self.styles = nn.ModuleList([GradualStyleBlock(w[3], style_dim, s, block_width) for s in spatial])
        self.latlayer1 = nn.Conv2d(w[2], w[3], kernel_size=1, stride=1, padding=0)
        self.latlayer2 = nn.Conv2d(w[1], w[3], kernel_size=1, stride=1, padding=0)
        self.add_latent_avg = add_latent_avg
        self.register_buffer("latent_avg", None, persistent=False)
        # Indices of the body taps c1, c2, c3 (ends of stages 2, 3 and 4: 128, 256, 512 channels when released).
        n = self.units
        self._taps = (n[0] + n[1] - 1, n[0] + n[1] + n[2] - 1, sum(n) - 1)

    @property
    def n_styles(self) -> int:
        return self.style_count

    frozen = False

    def freeze(self) -> _PyramidEncoder:
        """Evaluation mode for good: no parameter gradients, and ``train()`` of a parent keeps BatchNorm in eval."""
        self.frozen = True
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)
        return self

    def train(self, mode: bool = True) -> _PyramidEncoder:
        return super().train(mode and not self.frozen)

    def pyramid(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Backbone taps ``(c1, c2, c3)``: ``widths[1:]`` channels (released: 128, 256, 512) at 1/4, 1/8 and 1/16
        of the input size."""
        if x.ndim != 4 or x.shape[1] != self.input_layer[0].in_channels:
            raise ValueError(
                f"{type(self).__name__} expects [B, {self.input_layer[0].in_channels}, H, W], got {tuple(x.shape)}"
            )
        x = self.input_layer(x)
        c1 = c2 = None
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i == self._taps[0]:
                c1 = x
            elif i == self._taps[1]:
                c2 = x
        return c1, c2, x

    def _finish(self, w: Tensor) -> Tensor:
        if self.add_latent_avg:
            if self.latent_avg is None:
                raise ValueError(f"{type(self).__name__}.add_latent_avg is set but latent_avg was never loaded")
            w = w + self.latent_avg.to(w.dtype)
        return w

    def set_latent_avg(self, latent_avg: Tensor | None) -> None:
        """Store ``latent_avg`` (``[D]``, ``[1, D]`` or ``[n_styles, D]``) as ``[n_styles, D]``."""
        if latent_avg is None:
            self.latent_avg = None
            return
        la = latent_avg.detach().float()
        if la.shape[-1] != self.style_dim or la.ndim > 2 or (la.ndim == 2 and la.shape[0] not in (1, self.style_count)):
            raise ValueError(
                f"latent_avg must be [{self.style_dim}] or [1 or {self.style_count}, {self.style_dim}], got {tuple(la.shape)}"
            )
        self.latent_avg = la.reshape(-1, self.style_dim).expand(self.style_count, -1).clone()


class GradualStyleEncoder(_PyramidEncoder):
    """pSp encoder: ``forward(x [B,C,256,256]) -> W+ [B, n_styles, style_dim]``, each row from its pyramid level."""

    def forward(self, x: Tensor) -> Tensor:
        c1, c2, c3 = self.pyramid(x)
        latents = [self.styles[j](c3) for j in range(self.coarse_ind)]
        p2 = _upsample_add(c3, self.latlayer1(c2))
        latents += [self.styles[j](p2) for j in range(self.coarse_ind, min(self.middle_ind, self.style_count))]
        if self.style_count > self.middle_ind:
            p1 = _upsample_add(p2, self.latlayer2(c1))
            latents += [self.styles[j](p1) for j in range(self.middle_ind, self.style_count)]
        return self._finish(torch.stack(latents, dim=1))


class Encoder4Editing(_PyramidEncoder):
    """e4e encoder: ``forward(x) -> W+ [B, n_styles, style_dim]`` = ``w0`` on every row + deltas on rows 1..stage.

    ``progressive_stage`` (0..n_styles-1; default all rows = e4e's ``ProgressiveStage.Inference``) limits the
    deltas as in e4e's progressive training.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.progressive_stage = self.style_count - 1

    def forward(self, x: Tensor) -> Tensor:
        c1, c2, c3 = self.pyramid(x)
        w0 = self.styles[0](c3)
        rows = [w0] * self.style_count
        features = c3
        p2 = None
        for i in range(1, min(self.progressive_stage + 1, self.style_count)):
            if i == self.coarse_ind:
                p2 = _upsample_add(c3, self.latlayer1(c2))
                features = p2
            elif i == self.middle_ind:
                features = _upsample_add(p2, self.latlayer2(c1))
            rows[i] = w0 + self.styles[i](features)
        return self._finish(torch.stack(rows, dim=1))


# --------------------------------------------------------------------------- loading


def _encoder_config(sd: Mapping[str, Tensor], source: str) -> dict:
    """Constructor kwargs of the encoder whose state dict is ``sd``, every size read off the tensors' shapes."""
    if "input_layer.0.weight" not in sd or "styles.0.linear.weight" not in sd:
        raise CheckpointError(
            f"{source}: not a pSp/e4e encoder state dict (no 'input_layer.0.weight' / 'styles.0.linear.weight'; "
            f"first keys: {list(sd)[:5]})"
        )
    n_styles = max(int(m.group(1)) for k in sd if (m := re.match(r"styles\.(\d+)\.", k))) + 1
    if n_styles % 2:
        raise CheckpointError(f"{source}: {n_styles} style blocks; a StyleGAN2 W+ has an even number of rows")
    n_units = max(int(m.group(1)) for k in sd if (m := re.match(r"body\.(\d+)\.", k))) + 1
    # Stages: a new one starts where a unit changes the width (those units carry a shortcut convolution).
    units, widths = [0], [int(sd["input_layer.0.weight"].shape[0])]
    for i in range(n_units):
        key = f"body.{i}.res_layer.1.weight"
        if key not in sd:
            raise CheckpointError(f"{source}: body unit {i} has no '{key}'")
        depth, cin = (int(d) for d in sd[key].shape[:2])
        if cin != depth:
            units.append(0)
            widths.append(depth)
        units[-1] += 1
    if len(units) != 4:
        raise CheckpointError(
            f"{source}: the body has {len(units)} stages (units {units}, widths {widths}); the encoder needs 4"
        )
    n_convs = len([k for k in sd if re.fullmatch(r"styles\.0\.convs\.\d+\.weight", k)])
    mode = "ir_se" if any(k.endswith("res_layer.5.fc1.weight") for k in sd) else "ir"
    style_dim = int(sd["styles.0.linear.weight"].shape[0])
    block_width = int(sd["styles.0.linear.weight"].shape[1])
    layers = next((n for n, u in IR_UNITS.items() if u == tuple(units)), None)
    return dict(
        num_layers=layers or 50,
        mode=mode,
        stylegan_size=2 ** ((n_styles + 2) // 2),
        style_dim=style_dim,
        input_nc=int(sd["input_layer.0.weight"].shape[1]),
        input_size=16 * 2 ** max(n_convs, 1),
        units=None if layers else tuple(units),
        widths=None if tuple(widths) == IR_WIDTHS else tuple(widths),
        block_width=None if block_width == style_dim else block_width,
    )


def _read_encoder_file(path: str | os.PathLike) -> tuple[dict[str, Tensor], Tensor | None, dict, str]:
    """(encoder state dict, latent_avg or None, opts, format) of an e4e/pSp/HyperReenact encoder file."""
    ckpt = torch_load_checkpoint(path)
    if not isinstance(ckpt, Mapping):
        raise CheckpointError(f"{path}: expected a dict, got {type(ckpt).__name__}")
    la = ckpt.get("latent_avg") if isinstance(ckpt.get("latent_avg"), Tensor) else None
    opts = ckpt.get("opts") if isinstance(ckpt.get("opts"), Mapping) else {}
    if "e" in ckpt:  # HyperReenact's e4e-voxceleb.pt
        return dict(ckpt["e"]), la, dict(opts), "hyperreenact"
    if "state_dict" in ckpt:  # pSp / e4e training checkpoints: encoder.* (+ decoder.*)
        sd = {k[len("encoder.") :]: v for k, v in ckpt["state_dict"].items() if k.startswith("encoder.")}
        if not sd:
            raise CheckpointError(f"{path}: 'state_dict' has no 'encoder.*' keys")
        return sd, la, dict(opts), "psp"
    if "input_layer.0.weight" in ckpt:
        return dict(ckpt), la, {}, "plain"
    raise CheckpointError(
        f"{path}: no encoder found (looked for 'e', 'state_dict' with 'encoder.*', or a bare state dict)"
    )


def _fill_bn_counters(model: nn.Module, sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """Files saved before PyTorch 0.4.1 lack BatchNorm ``num_batches_tracked``; it does not affect eval, so add 0."""
    own = model.state_dict()
    for k in own:
        if k.endswith("num_batches_tracked") and k not in sd:
            sd[k] = torch.zeros((), dtype=torch.long)
    return sd


def _load_encoder(
    cls: type[_PyramidEncoder], path, device, add_latent_avg: bool | None, expect: str
) -> _PyramidEncoder:
    sd, la, opts, fmt = _read_encoder_file(path)
    enc_type = opts.get("encoder_type")
    if enc_type is not None and enc_type != expect:
        raise CheckpointError(
            f"{path}: opts.encoder_type is {enc_type!r}, not {expect!r} (use load_e4e for Encoder4Editing, "
            f"load_psp for GradualStyleEncoder)"
        )
    cfg = _encoder_config(sd, str(path))
    if add_latent_avg is None:
        # pSp/e4e add latent_avg when trained with start_from_latent_avg; HyperReenact's encoder adds nothing.
        add_latent_avg = bool(opts.get("start_from_latent_avg", la is not None)) and fmt != "hyperreenact"
    model = cls(**cfg, add_latent_avg=add_latent_avg)
    load_state_dict_checked(model, _fill_bn_counters(model, sd), str(path))
    if la is not None:
        try:
            model.set_latent_avg(la)
        except ValueError as e:
            raise CheckpointError(f"{path}: {e}") from None
    if add_latent_avg and model.latent_avg is None:
        raise CheckpointError(f"{path}: add_latent_avg requested but the file has no 'latent_avg'")
    return model.to(device).eval()


def load_e4e(
    path: str | os.PathLike, device: str | torch.device = "cpu", add_latent_avg: bool | None = None
) -> Encoder4Editing:
    """``Encoder4Editing`` from a released file, architecture inferred, loaded strictly, in eval mode.

    Formats: e4e/pSp training checkpoints (``{'state_dict': {'encoder.*', 'decoder.*'}, 'opts', 'latent_avg'}``,
    e.g. ``e4e_ffhq_encode.pt``: 18 styles), HyperReenact's ``{'e': state dict}`` (``e4e-voxceleb.pt``: 14 styles),
    or a bare encoder state dict. add_latent_avg: default = the file's ``opts.start_from_latent_avg`` (else True
    when the file has ``latent_avg``), always False for HyperReenact's format (its code adds none).
    """
    return _load_encoder(Encoder4Editing, Path(path), device, add_latent_avg, "Encoder4Editing")


def load_psp(
    path: str | os.PathLike, device: str | torch.device = "cpu", add_latent_avg: bool | None = None
) -> GradualStyleEncoder:
    """pSp ``GradualStyleEncoder`` from a released pSp checkpoint (same formats and rules as ``load_e4e``)."""
    return _load_encoder(GradualStyleEncoder, Path(path), device, add_latent_avg, "GradualStyleEncoder")
