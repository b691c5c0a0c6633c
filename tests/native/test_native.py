"""Tests of hsens_jax.native: building, caching, registering and falling back."""

import importlib
import os
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import jax

from hsens_jax import native

hsic_mod = importlib.import_module("hsens_jax.sensitivity.hsic")

needs_cc = pytest.mark.skipif(shutil.which((os.environ.get("CC") or "cc").split()[0]) is None,
                              reason="no C compiler on this machine")


@pytest.fixture
def fresh_state(monkeypatch, tmp_path):
    """A process in which the kernel has not been looked for yet, building into tmp_path;
    the real state is restored afterwards (the FFI registration itself is process-wide)."""
    monkeypatch.setattr(native, "_state", {"registered": None, "path": None, "warned": False, "tmp": None})
    monkeypatch.setattr(native, "_cache_dir", lambda: (tmp_path, True))
    return tmp_path


def _problem(n=50, d=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-np.pi, np.pi, (n, d))
    return X, np.sin(X[:, 0]) + 7 * np.sin(X[:, 1]) ** 2


@needs_cc
def test_builds_once_into_its_cache_directory_and_registers(fresh_state, monkeypatch):
    assert native.hsic_pass_target() == native.HSIC_PASS
    built = list(fresh_state.glob("hsic_pass-*.so"))
    assert len(built) == 1 and native._state["path"] == built[0]
    assert not list(fresh_state.glob(".build-*"))  # no temporary file left behind
    # a new process (state forgotten) finds the library and does not compile it again
    monkeypatch.setattr(native, "_state", {"registered": None, "path": None, "warned": False, "tmp": None})

    def no_build(*args, **kwargs):
        raise AssertionError("built again")

    monkeypatch.setattr(native, "_build", no_build)
    assert native.hsic_pass_target() == native.HSIC_PASS
    assert native._state["path"] == built[0]


@needs_cc
def test_a_read_only_cache_serves_its_library_or_leaves_the_build_to_the_process(fresh_state, monkeypatch):
    built = native.library_path()  # into the (writable) cache
    monkeypatch.setattr(native, "_cache_dir", lambda: (fresh_state, False))
    assert native.library_path() == built  # read-only, holding it: served
    built.unlink()
    elsewhere = native.library_path()  # read-only, without it: this process's own directory
    assert elsewhere.parent == Path(native._state["tmp"]) and elsewhere.exists()
    assert not built.exists()


@needs_cc
def test_a_damaged_library_is_built_again(fresh_state):
    path = native.library_path()
    path.write_bytes(b"not a shared library")
    loaded_path, lib = native._load(path)
    assert loaded_path == path and hasattr(lib, "hsens_hsic_pass_ffi")
    assert path.read_bytes()[:4] == b"\x7fELF" or sys.platform != "linux"


def test_the_key_follows_the_sources_compiler_and_cpu(monkeypatch):
    import jax.ffi

    include = jax.ffi.include_dir()
    key = native._key("cc", include)
    assert key == native._key("cc", include)
    monkeypatch.setattr(native, "_cpu_description", lambda: "another cpu")
    assert native._key("cc", include) != key


@pytest.mark.parametrize("value", ["off", "0", "FALSE", "no"])
def test_off_by_the_environment(fresh_state, monkeypatch, value):
    monkeypatch.setenv(native.ENV_VAR, value)
    assert not native.enabled()
    assert native.hsic_pass_target() is None
    assert not list(fresh_state.glob("*.so"))  # nothing built


def test_a_missing_compiler_warns_once_and_hsic_runs_in_pure_jax(fresh_state, monkeypatch):
    X, Y = _problem()
    monkeypatch.setenv(native.ENV_VAR, "off")
    expected = hsic_mod.hsic(X, Y, pvalue="gamma")
    monkeypatch.delenv(native.ENV_VAR)
    monkeypatch.setenv("CC", "/nonexistent/bin/cc")
    with pytest.warns(RuntimeWarning, match="native HSIC kernel is unavailable.*no C compiler"):
        got = hsic_mod.hsic(X, Y, pvalue="gamma")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per process
        again = hsic_mod.hsic(X, Y, pvalue="gamma")
    for r in (got, again):
        for f in ("hsic", "r2", "pvalue"):
            np.testing.assert_array_equal(np.asarray(getattr(r, f)), np.asarray(getattr(expected, f)))


def test_a_failing_build_names_the_command_and_its_error(fresh_state, monkeypatch):
    if shutil.which("false") is None:
        pytest.skip("no `false` command")
    monkeypatch.setenv("CC", "false")  # a compiler that always fails
    with pytest.raises(RuntimeError, match="false -O2"):
        native.library_path()
    assert not list(fresh_state.glob("*.so")) and not list(fresh_state.glob(".build-*"))
    with pytest.warns(RuntimeWarning, match="native HSIC kernel is unavailable"):
        assert native.hsic_pass_target() is None


def test_num_threads_is_the_processes_cores():
    n = native.num_threads()
    assert isinstance(n, int) and 1 <= n <= (os.cpu_count() or 1)


@needs_cc
@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_the_kernel_does_not_depend_on_its_thread_count(precision):
    """Rows are shared among threads dynamically: 1, 2 and 7 threads (more than the 6 rows of
    the smallest sample) give the same sums up to rounding."""
    target = native.hsic_pass_target()
    assert target is not None
    f64 = precision == "float64"
    with jax.enable_x64(f64):
        dt = np.float64 if f64 else np.float32
        for n, N in ((6, 10), (53, 60)):
            X, Y = _problem(n=n, d=4, seed=n)
            Xt = np.zeros((4, N), dt)
            Xt[:, :n] = X.T
            Z = np.zeros((N, 1), dt)
            Z[:n, 0] = Y
            valid = (np.arange(N) < n).astype(dt)
            theta, theta_z = X.std(axis=0).astype(dt), np.array([Y.std()], dt)
            runs = [hsic_mod._hsic_native_core(Xt, theta, Z, theta_z, valid, target=target, out_kind="gaussian",
                                               cat=None, want_gamma=True, nthreads=t) for t in (1, 2, 7)]
            for r in runs[1:]:
                for k in ("hsic", "r2", "gamma_shape", "gamma_scale", "ca", "cb"):
                    np.testing.assert_allclose(np.asarray(r[k]), np.asarray(runs[0][k]),
                                               rtol=1e-12 if f64 else 2e-5, atol=1e-14 if f64 else 1e-7,
                                               err_msg=f"n={n} {k}")
