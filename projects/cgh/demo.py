"""CPU demo: CGH vs ReSSL vs a random-init encoder vs raw pixels on the procedural ``shapes_many``.

Both methods pretrain with ``configs/demo.yaml`` (ReSSL adds ``configs/demo_ressl.yaml``: the same-context
global term, no hypercolumn head): same encoder, epochs, batch, optimiser and views. Each encoder is evaluated on
the test split by the weighted kNN (k 20, T 0.07, pooled backbone features, memory = the train split) and by a
linear probe (logistic regression on the frozen, standardised features); raw pixels and the randomly initialised
encoder (CGH's architecture, one per seed) are the baselines. The kNN monitor's curve per epoch (with the
collapse monitor's effective rank and queue similarity) is saved as ``<runs>/cgh/demo_knn.png``
(``demo_knn_<dataset>.png`` with ``--dataset``).

Every training runs in its own process with one thread (``--jobs`` at a time), so the numbers do not depend on
how many cores the machine has:

    python -m projects.cgh.demo [--seeds 0 1 2] [--epochs N] [--jobs 2] [--dataset shapes_many] [--controls]

``--controls`` adds the same encoder, views and budget trained with SimCLR's loss and with labels
(``projects/cgh/controls.py``): they show what the pipeline can learn in the budget, apart from the objective.

``--dataset`` overrides ``data.dataset`` of ``configs/demo.yaml`` (``shapes_many``: several objects of the class per
image, so raw pixels and the random encoder score low; ``shapes``, one centred object, and ``shapes_hard``, one
small object anywhere, are the earlier sets; projects/cgh/README.md).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
import yaml

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
CONFIG = str(CONFIG_DIR / "demo.yaml")
RESSL = str(CONFIG_DIR / "demo_ressl.yaml")
METHODS = {"CGH": [CONFIG], "ReSSL": [CONFIG, RESSL]}
CONTROLS = {"SimCLR (control)": "simclr", "supervised (control)": "supervised"}


def _data_module(dataset: str | None = None):
    from projects.cgh.data import CGHDataModule

    cfg = yaml.safe_load(Path(CONFIG).read_text())["data"]
    return CGHDataModule(
        dataset=dataset or cfg["dataset"], root=cfg.get("root", ""), num_workers=0, eval_batch_size=512
    )


@torch.no_grad()
def _features(model, loader) -> tuple[torch.Tensor, torch.Tensor]:
    model.eval()
    feats, labels = [], []
    for x, y, _ in loader:
        feats.append(model.knn_features(x))
        labels.append(y)
    return torch.cat(feats), torch.cat(labels)


def evaluate(model, dm, linear: bool = True) -> dict[str, float]:
    """kNN top-1 and linear-probe top-1 on the test split (``model=None``: raw pixels); ``linear=False``: kNN only
    (the per-epoch curve of the controls)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from common.metrics.knn import weighted_knn_scores

    memory, query = dm.test_dataloader()
    if model is None:
        fm = torch.cat([x.flatten(1) for x, _, _ in memory])
        ym = torch.cat([y for _, y, _ in memory])
        fq = torch.cat([x.flatten(1) for x, _, _ in query])
        yq = torch.cat([y for _, y, _ in query])
    else:
        fm, ym = _features(model, memory)
        fq, yq = _features(model, query)
    knn = (weighted_knn_scores(fm, ym, fq, dm.num_classes, k=20, T=0.07).argmax(1) == yq).float().mean().item()
    if not linear:
        return {"knn": knn}
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(fm.numpy(), ym.numpy())
    lin = float((clf.predict(fq.numpy()) == yq.numpy()).mean())
    return {"knn": knn, "linear": lin}


