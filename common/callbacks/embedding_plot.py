"""A t-SNE plot of the test-set embeddings, saved as an image at the end of ``test``.

Generic: the LightningModule's ``test_step`` returns a dict holding the embeddings (``[B, D]``) under
``embedding_key``, one or more label tensors (``[B]``) under ``label_keys`` (one panel per key, points coloured
by that label) and optionally dataset indices under ``index_key`` (rows repeated by DDP padding are dropped).
Outputs are gathered over ranks; rank 0 draws. The image goes to ``<trainer.log_dir>/<filename>``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import Tensor


def tsne_2d(emb: np.ndarray, seed: int = 0) -> np.ndarray:
    """``[N, D] -> [N, 2]`` t-SNE of L2-normalised rows (cosine geometry), perplexity adapted to small N."""
    from sklearn.manifold import TSNE

    emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    n = emb.shape[0]
    if n < 4:
        raise ValueError(f"t-SNE needs at least 4 points, got {n}")
    perplexity = float(min(30.0, max(1.0, (n - 1) / 3)))
    return TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(emb.astype(np.float32))


def save_embedding_plot(
    xy: np.ndarray, labels: dict[str, np.ndarray], path: str | Path, title: str = "test embeddings (t-SNE)"
) -> Path:
    """Scatter ``xy [N, 2]`` once per entry of ``labels`` (colour = label) side by side; write ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, len(labels), figsize=(5.5 * len(labels), 5), squeeze=False)
    for ax, (name, lab) in zip(axes[0], labels.items()):
        n_cls = len(np.unique(lab))
        cmap = "tab10" if n_cls <= 10 else ("tab20" if n_cls <= 20 else "nipy_spectral")
        ax.scatter(xy[:, 0], xy[:, 1], c=lab, cmap=cmap, s=6, linewidths=0)
        ax.set_title(f"coloured by {name} ({n_cls} classes)")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{title}, {xy.shape[0]} points")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


class EmbeddingPlot(Callback):
    """Collects ``test_step`` outputs and saves a t-SNE image at the end of ``test`` (see the module docstring).

    Args:
        embedding_key / label_keys / index_key: keys of the dict ``test_step`` returns.
        max_points: random subset drawn (seeded) when the test set is larger; t-SNE is quadratic.
        filename: image name inside the run folder.
    """

    def __init__(
        self,
        embedding_key: str = "embedding",
        label_keys: Sequence[str] = ("label",),
        index_key: str | None = "index",
        max_points: int = 2000,
        filename: str = "test_embeddings_tsne.png",
        seed: int = 0,
    ) -> None:
        self.embedding_key, self.label_keys, self.index_key = embedding_key, tuple(label_keys), index_key
        self.max_points, self.filename, self.seed = max_points, filename, seed
        self._rows: list[dict[str, Tensor]] = []
        self.last_path: Path | None = None

    def on_test_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._rows = []

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if not isinstance(outputs, dict) or self.embedding_key not in outputs:
            raise KeyError(f"EmbeddingPlot: test_step must return a dict with {self.embedding_key!r}")
        keys = [self.embedding_key, *self.label_keys] + ([self.index_key] if self.index_key else [])
        self._rows.append({k: outputs[k].detach() for k in keys})

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self._rows:
            return
        cols = {k: torch.cat([r[k] for r in self._rows]) for k in self._rows[0]}
        self._rows = []
        if trainer.world_size > 1:
            cols = {k: pl_module.all_gather(v).flatten(0, 1) for k, v in cols.items()}
        if not trainer.is_global_zero:
            return
        cols = {k: v.cpu() for k, v in cols.items()}
        if self.index_key:
            idx = cols[self.index_key].long()
            _, first = np.unique(idx.numpy(), return_index=True)
            cols = {k: v[torch.as_tensor(first)] for k, v in cols.items()}
        n = cols[self.embedding_key].shape[0]
        if n > self.max_points:
            keep = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed))[: self.max_points]
            cols = {k: v[keep] for k, v in cols.items()}
        if cols[self.embedding_key].shape[0] < 4:
            return
        xy = tsne_2d(cols[self.embedding_key].float().numpy(), seed=self.seed)
        out_dir = Path(trainer.log_dir) if trainer.log_dir else Path(trainer.default_root_dir)
        labels = {k: cols[k].numpy() for k in self.label_keys}
        self.last_path = save_embedding_plot(xy, labels, out_dir / self.filename)
        print(f"[paperlab] embedding plot: {self.last_path.resolve()}", flush=True)
