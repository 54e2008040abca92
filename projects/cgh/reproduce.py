"""Pretrain, kNN-evaluate and linear-probe one dataset with CGH and ReSSL; print beside the reference numbers.

    python -m projects.cgh.reproduce --dataset cifar10 --root data/cifar10 [--variants cgh ressl]
    make reproduce-cgh DATASET=cifar10 DATA_ROOT=data/cifar10

Without the data it stops at once, naming every missing file. Extra ``--trainer.*``-style overrides can
be passed after ``--`` and go to all three commands (e.g. ``-- --trainer.devices=4``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from common.cli import last_checkpoint
from projects.cgh.data import DATASETS, missing_files
from projects.cgh.linear_main import main as linear_main
from projects.cgh.main import main as pretrain_main

# Linear top-1 (%) reported by the authors. The CGH paper's tables could not be retrieved (see README):
# none are quoted. ReSSL's README gives ImageNet, ResNet-50, 200 epochs, batch 256.
REFERENCE: dict[tuple[str, str], str] = {
    ("imagenet", "ressl"): "69.9 (ReSSL README, 1 crop; 74.7 with 5 crops)",
}
NOT_AVAILABLE = "not available (CGH paper tables not retrievable)"
CONFIG_DIR = str(Path(__file__).resolve().parent / "configs")


def _metric(cli, key: str) -> float | None:
    value = cli.trainer.callback_metrics.get(key)
    return None if value is None else float(value)


def run_variant(dataset: str, root: str, variant: str, overrides: list[str]) -> dict[str, object]:
    """Pretraining (fit), final kNN (test from last.ckpt), linear probe (fit + test from its best.ckpt)."""
    cfg = f"{CONFIG_DIR}/{dataset}_{variant}.yaml"
    lin_cfg = f"{CONFIG_DIR}/{dataset}_linear.yaml"
    t0 = time.time()
    fit = pretrain_main(["fit", "--config", cfg, f"--data.root={root}", *overrides])
    ckpt = str(last_checkpoint(fit.trainer))
    test = pretrain_main(["test", "--config", cfg, f"--data.root={root}", "--ckpt_path", ckpt, *overrides])
    knn = _metric(test, "test/knn20_top1")
    lin = linear_main(["fit", "--config", lin_cfg, f"--data.root={root}", f"--model.pretrained={ckpt}", *overrides])
    best = _metric(lin, "val/best_acc1")
    return {"knn": knn, "linear_best": best, "checkpoint": ckpt, "hours": (time.time() - t0) / 3600}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    overrides = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, help=f"one of {sorted(d for d in DATASETS if d != 'digits')}")
    parser.add_argument("--root", default=None, help="data folder (default: data/<dataset>)")
    parser.add_argument("--variants", nargs="+", default=["cgh", "ressl"], choices=["cgh", "ressl"])
    args = parser.parse_args(argv)
    if args.dataset not in DATASETS or args.dataset == "digits":
        print(
            f"unknown dataset {args.dataset!r}; choose from {sorted(d for d in DATASETS if d != 'digits')} "
            "(the digits run through `make demo-cgh`)",
            file=sys.stderr,
        )
        return 2
    root = args.root or f"data/{args.dataset}"
    missing = missing_files(args.dataset, root)
    if missing:
        print(f"reproduce-cgh {args.dataset}: data missing under {root}:", file=sys.stderr)
        for m in missing:
            print(f"  {m}", file=sys.stderr)
        print(
            "Put the files there (layouts in projects/cgh/README.md, section Data) or pass DATA_ROOT=<folder>.",
            file=sys.stderr,
        )
        return 2
    results = {v: run_variant(args.dataset, root, v, overrides) for v in args.variants}

    def pct(x: object) -> str:
        return "-" if x is None else f"{100 * float(x):.2f}"

    print(f"\nCGH reproduction on {args.dataset} (root {root})")
    print(f"{'method':<8}{'kNN top-1 %':>13}{'linear top-1 % (best)':>24}  reference linear top-1 %")
    for v, r in results.items():
        ref = REFERENCE.get((args.dataset, v), NOT_AVAILABLE if v == "cgh" else "not published for this dataset")
        print(f"{v:<8}{pct(r['knn']):>13}{pct(r['linear_best']):>24}  {ref}")
    if "cgh" in results and "ressl" in results:
        print("Paper numbers are unavailable: compare CGH with ReSSL trained here by the same code and budget.")
    for v, r in results.items():
        print(f"{v}: pretraining checkpoint {r['checkpoint']} ({r['hours']:.2f} h)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
