"""``make demo-hyperreenact``: HyperReenact in the face world, on CPU, in a few minutes.

It starts from the shipped face-world generator, e4e and experts (``pretrained/faceworld/``) and the shipped
trained hypernetwork (``faceworld_hyperreenact``), fine-tunes it briefly through the same command line as any
training (``configs/demo.yaml``: a few steps of each curriculum phase), then

* scores it against the exact answer on held-out identities, beside the copy-source, copy-driver and
  inversion-of-the-truth baselines (a small version of ``python -m projects.hyperreenact.evaluate --faceworld``);
* writes grids of source | driver | output | ground truth (self- and cross-reenactment of test identities);
* reenacts a test identity with a driving sequence of another identity (``faceworld.driving_sequence``: head
  motion and changing expression) and writes the video source | driver | output | ground truth.

Before anything runs, every shipped file it needs is checked (:func:`missing_shipped`): when one is absent the demo
stops with one message naming each missing file and the command that rebuilds it. ``--from-scratch`` trains the
hypernetwork from random offsets instead of the shipped one (the same few steps: the outputs then show a method
that is barely trained). ``--steps N`` changes the fine-tuning length.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from common.cli import last_checkpoint, runs_root
from common.data import faceworld as fw
from common.data.video import write_video
from common.face.align import lm68_to_lm5
from common.weights import REGISTRY, SHIPPED_DIR, default_path, describe
from projects.hyperreenact.evaluate import faceworld_rows, format_rows, reenacted
from projects.hyperreenact.faceworld import SHIPPED, FaceWorldEvaluationPairs, landmark_boxes
from projects.hyperreenact.frames import to_uint8
from projects.hyperreenact.main import main as cli_main
from projects.hyperreenact.module import load_module

CONFIG = Path(__file__).parent / "configs" / "demo.yaml"
UPSCALE = 3  # 64 px faces are shown 3x larger (nearest neighbour)
# the frozen networks of encoders: faceworld, then the trained hypernetwork
FROZEN = ("faceworld_generator", "faceworld_e4e", "faceworld_identity", "faceworld_attributes")


def missing_shipped(names: tuple[str, ...] = (*FROZEN, SHIPPED)) -> list[str]:
    """One paragraph per artifact of ``names`` whose file is absent: the registry's description (file, where it
    ships, the command that rebuilds it), or, for one not registered yet, where it will ship."""
    problems = []
    for name in names:
        if name in REGISTRY:
            if not default_path(name).is_file():
                problems.append(describe(name))
            continue
        if (SHIPPED_DIR / "faceworld" / f"{name}.pt").is_file():
            continue
        problems.append(
            f"{name}: not registered in common/weights.py yet\n"
            f"  ships:   {SHIPPED_DIR / 'faceworld' / (name + '.pt')} (with the repository)"
        )
    return problems


def _upscale(arr: np.ndarray) -> np.ndarray:
    return arr.repeat(UPSCALE, 0).repeat(UPSCALE, 1)


@torch.no_grad()
def write_grid(net: torch.nn.Module, mode: str, path: Path, n: int = 6, seed: int = 0) -> Path:
    """Rows of source | driver | output | ground truth for ``n`` test-split pairs of ``mode``."""
    pairs = FaceWorldEvaluationPairs("test", net.generator.size, n, mode, seed)
    batch = {k: torch.stack([pairs[i][k] for i in range(n)]) for k in pairs[0]}
    out = reenacted(net, batch, "hyperreenact")
    cols = [to_uint8(batch["source"]), to_uint8(batch["target"]), to_uint8(out), to_uint8(batch["truth"])]
    grid = np.concatenate([np.concatenate([c[i] for c in cols], 1) for i in range(n)], 0)
    Image.fromarray(_upscale(grid)).save(path)
    return path


@torch.no_grad()
def write_driving_video(
    net: torch.nn.Module, path: Path, frames: int = 48, fps: float = 12.0, seed: int = 0, batch: int = 16
) -> Path:
    """A test identity (source, frontal and neutral) reenacted by another test identity's driving sequence; each
    frame shows source | driver | output | ground truth (the source identity rendered with the driver's motion)."""
    size = net.generator.size
    ids = fw.identity_params([fw.SPLITS["test"].start + 7, fw.SPLITS["test"].start + 42])
    pose, expr = fw.driving_sequence(frames, seed)
    driver = fw.render_sequence(ids[1], pose, expr, size)
    truth = fw.render_sequence(ids[0], pose, expr, size)
    driver_lm = fw.landmarks(ids[1:2].expand(frames, -1), pose, expr, size)
    zero_pose, zero_expr = torch.zeros(1, 3), torch.zeros(1, fw.EXPRESSION_DIM)
    source = fw.render(ids[:1], zero_pose, zero_expr, size)
    source_lm = fw.landmarks(ids[:1], zero_pose, zero_expr, size)
    w = net.invert(source)
    _, f_app = net.app_encoder(source, lm68_to_lm5(source_lm))
    outputs = []
    for i in range(0, frames, batch):
        drv, box = driver[i : i + batch], landmark_boxes(driver_lm[i : i + batch])
        _, f_pose = net.pose_encoder(drv, box)
        b = drv.shape[0]
        img, _ = net.render(w.expand(b, -1, -1), f_pose, f_app.expand(b, -1, -1, -1))
        outputs.append(img.clamp(-1, 1))
    out = torch.cat(outputs)
    src = to_uint8(source)[0]
    rows = (
        _upscale(np.concatenate([src, d, o, t], 1)) for d, o, t in zip(to_uint8(driver), to_uint8(out), to_uint8(truth))
    )
    write_video(path, rows, fps)
    return path


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description="HyperReenact in the face world: fine-tune, score, grids and a video")
    p.add_argument("--steps", type=int, default=None, help="fine-tuning steps (default: the demo config's)")
    p.add_argument("--pairs", type=int, default=24, help="test pairs per mode in the score table")
    p.add_argument(
        "--from-scratch",
        action="store_true",
        help="start from random offsets instead of the shipped trained hypernetwork (it need not exist)",
    )
    a = p.parse_args(argv)
    problems = missing_shipped(FROZEN if a.from_scratch else (*FROZEN, SHIPPED))
    if problems:
        print(
            f"[hyperreenact demo] cannot start: {len(problems)} shipped face-world file(s) missing "
            "(each with the command that rebuilds it):\n\n" + "\n\n".join(problems),
            file=sys.stderr,
        )
        raise SystemExit(2)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    t0 = time.time()
    args = ["fit", "--config", str(CONFIG)]
    if a.from_scratch:
        start = "RANDOM offsets (--from-scratch): the outputs show a method trained only for the demo's few steps"
    else:
        shipped = default_path(SHIPPED)
        args.append(f"--model.hypernet_path={shipped}")
        start = f"the shipped trained hypernetwork {shipped}"
    if a.steps is not None:
        args.append(f"--trainer.max_steps={a.steps}")
    print(f"[hyperreenact demo] starting from {start}", flush=True)
    cli = cli_main(args)
    ckpt = last_checkpoint(cli.trainer)
    t_fit = time.time()
    net = load_module(ckpt).net.eval()
    out = ckpt.parent.parent / "demo"
    out.mkdir(parents=True, exist_ok=True)
    rows = faceworld_rows(net, seeds=[0], n_pairs=a.pairs, log=None)
    t_eval = time.time()
    grids = [write_grid(net, mode, out / f"grid_{mode}.png") for mode in ("self", "cross")]
    video = write_driving_video(net, out / "driving_sequence.mp4")
    t_end = time.time()
    print(f"\nHyperReenact in the face world ({a.pairs} held-out pairs per mode, pair seed 0)")
    print(format_rows(rows))
    print("  psnr/ssim: against the exact answer; nme: landmark error / interocular distance; id_cos: identity")
    print("  expert, output vs source; pose_err (degrees), exp_err (normalised): attribute expert, output vs driver")
    print(f"grids (source | driver | output | ground truth): {', '.join(str(g) for g in grids)}")
    print(f"video (source | driver | output | ground truth): {video}")
    print(
        f"time: fine-tuning {t_fit - t0:.0f} s, scoring {t_eval - t_fit:.0f} s, grids and video {t_end - t_eval:.0f} s"
    )
    return {"rows": rows, "grids": grids, "video": video, "checkpoint": ckpt, "runs": runs_root()}


if __name__ == "__main__":
    main()
