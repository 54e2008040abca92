"""`make demo-stylemask`: train StyleMask's masks at 32 px with random tiny networks, then reenact images and a
driving video from the checkpoint, and print a short summary. The weights are random: the grids show that the
machinery runs end to end (training, validation, inversion, reenactment, video writing), not quality."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from PIL import Image

from common.cli import cli_main
from common.data.video import write_video
from projects.stylemask.data import StyleMaskDataModule
from projects.stylemask.module import StyleMaskModule
from projects.stylemask.writer import ReenactmentWriter, to_uint8

CONFIG = str(Path(__file__).resolve().parent / "configs" / "demo.yaml")


class _LossHistory(Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []
        self.saturated: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))
        self.saturated.append(float(trainer.callback_metrics.get("train/mask_saturated", float("nan"))))


def _cli(args: list[str], *callbacks: Callback):
    return cli_main(
        StyleMaskModule,
        StyleMaskDataModule,
        project="stylemask",
        monitor="val/csim",
        mode="max",
        args=args,
        extra_callbacks=[ReenactmentWriter(), *callbacks],
    )


def _make_inputs(module: StyleMaskModule, folder: Path) -> tuple[Path, Path, Path]:
    """Source and target face images and a 24-frame driving video, rendered by the (random) generator."""
    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(123)
    z = torch.randn(3, module.generator.style_dim, generator=g)
    with torch.no_grad():
        imgs = module.generator.synthesis(module.wplus_from_z(z), noise="const")
        t = torch.linspace(0, 1, 24)[:, None]
        zz = (1 - t) * z[1] + t * z[2]
        frames = module.generator.synthesis(module.wplus_from_z(zz), noise="const")
    src, tgt, vid = folder / "source.png", folder / "target.png", folder / "driving.mp4"
    Image.fromarray(to_uint8(imgs[0])).save(src)
    Image.fromarray(to_uint8(imgs[1])).save(tgt)
    write_video(vid, (to_uint8(f) for f in frames), fps=12.0)
    return src, tgt, vid


def main() -> None:
    # The 32 px networks are far too small to gain from intra-op threads; on a shared CPU extra threads only
    # add synchronisation stalls.
    torch.set_num_threads(1)
    t0 = time.time()
    hist = _LossHistory()
    cli = _cli(["fit", "--config", CONFIG], hist)
    run = Path(cli.trainer.log_dir)
    ckpt = run / "checkpoints" / "last.ckpt"
    metrics = {k: float(v) for k, v in cli.trainer.callback_metrics.items() if k.startswith("val/")}
    src, tgt, vid = _make_inputs(cli.model, run / "demo_inputs")
    out = run / "reenactment"
    base = ["predict", "--config", CONFIG, "--ckpt_path", str(ckpt), "--data.source", str(src)]
    _cli([*base, "--data.target", str(tgt), "--data.grid", "true", "--data.output_dir", str(out)])
    _cli([*base, "--data.target", str(vid), "--data.grid", "true", "--data.output_dir", str(out)])
    n = max(1, len(hist.losses) // 10)
    first, last = np.mean(hist.losses[:n]), np.mean(hist.losses[-n:])
    rows = [
        ("training steps", f"{len(hist.losses)}"),
        ("loss, first -> last 10% of steps", f"{first:.3f} -> {last:.3f}"),
        ("masks saturated (<0.1 or >0.9), last step", f"{hist.saturated[-1]:.1%}"),
        *[(f"{k} ({'source identity' if 'csim' in k else 'to target'})", f"{v:.3f}") for k, v in metrics.items()],
        ("validation grids (source | target | reenacted)", str(run / "grids")),
        ("reenactment grid (image)", str(out / "target_reenacted_grid.png")),
        ("reenactment video (12 fps, 24 frames)", str(out / "driving_reenacted.mp4")),
        ("wall time", f"{time.time() - t0:.0f} s"),
    ]
    width = max(len(r[0]) for r in rows)
    print("\nStyleMask demo (32 px, RANDOM tiny generator / ArcFace / DECA / FLAME / e4e stand-ins)")
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")
    print("  The weights are random: the grids and the video show the machinery (training, inversion, reenactment,")
    print(
        "  video writing), not reenactment quality. Real results need the released weights (make reproduce-stylemask)."
    )


if __name__ == "__main__":
    main()
