"""Compile both extensions with nvcc (no GPU needed) into a fresh cache and check the modules load.

Marked cuda_build: part of `make test` (CI sets CUDA_HOME and TORCH_CUDA_ARCH_LIST in .ci/run); skipped with a
reason where no toolkit exists. Each build takes roughly 20-40 s on 2 cores.
"""

from __future__ import annotations

import os
import time

import pytest
import torch

from cuda_ops import _build

pytestmark = pytest.mark.cuda_build


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Build both ops once for this module in a fresh cache; yields {name: (module, seconds)}."""
    if torch.version.cuda is None:
        pytest.skip(f"torch {torch.__version__} has no CUDA support")
    home = _build.find_cuda_home()
    if home is None:
        pytest.skip("no nvcc found (set CUDA_HOME to a CUDA toolkit to run the build tests)")
    saved = {k: os.environ.get(k) for k in ("CUDA_HOME", "TORCH_CUDA_ARCH_LIST", _build.CACHE_ENV)}
    os.environ.setdefault("CUDA_HOME", home)
    if not torch.cuda.is_available():
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "9.0")
    os.environ[_build.CACHE_ENV] = str(tmp_path_factory.mktemp("cuda_ops_cache"))
    saved_plugins = dict(_build._plugins)
    _build._plugins.clear()
    result = {}
    try:
        for name in ("bias_act", "upfirdn2d"):
            t0 = time.perf_counter()
            module = _build.get_plugin(name)
            seconds = time.perf_counter() - t0
            assert module is not None, f"building {name} failed: {_build._errors.get(name)}"
            print(f"cuda_ops: built {name} in {seconds:.1f} s")
            result[name] = (module, seconds)
        yield result
    finally:
        _build._plugins.clear()
        _build._plugins.update(saved_plugins)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_bias_act_extension_loads(built):
    module, _ = built["bias_act"]
    assert callable(module.bias_act)
    assert _build.get_plugin("bias_act") is module  # kept: built once per process
    # The compiled host code runs without a GPU: its argument checks reject a bad mode before any launch.
    with pytest.raises(ValueError, match="mode must be 0, 1 or 2"):
        module.bias_act(1, 0, 0, 0, 1, 4, 1, 1, 5, 3, 0.2, 1.0, -1.0, 1, 0)
    with pytest.raises(ValueError, match="activation index"):
        module.bias_act(1, 0, 0, 0, 1, 4, 1, 1, 0, 10, 0.2, 1.0, -1.0, 1, 0)


def test_upfirdn2d_extension_loads(built):
    module, _ = built["upfirdn2d"]
    assert callable(module.upfirdn2d)
    assert _build.get_plugin("upfirdn2d") is module
    args = dict(x=1, f=1, out=1, N=1, C=1, H=4, W=4, sxN=16, sxC=16, sxH=4, sxW=1, outH=4, outW=4, soN=16, soC=16)
    args.update(soH=4, soW=1, upx=0, upy=1, downx=1, downy=1, px0=0, py0=0, fw=1, fh=1, dtype=1, stream=0)
    with pytest.raises(ValueError, match="up and down must be >= 1"):
        module.upfirdn2d(**args)


def test_build_outputs_live_in_our_cache(built):
    cache = os.environ[_build.CACHE_ENV]
    for name in ("bias_act", "upfirdn2d"):
        module, _ = built[name]
        assert module.__file__.startswith(cache), module.__file__
        assert os.path.basename(module.__file__).startswith(f"paperlab_{name}")
