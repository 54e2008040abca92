"""HyperReenact's reenactment module and hypernetwork, keyed like the official ``HypernetworkBlocks_edit``.

The released ``hypernetwork.pt`` holds ``hypernet.<key>`` for every key of :class:`HypernetworkBlocks` at its
default (full) widths; :func:`load_released_hypernet` strips the prefix and loads it strictly.

Layer indexing (the official ``n_hypernet_outputs``): every modulated conv of the generator in forward order,
ToRGB included, so 20 entries at 256 px: 0 = ``conv1``, 1 = ``to_rgb1``, then per block ``2+3k`` (up-conv),
``3+3k`` (conv), ``4+3k`` (ToRGB). Offsets exist for the non-ToRGB entries only; :func:`deltas_for_generator`
turns the 20-entry list into the 13-entry ``weight_deltas`` list of :meth:`Generator.synthesis`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

from common.checkpoint import check_finite, read_checkpoint

COMBINE_MODES = ("matmul", "elementwise")


class LayerShape(NamedTuple):
    """Kernel size and channels of one modulated conv (the official table stores ``[kernel, in, out]``)."""

    kernel: int
    in_channels: int
    out_channels: int


def official_layer_table(conv_shapes: Sequence[Sequence[int]]) -> list[LayerShape | None]:
    """Interleave the non-ToRGB conv shapes with ``None`` at the ToRGB positions (official indexing).

    Args:
        conv_shapes: ``Generator.conv_weight_shapes()``, one ``(out, in, k, k)`` per non-ToRGB modulated conv in
            forward order (13 at 256 px: ``conv1`` then two per block).
    Returns:
        list of length ``len(conv_shapes) + (len(conv_shapes) + 1) // 2`` (20 at 256 px).
    """
    n = len(conv_shapes)
    if n < 1 or n % 2 != 1:
        raise ValueError(f"expected conv1 plus two convs per block (an odd count), got {n} conv shapes")
    table: list[LayerShape | None] = []
    for j, shape in enumerate(conv_shapes):
        if len(shape) != 4:
            raise ValueError(f"conv shape {j} must be (out, in, k, k), got {tuple(shape)}")
        out_c, in_c, k, _ = (int(s) for s in shape)
        table.append(LayerShape(k, in_c, out_c))
        if j == 0 or j % 2 == 0:  # conv1 and every block's second conv are followed by a ToRGB
            table.append(None)
    return table


def torgb_indices(n_outputs: int) -> list[int]:
    """Official indices of the ToRGB layers among ``n_outputs`` modulated layers (1, 4, 7, ...)."""
    return [1] + list(range(4, n_outputs, 3))


def deltas_for_generator(deltas: Sequence[Tensor | None]) -> list[Tensor | None]:
    """Keep the non-ToRGB entries of an official-indexed offset list (20 -> 13 at 256 px)."""
    skip = set(torgb_indices(len(deltas)))
    return [d for i, d in enumerate(deltas) if i not in skip]


class SPADE(nn.Module):
    """gamma and beta maps from a feature map by two convolutions (weights N(0, 0.01), as the official code)."""

    def __init__(self, channels: int, kernel_size: int = 1, padding: int = 0) -> None:
        super().__init__()
        self.conv_gamma = nn.Conv2d(channels, channels, kernel_size, stride=1, padding=padding)
        self.conv_beta = nn.Conv2d(channels, channels, kernel_size, stride=1, padding=padding)
        nn.init.normal_(self.conv_gamma.weight, 0.0, 0.01)
        nn.init.normal_(self.conv_beta.weight, 0.0, 0.01)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x`` [B, C, H, W] -> (gamma, beta), each [B, C, H, W]."""
        return self.conv_gamma(x), self.conv_beta(x)


