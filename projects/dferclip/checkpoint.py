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
    """Unpickle an official checkpoint with the allow-list; returns the dict (``state_dict`` without ``module.``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"DFER-CLIP checkpoint not found: {path}")
    try:
        with torch.serialization.safe_globals(_allowed_globals()):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - re-raised with the file name
        raise RuntimeError(
            f"{path}: cannot load as an official DFER-CLIP checkpoint ({type(e).__name__}: {e}); "
            "only tensors, numbers, numpy arrays and the RecorderMeter helper are accepted"
        ) from e
    if isinstance(ckpt, Mapping) and "state_dict" in ckpt:
        sd = ckpt["state_dict"]
    elif isinstance(ckpt, Mapping) and all(isinstance(v, Tensor) for v in ckpt.values()):
        sd, ckpt = ckpt, {}
    else:
        raise ValueError(f"{path}: expected a dict with a 'state_dict' entry, got {type(ckpt).__name__}")
    out = dict(ckpt)
    out["state_dict"] = {k.removeprefix("module."): v for k, v in sd.items()}
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


def map_official_state_dict(sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Official ``GenerateModel`` keys (no ``module.``) -> ``DFERCLIP`` keys. ``clip_model_.*`` (a duplicate of the
    whole CLIP) is dropped; an unknown key raises ``KeyError``."""
    out: dict[str, Tensor] = {}
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
        raise KeyError(f"unexpected key {k!r} in an official DFER-CLIP state dict")
    return out


def architecture_from_state_dict(sd: Mapping[str, Tensor]) -> dict[str, Any]:
    """DFERCLIP constructor arguments and the CLIP config read off an official state dict (no ``module.``)."""
    clip_sd = {"visual." + k.removeprefix("image_encoder."): v for k, v in sd.items() if k.startswith("image_encoder.")}
    clip_sd.update({k.removeprefix("text_encoder."): v for k, v in sd.items() if k.startswith("text_encoder.")})
    if "clip_model_.token_embedding.weight" in sd:
        clip_sd["token_embedding.weight"] = sd["clip_model_.token_embedding.weight"]
    clip_cfg = clip_config_from_state_dict(clip_sd, source="official checkpoint")
    for key in ("prompt_learner.ctx", "prompt_learner.token_prefix", "temporal_net.pos_embedding"):
        if key not in sd:
            raise KeyError(f"official checkpoint lacks {key!r}")
    ctx = sd["prompt_learner.ctx"]
    depth = len({int(m.group(1)) for k in sd if (m := _TEMPORAL_RE.fullmatch(k))})
    qkv = sd["temporal_net.temporal_transformer.layers.0.0.fn.fn.to_qkv.weight"]
    inner = qkv.shape[0] // 3
    return dict(
        clip=clip_cfg,
        num_classes=int(sd["prompt_learner.token_prefix"].shape[0]),
        n_ctx=int(ctx.shape[-2]),
        class_specific_contexts=ctx.dim() == 3,
        temporal_layers=depth,
        num_frames=int(sd["temporal_net.pos_embedding"].shape[1]) - 1,
        temporal_heads=max(1, inner // 64),
        temporal_dim_head=inner // max(1, inner // 64),
        temporal_mlp_dim=int(sd["temporal_net.temporal_transformer.layers.0.1.fn.fn.net.0.weight"].shape[0]),
    )


def model_from_official_state_dict(
    sd: Mapping[str, Tensor], text_type: str | None = None, source: str = "checkpoint"
) -> tuple[DFERCLIP, dict[str, Any]]:
    """Build a ``DFERCLIP`` of the checkpoint's architecture and load every tensor (strict).

    ``text_type`` None: when the checkpoint carries CLIP's token embedding, the text type whose embeddings
    equal the stored ``token_suffix`` is chosen (it fixes the end-token positions); else ``class_descriptor``.
    Returns the model and its architecture dict (plus ``text_type``).
    """
    arch = architecture_from_state_dict(sd)
    mapped = map_official_state_dict(sd)
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
        raise ValueError(f"{source}: no text type {candidates} matches the stored prompt embeddings")
    missing, unexpected = model.load_state_dict(mapped, strict=False)
    if missing or unexpected:
        raise RuntimeError(f"{source}: key mismatch: missing {missing[:8]}, unexpected {unexpected[:8]}")
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
