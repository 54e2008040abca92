"""`make demo-stylemask`: StyleMask reenacts in the face world, against the exact answer.

Starts from the shipped face-world generator, e4e and experts (``pretrained/faceworld/``). With the shipped trained
masks (``faceworld_stylemask``) it fine-tunes them briefly (``configs/demo.yaml``: the face-world config with a
short schedule); without them it trains the masks from scratch for the same few minutes. Then, on held-out
identities:

* scores self- and cross-reenactment pairs against the exact answer next to the copy-source, copy-driver and
  inverted-truth baselines (the benchmark's code, ``evaluate.faceworld_rows``, on fewer pairs);
* writes grids of source | driver | output | exact answer (``grids/{self,cross}.png``);
* reenacts a source face with a driving sequence (``faceworld.driving_sequence``: smooth head motion and changing
  expression, rendered with ``render_sequence``) and writes the video source | driver | output | exact answer.

Before anything is built, every shipped file it needs is checked (:func:`missing_shipped`): when any is absent the
demo stops with one message naming each missing file and the command that rebuilds it. ``--from-scratch`` trains
the masks from their random initialisation instead of the shipped ones (the trained masks need not exist then; the
outputs show masks trained for the demo's few steps only). ``--steps N`` changes the training length.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from projects.stylemask.evaluate import FACEWORLD_METHODS, faceworld_rows, format_rows, reenact_images

CONFIG = Path(__file__).resolve().parent / "configs" / "demo.yaml"
SHIPPED = "faceworld_stylemask"
# the frozen networks and the module option that takes each one's file
FROZEN = {
    "faceworld_generator": "generator_path",
    "faceworld_e4e": "e4e_path",
    "faceworld_identity": "arcface_path",
    "faceworld_attributes": "deca_path",
}


def missing_shipped(names: tuple[str, ...] = (*FROZEN, SHIPPED)) -> list[str]:
    """The registry's description (file, where it ships, the command that rebuilds it) of each artifact of
    ``names`` whose file is absent."""
    from common.weights import default_path, describe

    return [describe(name) for name in names if not default_path(name).is_file()]


def check_shipped(from_scratch: bool = False) -> dict[str, Path]:
    """The files the demo starts from (``{artifact name: path}``); raises ``MissingWeightsError`` with one message
    listing every missing one and the command that rebuilds it. ``from_scratch`` leaves out the trained masks."""
    from common.weights import MissingWeightsError, default_path

    names = (*FROZEN,) if from_scratch else (*FROZEN, SHIPPED)
    problems = missing_shipped(names)
    if problems:
        raise MissingWeightsError(
            f"the StyleMask demo cannot start: {len(problems)} shipped face-world file(s) missing (each with the "
            "command that rebuilds it; --from-scratch needs all but faceworld_stylemask):\n\n" + "\n\n".join(problems)
        )
    return {name: default_path(name) for name in names}


def fine_tune(config: str | Path = CONFIG, extra: list[str] | None = None) -> tuple[object, Path, float]:
    """Fit ``config`` (plus command-line ``extra``); returns ``(trained module in eval mode, run folder, seconds)``."""
    from common.cli import cli_main
    from projects.stylemask.data import StyleMaskDataModule
    from projects.stylemask.module import StyleMaskModule

    args = ["fit", "--config", str(config), *(extra or [])]
    t0 = time.time()
    cli = cli_main(StyleMaskModule, StyleMaskDataModule, project="stylemask", monitor="val/csim", args=args)
    return cli.model.eval(), Path(cli.trainer.log_dir), time.time() - t0


def _panel(images: Tensor, scale: int) -> Tensor:
    return F.interpolate(images, scale_factor=scale, mode="nearest") if scale > 1 else images


@torch.no_grad()
def write_grids(module, out_dir: Path, num_pairs: int = 8, seed: int = 0, scale: int = 3) -> list[Path]:
    """``grids/{self,cross}.png``: rows of source | driver | StyleMask | exact answer on held-out identities."""
    from torchvision.utils import save_image

    from common.data.faceworld import ReenactmentPairs

    out = []
    size = int(module.generator.size)
    for mode in ("self", "cross"):
        pairs = ReenactmentPairs("test", size, num_pairs, mode, seed)
        b = {k: torch.stack([pairs[i][k] for i in range(num_pairs)]) for k in ("source", "driver", "target")}
        rows = torch.stack([b["source"], b["driver"], reenact_images(module, b["source"], b["driver"]), b["target"]], 1)
        path = out_dir / "grids" / f"{mode}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        save_image((_panel(rows.flatten(0, 1), scale).clamp(-1, 1) + 1) / 2, path, nrow=4, padding=2)
        out.append(path)
    return out


@torch.no_grad()
def write_video(
    module, path: Path, num_frames: int = 75, seed: int = 0, fps: float = 25.0, scale: int = 3, chunk: int = 25
) -> int:
    """A source face (held-out identity) reenacted by another identity's driving sequence: frames of source |
    driver | StyleMask | exact answer (the source identity rendered in the driver's pose and expression)."""
    from common.data import faceworld as fw
    from common.data.video import write_video as write_frames
    from projects.stylemask.writer import to_uint8

    size = int(module.generator.size)
    test = fw.SPLITS["test"]
    ids = fw.identity_params([test.start + 7, test.start + 123])
    pose, expr = fw.driving_sequence(num_frames, seed)
    g = torch.Generator().manual_seed(seed)
    source = fw.render(ids[:1], fw.sample_pose(1, g) * 0.3, torch.zeros(1, fw.EXPRESSION_DIM), size)
    wp_s = module.to_wplus(source, "image")

    def frames():
        for i in range(0, num_frames, chunk):
            p, e = pose[i : i + chunk], expr[i : i + chunk]
            driver = fw.render_sequence(ids[1], p, e, size)
            truth = fw.render_sequence(ids[0], p, e, size)
            output = reenact_images(module, None, driver, wplus_source=wp_s)
            row = torch.cat([source.expand(len(p), -1, -1, -1), driver, output, truth], dim=3)
            for frame in _panel(row, scale):
                yield to_uint8(frame)

    return write_frames(path, frames(), fps=fps)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description="StyleMask demo in the face world (see the module docstring)")
    p.add_argument("--steps", type=int, default=None, help="training steps (default: configs/demo.yaml's)")
    p.add_argument("--pairs", type=int, default=24, help="held-out pairs per mode for the scores")
    p.add_argument("--frames", type=int, default=75, help="frames of the driving video")
    p.add_argument(
        "--from-scratch",
        action="store_true",
        help="train the masks from their random initialisation instead of the shipped ones (need not exist)",
    )
    a, extra = p.parse_known_args(argv)
    files = check_shipped(a.from_scratch)  # before anything is built
    torch.set_num_threads(1)  # 64 px networks gain little from threads on a shared CPU
    t0 = time.time()
    args = [f"--model.{option}={files[name]}" for name, option in FROZEN.items()]
    if a.from_scratch:
        start = "trained from their random initialisation (--from-scratch): only the demo's few steps"
    else:
        args.append(f"--model.mask_net_path={files[SHIPPED]}")
        start = f"fine-tuned from the shipped {files[SHIPPED]}"
    if a.steps is not None:
        args.append(f"--trainer.max_steps={a.steps}")
    print(f"[stylemask demo] masks {start}", flush=True)
    module, run, t_fit = fine_tune(CONFIG, [*args, *extra])
    t1 = time.time()
    rows = faceworld_rows({0: module}, num_pairs=a.pairs, batch_size=a.pairs, methods=FACEWORLD_METHODS, log=None)
    t2 = time.time()
    grids = write_grids(module, run)
    video = run / "reenactment" / "driving_sequence.mp4"
    n = write_video(module, video, num_frames=a.frames)
    t3 = time.time()
    print(f"\nStyleMask demo in the face world: masks {start}")
    print(f"held-out identities, {a.pairs} pairs per mode (pair seed 0), scored against the exact answer:")
    print(format_rows(rows))
    print("  psnr/ssim vs the exact answer; nme/landmark_px: landmark error; id_cos: identity cosine to the source;")
    print("  pose_err/exp_err: pose (degrees) and normalised expression error to the driver")
    print(f"  grids (source | driver | StyleMask | exact answer): {', '.join(str(g) for g in grids)}")
    print(f"  video ({n} frames, 25 fps; same columns):            {video}")
    print(
        f"  wall time: {t_fit:.0f} s training, {t2 - t1:.0f} s scoring, {t3 - t2:.0f} s grids and video, "
        f"{time.time() - t0:.0f} s in all"
    )
    return {"rows": rows, "grids": grids, "video": video, "run": run}


if __name__ == "__main__":
    main()
