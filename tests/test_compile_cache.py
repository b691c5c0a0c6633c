"""Tests of hsens_jax.compile_cache: JAX's persistent compilation cache, on by default."""

import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

import jax
import jax.numpy as jnp
from jax.experimental.compilation_cache import compilation_cache as jcc

import hsens_jax
from hsens_jax import compile_cache as cc
from hsens_jax.sensitivity.hsic import hsic

ROOT = Path(__file__).resolve().parents[1]
_CONFIG = ("jax_compilation_cache_dir", "jax_enable_compilation_cache",
           "jax_persistent_cache_min_compile_time_secs")


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """A process state where the cache has not been decided yet; restored afterwards."""
    saved = {k: getattr(jax.config, k) for k in _CONFIG}
    state = dict(cc._state, warned=set(cc._state["warned"]))
    monkeypatch.delenv(cc.ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(cc, "MIN_COMPILE_TIME_SECS", 0.0)  # write even the small test programs
    jax.config.update("jax_compilation_cache_dir", None)  # as in a process that set nothing
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)  # JAX's default
    from jax.experimental.compilation_cache import compilation_cache as jcc

    jcc.reset_cache()  # JAX opens its cache afresh, where this test says (not where a previous one did)
    cc._reset_for_tests()
    yield tmp_path
    for k, v in saved.items():
        jax.config.update(k, v)
    jcc.reset_cache()
    cc._state.clear()
    cc._state.update(state)


def _compile_something(tag):
    """Compiles a program nobody compiled before in this process (a new constant)."""
    f = jax.jit(lambda x: jnp.sin(x) * tag + jnp.cumsum(x))
    return float(f(jnp.arange(5.0))[0])


def _entries(path):
    return [p for p in Path(path).glob("*") if not p.name.startswith(".")]


def test_public_api_is_exported_at_the_package_top():
    assert hsens_jax.enable_compilation_cache is cc.enable_compilation_cache
    assert hsens_jax.disable_compilation_cache is cc.disable_compilation_cache
    assert hsens_jax.compilation_cache_dir is cc.compilation_cache_dir
    for name in ("enable_compilation_cache", "disable_compilation_cache", "compilation_cache_dir"):
        assert name in hsens_jax.__all__


def test_default_directory_relocation_by_env_and_by_argument(fresh, monkeypatch):
    got = cc.ensure_compilation_cache()
    default = fresh / "xdg" / "hsens_jax" / f"jax-{jax.__version__}"
    assert got == default and cc.compilation_cache_dir() == default
    assert cc.ensure_compilation_cache() == default  # idempotent
    _compile_something(1.25)
    assert _entries(default), "nothing written to the default cache directory"
    # the environment variable relocates it
    cc._reset_for_tests()
    monkeypatch.setenv(cc.ENV_VAR, str(fresh / "from_env"))
    assert cc.ensure_compilation_cache() == fresh / "from_env"
    _compile_something(2.5)
    assert _entries(fresh / "from_env")
    # an explicit argument overrides the environment
    assert cc.enable_compilation_cache(fresh / "explicit") == fresh / "explicit"
    assert cc.compilation_cache_dir() == fresh / "explicit"
    _compile_something(3.75)
    assert _entries(fresh / "explicit")
    assert jax.config.jax_compilation_cache_dir == str(fresh / "explicit")


@pytest.mark.parametrize("value", ["0", "off", "FALSE", "none"])
def test_disabled_by_the_environment(fresh, monkeypatch, value):
    monkeypatch.setenv(cc.ENV_VAR, value)
    assert cc.ensure_compilation_cache() is None
    assert cc.compilation_cache_dir() is None
    _compile_something(4.5)
    assert not (fresh / "xdg").exists()


def test_a_directory_the_user_gave_jax_is_kept(fresh):
    jax.config.update("jax_compilation_cache_dir", str(fresh / "users"))
    assert cc.ensure_compilation_cache() == fresh / "users"
    _compile_something(7.25)
    assert _entries(fresh / "users")


def test_disabled_by_the_function_and_ensure_does_not_turn_it_back_on(fresh):
    cc.enable_compilation_cache(fresh / "c")
    cc.disable_compilation_cache()
    assert cc.compilation_cache_dir() is None
    assert cc.ensure_compilation_cache() is None
    before = len(_entries(fresh / "c"))
    _compile_something(5.5)
    assert len(_entries(fresh / "c")) == before
    assert not jax.config.jax_enable_compilation_cache


def _small_problem():
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(40, 3))
    return X, np.sin(3 * X[:, 0]) + 0.1 * X[:, 1]


