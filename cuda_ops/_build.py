"""Lazy, once-per-process JIT build of the CUDA extensions, and the choice between kernel and reference.

Nothing compiles at import. The first call of an op on a CUDA tensor builds that op's extension with
``torch.utils.cpp_extension.load`` (ninja) into our own cache folder and keeps the module object ``load``
returns (on torch 2.14 the module is not registered in ``sys.modules``, so importing it by name fails).
A failed build warns once, naming the cause and the log file, and the reference path runs from then on.

Environment:
    PAPERLAB_CUDA_OPS        ref | cuda | auto (default auto). ``cuda`` raises when a CUDA tensor cannot use
                             the kernel (toolkit missing, build failed).
    PAPERLAB_CUDA_CACHE      cache root (default ~/.cache/paperlab/cuda_ops).
    PAPERLAB_CUDA_LOCK_MIN   minutes after which another process's build lock counts as stale (default 15).
    CUDA_HOME / CUDA_PATH    the toolkit; otherwise found from the nvcc on PATH (wrapper scripts resolved).
    TORCH_CUDA_ARCH_LIST     architectures to build for; otherwise those of the visible GPUs.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import shutil
import socket
import sys
import threading
import time
import traceback
import warnings
from pathlib import Path
from types import ModuleType

import torch

MODE_ENV = "PAPERLAB_CUDA_OPS"
CACHE_ENV = "PAPERLAB_CUDA_CACHE"
LOCK_ENV = "PAPERLAB_CUDA_LOCK_MIN"
SOURCE_DIR = Path(__file__).resolve().parent
SOURCES: dict[str, list[str]] = {
    "bias_act": ["bias_act.cpp", "bias_act.cu"],
    "upfirdn2d": ["upfirdn2d.cpp", "upfirdn2d.cu"],
}
HEADERS = ["common.cuh", "device_util.cuh"]
EXTRA_CFLAGS = ["-O3"]
EXTRA_CUDA_CFLAGS = ["-O3", "-lineinfo"]
KERNEL_DTYPES = (torch.float16, torch.float32, torch.float64)

_plugins: dict[str, ModuleType | None] = {}
_errors: dict[str, str] = {}
_lock = threading.Lock()


class CudaOpsUnavailable(RuntimeError):
    """PAPERLAB_CUDA_OPS=cuda (or impl='cuda') but the kernel cannot be used."""


def mode(impl: str | None = None) -> str:
    """The requested path: ``impl`` if given, else ``$PAPERLAB_CUDA_OPS``, else 'auto'."""
    value = (impl if impl is not None else os.environ.get(MODE_ENV, "auto")).strip().lower() or "auto"
    if value not in ("ref", "cuda", "auto"):
        source = "impl" if impl is not None else f"${MODE_ENV}"
        raise ValueError(f"cuda_ops: {source}={value!r}; expected 'ref', 'cuda' or 'auto'")
    return value


def use_cuda(x: torch.Tensor, name: str, impl: str | None = None) -> bool:
    """Whether op ``name`` runs its kernel on ``x``: CUDA tensor, float16/32/64, mode not ref, build OK.

    CPU tensors and other dtypes (bfloat16) always take the reference path, whatever the mode.
    """
    m = mode(impl)
    if m == "ref" or not x.is_cuda or x.dtype not in KERNEL_DTYPES:
        return False
    plugin = get_plugin(name)
    if plugin is None:
        if m == "cuda":
            raise CudaOpsUnavailable(f"cuda_ops: the {name} kernel is unavailable ({_errors.get(name, 'unknown')})")
        return False
    return True


def get_plugin(name: str) -> ModuleType | None:
    """The compiled extension for op ``name``, built on the first call; None (after one warning) if it fails."""
    if name in _plugins:
        return _plugins[name]
    with _lock:
        if name in _plugins:
            return _plugins[name]
        _plugins[name] = None  # tried: a failure is never retried in this process
        try:
            _plugins[name] = build(name)
        except Exception as exc:  # noqa: BLE001 - any build problem means: fall back, once, loudly
            log = _write_failure_log(name, exc)
            cause = _short_cause(exc)
            _errors[name] = f"{cause}; log: {log}"
            warnings.warn(
                f"cuda_ops: building the {name} CUDA extension failed: {cause}. Full log: {log}. "
                f"Using the PyTorch reference for the rest of this process (see README 'cuda_ops').",
                RuntimeWarning,
                stacklevel=3,
            )
        return _plugins[name]


def find_cuda_home() -> str | None:
    """The CUDA toolkit root: $CUDA_HOME/$CUDA_PATH, else the real toolkit behind the nvcc on PATH (wrapper
    scripts and symlinks resolved), else /usr/local/cuda. None when no nvcc is found."""
    for var in ("CUDA_HOME", "CUDA_PATH"):
        home = os.environ.get(var)
        if home:
            return home if _nvcc_in(home) else None
    nvcc = shutil.which("nvcc")
    if nvcc is not None:
        real = _resolve_nvcc(nvcc)
        if real is not None:
            return str(Path(real).parent.parent)
    return "/usr/local/cuda" if _nvcc_in("/usr/local/cuda") else None


def _nvcc_in(home: str) -> bool:
    return os.access(os.path.join(home, "bin", "nvcc"), os.X_OK)


def _resolve_nvcc(path: str, depth: int = 0) -> str | None:
    """Follow symlinks and ``exec /real/bin/nvcc``-style wrapper scripts to the nvcc inside a toolkit."""
    real = os.path.realpath(path)
    home = Path(real).parent.parent
    if (home / "include" / "cuda_runtime.h").is_file():
        return real
    if depth > 4:
        return None
    try:
        with open(real, "rb") as fh:
            head = fh.read(4096)
    except OSError:
        return None
    if not head.startswith(b"#!"):
        return None
    for candidate in re.findall(rb"(/[^\s\"'$;|&]+/bin/nvcc)\b", head):
        candidate = candidate.decode(errors="replace")
        if os.access(candidate, os.X_OK) and os.path.realpath(candidate) != real:
            found = _resolve_nvcc(candidate, depth + 1)
            if found is not None:
                return found
    return None


def arch_list() -> str:
    """$TORCH_CUDA_ARCH_LIST, else the compute capabilities of the visible GPUs; raises if neither exists."""
    archs = os.environ.get("TORCH_CUDA_ARCH_LIST", "").strip()
    if archs:
        return archs
    if torch.cuda.is_available():
        caps = sorted({torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())})
        return ";".join(f"{a}.{b}" for a, b in caps)
    raise RuntimeError("no GPU visible and TORCH_CUDA_ARCH_LIST unset: name the architecture, e.g. 9.0")


def pip_cuda_includes(cuda_home: str) -> list[str]:
    """Include folders of pip-installed CUDA headers (site-packages/nvidia/*/include), needed when the toolkit
    lacks the math-library headers that ATen's CUDA headers pull in (cusparse.h and friends)."""
    if os.path.isfile(os.path.join(cuda_home, "include", "cusparse.h")):
        return []
    found: list[str] = []
    for entry in sys.path:
        for header in sorted(glob.glob(os.path.join(entry, "nvidia", "*", "include", "cusparse.h"))):
            folder = os.path.dirname(header)
            if folder not in found:
                found.append(folder)
    return found


def cache_root() -> Path:
    """$PAPERLAB_CUDA_CACHE, else ~/.cache/paperlab/cuda_ops."""
    root = os.environ.get(CACHE_ENV)
    return Path(root).expanduser() if root else Path.home() / ".cache" / "paperlab" / "cuda_ops"


def build_dir(name: str, archs: str) -> Path:
    """<cache>/<torch version>-<arch tag>/<name>-<hash of sources and flags>."""
    digest = hashlib.sha256()
    for fname in SOURCES[name] + HEADERS:
        digest.update(fname.encode())
        digest.update((SOURCE_DIR / fname).read_bytes())
    digest.update(repr((EXTRA_CFLAGS, EXTRA_CUDA_CFLAGS, torch.version.cuda)).encode())
    tag = "sm" + "_".join(re.sub(r"[^0-9a-zA-Z+]", "", a) for a in archs.replace(" ", ";").split(";") if a)
    return cache_root() / f"{torch.__version__}-{tag}" / f"{name}-{digest.hexdigest()[:12]}"


def build(name: str, verbose: bool = False) -> ModuleType:
    """Compile (or reuse the cached build of) op ``name``'s extension and return the loaded module. Raises."""
    if name not in SOURCES:
        raise ValueError(f"cuda_ops: unknown extension {name!r}")
    if torch.version.cuda is None:
        raise RuntimeError(f"this torch build ({torch.__version__}) has no CUDA support")
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var) and not _nvcc_in(os.environ[var]):
            raise RuntimeError(f"{var}={os.environ[var]} has no executable bin/nvcc")
    cuda_home = find_cuda_home()
    if cuda_home is None:
        raise RuntimeError("nvcc not found: install a CUDA toolkit or set CUDA_HOME to one")
    _ensure_ninja_on_path()
    archs = arch_list()
    # cpp_extension reads CUDA_HOME once at import (from the PATH nvcc, which may be a wrapper): point it at
    # the toolkit found above, and hand TORCH_CUDA_ARCH_LIST to it only for the duration of the build.
    os.environ.setdefault("CUDA_HOME", cuda_home)
    from torch.utils import cpp_extension

    cpp_extension.CUDA_HOME = cuda_home
    folder = build_dir(name, archs)
    folder.mkdir(parents=True, exist_ok=True)
    saved_arch = os.environ.get("TORCH_CUDA_ARCH_LIST")
    os.environ["TORCH_CUDA_ARCH_LIST"] = archs
    try:
        with _BuildLock(folder):
            module = cpp_extension.load(
                name=f"paperlab_{name}",
                sources=[str(SOURCE_DIR / s) for s in SOURCES[name]],
                extra_cflags=EXTRA_CFLAGS,
                extra_cuda_cflags=EXTRA_CUDA_CFLAGS,
                extra_include_paths=[str(SOURCE_DIR)] + pip_cuda_includes(cuda_home),
                build_directory=str(folder),
                verbose=verbose,
            )
    finally:
        if saved_arch is None:
            os.environ.pop("TORCH_CUDA_ARCH_LIST", None)
        else:
            os.environ["TORCH_CUDA_ARCH_LIST"] = saved_arch
    if not isinstance(module, ModuleType):
        raise RuntimeError(f"cpp_extension.load returned {type(module).__name__}, not a module")
    return module


def _ensure_ninja_on_path() -> None:
    """torch runs ``ninja`` from PATH; a venv's python started without activation has the venv's bin (where
    pip put ninja) off PATH, so add it."""
    if shutil.which("ninja") is not None:
        return
    venv_bin = os.path.dirname(sys.executable)
    if os.access(os.path.join(venv_bin, "ninja"), os.X_OK):
        os.environ["PATH"] = venv_bin + os.pathsep + os.environ.get("PATH", "")
    else:
        raise RuntimeError("ninja not found on PATH or beside the python executable: pip install ninja")


class _BuildLock:
    """An exclusive lock file holding ``pid host time``; a lock whose owner is dead or that is older than
    $PAPERLAB_CUDA_LOCK_MIN minutes is broken (with a warning) instead of waited on forever."""

    def __init__(self, folder: Path, poll_s: float = 1.0) -> None:
        self.path = folder / "paperlab_build.lock"
        self.torch_lock = folder / "lock"  # torch's own lock file; a FileBaton on older torch never expires
        self.max_age_s = float(os.environ.get(LOCK_ENV, "15")) * 60
        self.poll_s = poll_s

    def __enter__(self) -> _BuildLock:
        while True:
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                reason = self._stale_reason()
                if reason is not None:
                    warnings.warn(
                        f"cuda_ops: removing stale build lock {self.path} ({reason})", RuntimeWarning, stacklevel=2
                    )
                    self._unlink(self.path)
                    continue
                time.sleep(self.poll_s)
                continue
            with os.fdopen(fd, "w") as fh:
                fh.write(f"{os.getpid()} {socket.gethostname()} {time.time():.0f}\n")
            break
        # We hold our lock, so nobody of ours is building here: an old torch lock file is left over.
        if self.torch_lock.exists() and time.time() - self.torch_lock.stat().st_mtime > self.max_age_s:
            self._unlink(self.torch_lock)
        return self

    def __exit__(self, *exc) -> None:
        self._unlink(self.path)

    def _stale_reason(self) -> str | None:
        try:
            text = self.path.read_text().split()
            age = time.time() - self.path.stat().st_mtime
        except (OSError, ValueError):
            return None  # vanished or half-written: look again
        if age > self.max_age_s:
            return f"older than {self.max_age_s / 60:.0f} min"
        if len(text) >= 2 and text[1] == socket.gethostname():
            try:
                os.kill(int(text[0]), 0)
            except ProcessLookupError:
                return f"owner pid {text[0]} is gone"
            except (PermissionError, ValueError):
                pass
        return None

    @staticmethod
    def _unlink(path: Path) -> None:
        try:
            path.unlink()
        except FileNotFoundError:
            pass


def _short_cause(exc: BaseException) -> str:
    """The most telling line of a build error (the first compiler 'error' line if there is one)."""
    text = str(exc)
    for line in text.splitlines():
        if re.search(r"\berror\b|fatal", line, re.IGNORECASE) and "Error building extension" not in line:
            return line.strip()[:300]
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return f"{type(exc).__name__}: {first[:300]}"


def _write_failure_log(name: str, exc: BaseException) -> str:
    """Write the full error (compiler output included) to a log file; return its path."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    candidates = [cache_root(), Path(os.environ.get("TMPDIR", "/tmp"))]
    for folder in candidates:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{name}-build-failure-{os.getpid()}.log"
            path.write_text(text)
            return str(path)
        except OSError:
            continue
    return "(could not write a log file)"


def reset(name: str | None = None) -> None:
    """Forget build results (tests; after fixing a toolkit) so the next call tries again."""
    with _lock:
        for key in [name] if name else list(_plugins):
            _plugins.pop(key, None)
            _errors.pop(key, None)
