"""Retrieval with a trained MaskCon checkpoint: nearest neighbours of a test image among the test split.

The features are the ones the retrieval metric scores (``MaskConModule.embed``: L2-normalised query-backbone
output of the deterministic test view); neighbours are ranked by cosine similarity, the query itself excluded, and
carry their fine labels (which training never saw) and coarse labels.

    python -m projects.maskcon.retrieve --ckpt runs/maskcon/demo/version_0/checkpoints/last.ckpt --query 0 --k 8
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from projects.maskcon.data import MaskConDataModule
from projects.maskcon.module import MaskConModule


@dataclass
class Gallery:
    """The embedded test split: ``embeddings [N, D]`` (unit norm), ``coarse``/``fine`` labels ``[N]``."""

    embeddings: Tensor
    coarse: np.ndarray
    fine: np.ndarray
    datamodule: MaskConDataModule

    def __len__(self) -> int:
        return int(self.embeddings.shape[0])

    def image(self, index: int) -> np.ndarray:
        """Test image ``index`` as stored (before normalisation), ``uint8 [H, W, 3]``, for display."""
        base = self.datamodule.test_set.base
        img = base[index][0]
        if isinstance(img, Image.Image):
            return np.asarray(img.convert("RGB"))
        x = torch.as_tensor(img).float()
        x = (x - x.min()) / (x.max() - x.min()).clamp_min(1e-8)  # digits are stored standardised
        arr = (x * 255).round().byte()
        arr = arr.expand(3, -1, -1) if arr.shape[0] == 1 else arr
        return arr.permute(1, 2, 0).numpy()


def load_gallery(
    ckpt: str | os.PathLike, data_root: str | None = None, batch_size: int = 256
) -> tuple[MaskConModule, Gallery]:
    """The module of ``ckpt`` and its test split embedded. The data module is rebuilt from the hyperparameters the
    CLI saved in the checkpoint (``data_root`` overrides where the data sets are); a missing data set raises
    ``MissingDatasetError`` listing its files."""
    path = Path(ckpt)
    if not path.is_file():
        raise FileNotFoundError(f"MaskCon checkpoint not found: {path}")
    module = MaskConModule.load_from_checkpoint(path, map_location="cpu").eval()
    saved = torch.load(path, map_location="cpu", weights_only=True)
    hp: dict[str, Any] = dict(saved.get("datamodule_hyper_parameters") or {})
    if not hp:
        raise ValueError(f"{path}: no data-module hyperparameters saved (not written by main.py fit?)")
    if data_root is not None:
        hp["data_root"] = data_root
    hp["num_workers"] = 0
    dm = MaskConDataModule(**hp)
    dm.setup("test")
    loader = torch.utils.data.DataLoader(dm.test_set, batch_size=batch_size, shuffle=False, num_workers=0)
    embs, coarse, fine = [], [], []
    for x, c, f, _ in loader:
        embs.append(module.embed(x))
        coarse.append(c)
        fine.append(f)
    gallery = Gallery(torch.cat(embs), torch.cat(coarse).numpy(), torch.cat(fine).numpy(), dm)
    return module, gallery


def neighbours(gallery: Gallery, query: int, k: int = 8) -> list[dict[str, Any]]:
    """The ``k`` test images most similar to test image ``query`` (itself excluded), best first:
    ``{"index", "similarity", "fine", "coarse"}``."""
    n = len(gallery)
    if not 0 <= query < n:
        raise IndexError(f"query index {query} outside the test split (0..{n - 1})")
    sim = gallery.embeddings @ gallery.embeddings[query]
    sim[query] = -float("inf")
    top = sim.topk(min(k, n - 1))
    return [
        {"index": int(i), "similarity": float(s), "fine": int(gallery.fine[i]), "coarse": int(gallery.coarse[i])}
        for s, i in zip(top.values, top.indices)
    ]


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    p = argparse.ArgumentParser(description="MaskCon: nearest test images of a test image, with fine labels")
    p.add_argument("--ckpt", required=True, help="a Lightning checkpoint of main.py fit")
    p.add_argument("--query", type=int, default=0, help="index of the query in the test split")
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--data_root", default=None)
    a = p.parse_args(argv)
    _, gallery = load_gallery(a.ckpt, a.data_root)
    res = neighbours(gallery, a.query, a.k)
    print(f"query {a.query}: fine {gallery.fine[a.query]}, coarse {gallery.coarse[a.query]}")
    for r in res:
        print(f"  #{r['index']:<6d} sim {r['similarity']:.3f}  fine {r['fine']}  coarse {r['coarse']}")
    return res


if __name__ == "__main__":
    main()
