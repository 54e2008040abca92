"""A restricted unpickler for the FLAME/DECA data files, so they load without chumpy and without running code.

Only an explicit allow-list of globals can be named by the pickle stream:

* numpy array/dtype/scalar reconstruction, ``copyreg._reconstructor``, ``object``, ``set``, ``frozenset``,
  ``collections.OrderedDict``, ``_codecs.encode`` restricted to latin-1 (protocol-2 bytes);
* ``chumpy.ch.Ch`` (any module spelling), replaced by a placeholder that keeps the object's state and
  becomes ``np.asarray(state["x"])`` after loading: chumpy itself is never imported;
* ``scipy.sparse`` CSC/CSR matrices, replaced by placeholders rebuilt from their arrays;
* with ``allow_torch=True``: ``torch._utils._rebuild_tensor_v2`` and ``torch.storage._load_from_bytes``,
  the latter replaced by ``torch.load(weights_only=True)`` on the embedded bytes.

Anything else (``os.system``, ``builtins.eval``, any other class) raises ``UnsafePickleError`` naming the
file and the refused global, before it can be called.
"""

from __future__ import annotations

import _compat_pickle
import collections
import copyreg
import io
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from common.errors import UserError

__all__ = ["UnsafePickleError", "load_restricted_pickle", "load_npy_object"]


class UnsafePickleError(UserError, pickle.UnpicklingError):
    """The pickle names a global outside the allow-list (or is malformed); the message names the file."""


class _ChumpyArray:
    """Stand-in for ``chumpy.ch.Ch``: records the pickled state; converted to ``np.asarray(state['x'])``."""

    def __init__(self, *args: Any) -> None:
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _SparseMatrix:
    """Stand-in for a scipy CSC/CSR matrix: records its arrays; rebuilt with scipy after loading."""

    kind = "csc"

    def __init__(self, *args: Any) -> None:
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _CSC(_SparseMatrix):
    kind = "csc"


class _CSR(_SparseMatrix):
    kind = "csr"


def _latin1_encode(obj: str, encoding: str = "utf-8") -> bytes:
    if encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError(f"_codecs.encode with encoding {encoding!r} is not allowed")
    return obj.encode("latin1")


def _safe_load_from_bytes(b: bytes) -> Any:
    import torch

    return torch.load(io.BytesIO(b), map_location="cpu", weights_only=True)


def _numpy_attr(name: str) -> Any:
    for mod in ("numpy._core.multiarray", "numpy.core.multiarray", "numpy._core.numeric", "numpy.core.numeric"):
        try:
            module = __import__(mod, fromlist=[name])
        except ImportError:
            continue
        if hasattr(module, name):
            return getattr(module, name)
    raise AttributeError(name)


def _allowed(module: str, name: str, allow_torch: bool) -> Any | None:
    if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name in ("_reconstruct", "scalar"):
        return _numpy_attr(name)
    if module in ("numpy.core.numeric", "numpy._core.numeric") and name == "_frombuffer":
        return _numpy_attr(name)
    if module == "numpy" and name in ("ndarray", "dtype"):
        return getattr(np, name)
    if module == "numpy.dtypes" and name.endswith("DType"):
        import numpy.dtypes

        return getattr(numpy.dtypes, name, None)
    if (module, name) == ("copyreg", "_reconstructor"):
        return copyreg._reconstructor
    if module == "builtins" and name in ("object", "set", "frozenset"):
        return {"object": object, "set": set, "frozenset": frozenset}[name]
    if (module, name) == ("collections", "OrderedDict"):
        return collections.OrderedDict
    if (module, name) == ("_codecs", "encode"):
        return _latin1_encode
    if module.split(".")[0] == "chumpy" and name == "Ch":
        return _ChumpyArray
    if module in ("scipy.sparse.csc", "scipy.sparse._csc") and name == "csc_matrix":
        return _CSC
    if module in ("scipy.sparse.csr", "scipy.sparse._csr") and name == "csr_matrix":
        return _CSR
    if allow_torch:
        if (module, name) in (("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor")):
            import torch._utils

            return getattr(torch._utils, name)
        if (module, name) == ("torch.storage", "_load_from_bytes"):
            return _safe_load_from_bytes
    return None


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, source: str, allow_torch: bool) -> None:
        super().__init__(file, encoding="latin1")
        self.source, self.allow_torch = source, allow_torch

    def find_class(self, module: str, name: str) -> Any:
        # Python 2 pickles name e.g. "copy_reg" / "__builtin__": map them to Python 3 names first.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        obj = _allowed(module, name, self.allow_torch)
        if obj is None:
            raise UnsafePickleError(
                f"{self.source}: refused to unpickle global {module}.{name} (not on the allow-list)"
            )
        return obj


