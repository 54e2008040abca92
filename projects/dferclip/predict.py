"""Expression probabilities for video files or frame folders, from our checkpoint or the authors' released one.

    python -m projects.dferclip.predict --ckpt runs/dferclip/dfew/version_0/checkpoints/last.ckpt clip.mp4 frames/
    python -m projects.dferclip.predict --official pretrained/dferclip/dfew_set1_model_best.pth clip.mp4

Each input gives 16 frames at the test-time segment centres; in each the face is detected (MTCNN) and cropped,
as the datasets hold face crops (``--no-detect`` for inputs that already are face crops). Prints one line per
input and returns the list of ``{"input", "probs", "pred"}``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from projects.dferclip.data import RawVideoDataset
from projects.dferclip.model import DFERCLIP
from projects.dferclip.module import DFERCLIPModule, format_prediction
from projects.dferclip.text import class_names


def load_model(ckpt: str | None = None, official: str | None = None) -> tuple[DFERCLIP, int, int]:
    """(network in eval mode, frames per clip, image size) from a Lightning checkpoint or an official ``.pth``."""
    if (ckpt is None) == (official is None):
        raise ValueError("give exactly one of ckpt (our Lightning checkpoint) and official (the authors' .pth)")
    if official is not None:
        from projects.dferclip.checkpoint import load_official_checkpoint

        model, arch = load_official_checkpoint(official)
        return model.eval(), arch["num_frames"], arch["clip"]["image_size"]
    module = DFERCLIPModule.load_from_checkpoint(ckpt, map_location="cpu")
    size = module.model.image_encoder.image_size
    size = size[0] if isinstance(size, tuple | list) else size
    return module.model.eval(), module.hparams.num_frames, int(size)


@torch.no_grad()
def predict(
    model: DFERCLIP,
    inputs: list[str | Path],
    num_frames: int = 16,
    image_size: int = 224,
    detect_faces: bool = True,
    normalize: bool = False,
    device: str = "cpu",
    echo: bool = True,
) -> list[dict[str, Any]]:
    """Probabilities over the model's classes for each input (video file or frame folder)."""
    ds = RawVideoDataset(inputs, num_frames, image_size, detect_faces, normalize=normalize, device=device)
    names = class_names(model.prompt_learner.n_cls)
    model = model.to(device)
    out = []
    for i in range(len(ds)):
        video = ds[i][0].unsqueeze(0).to(device)
        probs = model(video).float().softmax(-1)[0].cpu()
        out.append(format_prediction(str(ds.paths[i]), probs, names, echo=echo))
    return out


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--ckpt", help="our Lightning checkpoint (.ckpt)")
    g.add_argument("--official", help="the authors' released checkpoint (.pth)")
    p.add_argument("inputs", nargs="+", help="video files and/or frame folders")
    p.add_argument("--no-detect", action="store_true", help="inputs are face crops already")
    p.add_argument("--normalize", action="store_true", help="apply CLIP mean/std (the official models were not)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--json", help="also write the results to this file")
    args = p.parse_args(argv)
    model, t, size = load_model(args.ckpt, args.official)
    res = predict(model, args.inputs, t, size, not args.no_detect, args.normalize, args.device)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
