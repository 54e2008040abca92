"""One way to read checkpoint files, with one message per failure that names the file and the problem.

* ``read_checkpoint(path)``: ``torch.load(weights_only=True)`` that tells apart a missing, empty, truncated,
  non-torch and code-carrying file (``CheckpointError``; nothing in a file is ever executed).
* ``check_finite(state, source)``: refuses tensors holding NaN or Inf, naming the keys and the file, unless
  ``allow_nonfinite=True`` or ``$PAPERLAB_ALLOW_NONFINITE=1``. Every weight loader of the workspace calls it.
* ``load_lightning_checkpoint(path, module_class)``: the above plus "is this a Lightning checkpoint, and of
  this module?"; a plain state dict, another training script's dict or another project's checkpoint each get
  their own message (saying what the file looks like instead).
* ``run_checkpoint(path)``: a checkpoint file as given, or a run folder's ``last.ckpt``: ``.../version_N`` or an
  experiment folder ``runs/<project>/<experiment>`` (its newest version), so that "train, then export" commands
  never pick up an older run of the same experiment.
* ``CheckpointMixin``: put before ``LightningModule`` in a project module's bases; it tags saved checkpoints
  with the module's class and routes ``Module.load_from_checkpoint`` and the Trainer's ``ckpt_path`` through
  the checks above. ``common.cli`` checks ``main.py fit/validate/test/predict --ckpt_path`` the same way
  before building anything, and its Trainer reads checkpoints through ``read_checkpoint`` and ``check_finite``.
"""

from __future__ import annotations

import inspect
import os
import pickle
import re
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch

from common.errors import UserError

NONFINITE_ENV = "PAPERLAB_ALLOW_NONFINITE"
MODULE_KEY = "paperlab_module"  # checkpoint entry: "<module>.<class>" of the LightningModule that saved it
_LIGHTNING_KEYS = ("state_dict", "pytorch-lightning_version")


class CheckpointError(UserError, ValueError):
    """A checkpoint file cannot be used; the message names the file and the problem."""


class MissingCheckpointError(CheckpointError, FileNotFoundError):
    """The checkpoint file does not exist."""


class NonFiniteWeightsError(CheckpointError):
    """Weights hold NaN or Inf; the message names the keys and the file."""


# ----------------------------------------------------------------------------------------------------- reading
def _sniff(head: bytes) -> str:
    """What the first bytes of a file say it is."""
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "zip"
    if head[257:262] == b"ustar":  # torch.save's oldest format was a tar archive
        return "tar"
    if head[:1] == b"\x80" and len(head) > 1 and head[1] <= 5:
        return "pickle"
    if len(head) >= 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 1 << 30:
        return "safetensors"
    if head.startswith((b"\x89HDF", b"\x93NUMPY")):
        return "hdf5" if head.startswith(b"\x89HDF") else "numpy"
    try:
        text = head[:64].decode("utf-8")
    except UnicodeDecodeError:
        return "binary"
    return "text" if text.strip() else "binary"


_KIND_WORDS = {
    "safetensors": "a safetensors file (load it with safetensors, not torch.load)",
    "hdf5": "an HDF5 file (e.g. Keras weights)",
    "numpy": "a NumPy .npy array",
    "text": "a text file",
    "binary": "not a torch checkpoint (torch.save writes a zip archive)",
}


def _unsupported_global(err: BaseException) -> str | None:
    m = re.search(r"GLOBAL ([\w.]+)", str(err))
    return m.group(1) if m else None


