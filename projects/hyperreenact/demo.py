"""``make demo-hyperreenact``: train and run HyperReenact at 32 px on CPU in a few minutes, with a tiny random
generator, tiny hypernetwork widths and stand-in encoders, on synthetic frames rendered by that generator.

ALL WEIGHTS ARE RANDOM (no pretrained file is used): the images are not faces and the numbers only show that
the whole pipeline (data, curriculum, losses, checkpoint, evaluation, inference with a video) runs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from common.cli import last_checkpoint, runs_root
from projects.hyperreenact.data import EvaluationPairs
from projects.hyperreenact.evaluate import evaluate
from projects.hyperreenact.inference import reenact
from projects.hyperreenact.main import main as cli_main
from projects.hyperreenact.module import HyperReenactModule, load_module

CONFIG = Path(__file__).parent / "configs" / "demo.yaml"


def main() -> None:
    torch.set_num_threads(1)  # tiny models: one thread is faster than two contending ones
    data_root = runs_root() / "hyperreenact_demo_data"
    cli = cli_main(["fit", "--config", str(CONFIG), f"--data.root={data_root}"])
    ckpt = last_checkpoint(cli.trainer)
    run_dir = ckpt.parent.parent
    trained = load_module(ckpt)
    untrained = HyperReenactModule(**dict(trained.hparams))
    rows = {}
    for split in ("train", "test"):
        pairs = EvaluationPairs(data_root, split, 32, mode="self")
        for name, m in (("untrained", untrained), ("trained", trained)):
            res = evaluate(m.net, DataLoader(pairs, batch_size=16), "self", lpips=m.lpips, num_expressions=6)
            rows[f"{split} identities, {name}"] = res["all"]
    # inference: a test identity reenacted by the frames of another identity's video, grid + video
    src = sorted((data_root / "test").glob("*/*/frames/000000.png"))[0]
    other = sorted(
        p for p in (data_root / "test").glob("*/*/frames") if p.parent.parent.name != src.parent.parent.parent.name
    )[0]
    out = run_dir / "demo"
    result = reenact(trained.net, src, other, out, crop="fixed", save_grids=True, fps=4.0)
    grids = [np.asarray(Image.open(p)) for p in sorted((out / "grids").glob("*.png"))]
    Image.fromarray(np.concatenate(grids, 0)).resize((96 * 4, 32 * 4 * len(grids)), Image.NEAREST).save(
        out / "grid.png"
    )
    print("\nHyperReenact demo (32 px, RANDOM tiny generator and stand-in encoders: not faces, not the paper)")
    print(
        f"{'self-reenactment (1st frame src)':32s}{'PSNR':>10s}{'SSIM':>10s}{'LPIPS*':>10s}{'CSIM*':>10s}{'pairs':>8s}"
    )
    for name, r in rows.items():
        print(f"{name:32s}{r['psnr']:10.2f}{r['ssim']:10.3f}{r['lpips']:10.3f}{r['csim']:10.3f}{int(r['pairs']):8d}")
    print("* with the random stand-in LPIPS and ArcFace networks; 'train identities' were seen in training,")
    print("  'test identities' were not (300 steps: 60 inversion, 200 self, 40 cross reenactment)")
    print(f"run folder: {run_dir}")
    print(f"grid (source | driving | reenacted per row): {out / 'grid.png'}")
    print(f"video: {result.video} ({result.frames} frames at {result.fps:g} fps)")


if __name__ == "__main__":
    main()