def _convert(obj: Any, source: str) -> Any:
    """Replace placeholders by numpy arrays / scipy matrices, recursively."""
    if isinstance(obj, _ChumpyArray):
        state = obj.state
        if not isinstance(state, dict) or "x" not in state:
            raise UnsafePickleError(f"{source}: a chumpy object without an array value 'x' cannot be converted")
        return np.asarray(_convert(state["x"], source))
    if isinstance(obj, _SparseMatrix):
        import scipy.sparse

        st = obj.state
        if not isinstance(st, dict) or not {"data", "indices", "indptr"} <= set(st):
            raise UnsafePickleError(f"{source}: a sparse matrix without data/indices/indptr cannot be rebuilt")
        shape = st.get("_shape", st.get("shape"))
        cls = scipy.sparse.csc_matrix if obj.kind == "csc" else scipy.sparse.csr_matrix
        return cls((np.asarray(st["data"]), np.asarray(st["indices"]), np.asarray(st["indptr"])), shape=shape)
    if isinstance(obj, dict):
        return (
            type(obj)((k, _convert(v, source)) for k, v in obj.items())
            if isinstance(obj, collections.OrderedDict)
            else {k: _convert(v, source) for k, v in obj.items()}
        )
    if isinstance(obj, list):
        return [_convert(v, source) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_convert(v, source) for v in obj)
    if isinstance(obj, np.ndarray) and obj.dtype == object:
        out = np.empty(obj.shape, dtype=object)
        for idx in np.ndindex(obj.shape):
            out[idx] = _convert(obj[idx], source)
        return out
    return obj


def _unpickle(fileobj, source: str, allow_torch: bool) -> Any:
    try:
        obj = _RestrictedUnpickler(fileobj, source, allow_torch).load()
    except UnsafePickleError:
        raise
    except Exception as e:
        raise UnsafePickleError(f"{source}: cannot unpickle ({type(e).__name__}: {e})") from e
    return _convert(obj, source)


def load_restricted_pickle(path: str | os.PathLike, allow_torch: bool = False) -> Any:
    """Unpickle ``path`` through the allow-list (chumpy -> numpy, no code execution)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"pickle file not found: {p}")
    with open(p, "rb") as f:
        return _unpickle(f, str(p), allow_torch)


def load_npy_object(path: str | os.PathLike, allow_torch: bool = True) -> Any:
    """Load an ``.npy`` file holding a pickled object array (e.g. ``np.save(path, dict)``) without ``allow_pickle``.

    The header is parsed by numpy; the pickle payload goes through the restricted unpickler. A 0-d object
    array is unwrapped to its element (the ``arr[()]`` of the official code).
    """
    from numpy.lib import format as npformat

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"npy file not found: {p}")
    with open(p, "rb") as f:
        try:
            version = npformat.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = npformat.read_array_header_1_0(f)
            else:  # 2.0 and 3.0 share the 4-byte header length
                shape, _, dtype = npformat.read_array_header_2_0(f)
        except Exception as e:
            raise UnsafePickleError(f"{p}: not a valid .npy file ({e})") from e
        if dtype.hasobject:
            arr = _unpickle(f, str(p), allow_torch)
        else:
            f.seek(0)
            arr = np.load(f, allow_pickle=False)
    if isinstance(arr, np.ndarray) and arr.dtype == object and arr.shape == ():
        return arr[()]
    if isinstance(arr, np.ndarray) and tuple(arr.shape) != tuple(shape):
        raise UnsafePickleError(f"{p}: payload shape {arr.shape} differs from the header's {shape}")
    return arr
