"""Train and test one paper experiment: ``make reproduce-maskcon DATASET=cifar100 METHOD=maskcon``.

Checks first that the data set and the pretrained backbone are in place; if not, stops at once and says what is
missing and where it goes. Then ``fit`` with ``configs/<dataset>_<method>.yaml``, ``test`` from the final checkpoint
(``last.ckpt``: validation runs on the test split, so a best-on-validation pick would select on the test set), and
prints Recall@K.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


def config_path(dataset: str, method: str) -> Path:
    path = CONFIG_DIR / f"{dataset}_{method}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in CONFIG_DIR.glob("*_*.yaml") if p.stem not in ("digits_full",))
        raise SystemExit(f"no config {path.name}; paper configs: {', '.join(known)}")
    return path


def _override(overrides: list[str], key: str) -> str | None:
    """The value of ``--key=value`` or ``--key value`` among the LightningCLI overrides, if given."""
    for i, arg in enumerate(overrides):
        if arg.startswith(f"--{key}="):
            return arg.split("=", 1)[1]
        if arg == f"--{key}" and i + 1 < len(overrides):
            return overrides[i + 1]
    return None


def missing_inputs(cfg: dict, data_root: str | None) -> list[str]:
    """Messages for every absent input of a config: the data set's files and the pretrained backbone."""
    from common.weights import REGISTRY, MissingWeightsError, resolve
    from projects.maskcon.data import dataset_status

    data = dict(cfg.get("data", {}))
    if data_root is not None:
        data["data_root"] = data_root
    out = []
    msg = dataset_status(**data)
    if msg:
        out.append(msg)
    weights = cfg.get("model", {}).get("backbone_weights")
    if weights:
        try:
            if weights in REGISTRY:
                resolve(weights)
            elif not Path(weights).is_file():
                out.append(f"backbone weights {weights} not found")
        except MissingWeightsError as exc:
            out.append(str(exc))
    return out


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--dataset", required=True, help="cifartoy_good, cifartoy_bad, cifar100, imagenet32, sop_split1, ..."
    )
    p.add_argument("--method", default="maskcon", help="maskcon, selfcon, supcon, grafit or coins")
    p.add_argument("--data_root", default=None, help="override data.data_root of the config")
    p.add_argument("--devices", type=int, default=1, help="GPUs; more than one runs DDP with SyncBatchNorm")
    args, overrides = p.parse_known_args(argv)  # the rest goes to LightningCLI, e.g. --trainer.max_epochs=10

    cfg_file = config_path(args.dataset, args.method)
    cfg = yaml.safe_load(cfg_file.read_text())
    weights = _override(overrides, "model.backbone_weights")
    if weights is not None:
        cfg.setdefault("model", {})["backbone_weights"] = None if weights.lower() in ("null", "none", "") else weights
    problems = missing_inputs(cfg, args.data_root)
    if problems:
        print(f"cannot reproduce {cfg_file.name}; missing inputs:\n" + "\n".join(problems), file=sys.stderr)
        raise SystemExit(2)

    from common.cli import last_checkpoint
    from projects.maskcon.main import main as maskcon_main

    extra = [f"--data.data_root={args.data_root}"] if args.data_root else []
    if args.devices > 1:
        extra += [f"--trainer.devices={args.devices}", "--trainer.strategy=ddp", "--trainer.sync_batchnorm=true"]
    extra += overrides
    cli = maskcon_main(["fit", "--config", str(cfg_file), *extra])
    # The final model, not the best-on-validation one: validation runs on the test split (as the official code),
    # so picking a checkpoint by it would select on the test set.
    ckpt = str(last_checkpoint(cli.trainer))
    res = cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path=ckpt, verbose=False)[0]
    if cli.trainer.is_global_zero:
        print(f"\n{cfg_file.stem}: fine-label retrieval on the test split, checkpoint {ckpt}")
        for k, v in res.items():
            if k.startswith("test/recall@"):
                print(f"  {k[5:]:>10s}  {100 * float(v):6.2f}")
    return {k: float(v) for k, v in res.items()}


if __name__ == "__main__":
    main()
