"""StyleMask in the face world: train the mask network the repository ships, export it, load trained models.

``configs/faceworld.yaml`` trains the masks over the face-world generator's style space with the face-world
experts (``face_models: faceworld``) through the same module, losses and metrics as the FFHQ run. The shipped
file ``pretrained/faceworld/faceworld_stylemask.pt`` (registry ``faceworld_stylemask``) holds only the mask
networks, the mean latent and the module's hyperparameters; generator, experts and e4e come from their own shipped
files. Commands::

    # train one seed (the shipped file is seed 0) and export it
    python -m projects.stylemask.faceworld train --seed 0 --out pretrained/faceworld/faceworld_stylemask.pt
    # export a run's checkpoint
    python -m projects.stylemask.faceworld export RUN/checkpoints/last.ckpt pretrained/faceworld/faceworld_stylemask.pt

``load_trained`` reads either a Lightning checkpoint of ``main.py fit`` or an exported file.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from projects.stylemask.module import StyleMaskModule

CONFIG = Path(__file__).resolve().parent / "configs" / "faceworld.yaml"
SHIPPED = "faceworld_stylemask"
FORMAT = "paperlab-stylemask-masks"
_KEPT = ("reenactor.mask_net.", "mean_latent")


def _read(path: str | os.PathLike) -> dict:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"StyleMask model not found: {p}")
    try:
        saved = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{p}: cannot read a StyleMask checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(saved, dict) or not isinstance(saved.get("state_dict"), dict):
        raise ValueError(f"{p}: not a StyleMask checkpoint (no 'state_dict')")
    if not isinstance(saved.get("hyper_parameters"), dict):
        raise ValueError(f"{p}: no 'hyper_parameters' (an official mask-network file: use --model.mask_net_path)")
    return saved


def _hparams(saved: dict) -> dict:
    # LightningCLI adds private entries (e.g. ``_instantiator``) that are not constructor arguments
    return {k: v for k, v in saved["hyper_parameters"].items() if not str(k).startswith("_")}


def export_trained(ckpt: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Write the inference part of a run's checkpoint: ``{'format', 'step', 'hyper_parameters', 'state_dict'}``
    with the mask networks and the mean latent only (float32; about 1 MB for the face-world model)."""
    saved = _read(ckpt)
    state = {k: v.detach().clone() for k, v in saved["state_dict"].items() if k.startswith(_KEPT)}
    if not any(k.startswith("reenactor.mask_net.") for k in state):
        raise ValueError(f"{ckpt}: no 'reenactor.mask_net.*' weights")
    doc = {
        "format": FORMAT,
        "step": int(saved.get("global_step", saved.get("step", 0)) or 0),
        "hyper_parameters": _hparams(saved),
        "state_dict": state,
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(doc, out)
    return out


def load_trained(path: str | os.PathLike | None = None, **overrides) -> StyleMaskModule:
    """A trained StyleMask module in eval mode from a Lightning checkpoint or an exported file (default: the
    shipped ``faceworld_stylemask``). Frozen networks come from their files as in training; ``overrides`` replace
    hyperparameters (e.g. ``face_models="none"`` for inference only)."""
    if path is None:
        from common.weights import resolve

        path = resolve(SHIPPED)
    saved = _read(path)
    module = StyleMaskModule(**{**_hparams(saved), **overrides})
    own = module.state_dict()
    # the trained part must be there; frozen networks read from files are not; random ones (tiny runs) are rebuilt
    # from the seed, so they are taken from the file only when it has them
    state = {
        k: v
        for k, v in saved["state_dict"].items()
        if k in own and not any(k.startswith(p) for p in module._file_backed)
    }
    missing = [k for k in own if k.startswith(_KEPT) and k not in state]
    unexpected = [k for k in saved["state_dict"] if k.startswith(_KEPT) and k not in own]
    if missing or unexpected:
        raise ValueError(f"{path}: does not match StyleMaskModule (missing {missing[:3]}, unexpected {unexpected[:3]})")
    try:
        module.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shapes differ
        raise ValueError(f"{path}: does not match StyleMaskModule: {exc}") from exc
    return module.eval()


def train(seed: int = 0, max_steps: int | None = None, extra: Sequence[str] = ()) -> Path:
    """``main.py fit --config configs/faceworld.yaml`` with every seed set to ``seed``; returns ``last.ckpt``."""
    from common.cli import cli_main, last_checkpoint
    from projects.stylemask.data import StyleMaskDataModule

    args = ["fit", "--config", str(CONFIG), f"--seed_everything={seed}", f"--model.seed={seed}", f"--data.seed={seed}"]
    if max_steps is not None:
        args.append(f"--trainer.max_steps={max_steps}")
    cli = cli_main(
        StyleMaskModule, StyleMaskDataModule, project="stylemask", monitor="val/csim", mode="max", args=[*args, *extra]
    )
    return last_checkpoint(cli.trainer)


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(description="StyleMask in the face world: train and export the mask network")
    sub = p.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train", help="fit configs/faceworld.yaml with one seed, then export when --out is given")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--max-steps", type=int, default=None, help="override the config's training length")
    tr.add_argument("--out", default=None, help="export the trained masks here (e.g. the shipped file)")
    ex = sub.add_parser("export", help="export a run's checkpoint")
    ex.add_argument("ckpt")
    ex.add_argument("out")
    a, rest = p.parse_known_args(argv)
    if a.command == "export":
        if rest:
            p.error(f"unknown arguments {rest}")
        out = export_trained(a.ckpt, a.out)
        print(f"[stylemask] exported {a.ckpt} -> {out}")
        return out
    ckpt = train(a.seed, a.max_steps, rest)
    print(f"[stylemask] trained seed {a.seed}: {ckpt}")
    if a.out:
        out = export_trained(ckpt, a.out)
        print(f"[stylemask] exported -> {out}")
        return out
    return ckpt


if __name__ == "__main__":
    main()
