"""Loading StyleGAN2 generators from the files people have: rosinality ``.pt`` and NVIDIA stylegan2-ada/stylegan3.

* ``load_generator(path)``: rosinality files (``convert_weight.py`` output ``{'g_ema', 'latent_avg'}``, training
  checkpoints ``{'g', 'd', 'g_ema', ..., 'args': argparse.Namespace}``, a bare ``g_ema`` state dict, or a pSp/e4e
  checkpoint whose ``state_dict`` holds ``decoder.*``). Read with ``torch.load(weights_only=True)``; the only
  extra class allowed is ``argparse.Namespace``. The architecture is inferred from the state dict.
* ``convert_nvidia_state_dict(sd)``: NVIDIA ``G_ema.state_dict()`` names (stylegan2-ada-pytorch, and
  ``networks_stylegan2`` of stylegan3) -> rosinality names; ``to_nvidia_state_dict`` goes back.
* ``load_nvidia_pkl(path, allow_unsafe_pickle=True)``: NVIDIA ``.pkl`` files execute code when unpickled, so they
  are read only behind that explicit flag, with a warning; convert once and keep the ``.pt``.
"""

from __future__ import annotations

import argparse
import math
import os
import pickle
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from common.checkpoint import CheckpointError, check_finite, read_checkpoint
from common.stylegan2.generator import Generator, generator_channels


def torch_load_checkpoint(path: str | os.PathLike) -> Any:
    """``torch.load(path, weights_only=True)`` with ``argparse.Namespace`` allowed (rosinality training files).

    Raises ``CheckpointError`` naming the file and the problem (``common.checkpoint.read_checkpoint``: absent,
    empty, truncated, another format, or needing other classes).
    """
    try:
        return read_checkpoint(path, "checkpoint", safe_globals=[argparse.Namespace])
    except CheckpointError as e:
        if "refused" not in str(e):
            raise
        raise CheckpointError(
            f"{e} NVIDIA .pkl files go through load_nvidia_pkl(path, allow_unsafe_pickle=True)."
        ) from None


def _max_index(sd: Mapping[str, Tensor], pattern: str) -> int:
    idx = [int(m.group(1)) for k in sd if (m := re.match(pattern, k))]
    return max(idx) if idx else -1


def infer_generator_config(sd: Mapping[str, Tensor], source: str = "state dict") -> dict[str, int]:
    """Generator kwargs (size, style_dim, n_mlp, channel_multiplier, channel_max) read off a rosinality state dict."""
    if "input.input" not in sd or "style.1.weight" not in sd:
        raise CheckpointError(
            f"{source}: not a rosinality StyleGAN2 generator state dict (no 'input.input' / 'style.1.weight'; "
            f"first keys: {list(sd)[:5]})"
        )
    style_dim = sd["style.1.weight"].shape[1]
    n_mlp = _max_index(sd, r"style\.(\d+)\.")
    size = 2 ** (_max_index(sd, r"to_rgbs\.(\d+)\.") + 3)
    channel_max = int(sd["input.input"].shape[1])
    found = [int(sd["input.input"].shape[1])]
    for k in range(int(math.log2(size)) - 2):
        key = f"convs.{2 * k}.conv.weight"
        if key not in sd:
            raise CheckpointError(f"{source}: missing key {key!r}")
        found.append(int(sd[key].shape[1]))
    for cm in (2, 1, 4):
        if list(generator_channels(size, cm, channel_max).values()) == found:
            return dict(size=size, style_dim=style_dim, n_mlp=n_mlp, channel_multiplier=cm, channel_max=channel_max)
    # NVIDIA-style widths min(channel_base // res, channel_max): the smallest fitting base is some width * res
    for base in sorted({w * 2 ** (k + 2) for k, w in enumerate(found)}):
        try:
            widths = list(generator_channels(size, 2, channel_max, base).values())
        except ValueError:
            continue
        if widths == found:
            return dict(
                size=size, style_dim=style_dim, n_mlp=n_mlp, channel_multiplier=2, channel_max=channel_max,
                channel_base=base,
            )  # fmt: skip
    raise CheckpointError(
        f"{source}: channel widths {found} (4 px .. {size} px) match no channel_multiplier in (1, 2, 4) and no "
        f"channel_base"
    )


