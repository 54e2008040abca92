"""``make reproduce-dferclip``: the paper's table (DFEW 5 folds, FERV39k, MAFW 5 folds), ours beside theirs.

Every run is ``main.py fit`` then ``test`` with a paper config under ``projects/dferclip/configs/``. Protocols:
``honest`` (default: train on the whole training fold, report the last epoch) and ``official`` (validate on the
test fold every epoch and report the best-test-WAR checkpoint, as the authors' code does; only for comparing
with their numbers). ``--released`` skips training and tests the authors' released checkpoints instead
(``dferclip_<dataset>[_set<k>]`` in ``common/weights.py``). Without the data or the weights it stops at once and
lists what is missing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from common.metrics.classification import fold_average
from common.weights import describe, resolve

CONFIG_DIR = Path(__file__).parent / "configs"
PAPER = {"dfew": (59.61, 71.25), "ferv39k": (41.27, 51.65), "mafw": (39.89, 52.55)}  # UAR / WAR, %
FOLDS = {"dfew": [1, 2, 3, 4, 5], "ferv39k": [1], "mafw": [1, 2, 3, 4, 5]}
DATA_HELP = {
    "dfew": "DFEW face frames (clip_224x224/<5-digit id>/...) from https://dfew-dataset.github.io (licence form)",
    "ferv39k": "FERV39k face crops (2_ClipsforFaceCrop/<scene>/<emotion>/<id>/...) from the FERV39k authors",
    "mafw": "MAFW face frames (data/faces/<5-digit id>/...) from https://mafw-database.github.io/MAFW (licence form)",
}


def _config(dataset: str) -> dict:
    return yaml.safe_load((CONFIG_DIR / f"{dataset}.yaml").read_text())


def released_name(dataset: str, fold: int) -> str:
    """Registry name of the authors' checkpoint for one dataset/fold."""
    return f"dferclip_{dataset}" + (f"_set{fold}" if len(FOLDS[dataset]) > 1 else "")


def missing_inputs(datasets: list[str], annotation_dir: str | None = None, released: bool = False) -> list[str]:
    """Human-readable lines for every absent input of the requested runs (empty when all is there)."""
    problems = []
    if released:
        weights = {released_name(d, k) for d in datasets for k in FOLDS[d]}
    else:
        weights = {_config(d)["model"]["clip_weights"] for d in datasets}
    for w in sorted(weights):
        try:
            resolve(w) if not Path(w).is_file() else None
        except FileNotFoundError:
            problems.append(describe(w))
    from projects.dferclip.data import DATASETS

    for d in datasets:
        data = _config(d)["data"]
        ann = Path(annotation_dir or data["annotation_dir"])
        spec = DATASETS[d]
        files = {spec.train_file.format(fold=k) for k in FOLDS[d]} | {spec.test_file.format(fold=k) for k in FOLDS[d]}
        absent = sorted(f for f in files if not (ann / f).is_file())
        if absent:
            problems.append(
                f"{d}: annotation files missing in {ann}/: {', '.join(absent[:3])}{' ...' if len(absent) > 3 else ''}"
                " (copy the annotation/*.txt files of github.com/zengqunzhao/DFER-CLIP there)"
            )
        root = Path(data["data_root"])
        if not root.is_dir():
            problems.append(f"{d}: frame folders missing at {root}/ ({DATA_HELP[d]})")
    return problems


def test_released(dataset: str, fold: int, extra: list[str]) -> dict[str, float]:
    """Test the authors' checkpoint of one fold with our data path; returns ``{"uar", "war"}`` in %."""
    from projects.dferclip.checkpoint import module_from_official_checkpoint
    from projects.dferclip.main import main

    cli = main(["--config", str(CONFIG_DIR / f"{dataset}.yaml"), f"--data.fold={fold}",
                "--model.clip_weights=null", *extra], run=False)  # fmt: skip
    module = module_from_official_checkpoint(resolve(released_name(dataset, fold)))
    res = cli.trainer.test(module, datamodule=cli.datamodule)[0]
    return {"uar": 100 * res["test/uar"], "war": 100 * res["test/war"]}


def run_one(dataset: str, fold: int, protocol: str, extra: list[str]) -> dict[str, float]:
    """Fit and test one fold; returns ``{"uar", "war"}`` in %."""
    from projects.dferclip.main import main

    cfg = str(CONFIG_DIR / f"{dataset}.yaml")
    val = ["--data.val_split=test"] if protocol == "official" else []
    common = ["--config", cfg, f"--data.fold={fold}", *val, *extra]
    cli = main(["fit", *common])
    ckpt = "best" if protocol == "official" else "last"
    res = cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path=ckpt)[0]
    return {"uar": 100 * res["test/uar"], "war": 100 * res["test/war"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=["dfew", "ferv39k", "mafw"], choices=sorted(PAPER))
    p.add_argument("--protocol", default="honest", choices=["honest", "official"])
    p.add_argument("--folds", nargs="+", type=int, default=None, help="subset of folds (DFEW/MAFW)")
    p.add_argument("--released", action="store_true", help="test the authors' checkpoints instead of training")
    p.add_argument("--out", default="runs/dferclip/reproduce.json", help="where the per-fold results are written")
    p.add_argument("extra", nargs="*", help="extra CLI overrides passed to every run, e.g. --trainer.devices=2")
    args = p.parse_args(argv)
    problems = missing_inputs(args.datasets, released=args.released)
    if problems:
        print("reproduce-dferclip: cannot start, inputs are missing:\n" + "\n".join(f"- {x}" for x in problems))
        print("Put them at the paths above (see projects/dferclip/README.md) and rerun `make reproduce-dferclip`.")
        return 2
    results: dict[str, dict] = {}
    for d in args.datasets:
        folds = [f for f in FOLDS[d] if args.folds is None or f in args.folds]
        if args.released:
            per_fold = [test_released(d, f, args.extra) for f in folds]
        else:
            per_fold = [run_one(d, f, args.protocol, args.extra) for f in folds]
        results[d] = {"folds": per_fold, "mean": fold_average(per_fold)}
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2))
    what = "released checkpoints" if args.released else f"protocol={args.protocol} (paper: best test epoch)"
    print(f"\nDFER-CLIP, {what}, UAR / WAR in %, mean over folds")
    print(f"{'dataset':10s} {'folds':>5s} {'ours UAR':>9s} {'ours WAR':>9s} {'paper UAR':>10s} {'paper WAR':>10s}")
    for d, r in results.items():
        m = r["mean"]
        print(f"{d:10s} {len(r['folds']):5d} {m['uar']:9.2f} {m['war']:9.2f} {PAPER[d][0]:10.2f} {PAPER[d][1]:10.2f}")
    print(f"per-fold results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
