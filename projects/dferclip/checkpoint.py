"""The authors' released DFER-CLIP checkpoints: safe loading, architecture read off the tensors, key mapping.

Official format (``main.py`` ``save_checkpoint``): ``torch.save({"epoch", "state_dict", "best_acc", "optimizer",
"recorder"})`` where ``state_dict`` is a ``DataParallel`` state dict (``module.`` prefixes) of ``GenerateModel``
and ``recorder`` a pickled ``__main__.RecorderMeter`` (numpy arrays of the training curves). We unpickle it with
``torch.load(weights_only=True)`` plus an explicit allow-list: the recorder becomes an inert attribute holder and
only numpy's array reconstruction is allowed besides torch's own tensors. Nothing in the file is executed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from common.checkpoint import CheckpointError, check_finite, describe, read_checkpoint
from projects.dferclip.model import DFERCLIP, build_clip, clip_config_from_state_dict
from projects.dferclip.text import TEXT_TYPES


class RecorderMeter:
    """Inert stand-in for the official training-curve helper; unpickling only fills its ``__dict__``."""


def _np_alias(obj: Any, *names: str) -> list[tuple[Any, str]]:
    return [(obj, n) for n in names]


def _allowed_globals() -> list[Any]:
    core = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
    allowed: list[Any] = [(RecorderMeter, "__main__.RecorderMeter"), np.ndarray, np.dtype]
    allowed += _np_alias(core._reconstruct, "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct")
    allowed += _np_alias(core.scalar, "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar")
    allowed += [type(np.dtype(t)) for t in (np.float32, np.float64, np.int64, np.int32)]
    return allowed


def load_official_checkpoint_file(path: str | Path) -> dict[str, Any]:
    """Unpickle an official checkpoint with the allow-list; returns the dict (``state_dict`` without ``module.``).

    Every failure is a ``CheckpointError`` naming the file (see ``common.checkpoint.read_checkpoint``); tensors
    with NaN/Inf are refused (``check_finite``).
    """
    path = Path(path)
    what = "official DFER-CLIP checkpoint"
    ckpt = read_checkpoint(path, what, safe_globals=_allowed_globals())
    if isinstance(ckpt, Mapping) and isinstance(ckpt.get("state_dict"), Mapping):
        sd = ckpt["state_dict"]
    elif isinstance(ckpt, Mapping) and ckpt and all(isinstance(v, Tensor) for v in ckpt.values()):
        sd, ckpt = ckpt, {}
    else:
        raise CheckpointError(
            f"{what} {path}: expected the official format (a dict with a 'state_dict' of GenerateModel's tensors), "
            f"got {describe(ckpt)}"
        )
    bad = [k for k, v in sd.items() if not isinstance(v, Tensor)]
    if bad:
        raise CheckpointError(f"{what} {path}: non-tensor entries in its state_dict: {bad[:5]}")
    out = dict(ckpt)
    out["state_dict"] = {k.removeprefix("module."): v for k, v in sd.items()}
    check_finite(out["state_dict"], path)
    return out


# official temporal_net key (after "temporal_net.temporal_transformer.layers.{i}.") -> ours (after "blocks.{i}.")
_TEMPORAL_MAP = {
    "0.fn.norm.weight": "norm1.weight",
    "0.fn.norm.bias": "norm1.bias",
    "0.fn.fn.to_qkv.weight": "qkv.weight",
    "0.fn.fn.to_out.0.weight": "proj.weight",
    "0.fn.fn.to_out.0.bias": "proj.bias",
    "1.fn.norm.weight": "norm2.weight",
    "1.fn.norm.bias": "norm2.bias",
    "1.fn.fn.net.0.weight": "fc1.weight",
    "1.fn.fn.net.0.bias": "fc1.bias",
    "1.fn.fn.net.3.weight": "fc2.weight",
    "1.fn.fn.net.3.bias": "fc2.bias",
}
_TEMPORAL_RE = re.compile(r"temporal_net\.temporal_transformer\.layers\.(\d+)\.(.+)")


def map_official_state_dict(sd: Mapping[str, Tensor], source: str = "official state dict") -> dict[str, Tensor]:
    """Official ``GenerateModel`` keys (no ``module.``) -> ``DFERCLIP`` keys. ``clip_model_.*`` (a duplicate of the
    whole CLIP) is dropped; unknown keys raise ``CheckpointError`` naming ``source`` and them."""
    out: dict[str, Tensor] = {}
    unknown = []
    for k, v in sd.items():
        if k.startswith("clip_model_."):
            continue
        if k.startswith(("image_encoder.", "text_encoder.", "prompt_learner.")) or k in (
            "temporal_net.cls_token",
            "temporal_net.pos_embedding",
        ):
            out[k] = v
            continue
        m = _TEMPORAL_RE.fullmatch(k)
        if m and m.group(2) in _TEMPORAL_MAP:
            out[f"temporal_net.blocks.{m.group(1)}.{_TEMPORAL_MAP[m.group(2)]}"] = v
            continue
        unknown.append(k)
    if unknown:
        more = f" and {len(unknown) - 8} more" if len(unknown) > 8 else ""
        raise CheckpointError(f"{source}: unexpected keys for an official DFER-CLIP state dict: {unknown[:8]}{more}")
    return out


def architecture_from_state_dict(sd: Mapping[str, Tensor], source: str = "official checkpoint") -> dict[str, Any]:
    """DFERCLIP constructor arguments and the CLIP config read off an official state dict (no ``module.``).

    Every tensor a size is read from is checked for rank and for agreement with the CLIP widths first
    (``CheckpointError`` naming ``source`` and the tensor), so a damaged file never builds a model.
    """
    names = {"visual." + k.removeprefix("image_encoder."): k for k in sd if k.startswith("image_encoder.")}
    names.update({k.removeprefix("text_encoder."): k for k in sd if k.startswith("text_encoder.")})
    if "clip_model_.token_embedding.weight" in sd:
        names["token_embedding.weight"] = "clip_model_.token_embedding.weight"
    for key in ("visual.conv1.weight", "visual.positional_embedding", "visual.proj"):
        names.setdefault(key, "image_encoder." + key.removeprefix("visual."))
    for key in ("ln_final.weight", "positional_embedding", "text_projection"):
        names.setdefault(key, "text_encoder." + key)
    clip_sd = {ours: sd[theirs] for ours, theirs in names.items() if theirs in sd}
    clip_cfg = clip_config_from_state_dict(clip_sd, source=source, key_names=names)
    width, dim = clip_cfg["text_width"], clip_cfg["embed_dim"]
    ctx = sd.get("prompt_learner.ctx")
    if not isinstance(ctx, Tensor) or ctx.ndim not in (2, 3) or ctx.shape[-1] != width or 0 in ctx.shape:
        raise CheckpointError(_shape_problem(source, "prompt_learner.ctx", ctx, f"[classes, contexts, {width}] or [contexts, {width}]"))  # fmt: skip
    prefix = _checked(sd, "prompt_learner.token_prefix", source, lambda s: len(s) == 3 and s[1] == 1 and s[2] == width,
                      f"[classes, 1, {width}]")  # fmt: skip
    if ctx.ndim == 3 and ctx.shape[0] != prefix.shape[0]:
        raise CheckpointError(
            f"{source}: prompt_learner.ctx has {ctx.shape[0]} classes but prompt_learner.token_prefix {prefix.shape[0]}"
        )
    pos = _checked(sd, "temporal_net.pos_embedding", source, lambda s: len(s) == 3 and s[0] == 1 and s[2] == dim,
                   f"[1, frames + 1, {dim}]")  # fmt: skip
    depth = len({int(m.group(1)) for k in sd if (m := _TEMPORAL_RE.fullmatch(k))})
    if depth == 0:
        raise CheckpointError(f"{source}: no temporal_net.temporal_transformer.layers.* keys")
    layer = "temporal_net.temporal_transformer.layers.0."
    qkv = _checked(sd, layer + "0.fn.fn.to_qkv.weight", source, lambda s: len(s) == 2 and s[0] % 3 == 0 and s[1] == dim,
                   f"[3 * inner, {dim}]")  # fmt: skip
    mlp = _checked(sd, layer + "1.fn.fn.net.0.weight", source, lambda s: len(s) == 2 and s[1] == dim, f"[mlp, {dim}]")
    inner = qkv.shape[0] // 3
    return dict(
        clip=clip_cfg,
        num_classes=int(prefix.shape[0]),
        n_ctx=int(ctx.shape[-2]),
        class_specific_contexts=ctx.dim() == 3,
        temporal_layers=depth,
        num_frames=int(pos.shape[1]) - 1,
        temporal_heads=max(1, inner // 64),
        temporal_dim_head=inner // max(1, inner // 64),
        temporal_mlp_dim=int(mlp.shape[0]),
    )


def _shape_problem(source: str, key: str, t: Any, layout: str) -> str:
    if t is None:
        return f"{source}: lacks {key!r}"
    shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
    return f"{source}: {key} has shape {shape}; expected {layout}"


def _checked(sd: Mapping[str, Tensor], key: str, source: str, ok, layout: str) -> Tensor:
    """``sd[key]``, a non-empty tensor whose shape passes ``ok``, or a ``CheckpointError`` naming it."""
    t = sd.get(key)
    if not isinstance(t, Tensor) or 0 in t.shape or not ok(tuple(t.shape)):
        raise CheckpointError(_shape_problem(source, key, t, layout))
    return t


def model_from_official_state_dict(
    sd: Mapping[str, Tensor], text_type: str | None = None, source: str = "checkpoint"
) -> tuple[DFERCLIP, dict[str, Any]]:
    """Build a ``DFERCLIP`` of the checkpoint's architecture and load every tensor (strict).

    ``text_type`` None: when the checkpoint carries CLIP's token embedding, the text type whose embeddings
    equal the stored ``token_suffix`` is chosen (it fixes the end-token positions); else ``class_descriptor``.
    Returns the model and its architecture dict (plus ``text_type``).
    """
    arch = architecture_from_state_dict(sd, source)
    mapped = map_official_state_dict(sd, source)
    candidates = [text_type] if text_type else list(TEXT_TYPES)
    emb = sd.get("clip_model_.token_embedding.weight")
    chosen, model = None, None
    for tt in candidates:
        kwargs = {k: v for k, v in arch.items() if k != "clip"}
        try:
            model = DFERCLIP(build_clip(arch["clip"]), text_type=tt, **kwargs)
        except ValueError:
            continue
        suffix = mapped["prompt_learner.token_suffix"]
        if model.prompt_learner.token_suffix.shape != suffix.shape:
            continue
        if emb is not None and text_type is None:
            model.prompt_learner.set_token_embedding(torch.nn.Embedding.from_pretrained(emb.float()))
            if not torch.equal(model.prompt_learner.token_suffix, suffix.float()):
                continue
        chosen = tt
        break
    if chosen is None or model is None:
        raise CheckpointError(f"{source}: no text type {candidates} matches the stored prompt embeddings")
    own = model.state_dict()
    reshaped = [f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}" for k, v in mapped.items()
                if k in own and v.shape != own[k].shape]  # fmt: skip
    missing, unexpected = sorted(set(own) - set(mapped)), sorted(set(mapped) - set(own))
    if missing or unexpected or reshaped:
        raise CheckpointError(
            f"{source}: does not fit the architecture read off it: missing {missing[:8]}, unexpected "
            f"{unexpected[:8]}, shape mismatches {reshaped[:8]}"
        )
    model.load_state_dict(mapped, strict=True)
    arch["text_type"] = chosen
    return model, arch


def load_official_checkpoint(path: str | Path, text_type: str | None = None) -> tuple[DFERCLIP, dict[str, Any]]:
    """An official ``.pth`` -> (``DFERCLIP`` with its weights, architecture dict incl. ``epoch``/``best_acc``)."""
    ckpt = load_official_checkpoint_file(path)
    model, arch = model_from_official_state_dict(ckpt["state_dict"], text_type=text_type, source=str(path))
    for k in ("epoch", "best_acc"):
        if k in ckpt:
            v = ckpt[k]
            arch[k] = v.item() if isinstance(v, Tensor) else v
    return model, arch


def module_from_official_checkpoint(path: str | Path, text_type: str | None = None):
    """A ``DFERCLIPModule`` holding an official checkpoint, ready for ``Trainer.test`` / ``predict``.

    Its hyperparameters describe the architecture read off the file (``clip_weights`` None), so a Lightning
    checkpoint saved from it reloads with ``load_from_checkpoint`` as usual.
    """
    from projects.dferclip.module import DFERCLIPModule

    model, arch = load_official_checkpoint(path, text_type=text_type)
    kwargs = {k: arch[k] for k in ("num_classes", "n_ctx", "class_specific_contexts", "temporal_layers",
                                   "num_frames", "temporal_heads", "temporal_dim_head", "temporal_mlp_dim",
                                   "text_type")}  # fmt: skip
    module = DFERCLIPModule(clip_arch=arch["clip"], clip_weights=None, **kwargs)
    module.model.load_state_dict(model.state_dict())
    return module
