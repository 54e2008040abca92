"""MaskCon vs its baselines on the bundled noisy digits, offline on CPU (``make demo-maskcon``).

Every method is trained with the same config (``configs/demo.yaml``: same encoder, queue, schedule, epochs and
seed) and evaluated by fine-label Recall@K on the test split; the table puts them beside raw-pixel retrieval.

    python -m projects.maskcon.demo                                   # ~10 min on 2 CPU cores
    python -m projects.maskcon.demo --config projects/maskcon/configs/digits_full.yaml   # 200 epochs
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from common.cli import runs_root
from common.data.digits import raw_pixel_recall
from projects.maskcon.main import main as maskcon_main

DEMO_CONFIG = str(Path(__file__).resolve().parent / "configs" / "demo.yaml")

# (row name, overrides): MaskCon and the official code's baselines, plus SupCon on fine labels as the oracle.
METHODS: dict[str, list[str]] = {
    "maskcon": ["--model.mode=maskcon"],
    "selfcon": ["--model.mode=selfcon"],
    "supcon_coarse": ["--model.mode=supcon"],
    "grafit": ["--model.mode=grafit"],
    "coins": ["--model.mode=coins"],
    "supcon_fine": ["--model.mode=supcon", "--model.train_labels=fine"],
}
DESCRIPTION = {
    "maskcon": "MaskCon (w=0.5, T2=0.05)",
    "selfcon": "SelfCon / MoCo (w=0)",
    "supcon_coarse": "SupCon on coarse labels",
    "grafit": "Grafit-style (w=0.5)",
    "coins": "CoIns (w=0.5)",
    "supcon_fine": "SupCon on fine labels (oracle)",
}


def run_method(name: str, config: str, extra: list[str]) -> dict[str, float]:
    """Fit one method with ``config`` and test it; returns the test metrics, the seconds taken and the run folder."""
    t0, c0 = time.time(), time.process_time()
    cli = maskcon_main(["fit", "--config", config, *METHODS[name], *extra])
    res = cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)[0]
    out = {k: float(v) for k, v in res.items()}
    out["seconds"] = time.time() - t0
    out["cpu_seconds"] = time.process_time() - c0
    out["epochs"] = cli.trainer.current_epoch
    out["run"] = str(Path(cli.trainer.log_dir).resolve())
    return out


def standardized_pixel_recall(ks=(1, 2, 5), canvas: int = 12) -> dict[int, float]:
    """Recall@K of the test digits' pixels after the per-image standardisation the encoders see."""
    import torch

    from common.data.digits import NoisyDigits
    from common.metrics.retrieval import recall_at_k
    from projects.maskcon.data import standardize

    ds = NoisyDigits("test", canvas=canvas)
    return recall_at_k(torch.stack([standardize(x) for x in ds.images]).flatten(1), ds.targets, ks)


def format_table(
    raw: dict[int, float], results: dict[str, dict], ks=(1, 2, 5), raw_std: dict[int, float] | None = None
) -> str:
    head = "| method | " + " | ".join(f"R@{k}" for k in ks) + " | wall s | CPU s |"
    lines = [head, "|" + "---|" * (len(ks) + 3)]
    lines.append("| raw pixels (no training) | " + " | ".join(f"{raw[k]:.3f}" for k in ks) + " | - | - |")
    if raw_std is not None:
        vals = " | ".join(f"{raw_std[k]:.3f}" for k in ks)
        lines.append(f"| raw pixels, standardised per image (the encoders' input) | {vals} | - | - |")
    for name, r in results.items():
        vals = " | ".join(f"{r.get(f'test/recall@{k}', float('nan')):.3f}" for k in ks)
        lines.append(f"| {DESCRIPTION[name]} | {vals} | {r['seconds']:.0f} | {r['cpu_seconds']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=DEMO_CONFIG, help="the shared config of every method")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--epochs", type=int, default=None, help="override trainer.max_epochs")
    p.add_argument("--grouping", default=None, choices=["shape3", "parity"], help="override the coarse grouping")
    args = p.parse_args(argv)
    extra = []
    if args.epochs is not None:
        extra.append(f"--trainer.max_epochs={args.epochs}")
    if args.grouping is not None:
        extra.append(f"--data.digits_grouping={args.grouping}")
        extra.append(f"--model.num_coarse={3 if args.grouping == 'shape3' else 2}")

    raw = raw_pixel_recall(ks=(1, 2, 5))
    raw_std = standardized_pixel_recall(ks=(1, 2, 5))
    results: dict[str, dict] = {}
    for name in args.methods:
        print(f"\n[maskcon demo] training {DESCRIPTION[name]} ...", flush=True)
        results[name] = run_method(name, args.config, extra)
        print(f"[maskcon demo] {name}: R@1 {results[name]['test/recall@1']:.3f}", flush=True)

    table = format_table(raw, results, raw_std=raw_std)
    epochs = next(iter(results.values()))["epochs"] if results else 0
    summary = Path(runs_root()) / "maskcon" / f"{Path(args.config).stem}_summary.md"
    summary.parent.mkdir(parents=True, exist_ok=True)
    title = f"MaskCon demo: config {args.config}, {epochs} epochs, grouping {args.grouping or 'from the config'}"
    summary.write_text(f"{title}\n\n{table}\n")
    (summary.with_suffix(".json")).write_text(
        json.dumps({"raw_pixels": raw, "raw_pixels_standardised": raw_std, "methods": results}, indent=1)
    )
    print(f"\n{title}\nfine-label Recall@K on the digits test split (coarse labels only in training, but the oracle)")
    print(table)
    print("\nrun folders (checkpoints, TensorBoard logs, test_embeddings_tsne.png):")
    for name, r in results.items():
        print(f"  {name:14s} {r['run']}")
    print(f"summary: {summary.resolve()}")
    return results


if __name__ == "__main__":
    main()
