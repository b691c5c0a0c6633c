"""Tests of hsens_jax.executables: compiled programs kept whole across processes."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hsens_jax import executables as ex

ROOT = Path(__file__).resolve().parents[1]

# One fresh process: a sweep of the built-in MLP with 3 folds on 2 CPU devices (its programs
# sharded over both) and hsic with Gamma p-values (a one-device program in a 2-device process).
_SCRIPT = textwrap.dedent("""
    import json, sys
    import jax
    jax.config.update("jax_num_cpu_devices", 2)
    import numpy as np
    traced = []
    from jax import monitoring
    monitoring.register_event_duration_secs_listener(
        lambda name, d, **kw: traced.append(1) if name == "/jax/core/compile/jaxpr_trace_duration" else None)
    from hsens_jax import executables
    from hsens_jax.data import load_dataset
    from hsens_jax.engine.sweep import run_sweep
    from hsens_jax.engine.train import Patience
    from hsens_jax.sensitivity.hsic import hsic
    from hsens_jax.space import Categorical, Float, Space
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(150, 3))
    r = hsic(X, np.sin(3 * X[:, 0]), pvalue="gamma")
    ds = load_dataset("digits", n_train=120, seed=0)
    space = Space([Float("learning_rate", 1e-3, 0.3, log=True), Categorical("optimizer", ["sgd", "adam"])])
    res = run_sweep(ds, space, space.sample(4, "random", seed=1), fixed={"steps": 8, "width": 8, "depth": 1,
                    "batch_size": 16}, cv=3, n_evals=2, progress=False, patience=Patience(2, 0.0))
    print(json.dumps({"r2": np.asarray(r.r2).tolist(), "p": np.asarray(r.pvalue).tolist(),
                      "loss": np.asarray(res.metrics["final_val_loss"]).tolist(),
                      "stats": executables.stats, "traced": len(traced)}))
""")


def _run(env):
    p = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_a_new_process_loads_the_programs_without_tracing_them(tmp_path):
    """Process 1 fills JAX's persistent cache only (this layer off); process 2 writes its
    executables, from real compilations although JAX's cache holds every program (an
    executable JAX loaded from its cache serializes without its kernels: loading it then
    fails with "Function ... not found"); process 3 loads them: it traces neither the sweep's
    training nor hsic's core, and every number is the same."""
    cache = tmp_path / "cache"
    env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu", HSENS_COMPILATION_CACHE=str(cache))
    first = _run({**env, "HSENS_EXECUTABLE_CACHE": "off"})
    assert not (cache / "hsens-executables").exists() or not list((cache / "hsens-executables").glob("*.exe"))
    second = _run({**env, "HSENS_EXECUTABLE_CACHE": "on"})
    assert second["stats"]["written"] >= 2 and second["stats"]["disk"] == 0
    written = sorted(p.name for p in (cache / "hsens-executables").glob("*.exe"))
    assert len(written) == second["stats"]["written"]
    third = _run({**env, "HSENS_EXECUTABLE_CACHE": "on"})
    assert third["stats"]["compiled"] == 0 and third["stats"]["disk"] == second["stats"]["written"]
    assert third["traced"] < second["traced"]  # the big programs are not traced any more
    assert sorted(p.name for p in (cache / "hsens-executables").glob("*.exe")) == written
    for key in ("r2", "p", "loss"):
        assert first[key] == second[key] == third[key]


@pytest.fixture
def disk(tmp_path, monkeypatch):
    """The disk layer on, in a directory of the test's own, memory emptied before and after."""
    directory = tmp_path / "exe"
    monkeypatch.setattr(ex, "executable_cache_dir", lambda: directory)
    ex._clear_memory_for_tests()
    yield directory
    ex._clear_memory_for_tests()


@jax.jit
def _poly(x, y):
    return {"s": jnp.sum(jnp.tanh(x) * y), "v": x * 2.0 + y}


def _args():
    return np.linspace(0, 1, 50, dtype=np.float32), np.float32(3.0) * np.ones(50, np.float32)


def test_written_once_then_loaded_with_equal_results(disk):
    args = _args()
    out1 = ex.compiled(_poly, "test.poly", args)(*args)
    assert ex.stats["compiled"] == 1 and ex.stats["written"] == 1 and len(list(disk.glob("*.exe"))) == 1
    assert ex.compiled(_poly, "test.poly", args) is ex.compiled(_poly, "test.poly", args)  # memory
    ex._clear_memory_for_tests()
    out2 = ex.compiled(_poly, "test.poly", args)(*args)
    assert ex.stats == {**ex.stats, "disk": 1, "compiled": 0}
    np.testing.assert_array_equal(np.asarray(out1["v"]), np.asarray(out2["v"]))
    assert float(out1["s"]) == float(out2["s"])


def test_what_changes_the_program_changes_the_key(disk):
    a = _args()
    ex.compiled(_poly, "test.poly", a)
    ex.compiled(_poly, "test.poly", (a[0][:40], a[1][:40]))  # shapes
    ex.compiled(_poly, "test.poly", (a[0].astype(np.int32), a[1]))  # dtypes
    ex.compiled(_poly, "test.poly", a, key=("another setting",))  # extra key material
    with jax.default_matmul_precision("highest"):  # a JAX setting a trace depends on
        ex.compiled(_poly, "test.poly", a)
    assert ex.stats["compiled"] == 5 and len(list(disk.glob("*.exe"))) == 5