def train_and_evaluate(name: str, seed: int, epochs: int | None, dataset: str | None = None) -> dict:
    """One pretraining run (in a worker process, one thread) and its evaluation."""
    torch.set_num_threads(1)
    if name in CONTROLS:
        from projects.cgh.controls import train_control

        return train_control(CONTROLS[name], seed, epochs, dataset)
    from common.callbacks.collapse_monitor import CollapseMonitor
    from common.callbacks.knn_monitor import KNNMonitor
    from common.cli import last_checkpoint
    from projects.cgh.main import main as pretrain_main
    from projects.cgh.module import CGHModule

    args = ["fit"] + [a for c in METHODS[name] for a in ("--config", c)]
    args += [f"--seed_everything={seed}", "--trainer.enable_progress_bar=false"]
    args += [f"--trainer.max_epochs={epochs}"] if epochs else []
    args += [f"--data.dataset={dataset}"] if dataset else []
    t0 = time.time()
    cli = pretrain_main(args)
    minutes = (time.time() - t0) / 60
    ckpt = str(last_checkpoint(cli.trainer))
    knn_cb = next(c for c in cli.trainer.callbacks if isinstance(c, KNNMonitor))
    col_cb = next(c for c in cli.trainer.callbacks if isinstance(c, CollapseMonitor))
    model = CGHModule.load_from_checkpoint(ckpt, map_location="cpu")
    res = evaluate(model, _data_module(dataset))
    hp = {k: v for k, v in cli.model.hparams.items() if not k.startswith("_")}
    return res | {
        "name": name,
        "seed": seed,
        "minutes": minutes,
        "checkpoint": ckpt,
        "curve": [(e + 1, a) for e, a in knn_cb.history],
        "collapse": [(e + 1, s) for e, s in col_cb.history],
        "hparams": hp,
    }


