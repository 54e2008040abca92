"""StyleGAN2 demo: the shipped face-world generator's samples, a truncation sweep and a style-mixing grid as images,
then a few fine-tuning iterations of the training loop starting from it (CPU, a few minutes).

    python -m projects.stylegan2.demo [--generator FILE] [--steps 10] [--out runs/stylegan2/demo]

The generator is the registry's ``faceworld_generator`` (``pretrained/faceworld/``; ``--generator`` takes any
rosinality/NVIDIA file or Lightning checkpoint). When it is absent the demo says which file is missing and how to
build it, and exits with status 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torchvision.utils import save_image

from common.cli import runs_root
from common.stylegan2.checkpoints import infer_generator_config
from common.stylegan2.sample import load_any_generator, mean_w, sample

CONFIG = Path(__file__).resolve().parent / "configs" / "demo.yaml"


def _generator_file(path: str | None) -> Path | None:
    """The generator file: ``path`` when given (a local path is always accepted), else the registry's."""
    from common.weights import describe, resolve

    if path is not None:
        if Path(path).is_file():
            return Path(path)
        print(f"[stylegan2 demo] {path}: no such file", file=sys.stderr)
        return None
    try:
        return resolve("faceworld_generator")
    except KeyError:
        print("[stylegan2 demo] the face-world generator is not registered yet (common/weights.py: "
              "'faceworld_generator', pretrained/faceworld/); pass --generator FILE", file=sys.stderr)  # fmt: skip
    except FileNotFoundError:
        print(f"[stylegan2 demo] missing the shipped generator:\n{describe('faceworld_generator')}", file=sys.stderr)
    return None


def _grid(images: torch.Tensor, nrow: int, path: Path) -> Path:
    save_image(images.add(1).div(2).clamp(0, 1), path, nrow=nrow, padding=1)
    return path


def pictures(g, out: Path) -> list[Path]:
    """Samples, a truncation sweep (rows: seeds; columns: psi 0 .. 1) and a style-mixing grid (rows: coarse styles
    of the row seed; columns: fine styles of the column seed from W+ row ``n_latent // 2`` on)."""
    out.mkdir(parents=True, exist_ok=True)
    written = [_grid(sample(g, list(range(16)), 1.0), 8, out / "samples.png")]
    w_avg = mean_w(g)
    psis = [0.0, 0.25, 0.5, 0.75, 1.0]
    sweep = torch.stack([sample(g, list(range(4)), p, w_avg=w_avg) for p in psis], 1).flatten(0, 1)
    written.append(_grid(sweep, len(psis), out / "truncation.png"))
    rows, cols = [0, 1, 2, 3], [10, 11, 12, 13]
    blank = torch.ones(1, 3, g.size, g.size)
    grid = [blank, sample(g, cols, 0.7, w_avg=w_avg)]
    for r in rows:
        mixed = torch.cat([sample(g, [r], 0.7, mix_seed=c, mix_from=g.n_latent // 2, w_avg=w_avg) for c in cols])
        grid += [sample(g, [r], 0.7, w_avg=w_avg), mixed]
    written.append(_grid(torch.cat(grid), len(cols) + 1, out / "style_mixing.png"))
    return written


def fine_tune(generator_file: Path, cfg: dict, steps: int) -> Path:
    """A few iterations of the training loop from the generator (a fresh discriminator when the file has none)."""
    from projects.stylegan2.main import main

    if generator_file.suffix == ".ckpt":  # a Lightning checkpoint: start from its rosinality export
        from projects.stylegan2.export import export

        generator_file = export(generator_file, runs_root() / "stylegan2" / "demo" / "start.pt")
    args = ["fit", "--config", str(CONFIG), f"--model.init_from={generator_file}", f"--trainer.max_steps={steps}",
            f"--trainer.val_check_interval={steps}", f"--model.sample_every={max(1, steps // 2)}",
            f"--model.checkpoint_every={steps}", f"--data.size={cfg['size']}"]  # fmt: skip
    args += [f"--model.{k}={v}" for k, v in cfg.items() if v is not None]
    cli = main(args)
    m = cli.trainer.callback_metrics
    shown = {k: round(float(v), 4) for k, v in m.items() if k.startswith(("train/", "val/"))}
    print(f"[stylegan2 demo] after {cli.trainer.global_step} fine-tuning iterations: {shown}")
    return Path(cli.trainer.log_dir)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--generator", default=None, help="generator file (default: the registry's faceworld_generator)")
    ap.add_argument("--steps", type=int, default=10, help="fine-tuning iterations")
    ap.add_argument("--out", default=None, help="folder of the pictures (default: <runs>/stylegan2/demo)")
    a = ap.parse_args(argv)
    path = _generator_file(a.generator)
    if path is None:
        return 1
    torch.manual_seed(0)
    g = load_any_generator(path)
    out = Path(a.out) if a.out else runs_root() / "stylegan2" / "demo"
    for p in pictures(g, out):
        print(f"[stylegan2 demo] wrote {p}")
    cfg = infer_generator_config(g.state_dict())
    run = fine_tune(path, cfg, a.steps)
    print(f"[stylegan2 demo] fine-tuning run (sample grids, last.ckpt): {run}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