def test_static_arguments_and_unstable_ones(disk):
    from functools import partial

    @partial(jax.jit, static_argnames=("power", "fn"))
    def f(x, *, power, fn=None):
        y = x ** power
        return y if fn is None else fn(y)

    x = np.arange(4.0, dtype=np.float32)
    assert np.allclose(ex.compiled(f, "test.f", (x,), {"power": 2})(x), x ** 2)
    assert np.allclose(ex.compiled(f, "test.f", (x,), {"power": 3})(x), x ** 3)
    assert len(list(disk.glob("*.exe"))) == 2
    # a user's function as a static argument: no stable repr, kept in memory only
    out = ex.compiled(f, "test.f", (x,), {"power": 2, "fn": lambda y: y + 1})(x)
    assert np.allclose(out, x ** 2 + 1)
    assert ex.stats["unstable"] == 1 and len(list(disk.glob("*.exe"))) == 2


def test_stable_repr_names_hsens_jax_functions_and_marks_others():
    from hsens_jax.engine.builtin import MLP
    from hsens_jax.engine.train import Patience

    def user_fn(x):
        return x

    text = ex.stable_repr({"p": Patience(3, 0.1), "f": ex.stable_repr, "t": (1, "a")})
    assert "hsens_jax.executables.stable_repr" in text and "Patience" in text and " at 0x" not in text
    assert " at 0x" in ex.stable_repr((user_fn,)) and " at 0x" in ex.stable_repr(lambda x: x)
    model = MLP()  # the built-in model: its module builder is hsens_jax's
    assert " at 0x" in repr(model) and ex._stable(ex.stable_repr(model)), ex.stable_repr(model)


def test_a_corrupt_entry_warns_and_compiles(disk):
    args = _args()
    good = ex.compiled(_poly, "test.poly", args)(*args)
    (entry,) = disk.glob("*.exe")
    entry.write_bytes(b"not a pickle")
    ex._clear_memory_for_tests()
    with pytest.warns(RuntimeWarning, match="could not be loaded"):
        again = ex.compiled(_poly, "test.poly", args)(*args)
    assert ex.stats["compiled"] == 1
    np.testing.assert_array_equal(np.asarray(good["v"]), np.asarray(again["v"]))


def test_off_by_environment_and_unwritable_directory(tmp_path, monkeypatch):
    monkeypatch.setenv(ex.ENV_VAR, "off")
    assert ex.executable_cache_dir() is None
    # a directory that cannot be written: a warning, the program still runs
    blocked = tmp_path / "file"
    blocked.write_text("x")
    monkeypatch.setattr(ex, "executable_cache_dir", lambda: blocked / "sub")
    ex._clear_memory_for_tests()
    args = _args()
    out = ex.compiled(_poly, "test.poly", args)(*args)
    assert np.allclose(np.asarray(out["v"]), args[0] * 2 + args[1])
    assert ex.stats["written"] == 0
    ex._clear_memory_for_tests()


def test_memo_keeps_a_small_value_beside_the_executables(disk):
    args = _args()
    calls = []
    value = ex.memo("test.memo", ("k",), args, lambda: calls.append(1) or {"shape": (3,)})
    again = ex.memo("test.memo", ("k",), args, lambda: calls.append(1) or {"shape": "recomputed"})
    assert value == again == {"shape": (3,)} and len(calls) == 1 and len(list(disk.glob("*.val"))) == 1
    other = ex.memo("test.memo", ("another",), args, lambda: calls.append(1) or 7)  # another key
    assert other == 7 and len(calls) == 2
    # an unstable key is never written
    assert ex.memo("test.memo", (lambda: 0,), args, lambda: 8) == 8 and len(list(disk.glob("*.val"))) == 2


def test_compiler_options_are_passed_and_keyed(disk):
    args = _args()
    plain = ex.compiled(_poly, "test.poly", args)
    vec = ex.compiled(_poly, "test.poly", args, compiler_options={"xla_cpu_prefer_vector_width": 512})
    assert vec is not plain and ex.stats["compiled"] == 2 and len(list(disk.glob("*.exe"))) == 2
    assert ex.compiled(_poly, "test.poly", args, compiler_options={"xla_cpu_prefer_vector_width": 512}) is vec
    np.testing.assert_allclose(np.asarray(vec(*args)["v"]), np.asarray(plain(*args)["v"]), rtol=1e-6)
    with pytest.raises(Exception, match="no_such_option"):  # the options reach XLA
        ex.compiled(_poly, "test.poly", args, compiler_options={"xla_no_such_option": 1})


def test_kernel_options_follow_the_platform_the_cpu_and_xla_flags(monkeypatch):
    monkeypatch.setattr(ex, "_cpu_flags", lambda: frozenset({"avx2", "avx512f"}))
    ex._kernel_options.cache_clear()
    try:
        assert ex._kernel_options("cpu", "") == (("xla_cpu_prefer_vector_width", 512),)
        assert ex._kernel_options("gpu", "") == ()
        assert ex._kernel_options("cpu", "--xla_cpu_prefer_vector_width=256") == ()  # the user's choice
        monkeypatch.setattr(ex, "_cpu_flags", lambda: frozenset({"avx2"}))
        ex._kernel_options.cache_clear()
        assert ex._kernel_options("cpu", "") == ()
    finally:
        ex._kernel_options.cache_clear()