class ReenactmentModule(nn.Module):
    """Blends the pose and appearance maps: ``f_r = gamma_p (*) f_p + gamma_a (*) f_a + beta_p + beta_a``.

    ``combine="matmul"`` is the official code's ``torch.matmul``: on [B, C, H, W] maps a per-channel H x W matrix
    product (needs H == W); the released checkpoint was trained with it. ``combine="elementwise"`` is the
    Hadamard product the paper's figure draws.
    """

    def __init__(self, channels: int = 512, kernel_size: int = 1, padding: int = 0, combine: str = "matmul") -> None:
        super().__init__()
        if combine not in COMBINE_MODES:
            raise ValueError(f"combine must be one of {COMBINE_MODES}, got {combine!r}")
        self.combine = combine
        self.spade_pose = SPADE(channels, kernel_size, padding)
        self.spade_app = SPADE(channels, kernel_size, padding)

    def forward(self, f_pose: Tensor, f_app: Tensor) -> Tensor:
        """``f_pose``, ``f_app``: [B, C, S, S] (pose already projected to C channels) -> f_r [B, C, S, S]."""
        if f_pose.shape != f_app.shape:
            raise ValueError(f"pose map {tuple(f_pose.shape)} and appearance map {tuple(f_app.shape)} differ")
        gamma_p, beta_p = self.spade_pose(f_pose)
        gamma_a, beta_a = self.spade_app(f_app)
        if self.combine == "matmul":
            if f_pose.shape[-1] != f_pose.shape[-2]:
                raise ValueError(f"matmul combination needs square maps, got {tuple(f_pose.shape)}")
            return torch.matmul(gamma_p, f_pose) + torch.matmul(gamma_a, f_app) + beta_p + beta_a
        return gamma_p * f_pose + gamma_a * f_app + beta_p + beta_a


def _fmod_init(*shape: int) -> Tensor:
    # The official initialisation: fmod(N(0,1)/40, 2) (HyperStyle's), on whatever device the module is built on.
    return torch.fmod(torch.randn(*shape) / 40, 2)


class SharedWeightsHypernet(nn.Module):
    """The shared two-matrix hypernet (``mode='delta_per_channel'``): code [B, z] -> offsets [B, out, in, k, k].

    ``h = (z @ w2 + b2).view(B, in, z)``, then ``(h @ w1 + b1)`` [B, in, out] read as [B, out, in, 1, 1] (the
    official reshape; identical memory order), repeated over the k x k kernel.
    """

    def __init__(self, z_dim: int = 512, in_size: int = 512, out_size: int = 512, kernel_size: int = 3) -> None:
        super().__init__()
        self.z_dim, self.in_size, self.out_size, self.kernel_size = z_dim, in_size, out_size, kernel_size
        self.w1 = nn.Parameter(_fmod_init(z_dim, out_size))
        self.b1 = nn.Parameter(_fmod_init(out_size))
        self.w2 = nn.Parameter(_fmod_init(z_dim, in_size * z_dim))
        self.b2 = nn.Parameter(_fmod_init(in_size * z_dim))

    def forward(self, z: Tensor) -> Tensor:
        """``z`` [B, z_dim] -> [B, out, in, k, k] (a broadcast view over the kernel, per-channel values)."""
        b = z.shape[0]
        h = (torch.matmul(z, self.w2) + self.b2).view(b, self.in_size, self.z_dim)
        kernel = (torch.matmul(h, self.w1) + self.b1).view(b, self.out_size, self.in_size, 1, 1)
        return kernel.expand(b, self.out_size, self.in_size, self.kernel_size, self.kernel_size)


def _head(in_c: int, inner_c: int, out_c: int) -> nn.Sequential:
    # 3x3 p1, then three 3x3 p0 convs: 7 -> 7 -> 5 -> 3 -> 1 spatially (keys convs.0/2/4/6).
    return nn.Sequential(
        nn.Conv2d(in_c, inner_c, 3, 1, 1),
        nn.LeakyReLU(),
        nn.Conv2d(inner_c, inner_c, 3, 1, 0),
        nn.LeakyReLU(),
        nn.Conv2d(inner_c, inner_c, 3, 1, 0),
        nn.LeakyReLU(),
        nn.Conv2d(inner_c, out_c, 3, 1, 0),
        nn.LeakyReLU(),
    )


def _check_spatial(x: Tensor, head_out: Tensor) -> None:
    if head_out.shape[-2:] != (1, 1):
        raise ValueError(f"the hypernetwork heads need 7x7 feature maps (7->5->3->1), got {tuple(x.shape[-2:])}")


class HyperRefinementBlock(nn.Module):
    """Per-layer head + linear to a code, then the shared hypernet (layers whose in = out = shared width)."""

    def __init__(
        self, hypernet: SharedWeightsHypernet, n_channels: int = 512, inner_c: int = 128, out_c: int = 512
    ) -> None:
        super().__init__()
        self.convs = _head(n_channels, inner_c, out_c)
        self.linear = nn.Linear(out_c, hypernet.z_dim)
        nn.init.normal_(self.linear.weight, 0.0, 0.01)
        self.hypernet = hypernet  # the same module object in every block: its keys repeat in the state dict

    def forward(self, f: Tensor) -> Tensor:
        """``f`` [B, n_channels, 7, 7] -> offsets [B, out, in, k, k]."""
        code = self.convs(f)
        _check_spatial(f, code)
        return self.hypernet(self.linear(code.flatten(1)))