@torch.no_grad()
def recalibrate_bn(model, loader) -> None:
    """Sets the backbone's BN running statistics to the mean and variance of ``loader``'s images (a fresh
    BN keeps mean 0 / variance 1, which in eval mode makes it the identity: a different function)."""
    bns = [m for m in model.student.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the batches
    model.student.backbone.train()
    for x, _, _ in loader:
        model.student.backbone(x)
    for bn in bns:
        bn.momentum = 0.1
    model.eval()


def random_init(hp: dict, seed: int, calibrate: bool, dataset: str | None = None) -> dict[str, float]:
    """The same architecture, randomly initialised with ``seed``, evaluated like the trained ones; with
    ``calibrate`` its BN statistics are first set to those of the train split (as training would)."""
    from projects.cgh.module import CGHModule

    torch.manual_seed(seed)
    model = CGHModule(**hp)
    dm = _data_module(dataset)
    if calibrate:
        recalibrate_bn(model, dm.test_dataloader()[0])
    return evaluate(model, dm)


def _report(r: dict) -> None:
    """One line per finished run (printed as soon as it is done: a long multi-seed demo shows progress)."""
    print(
        f"[cgh demo] seed {r['seed']} {r['name']}: kNN {r['knn']:.3f}, linear {r['linear']:.3f}, "
        f"{r['minutes']:.1f} min"
        + (f", checkpoint {r['checkpoint']}" if r["checkpoint"] else "")
        + f"\n  kNN monitor per epoch: {_curve(r['curve'])}",
        flush=True,
    )


def _curve(curve: list[tuple[int, float]]) -> str:
    """``e1 0.231, e2 0.250, ... (best 0.41 at epoch 14)``."""
    best = max(curve, key=lambda t: t[1])
    return ", ".join(f"e{e} {a:.3f}" for e, a in curve) + f" (best {best[1]:.3f} at epoch {best[0]})"


def _fmt(vals: list[float]) -> str:
    if len(vals) == 1:
        return f"{vals[0]:.3f}"
    return f"{np.mean(vals):.3f} ± {np.std(vals):.3f}"


def plot(runs: list[dict], baselines: dict[str, float], path: Path) -> None:
    """kNN top-1 per epoch of every run (baselines dashed), and the collapse monitor's signals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    colours = {"CGH": "tab:blue", "ReSSL": "tab:orange", "SimCLR (control)": "tab:green"}
    colours["supervised (control)"] = "tab:purple"
    for r in runs:
        c = colours[r["name"]]
        ep, acc = zip(*r["curve"], strict=True)
        axes[0].plot(ep, acc, color=c, alpha=0.8, label=f"{r['name']} seed {r['seed']}")
        if "collapse" not in r:  # the controls have no teacher or queue
            continue
        cep = [e for e, _ in r["collapse"]]
        axes[1].plot(cep, [s["collapse/student_g/erank"] for _, s in r["collapse"]], color=c, alpha=0.8)
        axes[2].plot(cep, [s["collapse/queue_g/mean_cos"] for _, s in r["collapse"]], color=c, alpha=0.8)
    for (label, value), style in zip(baselines.items(), ("--", ":", "-."), strict=False):
        axes[0].axhline(value, color="gray", linestyle=style, label=label)
    axes[0].set(xlabel="epoch", ylabel="kNN top-1 (test)", title="kNN monitor (k 20, backbone features)")
    axes[1].set(xlabel="epoch", ylabel="effective rank", title="student global embedding: effective rank")
    axes[2].set(xlabel="epoch", ylabel="mean cosine", title="global queue: mean cosine between rows")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=None, help="override max_epochs of configs/demo.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--jobs", type=int, default=2, help="trainings at a time (one thread each)")
    parser.add_argument("--dataset", default=None, help="override data.dataset of configs/demo.yaml")
    parser.add_argument("--controls", action="store_true", help="also train the SimCLR and supervised controls")
    args = parser.parse_args(argv)
    t0 = time.time()
    torch.set_num_threads(1)
    names = list(METHODS) + (list(CONTROLS) if args.controls else [])
    jobs = [(name, seed, args.epochs, args.dataset) for seed in args.seeds for name in names]
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn")) as pool:
            runs = []
            for r in pool.map(train_and_evaluate, *zip(*jobs, strict=True)):
                _report(r)
                runs.append(r)
    else:
        runs = []
        for j in jobs:
            runs.append(train_and_evaluate(*j))
            _report(runs[-1])
    dm = _data_module(args.dataset)
    rows: dict[str, list[dict]] = {"raw pixels": [evaluate(None, dm)]}
    for name in names:
        rows[name] = [r for r in runs if r["name"] == name]
    hp = rows["CGH"][0]["hparams"]
    rows["random init, BN fresh"] = [random_init(hp, s, False, args.dataset) for s in args.seeds]
    rows["random init, BN data"] = [random_init(hp, s, True, args.dataset) for s in args.seeds]
    print(
        f"\nCGH demo: procedural shapes, dataset {dm.hparams.dataset} (32 px, {len(dm.knn_datasets()[0])} train / "
        f"{len(dm.knn_datasets()[1])} test, 10 classes), ResNet-18 width {hp['width']}, same budget per method; "
        f"mean ± std over seeds {args.seeds}"
    )
    print(f"{'encoder':<22}{'kNN top-1 (k=20)':>20}{'linear probe':>18}{'train min':>14}")
    for name, rs in rows.items():
        mins = _fmt([r["minutes"] for r in rs]) if "minutes" in rs[0] else "-"
        print(f"{name:<22}{_fmt([r['knn'] for r in rs]):>20}{_fmt([r['linear'] for r in rs]):>18}{mins:>14}")
    by_seed = {(r["name"], r["seed"]): r["knn"] for r in runs}
    for name in METHODS:
        print(f"{name} kNN per seed {args.seeds}: " + " / ".join(f"{by_seed[(name, s)]:.3f}" for s in args.seeds))
    diff = [by_seed[("CGH", s)] - by_seed[("ReSSL", s)] for s in args.seeds]
    print(f"CGH - ReSSL kNN, paired by seed: {_fmt(diff)}")
    baselines = [n for n in rows if n not in names]
    strongest = max(baselines, key=lambda n: np.mean([r["knn"] for r in rows[n]]))
    top = float(np.mean([r["knn"] for r in rows[strongest]]))
    for name in names:
        gap = float(np.mean([r["knn"] for r in rows[name]])) - top
        print(f"{name} kNN - strongest baseline ({strongest}, {top:.3f}): {gap:+.3f} (mean over seeds)")
    from common.cli import runs_root

    name = "demo_knn.png" if args.dataset is None else f"demo_knn_{args.dataset}.png"
    path = runs_root().resolve() / "cgh" / name
    base = {name: float(np.mean([r["knn"] for r in rows[name]])) for name in baselines}
    plot(runs, base, path)
    print(f"kNN curves: {path}; total {(time.time() - t0) / 60:.1f} min with {args.jobs} job(s)")
    return {"rows": rows, "runs": runs, "plot": str(path)}


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