def load_state_dict_checked(module: torch.nn.Module, sd: Mapping[str, Tensor], source: str) -> None:
    """Strict ``load_state_dict`` whose error names every missing, unexpected and reshaped key and the file;
    tensors with NaN/Inf are refused (``common.checkpoint.check_finite``; ``$PAPERLAB_ALLOW_NONFINITE=1`` allows)."""
    own = module.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    reshaped = [
        f"{k}: file {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or reshaped:
        parts = []
        if missing:
            parts.append(f"missing keys: {missing}")
        if unexpected:
            parts.append(f"unexpected keys: {unexpected}")
        if reshaped:
            parts.append(f"shape mismatch: {reshaped}")
        raise CheckpointError(f"{source}: does not fit {type(module).__name__}; " + "; ".join(parts))
    check_finite(sd, source)
    module.load_state_dict(sd, strict=True)


def _is_nvidia(sd: Mapping) -> bool:
    return any(str(k).startswith(("synthesis.", "G_ema.synthesis.")) for k in sd)


def _extract_generator_sd(ckpt: Any, key: str | None, source: str) -> tuple[dict[str, Tensor], Tensor | None]:
    if not isinstance(ckpt, Mapping):
        raise CheckpointError(f"{source}: expected a dict, got {type(ckpt).__name__}")
    latent_avg = ckpt.get("latent_avg") if isinstance(ckpt.get("latent_avg"), Tensor) else None
    if key is not None:
        if key not in ckpt:
            raise CheckpointError(f"{source}: no key {key!r}; top-level keys: {list(ckpt)}")
        return dict(ckpt[key]), latent_avg
    if "g_ema" in ckpt:
        return dict(ckpt["g_ema"]), latent_avg
    if "state_dict" in ckpt and any(k.startswith("decoder.") for k in ckpt["state_dict"]):
        sd = {k[len("decoder.") :]: v for k, v in ckpt["state_dict"].items() if k.startswith("decoder.")}
        return sd, latent_avg
    if "input.input" in ckpt:
        return dict(ckpt), None
    raise CheckpointError(
        f"{source}: no generator found (looked for 'g_ema', 'state_dict' with 'decoder.*' keys, or a bare state "
        f"dict); top-level keys: {list(ckpt)[:10]}"
    )


def load_generator(
    path: str | os.PathLike,
    key: str | None = None,
    device: str | torch.device = "cpu",
    lr_mlp: float = 0.01,
    allow_unsafe_pickle: bool = False,
) -> Generator:
    """Build a ``Generator`` from a checkpoint file, architecture inferred, loaded strictly; ``eval()`` mode.

    key: which entry holds the state dict (default: ``g_ema``, else pSp/e4e ``decoder.*``, else a bare state dict;
    ``key="g"`` takes the non-EMA generator of a training file). ``latent_avg`` of the file (``[512]`` or
    ``[n, 512]``) is kept in ``G.latent_avg`` as ``[1, 512]`` (first row). ``.pkl`` files are NVIDIA pickles and
    need ``allow_unsafe_pickle=True``. lr_mlp: the mapping network's learning-rate multiplier used in training
    (0.01 for every released model; it is not stored in the file but scales the forward).
    """
    path = Path(path)
    if path.suffix == ".pkl":
        sd, latent_avg = load_nvidia_pkl(path, allow_unsafe_pickle=allow_unsafe_pickle)
        sd, converted_avg = convert_nvidia_state_dict(sd, source=str(path))
        latent_avg = converted_avg if latent_avg is None else latent_avg
    else:
        ckpt = torch_load_checkpoint(path)
        if isinstance(ckpt, Mapping) and key is None and isinstance(ckpt.get("G_ema"), Mapping):
            ckpt = ckpt["G_ema"]  # {'G_ema': NVIDIA state dict} saved with torch.save
        if isinstance(ckpt, Mapping) and key is None and _is_nvidia(ckpt):
            sd, latent_avg = convert_nvidia_state_dict(ckpt, source=str(path))
        else:
            sd, latent_avg = _extract_generator_sd(ckpt, key, str(path))
    cfg = infer_generator_config(sd, str(path))
    g = Generator(**cfg, lr_mlp=lr_mlp)
    load_state_dict_checked(g, sd, str(path))
    if latent_avg is not None:
        latent_avg = latent_avg.float()
        if latent_avg.shape[-1] != cfg["style_dim"]:
            raise CheckpointError(
                f"{path}: latent_avg shape {tuple(latent_avg.shape)} does not end in {cfg['style_dim']}"
            )
        g.latent_avg = latent_avg.reshape(-1, cfg["style_dim"])[:1].clone()
    return g.to(device).eval()


# --------------------------------------------------------------------------- NVIDIA <-> rosinality

_NV_LAYER = {
    "weight": "conv.weight",
    "affine.weight": "conv.modulation.weight",
    "affine.bias": "conv.modulation.bias",
    "bias": "activate.bias",
    "noise_strength": "noise.weight",
}
_NV_TORGB = {
    "weight": "conv.weight",
    "affine.weight": "conv.modulation.weight",
    "affine.bias": "conv.modulation.bias",
    "bias": "bias",
}


def _nv_plan(size: int) -> list[tuple[str, str, str, int | None]]:
    """(NVIDIA layer prefix, rosinality prefix, kind, noise index) for every synthesis layer."""
    plan = [("synthesis.b4.conv1", "conv1", "conv", 0), ("synthesis.b4.torgb", "to_rgb1", "torgb", None)]
    for i in range(1, int(math.log2(size)) - 1):
        res = 4 * 2**i
        plan += [
            (f"synthesis.b{res}.conv0", f"convs.{2 * i - 2}", "conv", 2 * i - 1),
            (f"synthesis.b{res}.conv1", f"convs.{2 * i - 1}", "conv", 2 * i),
            (f"synthesis.b{res}.torgb", f"to_rgbs.{i - 1}", "torgb", None),
        ]
    return plan


def convert_nvidia_state_dict(
    sd: Mapping[str, Tensor], source: str = "NVIDIA state dict"
) -> tuple[dict[str, Tensor], Tensor | None]:
    """NVIDIA ``G_ema.state_dict()`` (stylegan2-ada-pytorch / stylegan3 ``networks_stylegan2``) -> rosinality keys.

    Returns ``(state dict for Generator, latent_avg [style_dim] from mapping.w_avg or None)``. A ``G_ema.`` prefix
    is stripped. Every NVIDIA key must be used: conditional mappings (``mapping.embed``), StyleGAN3 -T/-R
    synthesis layers and unknown keys raise ``CheckpointError`` listing them. Affine biases already include the
    +1 of TF; conv weights need no flip (both PyTorch ports store the same orientation). Differences the state
    dict cannot carry: ADA's ``conv_clamp=256`` and fp16 layers are not reproduced (outputs of clamped layers
    may differ slightly).
    """
    if any(k.startswith("G_ema.") for k in sd):
        sd = {k[len("G_ema.") :]: v for k, v in sd.items() if k.startswith("G_ema.")}
    sd = dict(sd)
    used: set[str] = set()

    def take(k: str) -> Tensor:
        if k not in sd:
            raise CheckpointError(f"{source}: missing NVIDIA key {k!r}")
        used.add(k)
        return sd[k]

    if "synthesis.b4.const" not in sd:
        raise CheckpointError(
            f"{source}: no 'synthesis.b4.const': not a StyleGAN2 (ADA) generator; StyleGAN3 -T/-R networks have a "
            f"different synthesis network and cannot be converted"
        )
    n_fc = _max_index(sd, r"mapping\.fc(\d+)\.weight") + 1
    size = max(int(m.group(1)) for k in sd if (m := re.match(r"synthesis\.b(\d+)\.", k)))
    out: dict[str, Tensor] = {}
    for i in range(n_fc):
        out[f"style.{i + 1}.weight"] = take(f"mapping.fc{i}.weight")
        out[f"style.{i + 1}.bias"] = take(f"mapping.fc{i}.bias")
    latent_avg = take("mapping.w_avg") if "mapping.w_avg" in sd else None
    out["input.input"] = take("synthesis.b4.const").unsqueeze(0)
    for nv, ro, kind, noise_idx in _nv_plan(size):
        names = _NV_LAYER if kind == "conv" else _NV_TORGB
        for nv_name, ro_name in names.items():
            t = take(f"{nv}.{nv_name}")
            if nv_name == "weight":
                t = t.unsqueeze(0)
            elif nv_name == "noise_strength":
                t = t.reshape(1)
            elif kind == "torgb" and nv_name == "bias":
                t = t.reshape(1, 3, 1, 1)
            out[f"{ro}.{ro_name}"] = t
        if noise_idx is not None:
            out[f"noises.noise_{noise_idx}"] = take(f"{nv}.noise_const")[None, None]
        if kind == "conv":
            f = take(f"{nv}.resample_filter")  # rosinality bakes the upsampling gain 4 into its blur kernels
            if nv.endswith("conv0"):
                out[f"{ro}.conv.blur.kernel"] = f * 4
        else:
            block = nv.rsplit(".", 1)[0]
            f = take(f"{block}.resample_filter")
            if block != "synthesis.b4":
                out[f"{ro}.upsample.kernel"] = f * 4
    left = [k for k in sd if k not in used]
    if left:
        raise CheckpointError(f"{source}: NVIDIA keys with no rosinality counterpart (not converted): {left}")
    return out, latent_avg


def to_nvidia_state_dict(sd: Mapping[str, Tensor], latent_avg: Tensor | None = None) -> dict[str, Tensor]:
    """rosinality generator state dict -> NVIDIA ``G_ema`` names (inverse of ``convert_nvidia_state_dict``).

    ``resample_filter`` buffers are written for every block and every conv layer, as NVIDIA registers them
    (b4's from the first up-conv); ``mapping.w_avg`` only when ``latent_avg`` is given.
    """
    cfg = infer_generator_config(sd)
    out: dict[str, Tensor] = {}
    for i in range(cfg["n_mlp"]):
        out[f"mapping.fc{i}.weight"] = sd[f"style.{i + 1}.weight"]
        out[f"mapping.fc{i}.bias"] = sd[f"style.{i + 1}.bias"]
    if latent_avg is not None:
        out["mapping.w_avg"] = latent_avg.reshape(-1)[: cfg["style_dim"]]
    out["synthesis.b4.const"] = sd["input.input"][0]
    for nv, ro, kind, noise_idx in _nv_plan(cfg["size"]):
        names = _NV_LAYER if kind == "conv" else _NV_TORGB
        for nv_name, ro_name in names.items():
            t = sd[f"{ro}.{ro_name}"]
            if nv_name == "weight":
                t = t[0]
            elif nv_name == "noise_strength":
                t = t.reshape(())
            elif kind == "torgb" and nv_name == "bias":
                t = t.reshape(3)
            out[f"{nv}.{nv_name}"] = t
        if noise_idx is not None:
            out[f"{nv}.noise_const"] = sd[f"noises.noise_{noise_idx}"][0, 0]
        if kind == "conv":
            # Every NVIDIA SynthesisLayer and SynthesisBlock holds the filter; b4 has none of its own here.
            owner = "convs.0" if ro == "conv1" else f"convs.{int(ro.split('.')[1]) // 2 * 2}"
            f = sd[f"{owner}.conv.blur.kernel"] / 4
            out[f"{nv}.resample_filter"] = f
            out[f"{nv.rsplit('.', 1)[0]}.resample_filter"] = f
    return out


def load_nvidia_pkl(
    path: str | os.PathLike, allow_unsafe_pickle: bool = False
) -> tuple[dict[str, Tensor], Tensor | None]:
    """Read ``G_ema``'s state dict from an NVIDIA stylegan2-ada/stylegan3 ``.pkl`` (UNSAFE: runs pickled code).

    Needs ``allow_unsafe_pickle=True`` and NVIDIA's ``dnnlib`` and ``torch_utils`` importable (their repository
    on ``PYTHONPATH``). Returns ``(NVIDIA-named state dict, None)``; pass it to ``convert_nvidia_state_dict``.
    Better: convert once and save ``{'g_ema': ..., 'latent_avg': ...}`` as a ``.pt`` for ``load_generator``.
    """
    path = Path(path)
    if not allow_unsafe_pickle:
        raise CheckpointError(
            f"{path}: NVIDIA .pkl files embed Python code that runs when unpickled; pass allow_unsafe_pickle=True "
            f"only for a file you trust (from NVIDIA's own release), or convert a plain state dict with "
            f"convert_nvidia_state_dict()"
        )
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    warnings.warn(f"{path}: unpickling an NVIDIA network pickle executes code from the file", stacklevel=2)
    try:
        with open(path, "rb") as f:
            data = pickle.load(f)  # noqa: S301 - explicit opt-in above
    except ModuleNotFoundError as e:
        raise CheckpointError(
            f"{path}: unpickling needs module {e.name!r}: put NVIDIA's stylegan2-ada-pytorch or stylegan3 "
            f"repository on PYTHONPATH (it provides dnnlib and torch_utils)"
        ) from None
    if not isinstance(data, Mapping) or "G_ema" not in data:
        raise CheckpointError(f"{path}: expected a dict with 'G_ema', got {type(data).__name__}")
    g = data["G_ema"]
    sd = g.state_dict() if hasattr(g, "state_dict") else g
    return {k: v.detach().float().cpu() for k, v in sd.items()}, None
