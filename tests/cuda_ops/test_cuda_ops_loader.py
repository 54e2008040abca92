"""The lazy loader: path choice, toolkit discovery, stale locks, warn-once fallback. No compiler needed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import warnings
from types import SimpleNamespace

import pytest
import torch

import cuda_ops
from cuda_ops import _build


@pytest.fixture(autouse=True)
def _fresh_loader(monkeypatch, tmp_path):
    monkeypatch.setenv(_build.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(_build.MODE_ENV, raising=False)
    saved_plugins, saved_errors = dict(_build._plugins), dict(_build._errors)
    _build._plugins.clear()
    _build._errors.clear()
    yield
    _build._plugins.clear()
    _build._errors.clear()
    _build._plugins.update(saved_plugins)
    _build._errors.update(saved_errors)


def fake_cuda_tensor(dtype=torch.float32):
    return SimpleNamespace(is_cuda=True, dtype=dtype)


def test_cpu_ops_never_build(monkeypatch):
    def boom(name, verbose=False):
        raise AssertionError("build called for a CPU tensor")

    monkeypatch.setattr(_build, "build", boom)
    for mode in ("auto", "cuda", "ref"):
        monkeypatch.setenv(_build.MODE_ENV, mode)
        x = torch.randn(1, 2, 8, 8)
        cuda_ops.upsample2d(x, cuda_ops.setup_filter([1, 3, 3, 1]))
        cuda_ops.bias_act(x, torch.zeros(2), act="lrelu")
    assert _build._plugins == {}


def test_import_compiles_nothing():
    code = (
        "import sys, torch, cuda_ops; from cuda_ops import _build; "
        "cuda_ops.downsample2d(torch.randn(1, 1, 8, 8), cuda_ops.setup_filter([1, 3, 3, 1])); "
        "assert _build._plugins == {}; "
        "assert not any(m.startswith('paperlab_') for m in sys.modules)"
    )
    env = dict(os.environ, PYTHONPATH=str(_build.SOURCE_DIR.parent))
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)


def test_mode_parsing(monkeypatch):
    assert _build.mode() == "auto"
    monkeypatch.setenv(_build.MODE_ENV, " REF ")
    assert _build.mode() == "ref"
    assert _build.mode("cuda") == "cuda"  # impl= wins over the environment
    monkeypatch.setenv(_build.MODE_ENV, "gpu")
    with pytest.raises(ValueError, match="PAPERLAB_CUDA_OPS"):
        _build.mode()


def test_routing_rules(monkeypatch):
    built = []
    monkeypatch.setattr(_build, "build", lambda name, verbose=False: built.append(name) or SimpleNamespace())
    assert not _build.use_cuda(torch.zeros(1), "bias_act", "cuda")  # CPU tensor: reference
    assert not _build.use_cuda(fake_cuda_tensor(torch.bfloat16), "bias_act", "cuda")  # bf16: reference
    assert not _build.use_cuda(fake_cuda_tensor(), "bias_act", "ref")
    assert built == []
    assert _build.use_cuda(fake_cuda_tensor(torch.float16), "bias_act", None)
    assert _build.use_cuda(fake_cuda_tensor(torch.float64), "bias_act", None)
    assert built == ["bias_act"]  # once per process


def test_failed_build_warns_once_then_falls_back(monkeypatch, tmp_path):
    calls = []

    def failing(name, verbose=False):
        calls.append(name)
        raise RuntimeError("Error building extension 'x'\n/tmp/a.cu(3): error: identifier \"foo\" is undefined\n")

    monkeypatch.setattr(_build, "build", failing)
    with pytest.warns(RuntimeWarning, match=r'identifier "foo" is undefined.*Full log: .*\.log'):
        assert not _build.use_cuda(fake_cuda_tensor(), "upfirdn2d")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second warning would raise here
        assert not _build.use_cuda(fake_cuda_tensor(), "upfirdn2d")
        with pytest.raises(_build.CudaOpsUnavailable, match="foo"):
            _build.use_cuda(fake_cuda_tensor(), "upfirdn2d", "cuda")
    assert calls == ["upfirdn2d"]  # never retried
    log = _build._errors["upfirdn2d"].split("log: ")[1]
    assert os.path.isfile(log) and "identifier" in open(log).read()


def _fake_toolkit(root):
    home = root / "cuda-99.0"
    (home / "bin").mkdir(parents=True)
    (home / "include").mkdir()
    (home / "include" / "cuda_runtime.h").write_text("")
    nvcc = home / "bin" / "nvcc"
    nvcc.write_text("#!/bin/sh\necho real\n")
    nvcc.chmod(0o755)
    return home


def test_find_cuda_home_resolves_wrapper_script(monkeypatch, tmp_path):
    home = _fake_toolkit(tmp_path)
    wrappers = tmp_path / "wrappers"
    wrappers.mkdir()
    wrapper = wrappers / "nvcc"
    wrapper.write_text(f'#!/bin/sh\nexec {home}/bin/nvcc "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.delenv("CUDA_HOME", raising=False)
    monkeypatch.delenv("CUDA_PATH", raising=False)
    monkeypatch.setenv("PATH", f"{wrappers}{os.pathsep}/usr/bin{os.pathsep}/bin")
    assert _build.find_cuda_home() == str(home)
    # a symlink to the real nvcc resolves too
    wrapper.unlink()
    wrapper.symlink_to(home / "bin" / "nvcc")
    assert _build.find_cuda_home() == str(home)


def test_find_cuda_home_honours_env(monkeypatch, tmp_path):
    home = _fake_toolkit(tmp_path)
    monkeypatch.setenv("CUDA_HOME", str(home))
    assert _build.find_cuda_home() == str(home)
    monkeypatch.setenv("CUDA_HOME", str(tmp_path / "nowhere"))
    assert _build.find_cuda_home() is None
    with pytest.raises(RuntimeError, match="has no executable bin/nvcc"):
        _build.build("bias_act")


def test_arch_list(monkeypatch):
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "8.6;9.0")
    assert _build.arch_list() == "8.6;9.0"
    if not torch.cuda.is_available():
        monkeypatch.delenv("TORCH_CUDA_ARCH_LIST")
        with pytest.raises(RuntimeError, match="TORCH_CUDA_ARCH_LIST"):
            _build.arch_list()


def test_pip_cuda_includes(monkeypatch, tmp_path):
    home = _fake_toolkit(tmp_path)
    site = tmp_path / "site"
    inc = site / "nvidia" / "cu13" / "include"
    inc.mkdir(parents=True)
    (inc / "cusparse.h").write_text("")
    monkeypatch.setattr(sys, "path", [str(site)] + sys.path)
    assert _build.pip_cuda_includes(str(home))[0] == str(inc)
    (home / "include" / "cusparse.h").write_text("")  # the toolkit has the headers: add nothing
    assert _build.pip_cuda_includes(str(home)) == []


def test_build_dir_keyed_by_cache_torch_and_arch(monkeypatch, tmp_path):
    a = _build.build_dir("bias_act", "9.0")
    b = _build.build_dir("bias_act", "8.6;9.0+PTX")
    assert a.parent.parent == tmp_path / "cache"
    assert torch.__version__ in a.parent.name and a.parent.name.endswith("sm90")
    assert a != b and a.name.startswith("bias_act-")
    assert _build.build_dir("upfirdn2d", "9.0").parent == a.parent


def test_stale_lock_dead_owner_is_broken(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    lock = tmp_path / "paperlab_build.lock"
    import socket

    lock.write_text(f"{proc.pid} {socket.gethostname()} {time.time():.0f}\n")
    with pytest.warns(RuntimeWarning, match="stale build lock.*gone"):
        with _build._BuildLock(tmp_path, poll_s=0.01):
            assert lock.read_text().split()[0] == str(os.getpid())
    assert not lock.exists()


def test_stale_lock_old_file_is_broken(monkeypatch, tmp_path):
    monkeypatch.setenv(_build.LOCK_ENV, "1")
    lock = tmp_path / "paperlab_build.lock"
    lock.write_text("1 some-other-host 0\n")
    old = time.time() - 3600
    os.utime(lock, (old, old))
    torch_lock = tmp_path / "lock"  # a FileBaton left by an interrupted torch build
    torch_lock.write_text("")
    os.utime(torch_lock, (old, old))
    with pytest.warns(RuntimeWarning, match="older than 1 min"):
        with _build._BuildLock(tmp_path, poll_s=0.01):
            assert not torch_lock.exists()


def test_live_lock_is_respected(tmp_path):
    import socket

    lock = tmp_path / "paperlab_build.lock"
    lock.write_text(f"{os.getpid()} {socket.gethostname()} {time.time():.0f}\n")
    assert _build._BuildLock(tmp_path)._stale_reason() is None
