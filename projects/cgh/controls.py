"""Controls for the CGH demo: the demo's encoder, views, data and budget, trained with other objectives.

* ``simclr``: SimCLR's NT-Xent (Chen et al., 2020): two strong views per image, in-batch negatives, no teacher,
  no queue, projection head Linear-BN-ReLU-Linear.
* ``supervised``: cross-entropy on the labels of the weak view (an upper reference for the encoder).

They answer "can this pipeline (procedural data, batched views, width-16 ResNet-18, kNN read-out) learn the
classes in the demo's budget at all?" apart from "does the relational objective learn them?" (projects/cgh/README.md).
Same optimiser as the demo (SGD, momentum 0.9, weight decay 5e-4 off for 1-D parameters, lr 0.05 with one warm-up
epoch and a cosine), same number of steps (``epochs * (n_train // batch_size)``).

    python -m projects.cgh.controls --dataset shapes_many --kind simclr --seed 0
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml
from torch import Tensor, nn

from common.nn.resnet import ResNetBackbone
from common.nn.schedules import warmup_cosine
from projects.cgh.module import param_groups

KINDS = ("simclr", "supervised")
DEMO_CONFIG = Path(__file__).resolve().parent / "configs" / "demo.yaml"


def nt_xent(z1: Tensor, z2: Tensor, temperature: float) -> Tensor:
    """SimCLR's loss. ``z1, z2 [B, D]``: L2-normalised embeddings of two views of the same ``B`` images.

    Each of the ``2B`` embeddings is classified among the other ``2B - 1`` by cosine / ``temperature``; its
    positive is the other view of its image. Returns the mean cross-entropy over the ``2B`` (a scalar).
    """
    if z1.shape != z2.shape or z1.dim() != 2:
        raise ValueError(
            f"nt_xent: expected two [B, D] batches of the same shape, got {tuple(z1.shape)}, {tuple(z2.shape)}"
        )
    b = z1.shape[0]
    z = torch.cat([z1, z2])
    logits = z @ z.t() / temperature
    logits = logits.masked_fill(torch.eye(2 * b, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(b, 2 * b), torch.arange(b)]).to(z.device)
    return F.cross_entropy(logits, target)


class ControlEncoder(nn.Module):
    """The demo's backbone with a SimCLR projection head (``simclr``) or a linear classifier (``supervised``)."""

    def __init__(
        self,
        kind: str,
        arch: str,
        cifar_stem: bool,
        in_channels: int,
        width: int,
        num_classes: int,
        mlp_hidden: int = 256,
        out_dim: int = 64,
    ) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"ControlEncoder: kind must be one of {KINDS}, got {kind!r}")
        self.kind = kind
        self.backbone = ResNetBackbone(arch, cifar_stem=cifar_stem, in_channels=in_channels, width=width)
        dim = self.backbone.out_dim
        if kind == "simclr":
            self.head = nn.Sequential(
                nn.Linear(dim, mlp_hidden),
                nn.BatchNorm1d(mlp_hidden),
                nn.ReLU(inplace=True),
                nn.Linear(mlp_hidden, out_dim),
            )
        else:
            self.head = nn.Linear(dim, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C, H, W]`` -> ``[B, out_dim]`` L2-normalised (simclr) or ``[B, num_classes]`` logits."""
        y = self.head(self.backbone(x))
        return F.normalize(y, dim=1) if self.kind == "simclr" else y

    @torch.no_grad()
    def knn_features(self, x: Tensor) -> Tensor:
        """L2-normalised pooled backbone features, the read-out the demo uses for every encoder."""
        return F.normalize(self.backbone(x), dim=1)


def train_control(
    kind: str,
    seed: int,
    epochs: int | None = None,
    dataset: str | None = None,
    temperature: float = 0.2,
    max_steps: int | None = None,
    n_train: int | None = None,
) -> dict:
    """Trains one control with the demo's encoder, views and optimiser and evaluates it like the demo's runs.

    Returns ``{"name", "seed", "knn", "linear", "minutes", "steps", "loss", "curve": [(epoch, kNN top-1)],
    "checkpoint": None}``.
    ``max_steps`` and ``n_train`` shorten the run (tests).
    """
    from projects.cgh.augment import BatchViews
    from projects.cgh.data import DATASETS, PROCEDURAL, _blur_kernel, build_dataset
    from projects.cgh.demo import _data_module, evaluate

    cfg = yaml.safe_load(DEMO_CONFIG.read_text())
    hp, data = cfg["model"], cfg["data"]
    dataset = dataset or data["dataset"]
    if dataset not in PROCEDURAL:
        raise ValueError(f"train_control: dataset must be one of the procedural sets {PROCEDURAL}, got {dataset!r}")
    epochs = epochs or cfg["trainer"]["max_epochs"]
    torch.manual_seed(seed)
    info = DATASETS[dataset]
    train = build_dataset(dataset, "", "train")
    images = torch.from_numpy(train.images.copy()).permute(0, 3, 1, 2)[:n_train]
    labels = torch.from_numpy(train.targets.copy())[:n_train]
    batch = min(int(data["batch_size"]), len(images))
    per_epoch = len(images) // batch
    total = per_epoch * epochs if max_steps is None else max_steps
    blur = data.get("blur_prob", 0.5)  # CGHDataModule's default when the config does not set it
    views = BatchViews(info.image_size, info.mean, info.std, blur_prob=blur, blur_kernel=_blur_kernel(info.image_size))
    model = ControlEncoder(kind, hp["arch"], hp["cifar_stem"], hp["in_channels"], hp["width"], info.num_classes)
    groups = param_groups(model, hp["weight_decay"], hp.get("exclude_norm_bias_wd", True))
    opt = torch.optim.SGD(groups, lr=hp["lr"], momentum=hp.get("sgd_momentum", 0.9))
    warm = int(round(hp["warmup_epochs"] * per_epoch))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, warm, total))
    dm = _data_module(dataset)
    t0, curve, step = time.time(), [], 0
    model.train()
    while step < total:
        for idx in torch.randperm(len(images)).split(batch):
            if len(idx) < batch or step >= total:  # drop_last, as the demo's loader
                break
            x = images[idx].float() / 255
            if kind == "simclr":
                loss = nt_xent(model(views.strong(x)), model(views.strong(x)), temperature)
            else:
                loss = F.cross_entropy(model(views.weak(x)), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
        if max_steps is None:
            curve.append((len(curve) + 1, evaluate(model, dm, linear=False)["knn"]))
            model.train()
    minutes = (time.time() - t0) / 60
    model.eval()
    res = evaluate(model, dm)
    name = {"simclr": "SimCLR (control)", "supervised": "supervised (control)"}[kind]
    return res | {
        "name": name,
        "seed": seed,
        "minutes": minutes,
        "curve": curve,
        "checkpoint": None,
        "steps": step,
        "loss": loss.item(),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", choices=KINDS, default="simclr")
    parser.add_argument("--dataset", default=None, help="a procedural set (default: data.dataset of configs/demo.yaml)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    r = train_control(args.kind, args.seed, args.epochs, args.dataset)
    curve = ", ".join(f"e{e} {a:.3f}" for e, a in r["curve"])
    print(
        f"[cgh control] {r['name']} seed {r['seed']}: kNN {r['knn']:.3f}, linear {r['linear']:.3f}, "
        f"{r['minutes']:.1f} min\n  kNN per epoch: {curve}"
    )
    return r


if __name__ == "__main__":
    main()
