"""Multi-view augmentation wrappers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any


class TwoViews:
    """Apply two transforms to one input: ``x -> (t_a(x), t_b(x))``."""

    def __init__(self, t_a: Callable[[Any], Any], t_b: Callable[[Any], Any] | None = None) -> None:
        self.t_a, self.t_b = t_a, t_b if t_b is not None else t_a

    def __call__(self, x: Any) -> tuple[Any, Any]:
        return self.t_a(x), self.t_b(x)

    def __repr__(self) -> str:
        return f"TwoViews({self.t_a!r}, {self.t_b!r})"


class MultiViews:
    """Apply each transform of a list to one input: ``x -> [t(x) for t in transforms]``."""

    def __init__(self, transforms: Sequence[Callable[[Any], Any]]) -> None:
        self.transforms = list(transforms)

    def __call__(self, x: Any) -> list[Any]:
        return [t(x) for t in self.transforms]
