"""Loading third-party checkpoints safely and strictly (``torch.load(weights_only=True)``, named errors)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

import numpy as np
from torch import Tensor, nn

from common.checkpoint import CheckpointError, check_finite, read_checkpoint

__all__ = ["CheckpointError", "load_checkpoint", "load_state_dict_strict", "strip_prefix"]


def _numpy_safe_globals() -> list:
    """numpy arrays, scalars and dtypes (training scripts often store steps or stats as numpy values)."""
    import numpy.dtypes

    from common.face.safe_pickle import _numpy_attr

    dtypes = [getattr(numpy.dtypes, n) for n in dir(numpy.dtypes) if n.endswith("DType")]
    return [np.ndarray, np.dtype, _numpy_attr("_reconstruct"), _numpy_attr("scalar"), *dtypes]


def load_checkpoint(path: str | os.PathLike, what: str = "checkpoint") -> object:
    """``torch.load(path, map_location="cpu", weights_only=True)`` with an error that names the file.

    Besides tensors and containers, numpy arrays/scalars/dtypes are allowed. Files that need arbitrary
    code to unpickle are refused (the weights-only unpickler), never executed. Every failure is a
    ``CheckpointError`` (``common.checkpoint.read_checkpoint``; a missing file also is a ``FileNotFoundError``).
    """
    return read_checkpoint(path, what, safe_globals=_numpy_safe_globals())


def strip_prefix(state: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """Keys starting with ``prefix`` with it removed (e.g. ``"encoder."`` or ``"module."``); others dropped."""
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def load_state_dict_strict(
    module: nn.Module,
    state: Mapping[str, Tensor],
    source: str | os.PathLike,
    optional: Iterable[str] = ("num_batches_tracked",),
    allow_nonfinite: bool = False,
) -> None:
    """Load ``state`` into ``module`` requiring every key and shape to match and every value to be finite.

    Keys of the module ending with one of ``optional`` may be absent (old checkpoints lack BatchNorm's
    ``num_batches_tracked``). Raises ``CheckpointError`` listing missing, unexpected and mis-shaped keys, or
    naming the tensors with NaN/Inf (``allow_nonfinite=True`` or ``$PAPERLAB_ALLOW_NONFINITE=1`` loads them).
    """
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{source}: expected a state dict (mapping of tensors), got {type(state).__name__}")
    check_finite(state, source, allow_nonfinite)
    own = module.state_dict()
    optional = tuple(optional)
    missing = [k for k in own if k not in state and not k.endswith(optional)]
    unexpected = [k for k in state if k not in own]
    bad_type = [k for k, v in state.items() if k in own and not isinstance(v, Tensor)]
    shapes = [
        f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state.items()
        if k in own and isinstance(v, Tensor) and v.shape != own[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys: {_short(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys: {_short(unexpected)}")
    if bad_type:
        problems.append(f"non-tensor values: {_short(bad_type)}")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatches: {_short(shapes)}")
    if problems:
        raise CheckpointError(f"{source}: does not match {type(module).__name__}: " + "; ".join(problems))
    module.load_state_dict({k: v for k, v in state.items()}, strict=False)


def _short(items: list[str], n: int = 6) -> str:
    return ", ".join(items[:n]) + (f", ... (+{len(items) - n})" if len(items) > n else "")
