"""Reenactment of a source image by a driving image, folder or video, as one function (the web app and scripts).

``reenact`` runs exactly what ``main.py predict`` runs (``StyleMaskDataModule``'s predict inputs, the module's
``predict_step``, ``writer.ReenactmentWriter``) through ``Trainer.predict``, with a progress callback, and returns
what was written. ``load_for_inference`` builds the module from a Lightning checkpoint (face networks left out:
reenacting needs only the generator, the inverter and the masks) or from the released files of the registry.

Command line (no ``make`` needed)::

    python -m projects.stylemask.inference --source SRC.png --target DRIVING.mp4 --out OUT [--ckpt last.ckpt]
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from lightning.pytorch import Callback, Trainer

from projects.stylemask.data import IMAGE_EXTS, VIDEO_EXTS, StyleMaskDataModule
from projects.stylemask.module import StyleMaskModule
from projects.stylemask.writer import ReenactmentWriter


@dataclass
class ReenactResult:
    """What :func:`reenact` wrote: ``frames`` reenacted, the ``fps`` of a video (None for images), the files."""

    frames: int
    fps: float | None
    files: list[Path] = field(default_factory=list)

    @property
    def video(self) -> Path | None:
        """The output video (a driving video was given), else None."""
        return next((f for f in self.files if f.suffix == ".mp4"), None)


def load_for_inference(
    ckpt: str | os.PathLike | None = None,
    mask_net_path: str | None = None,
    generator_path: str | None = None,
    e4e_path: str | None = None,
    map_location: str = "cpu",
) -> StyleMaskModule:
    """The module to reenact with, in eval mode.

    ``ckpt``: a Lightning checkpoint of ``main.py fit`` (its hyperparameters and mask networks; files it names,
    such as the FFHQ generator or e4e, come from the registry as in training); ArcFace/DECA/FLAME are not built.
    Without ``ckpt``: the released FFHQ-1024 setup (``configs/ffhq1024.yaml``) with the registry's
    ``stylemask_mask_network``, ``stylegan2_ffhq_config_f`` and ``e4e_ffhq_encode`` (or the paths given); a missing
    file raises ``MissingWeightsError`` naming it.
    """
    from common.weights import resolve

    if ckpt is None:
        module = StyleMaskModule(
            face_models="none",
            inverter="e4e",
            e4e_path=str(resolve("e4e_ffhq_encode", e4e_path)),
            generator_path=str(resolve("stylegan2_ffhq_config_f", generator_path)),
            mask_net_path=str(resolve("stylemask_mask_network", mask_net_path)),
        )
        return module.eval()
    path = Path(ckpt)
    if not path.is_file():
        raise FileNotFoundError(f"StyleMask checkpoint not found: {path}")
    saved = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(saved, dict) or "state_dict" not in saved or "hyper_parameters" not in saved:
        raise ValueError(f"{path}: not a Lightning checkpoint of StyleMaskModule (no state_dict/hyper_parameters)")
    hparams = dict(saved["hyper_parameters"])
    hparams["face_models"] = "none"  # the face networks only serve training and evaluation
    module = StyleMaskModule(**hparams)
    state = {k: v for k, v in saved["state_dict"].items() if not k.startswith("faces.")}
    missing, unexpected = module.load_state_dict(state, strict=False)
    # frozen networks read from files are left out of checkpoints by design (module._file_backed)
    missing = [k for k in missing if not any(k.startswith(p) for p in module._file_backed)]
    if missing or unexpected:
        raise ValueError(f"{path}: does not match StyleMaskModule (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return module.eval()


def input_size(module: StyleMaskModule) -> int:
    """Side of the aligned face the inverter takes: 256 for e4e (as trained), the generator's size otherwise."""
    return 256 if module.hparams.inverter == "e4e" else int(module.generator.size)


def count_targets(target: str | os.PathLike) -> int:
    """Number of reenacted outputs ``target`` gives: frames of a video, images/codes of a folder, else 1."""
    p = Path(target)
    if p.suffix.lower() in VIDEO_EXTS:
        from common.data.video import video_info

        return video_info(p)[0]
    if p.is_dir():
        return sum(1 for f in p.iterdir() if f.suffix.lower() in IMAGE_EXTS | {".npy"})
    return 1


class _Progress(Callback):
    def __init__(self, fn: Callable[[int, int], None], total: int) -> None:
        self.fn, self.total, self.done = fn, total, 0

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self.done += int(outputs["reenacted"].shape[0])
        self.fn(self.done, max(self.total, self.done))


def reenact(
    module: StyleMaskModule,
    source: str | os.PathLike,
    target: str | os.PathLike,
    out_dir: str | os.PathLike,
    align: str = "ffhq",
    grid: bool = True,
    batch_size: int = 8,
    progress: Callable[[int, int], None] | None = None,
    accelerator: str = "cpu",
) -> ReenactResult:
    """Reenact ``source`` with ``target`` (image, folder, ``.npy`` code or video) as ``main.py predict`` does.

    Faces are detected and FFHQ-aligned (``align="ffhq"``; a frame without a face raises ``NoFaceError`` naming
    the file and frame) to ``input_size(module)``. Writes under ``out_dir``: ``<name>_reenacted.mp4`` for a video
    (every frame, at its frame rate) or one PNG per target; ``grid`` puts source | aligned target | reenacted
    side by side. ``progress(done, total)`` is called after each batch.
    """
    dm = StyleMaskDataModule(
        source=str(source),
        target=str(target),
        align=align,
        input_size=input_size(module),
        z_dim=int(module.generator.style_dim),
        predict_batch_size=batch_size,
        output_dir=str(out_dir),
        grid=grid,
    )
    writer = ReenactmentWriter()
    callbacks: list[Callback] = [writer]
    total = count_targets(target)
    if progress is not None:
        callbacks.append(_Progress(progress, total))
    trainer = Trainer(
        accelerator=accelerator,
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
        default_root_dir=str(out_dir),
    )
    trainer.predict(module, datamodule=dm, return_predictions=False)
    inputs = dm.predict_inputs
    fps = inputs.fps if inputs is not None and inputs.is_video else None
    frames = total
    if fps is not None:
        from common.data.video import video_info

        frames = video_info(writer.written[0])[0]
    return ReenactResult(frames, fps, list(writer.written))


def main(argv: list[str] | None = None) -> ReenactResult:
    p = argparse.ArgumentParser(description="StyleMask: reenact a source face with a driving image, folder or video")
    p.add_argument("--source", required=True, help="source image (or .npy z / W+ code)")
    p.add_argument("--target", required=True, help="driving image, folder, .npy code or video")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--ckpt", default=None, help="a Lightning checkpoint of main.py fit; default: released weights")
    p.add_argument("--mask-net", default=None, help="released mask_network_1024.pt (default: registry)")
    p.add_argument("--align", default="ffhq", choices=("ffhq", "none"))
    p.add_argument("--no-grid", action="store_true", help="write the reenacted face alone")
    p.add_argument("--batch-size", type=int, default=8)
    a = p.parse_args(argv)
    module = load_for_inference(a.ckpt, a.mask_net)
    res = reenact(module, a.source, a.target, a.out, a.align, not a.no_grid, a.batch_size)
    print(f"[stylemask] {res.frames} output(s)" + (f" at {res.fps:g} fps" if res.fps else "") + f" -> {a.out}")
    return res


if __name__ == "__main__":
    main()
