"""``make demo-dferclip``: DFER-CLIP end to end on CPU, offline, on procedural face clips.

1. ``common.data.synthetic_faces.write_dataset`` renders 7-class face clips into DFEW's layout (frame folders plus
   ``DFEW_set_1_{train,test}.txt`` with the authors' absolute paths) under ``data/synthetic_faces``;
2. ``main.py fit --config projects/dferclip/configs/demo.yaml`` trains a tiny random CLIP with the DFER-CLIP
   model and recipe through the real data path (path rewriting, segment sampling, grouped augmentation);
3. ``test`` on the last checkpoint: UAR / WAR and the confusion-matrix image.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from common.data.synthetic_faces import write_dataset

CONFIG = str(Path(__file__).resolve().parent / "configs" / "demo.yaml")


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data/synthetic_faces", help="where the clips are written (kept between runs)")
    p.add_argument("--train-per-class", type=int, default=80)
    p.add_argument("--test-per-class", type=int, default=30)
    p.add_argument("--threads", type=int, default=1, help="torch threads (tiny model: 1 is fastest on a busy CPU)")
    p.add_argument("overrides", nargs="*", help="extra CLI overrides, e.g. --trainer.max_epochs=2")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.time()
    data = Path(args.data)
    stamp = data / f".done_{args.train_per_class}_{args.test_per_class}"
    if not stamp.is_file():
        print(f"[demo] rendering {7 * (args.train_per_class + args.test_per_class)} clips into {data} ...", flush=True)
        write_dataset(data, args.train_per_class, args.test_per_class, size=64, seed=0)
        stamp.touch()
    t_data = time.time() - t0
    from projects.dferclip.main import main as cli

    paths = ["--data.annotation_dir", str(data / "annotation"), "--data.data_root", str(data / "frames")]
    fit = cli(["fit", "--config", CONFIG, *paths, *args.overrides])
    t_fit = time.time() - t0 - t_data
    res = fit.trainer.test(fit.model, datamodule=fit.datamodule, ckpt_path="last", verbose=False)[0]
    run_dir = Path(fit.trainer.log_dir).resolve()
    images = sorted((run_dir / "confusion").glob("test_epoch*.png"))
    n_train, n_test = len(fit.datamodule.train_set), len(fit.datamodule.test_set)
    print("\nDFER-CLIP demo (tiny random CLIP, procedural faces, CPU)")
    print(f"  {'train / test clips':28s} {n_train} / {n_test}")
    print(f"  {'epochs':28s} {fit.trainer.current_epoch}")
    print(f"  {'test UAR (chance 0.143)':28s} {res['test/uar']:.3f}")
    print(f"  {'test WAR (chance 0.143)':28s} {res['test/war']:.3f}")
    print(f"  {'time: data / fit+test':28s} {t_data:.0f} s / {time.time() - t0 - t_data:.0f} s (fit {t_fit:.0f} s)")
    print(f"  {'run folder':28s} {run_dir}")
    print(f"  {'confusion matrix':28s} {images[-1] if images else '(none)'}")
    return {"uar": res["test/uar"], "war": res["test/war"]}


if __name__ == "__main__":
    main()
