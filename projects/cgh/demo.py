"""CPU demo: CGH vs the ReSSL configuration vs a random-init encoder on the bundled noisy digits.

Both methods train with ``configs/demo.yaml`` (ReSSL adds ``configs/demo_ressl.yaml``: same-context global
term, no hypercolumn head), same epochs, batch, optimiser and augmentations. Each encoder is then
evaluated on the clean test split with the weighted kNN (k=20, T=0.07, backbone features, memory = train
split) and a logistic-regression probe on frozen features; raw pixels are shown for reference.

    python -m projects.cgh.demo [--epochs N] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from common.cli import last_checkpoint
from common.metrics.knn import weighted_knn_scores
from projects.cgh.data import CGHDataModule
from projects.cgh.main import main as pretrain_main
from projects.cgh.module import CGHModule

CONFIG = str(Path(__file__).resolve().parent / "configs" / "demo.yaml")
RESSL = str(Path(__file__).resolve().parent / "configs" / "demo_ressl.yaml")


@torch.no_grad()
def _features(model: CGHModule, loader) -> tuple[torch.Tensor, torch.Tensor]:
    model.eval()
    feats, labels = [], []
    for x, y, _ in loader:
        feats.append(model.knn_features(x))
        labels.append(y)
    return torch.cat(feats), torch.cat(labels)


def evaluate(model: CGHModule | None, dm: CGHDataModule) -> dict[str, float]:
    """kNN top-1 and logistic-regression top-1 on the test split (``model=None``: raw pixels)."""
    memory, query = dm.test_dataloader()
    if model is None:
        fm = torch.cat([x.flatten(1) for x, _, _ in memory])
        ym = torch.cat([y for _, y, _ in memory])
        fq = torch.cat([x.flatten(1) for x, _, _ in query])
        yq = torch.cat([y for _, y, _ in query])
    else:
        fm, ym = _features(model, memory)
        fq, yq = _features(model, query)
    knn = (weighted_knn_scores(fm, ym, fq, 10, k=20, T=0.07).argmax(1) == yq).float().mean().item()
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000)).fit(fm.numpy(), ym.numpy())
    lin = float((clf.predict(fq.numpy()) == yq.numpy()).mean())
    return {"knn": knn, "linear": lin}


def run(epochs: int | None, seeds: list[int]) -> dict[str, list[dict[str, float]]]:
    dm = CGHDataModule(dataset="digits", root="", num_workers=0, eval_batch_size=512)
    results: dict[str, list[dict[str, float]]] = {"raw pixels": [evaluate(None, dm)]}
    for seed in seeds:
        extra = [f"--seed_everything={seed}"] + ([f"--trainer.max_epochs={epochs}"] if epochs else [])
        for name, configs in (("CGH", [CONFIG]), ("ReSSL", [CONFIG, RESSL])):
            args = ["fit"] + [a for c in configs for a in ("--config", c)] + extra
            t0 = time.time()
            cli = pretrain_main(args)
            ckpt = str(last_checkpoint(cli.trainer))
            model = CGHModule.load_from_checkpoint(ckpt, map_location="cpu")
            res = evaluate(model, dm) | {"minutes": (time.time() - t0) / 60}
            print(f"[cgh demo] seed {seed} {name}: {res}  checkpoint {ckpt}", flush=True)
            results.setdefault(name, []).append(res)
            if name == "CGH":
                hp = {k: v for k, v in cli.model.hparams.items() if not k.startswith("_")}
        torch.manual_seed(seed)
        results.setdefault("random-init encoder", []).append(evaluate(CGHModule(**hp), dm))  # CGH's architecture
    return results


def _fmt(vals: list[float]) -> str:
    if len(vals) == 1:
        return f"{vals[0]:.3f}"
    return f"{np.mean(vals):.3f} ± {np.std(vals):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=None, help="override max_epochs of configs/demo.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = parser.parse_args()
    t0 = time.time()
    results = run(args.epochs, args.seeds)
    print("\nCGH demo: noisy 12 px digits (1198 train / 599 test), width-16 ResNet-18, same budget per method")
    print(f"{'encoder':<22}{'kNN top-1 (k=20)':>20}{'logreg top-1':>18}{'train min':>16}")
    for name, rows in results.items():
        mins = _fmt([r["minutes"] for r in rows]) if "minutes" in rows[0] else "-"
        print(f"{name:<22}{_fmt([r['knn'] for r in rows]):>20}{_fmt([r['linear'] for r in rows]):>18}{mins:>16}")
    runs = Path.cwd() / "runs" / "cgh"
    print(f"seeds {args.seeds}; total {(time.time() - t0) / 60:.1f} min; run folders under $PAPERLAB_RUNS or {runs}")


if __name__ == "__main__":
    main()
