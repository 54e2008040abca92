"""A training loader whose order survives a resume, mid-epoch included, in one process or under DDP.

``ResumableSampler``: rank ``r`` of ``W`` takes items ``r, r + W, ...`` of a permutation drawn from
``seed + epoch`` (padded by repetition to a multiple of W); it never touches the global RNG. It is a
``DistributedSampler`` with explicit ``num_replicas``/``rank``, so Lightning keeps it under DDP instead of wrapping it.

``ResumableDataLoader``: Lightning checkpoints loaders that have ``state_dict``/``load_state_dict``; this one records
the epoch and the number of batches already trained in it (from ``progress()``, which the data module points at
the trainer) and, when loaded, makes its next pass start at the first batch a straight run would have drawn.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler


class ResumableSampler(DistributedSampler):
    """This rank's share of the permutation of ``seed`` and the epoch; ``start`` skips items once (a resume)."""

    def __init__(
        self, dataset: Dataset, seed: int = 0, shuffle: bool = True, num_replicas: int = 1, rank: int = 0
    ) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=False)
        self.start = 0

    def set_epoch(self, epoch: int) -> None:
        """The epoch of the permutation; passed on to a dataset with ``set_epoch`` (per-epoch augmentation seeds)."""
        self.epoch = int(epoch)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(self.epoch)

    def __iter__(self) -> Iterator[int]:
        n = len(self.dataset)  # type: ignore[arg-type]
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(n, generator=g).tolist()
        else:
            order = list(range(n))
        order += order[: self.total_size - n]
        mine = order[self.rank : self.total_size : self.num_replicas]
        start, self.start = self.start, 0
        return iter(mine[start:])


class ResumableDataLoader(DataLoader):
    """DataLoader with a ``ResumableSampler`` whose position Lightning saves and restores (see the module doc).

    ``progress``: returns ``(epoch, batches already trained in it)``; the data module sets it to read the trainer.
    """

    progress: Callable[[], tuple[int, int]] | None = None

    def state_dict(self) -> dict[str, int]:
        epoch, done = self.progress() if self.progress is not None else (self.sampler.epoch, 0)
        return {"epoch": int(epoch), "batches_done": int(done)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        epoch, done = int(state["epoch"]), int(state["batches_done"])
        if done >= len(self):
            epoch, done = epoch + 1, 0
        if not isinstance(self.sampler, ResumableSampler):
            raise TypeError(f"cannot resume a loader whose sampler is {type(self.sampler).__name__}")
        self.sampler.set_epoch(epoch)
        self.sampler.start = done * int(self.batch_size or 1)


def trainer_progress(trainer) -> tuple[int, int]:
    """``(current epoch, training batches processed in it)`` of a Lightning trainer (for ``progress``)."""
    loop = trainer.fit_loop
    return int(trainer.current_epoch), int(loop.epoch_loop.batch_progress.current.processed)