def test_read_only_directory_warns_once_and_results_are_right(fresh, monkeypatch):
    X, Y = _small_problem()
    cc.disable_compilation_cache()
    ref = np.asarray(hsic(X, Y, pvalue="gamma").r2)
    ro = fresh / "ro"
    ro.mkdir()
    if os.geteuid() == 0:  # root writes anywhere: make this directory refuse writes
        monkeypatch.setattr(cc, "_can_write", lambda p: Path(p) != ro)
    else:
        ro.chmod(0o555)
    try:
        with pytest.warns(RuntimeWarning, match="read-only") as rec:
            assert cc.enable_compilation_cache(ro) == ro
            cc.enable_compilation_cache(ro)
        assert len([w for w in rec if "read-only" in str(w.message)]) == 1  # once
        assert cc.compilation_cache_dir() == ro  # entries there would still be read
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # nothing is written, so nothing fails
            _compile_something(6.5)
            r = hsic(X, Y, pvalue="gamma", bandwidth=X.std(0, ddof=1) * 1.0001)
        np.testing.assert_allclose(np.asarray(r.r2), ref, rtol=1e-3)
        assert not _entries(ro)
    finally:
        ro.chmod(0o755)


def test_full_file_system_and_unusable_path_degrade_to_warnings(fresh, monkeypatch):
    monkeypatch.setattr(cc, "_free_bytes", lambda p: 1024)
    with pytest.warns(RuntimeWarning, match="MiB free"):
        cc.enable_compilation_cache(fresh / "full")
    assert cc.compilation_cache_dir() == fresh / "full"
    assert jax.config.jax_persistent_cache_min_compile_time_secs == float("inf")
    not_a_dir = fresh / "file"
    not_a_dir.write_text("x")
    with pytest.warns(RuntimeWarning, match="cannot be used"):
        cc.enable_compilation_cache(not_a_dir / "sub")
    assert cc.compilation_cache_dir() is None
    X, Y = _small_problem()
    assert np.all(np.isfinite(np.asarray(hsic(X, Y).hsic)))


def test_size_cap_removes_least_recently_used_entries(tmp_path):
    for i in range(10):
        p = tmp_path / f"entry{i}-cache"
        p.write_bytes(b"x" * 1000)
        os.utime(p, (1000 + i, 1000 + i))
    assert cc._trim(tmp_path, max_bytes=20_000) == 0  # under the cap: untouched
    removed = cc._trim(tmp_path, max_bytes=8000)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert removed == 4 and len(left) == 6  # down to 3/4 of the cap
    assert left[0] == "entry4-cache"  # the oldest went first


_SCRIPT = textwrap.dedent("""
    import json, logging, sys
    import numpy as np
    import jax
    from jax import monitoring
    events = {"hits": 0, "writes": 0}
    monitoring.register_event_listener(
        lambda name, **kw: events.__setitem__("hits", events["hits"] + 1)
        if name == "/jax/compilation_cache/cache_hits" else
        events.__setitem__("writes", events["writes"] + 1)
        if name == "/jax/compilation_cache/cache_misses" else None)
    messages = []
    class H(logging.Handler):
        def emit(self, record):
            messages.append(record.getMessage())
    log = logging.getLogger("jax._src.compiler")
    log.setLevel(logging.DEBUG)
    log.addHandler(H())
    from hsens_jax.sensitivity.hsic import hsic
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(int(sys.argv[1]), 3))
    r = hsic(X, np.sin(3 * X[:, 0]), pvalue="gamma")
    hits = [m for m in messages if m.startswith("Persistent compilation cache hit")]
    misses = [m for m in messages if m.startswith("PERSISTENT COMPILATION CACHE MISS")]
    cores = ("_hsic_core", "_hsic_native_core")  # the pure-JAX program or the native kernel's
    print(json.dumps({"r2": np.asarray(r.r2).tolist(), **events,
                      "core_hit": any(c in m for m in hits for c in cores),
                      "core_miss": any(c in m for m in misses for c in cores)}))
""")


def test_a_second_fresh_process_loads_the_programs_from_the_cache(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu",
               HSENS_COMPILATION_CACHE=str(tmp_path / "cache"))

    def run(n):
        p = subprocess.run([sys.executable, "-c", _SCRIPT, str(n)], capture_output=True,
                           text=True, env=env, timeout=300)
        assert p.returncode == 0, p.stderr[-2000:]
        return json.loads(p.stdout.strip().splitlines()[-1])

    first = run(37)
    assert first["core_miss"] and not first["core_hit"] and first["writes"] >= 1
    second = run(38)  # another n of the same bucket (40): the same programs
    assert second["core_hit"] and not second["core_miss"]
    assert second["writes"] == 0  # nothing new compiled and written
    assert second["hits"] >= 1