class RefinementBlock(nn.Module):
    """Per-layer head + 1x1 conv to in*out values: one offset per (out, in) pair, shared over the k x k kernel."""

    def __init__(self, shape: LayerShape, n_channels: int = 512, inner_c: int = 256, out_c: int = 512) -> None:
        super().__init__()
        self.shape = shape
        self.convs = _head(n_channels, inner_c, out_c)
        self.output = nn.Conv2d(out_c, shape.in_channels * shape.out_channels, 1, 1, 0)

    def forward(self, f: Tensor) -> Tensor:
        """``f`` [B, n_channels, 7, 7] -> offsets [B, out, in, k, k]."""
        x = self.convs(f)
        _check_spatial(f, x)
        k, in_c, out_c = self.shape
        x = self.output(x).view(-1, out_c, in_c, 1, 1)
        return x.expand(-1, out_c, in_c, k, k)


class HypernetworkBlocks(nn.Module):
    """Pose projection, reenactment module and per-layer offset heads (the official ``net.hypernet``).

    Args:
        layer_table: official-indexed list (see :func:`official_layer_table`); ``None`` marks ToRGB.
        pose_channels: channels of the pose encoder's map (DECA ResNet-50 layer4: 2048).
        feature_channels: channels of the appearance map and of the blended map (ArcFace body[23]: 512).
        shared_channels: layers with in = out = this width use the shared hypernet (512 at 256 px).
        shared_inner, refine_inner: hidden widths of the two head kinds (128 and 256 officially).
        head_channels: output width of every head (512 officially); z_dim: code size of the shared hypernet.
        layers_to_tune: official indices that get offsets (default: every non-ToRGB layer).
        shared_layers: official indices that use the shared hypernet (default: the tuned layers with
            in = out = ``shared_channels`` and the common kernel size, i.e. 0, 2, 3, 5, 6, 8, 9 at 256 px).
        combine: ``"matmul"`` (official) or ``"elementwise"`` (the paper's figure).
    """

    def __init__(
        self,
        layer_table: Sequence[LayerShape | None],
        pose_channels: int = 2048,
        feature_channels: int = 512,
        shared_channels: int = 512,
        shared_inner: int = 128,
        refine_inner: int = 256,
        head_channels: int = 512,
        z_dim: int = 512,
        layers_to_tune: Sequence[int] | None = None,
        combine: str = "matmul",
        shared_layers: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.layer_table = list(layer_table)
        self.n_outputs = len(self.layer_table)
        tunable = [i for i, s in enumerate(self.layer_table) if s is not None]
        self.layers_to_tune = tunable if layers_to_tune is None else [int(i) for i in layers_to_tune]
        bad = [i for i in self.layers_to_tune if i not in tunable]
        if bad:
            raise ValueError(f"layers_to_tune {bad} are ToRGB or out of range (tunable: {tunable})")
        self.conv_transf = nn.Conv2d(pose_channels, feature_channels, kernel_size=1, stride=1, padding=0)
        nn.init.normal_(self.conv_transf.weight, 0.0, 0.01)
        self.blend_module = ReenactmentModule(feature_channels, kernel_size=1, padding=0, combine=combine)
        kernel = next(s.kernel for s in self.layer_table if s is not None)
        self.shared_weight_hypernet = SharedWeightsHypernet(z_dim, shared_channels, shared_channels, kernel)
        self.refinement_blocks = nn.ModuleList()
        for i, shape in enumerate(self.layer_table):
            block: nn.Module | None = None
            if i in self.layers_to_tune:
                assert shape is not None
                fits = shape.in_channels == shape.out_channels == shared_channels and shape.kernel == kernel
                if shared_layers is not None and i in shared_layers and not fits:
                    raise ValueError(f"layer {i} {shape} cannot use the shared {shared_channels}-channel hypernet")
                if fits if shared_layers is None else i in shared_layers:
                    block = HyperRefinementBlock(
                        self.shared_weight_hypernet, feature_channels, shared_inner, head_channels
                    )
                else:
                    block = RefinementBlock(shape, feature_channels, refine_inner, head_channels)
            self.refinement_blocks.append(block)

    def blend(self, f_pose: Tensor, f_app: Tensor) -> Tensor:
        """Projected pose map blended with the appearance map: [B, feature_channels, 7, 7]."""
        return self.blend_module(self.conv_transf(f_pose), f_app)

    def forward(self, f_pose: Tensor, f_app: Tensor) -> list[Tensor | None]:
        """``f_pose`` [B, pose_channels, 7, 7], ``f_app`` [B, feature_channels, 7, 7] -> official-indexed list of
        offsets [B, out, in, k, k] (``None`` for ToRGB and untuned layers)."""
        f = self.blend(f_pose, f_app)
        return [None if blk is None else blk(f) for blk in self.refinement_blocks]


def released_hypernet_shapes(layer_table: Sequence[LayerShape | None] | None = None) -> dict[str, tuple[int, ...]]:
    """Every key and shape of the released ``hypernetwork.pt`` (without the ``hypernet.`` prefix), computed
    from the official definitions (not by building the 300M-parameter model)."""
    if layer_table is None:
        layer_table = official_layer_table(VOXCELEB_256_CONV_SHAPES)
    shapes: dict[str, tuple[int, ...]] = {
        "conv_transf.weight": (512, 2048, 1, 1),
        "conv_transf.bias": (512,),
    }
    for stream in ("spade_pose", "spade_app"):
        for conv in ("conv_gamma", "conv_beta"):
            shapes[f"blend_module.{stream}.{conv}.weight"] = (512, 512, 1, 1)
            shapes[f"blend_module.{stream}.{conv}.bias"] = (512,)
    hyper = {"w1": (512, 512), "b1": (512,), "w2": (512, 512 * 512), "b2": (512 * 512,)}
    shapes.update({f"shared_weight_hypernet.{k}": v for k, v in hyper.items()})

    def head(prefix: str, inner: int) -> None:
        for idx, (cin, cout) in zip((0, 2, 4, 6), ((512, inner), (inner, inner), (inner, inner), (inner, 512))):
            shapes[f"{prefix}.convs.{idx}.weight"] = (cout, cin, 3, 3)
            shapes[f"{prefix}.convs.{idx}.bias"] = (cout,)

    for i, s in enumerate(layer_table):
        if s is None:
            continue
        prefix = f"refinement_blocks.{i}"
        if s.in_channels == s.out_channels == 512:
            head(prefix, 128)
            shapes[f"{prefix}.linear.weight"] = (512, 512)
            shapes[f"{prefix}.linear.bias"] = (512,)
            shapes.update({f"{prefix}.hypernet.{k}": v for k, v in hyper.items()})
        else:
            head(prefix, 256)
            shapes[f"{prefix}.output.weight"] = (s.in_channels * s.out_channels, 512, 1, 1)
            shapes[f"{prefix}.output.bias"] = (s.in_channels * s.out_channels,)
    return shapes


# Non-ToRGB conv weights of the VoxCeleb 256 px generator (channel_multiplier 1) as (out, in, k, k).
VOXCELEB_256_CONV_SHAPES: tuple[tuple[int, int, int, int], ...] = (
    (512, 512, 3, 3),
    (512, 512, 3, 3),
    (512, 512, 3, 3),
    (512, 512, 3, 3),
    (512, 512, 3, 3),
    (512, 512, 3, 3),
    (512, 512, 3, 3),
    (256, 512, 3, 3),
    (256, 256, 3, 3),
    (128, 256, 3, 3),
    (128, 128, 3, 3),
    (64, 128, 3, 3),
    (64, 64, 3, 3),
)


def extract_hypernet_state(checkpoint: Mapping[str, object], path: str = "<checkpoint>") -> dict[str, Tensor]:
    """The ``hypernet.*`` entries of a released checkpoint (optionally wrapped in ``state_dict``), prefix removed."""
    sd = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, Mapping) else None
    if not isinstance(sd, Mapping):
        raise ValueError(f"{path}: expected a state dict (or a dict with 'state_dict'), got {type(checkpoint)}")
    out = {k[len("hypernet.") :]: v for k, v in sd.items() if k.startswith("hypernet.")}
    if not out:
        some = ", ".join(list(sd)[:5])
        raise ValueError(f"{path}: no 'hypernet.*' keys (first keys: {some}); is this HyperReenact's hypernetwork.pt?")
    return out


def load_released_hypernet(hypernet: HypernetworkBlocks, path: str | os.PathLike) -> HypernetworkBlocks:
    """Load the official ``hypernetwork.pt`` into ``hypernet`` strictly (weights_only load)."""
    ckpt = read_checkpoint(path, "hypernetwork checkpoint")
    state = extract_hypernet_state(ckpt, str(path))
    check_finite(state, path)
    try:
        hypernet.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{path}: does not match the hypernetwork definition: {err}") from err
    return hypernet
