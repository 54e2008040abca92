"""Export a Lightning checkpoint of ``projects/stylegan2`` to rosinality's training-checkpoint layout, and back.

    python -m projects.stylegan2.export runs/stylegan2/faceworld64/version_0/checkpoints/last.ckpt --out g.pt
    python -m projects.stylegan2.export runs/stylegan2/faceworld64 --out g.pt     # the newest run's last.ckpt
    python -m projects.stylegan2.export last.ckpt --out g_ema.pt --g-ema-only     # {'g_ema'} only
    python -m projects.stylegan2.export last.ckpt --out g.pt --g-ema-only --half   # float16 (what ships)

The file holds ``g``, ``d``, ``g_ema`` (rosinality's ``model.py`` key names), ``g_optim``, ``d_optim`` (Adam state
dicts in rosinality's parameter order), ``args`` (an ``argparse.Namespace`` with ``train.py``'s argument names) and
``mean_path_length``; rosinality's ``train.py --ckpt`` resumes from it, ``common.stylegan2.load_generator`` reads
its ``g_ema`` (``key="g"`` for the generator), and ``fit --model.init_from FILE`` starts a run here from it (weights,
optimiser states and the mean path length). Only ``torch.load(weights_only=True)`` is used to read.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from common.checkpoint import CheckpointError, read_checkpoint, run_checkpoint

PREFIXES = {"g": "generator.", "d": "discriminator.", "g_ema": "g_ema."}


def rosinality_args(hparams: Mapping[str, Any], iteration: int = 0, batch: int | None = None) -> argparse.Namespace:
    """``train.py``'s ``args`` for a run with these module hyperparameters (plus our width options)."""
    h = hparams
    return argparse.Namespace(
        size=h["size"], latent=h["style_dim"], n_mlp=h["n_mlp"], channel_multiplier=h["channel_multiplier"],
        lr=h["lr"], r1=h["r1"], d_reg_every=h["d_reg_every"], path_regularize=h["path_regularize"],
        g_reg_every=h["g_reg_every"], path_batch_shrink=h["path_batch_shrink"], mixing=h["mixing"],
        augment=h.get("augment") is not None, n_sample=h.get("n_sample", 64), batch=batch, start_iter=int(iteration),
        arch="stylegan2", channel_max=h.get("channel_max", 512), channel_base=h.get("channel_base"),
    )  # fmt: skip


def _read(path: str | os.PathLike, what: str) -> Any:
    return read_checkpoint(path, what, safe_globals=[argparse.Namespace])


def lightning_to_rosinality(ckpt: Mapping[str, Any], source: str = "checkpoint") -> dict[str, Any]:
    """A loaded Lightning checkpoint of ``StyleGAN2Module`` -> rosinality's training-checkpoint dict."""
    if not isinstance(ckpt, Mapping) or "state_dict" not in ckpt:
        keys = list(ckpt)[:8] if isinstance(ckpt, Mapping) else type(ckpt).__name__
        raise CheckpointError(f"{source}: not a Lightning checkpoint (no 'state_dict'; found {keys})")
    sd: Mapping[str, Tensor] = ckpt["state_dict"]
    out: dict[str, Any] = {}
    for name, prefix in PREFIXES.items():
        part = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
        if not part:
            raise CheckpointError(
                f"{source}: no '{prefix}*' weights: not a projects/stylegan2 checkpoint (keys start with "
                f"{sorted({k.split('.')[0] for k in sd})})"
            )
        out[name] = part
    opts = ckpt.get("optimizer_states") or [None, None]
    if len(opts) != 2:
        raise CheckpointError(f"{source}: expected 2 optimiser states (G, D), found {len(opts)}")
    out["g_optim"], out["d_optim"] = opts
    hp = ckpt.get("hyper_parameters") or {}
    out["args"] = rosinality_args(hp, int(ckpt.get("global_step", 0))) if "size" in hp else argparse.Namespace()
    if "mean_path_length" in sd:
        out["mean_path_length"] = sd["mean_path_length"].clone()
    return out


def export(ckpt_path: str | os.PathLike, out: str | os.PathLike, g_ema_only: bool = False, half: bool = False) -> Path:
    """Write ``ckpt_path`` (a Lightning checkpoint) as rosinality's layout to ``out``; returns ``out``.

    ``half`` stores the floating-point weights of ``g``/``d``/``g_ema`` as float16 (half the size; the loaders
    copy them into float32 modules); optimiser states are left as they are.
    """
    blob = lightning_to_rosinality(_read(ckpt_path, "Lightning checkpoint"), str(ckpt_path))
    if g_ema_only:
        blob = {"g_ema": blob["g_ema"]}
    if half:
        for name in PREFIXES:
            if name in blob:
                blob[name] = {k: v.half() if v.is_floating_point() else v for k, v in blob[name].items()}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(blob, out)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "checkpoint",
        help="Lightning checkpoint of projects/stylegan2 (e.g. .../checkpoints/last.ckpt), or a run or experiment "
        "folder (runs/stylegan2/faceworld64: its newest version's last.ckpt)",
    )
    ap.add_argument("--out", required=True, help="rosinality-layout .pt to write")
    ap.add_argument("--g-ema-only", action="store_true", help="write only {'g_ema'} (what generators ship as)")
    ap.add_argument("--half", action="store_true", help="store the networks' weights as float16 (shipped files)")
    args = ap.parse_args(argv)
    try:
        ckpt = run_checkpoint(args.checkpoint)
        print(f"exporting {ckpt}")
        path = export(ckpt, args.out, args.g_ema_only, args.half)
    except CheckpointError as e:
        raise SystemExit(f"error: {e}") from None
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