def read_checkpoint(
    path: str | os.PathLike,
    what: str = "checkpoint",
    *,
    safe_globals: Iterable[Any] = (),
    map_location: Any = "cpu",
    mmap: bool = False,
) -> Any:
    """``torch.load(path, weights_only=True)`` whose every failure is a ``CheckpointError`` naming the file.

    ``safe_globals``: extra classes/functions the file may reference (passed to
    ``torch.serialization.safe_globals``). ``mmap=True`` maps tensor data instead of reading it (zip archives
    only; other files are read normally). Problems told apart: no such file, a folder, an empty file, a
    truncated zip archive, a corrupt archive, a file of another format (safetensors, text, ...), a truncated
    legacy pickle, and a file that needs code to unpickle (refused, naming the class it asked for).
    """
    p = Path(path)
    if not p.exists():
        raise MissingCheckpointError(f"{what} {p}: no such file")
    if p.is_dir():
        raise CheckpointError(f"{what} {p}: is a folder, not a checkpoint file")
    size = p.stat().st_size
    if size == 0:
        raise CheckpointError(f"{what} {p}: empty file (0 bytes): the save was interrupted or the copy failed")
    with open(p, "rb") as f:
        head = f.read(512)
    kind = _sniff(head)
    if kind not in ("zip", "pickle", "tar"):
        raise CheckpointError(f"{what} {p}: {_KIND_WORDS[kind]}, not a torch.save checkpoint")
    if kind == "zip" and not zipfile.is_zipfile(p):
        raise CheckpointError(
            f"{what} {p}: truncated: a zip archive (torch.save's format) whose end is missing ({size} bytes); "
            f"the save was interrupted or the copy is incomplete"
        )
    try:
        with torch.serialization.safe_globals(list(safe_globals)):
            return torch.load(p, map_location=map_location, weights_only=True, mmap=mmap and kind == "zip")
    except pickle.UnpicklingError as e:
        if "weights_only" in str(e).lower() or "Weights only load failed" in str(e):
            name = _unsupported_global(e)
            needs = f" (it asks for {name})" if name else ""
            raise CheckpointError(
                f"{what} {p}: refused: the file carries pickled Python objects{needs} that can only be "
                f"restored by running code from the file; paperlab reads checkpoints with "
                f"torch.load(weights_only=True) and never executes a file. Re-save its tensors as a plain "
                f"state dict from code you trust."
            ) from None
        raise CheckpointError(f"{what} {p}: corrupt pickle data ({e})") from None
    except EOFError:
        raise CheckpointError(
            f"{what} {p}: truncated: the data ends early ({size} bytes); the save was interrupted or the copy is "
            f"incomplete"
        ) from None
    except (RuntimeError, OSError, ValueError, zipfile.BadZipFile, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if kind == "zip":
            raise CheckpointError(f"{what} {p}: corrupt zip archive, cannot be read by torch.load ({first})") from None
        raise CheckpointError(f"{what} {p}: truncated or corrupt (torch.save's legacy format; {first})") from None


# ------------------------------------------------------------------------------------------------ finiteness
def nonfinite_allowed() -> bool:
    """``$PAPERLAB_ALLOW_NONFINITE`` set to anything but empty/0/false/no."""
    return os.environ.get(NONFINITE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def _tensors(state: Any, prefix: str = "") -> Iterable[tuple[str, torch.Tensor]]:
    if isinstance(state, torch.Tensor):
        yield prefix or "<tensor>", state
    elif isinstance(state, Mapping):
        for k, v in state.items():
            yield from _tensors(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(state, (list, tuple)):
        for i, v in enumerate(state):
            yield from _tensors(v, f"{prefix}[{i}]")


def check_finite(state: Any, source: str | os.PathLike, allow_nonfinite: bool = False, limit: int = 5) -> None:
    """Raise ``NonFiniteWeightsError`` when a floating tensor in ``state`` (a tensor, or nested dicts/lists of
    them) holds NaN or Inf, naming each such key with its counts and ``source``.

    ``allow_nonfinite=True`` or ``$PAPERLAB_ALLOW_NONFINITE=1`` skips the check (e.g. to inspect a diverged run).
    """
    if allow_nonfinite or nonfinite_allowed():
        return
    bad = []
    for key, t in _tensors(state):
        if not (t.is_floating_point() or t.is_complex()) or t.numel() == 0:
            continue
        if bool(torch.isfinite(t).all()):
            continue
        n_nan = int(torch.isnan(t).sum())
        bad.append(f"{key} ({n_nan} NaN, {int(torch.isinf(t).sum())} Inf of {t.numel()} values)")
    if bad:
        more = f" and {len(bad) - limit} more" if len(bad) > limit else ""
        raise NonFiniteWeightsError(
            f"{source}: weights hold NaN or Inf: {', '.join(bad[:limit])}{more}. A diverged run or a corrupt file; "
            f"to load it anyway pass allow_nonfinite=True or set {NONFINITE_ENV}=1"
        )


# ----------------------------------------------------------------------------------------- Lightning checks
def describe(obj: Any) -> str:
    """What a loaded file holds, in words, for messages about files that are not what was expected."""
    if isinstance(obj, torch.Tensor):
        return f"a single tensor of shape {tuple(obj.shape)}"
    if isinstance(obj, Mapping):
        keys = [str(k) for k in obj]
        shown = ", ".join(repr(k) for k in keys[:6]) + (", ..." if len(keys) > 6 else "")
        if keys and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return f"a plain state dict ({len(keys)} tensors: {shown})"
        if "g_ema" in obj:
            return f"a rosinality StyleGAN2 checkpoint (keys {shown}): load it with common.stylegan2.load_generator"
        if "state_dict" in obj:
            return f"another training script's checkpoint (a dict with a 'state_dict' but no Lightning fields; keys {shown})"
        return f"a dict with keys {shown}" if keys else "an empty dict"
    return f"a {type(obj).__name__}"


def class_path(cls: type) -> str:
    """``"<module>.<qualname>"`` of a class."""
    return f"{cls.__module__}.{cls.__qualname__}"


def _project_of(path: str) -> str:
    parts = path.split(".")
    return f" (project {parts[1]})" if len(parts) > 2 and parts[0] == "projects" else ""


def check_lightning_checkpoint(ckpt: Any, source: str | os.PathLike, module_class: type | None = None) -> None:
    """Raise ``CheckpointError`` unless ``ckpt`` is a Lightning checkpoint of ``module_class`` (when given).

    The saving module is read off the ``paperlab_module`` entry (written by ``CheckpointMixin``); files
    without it are checked by their hyperparameters against ``module_class.__init__``.
    """
    hint = getattr(module_class, "plain_weights_hint", None) if module_class is not None else None
    if not is_lightning_checkpoint(ckpt):
        what = describe(ckpt)
        advice = ""
        if isinstance(ckpt, Mapping) and ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
            advice = f": pass it as {hint}" if hint else ": pass it to the option that takes pretrained weights"
        raise CheckpointError(f"{source}: not a Lightning checkpoint: {what}{advice}")
    if module_class is not None:
        check_module_class(ckpt, source, module_class)


def is_lightning_checkpoint(ckpt: Any) -> bool:
    """Whether ``ckpt`` has the entries every Lightning checkpoint has (``state_dict``, the Lightning version)."""
    return isinstance(ckpt, Mapping) and all(k in ckpt for k in _LIGHTNING_KEYS)


def check_module_class(ckpt: Mapping[str, Any], source: str | os.PathLike, module_class: type) -> None:
    """Raise ``CheckpointError`` when a Lightning checkpoint was written by another module than ``module_class``
    (its ``paperlab_module`` entry, or else its hyperparameters against ``module_class.__init__``)."""
    want = class_path(module_class)
    saved = ckpt.get(MODULE_KEY)
    if isinstance(saved, str) and saved != want:
        known = {class_path(c) for c in module_class.__mro__}
        if saved not in known:
            raise CheckpointError(
                f"{source}: written by {saved}{_project_of(saved)}, not by {want}{_project_of(want)}: "
                f"a checkpoint of another model"
            )
    if saved is None:
        hp = ckpt.get("hyper_parameters")
        if isinstance(hp, Mapping):
            params = inspect.signature(module_class.__init__).parameters
            takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
            unknown = [k for k in hp if k not in params and not str(k).startswith("_")]
            if unknown and not takes_any:
                raise CheckpointError(
                    f"{source}: its hyperparameters {unknown[:8]} are not arguments of {want}: written by another "
                    f"project's module"
                )


def _version_number(folder: Path) -> int | None:
    m = re.fullmatch(r"version_(\d+)", folder.name)
    return int(m.group(1)) if m else None


def run_checkpoint(path: str | os.PathLike, name: str = "last.ckpt") -> Path:
    """``path`` if it is a file; for a run folder ``.../version_N``, its ``checkpoints/<name>``; for an experiment
    folder (holding ``version_*`` runs), that of the highest-numbered version that has one. A folder with no
    such checkpoint raises ``MissingCheckpointError`` naming the folder and what was looked for."""
    p = Path(path)
    if not p.is_dir():
        return p  # a file, or a missing path: read_checkpoint names it
    direct = p / "checkpoints" / name
    if direct.is_file():
        return direct
    runs = sorted(((n, d) for d in p.iterdir() if d.is_dir() and (n := _version_number(d)) is not None), reverse=True)
    for _, run in runs:
        if (run / "checkpoints" / name).is_file():
            return run / "checkpoints" / name
    looked = f"{direct}" + (f" or version_*/checkpoints/{name} ({len(runs)} runs, none has one)" if runs else "")
    raise MissingCheckpointError(f"{p}: a folder without a checkpoint (looked for {looked})")


def load_lightning_checkpoint(
    path: str | os.PathLike,
    module_class: type | None = None,
    map_location: Any = "cpu",
    allow_nonfinite: bool = False,
) -> dict[str, Any]:
    """Read a Lightning checkpoint, checked: readable (``read_checkpoint``), a Lightning checkpoint, of
    ``module_class`` (when given), and its ``state_dict`` free of NaN/Inf (``check_finite``)."""
    ckpt = read_checkpoint(path, "Lightning checkpoint", map_location=map_location)
    check_lightning_checkpoint(ckpt, path, module_class)
    check_finite(ckpt["state_dict"], path, allow_nonfinite)
    return ckpt


class CheckpointMixin:
    """Checked checkpoint loading for a project's LightningModule: ``class M(CheckpointMixin, LightningModule)``.

    * saved checkpoints carry ``paperlab_module`` (the class), so loading another project's file says so;
    * ``M.load_from_checkpoint(path)`` first checks the file (``read_checkpoint`` with mmap, so tensor data
      is not read twice, and ``check_lightning_checkpoint``), then loads it with ``weights_only=True`` and
      refuses NaN/Inf weights (``allow_nonfinite=True`` to allow them);
    * a Trainer restoring ``ckpt_path`` into it checks the class in ``on_load_checkpoint``.

    ``plain_weights_hint``: the option to name when a plain state dict is given instead (e.g.
    ``"--model.clip_weights"``). Subclasses that override ``on_save_checkpoint``/``on_load_checkpoint`` call
    ``super()``.
    """

    plain_weights_hint: ClassVar[str | None] = None

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: Any, *args: Any, allow_nonfinite: bool = False, **kwargs: Any):
        if isinstance(checkpoint_path, (str, os.PathLike)):
            ckpt = read_checkpoint(checkpoint_path, "Lightning checkpoint", mmap=True)
            check_lightning_checkpoint(ckpt, checkpoint_path, cls)
            del ckpt
        kwargs.setdefault("weights_only", True)
        model = super().load_from_checkpoint(checkpoint_path, *args, **kwargs)
        check_finite(model.state_dict(), checkpoint_path, allow_nonfinite)
        return model

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[MODULE_KEY] = class_path(type(self))
        super().on_save_checkpoint(checkpoint)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        trainer = getattr(self, "_trainer", None)
        source = getattr(trainer, "ckpt_path", None) or "checkpoint"
        check_module_class(checkpoint, source, type(self))
        super().on_load_checkpoint(checkpoint)
