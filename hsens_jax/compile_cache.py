"""JAX's persistent compilation cache, on by default for hsens_jax.

On a CPU most of the wait of a first call is XLA compilation, not arithmetic: ``hsic`` at
n = 2000, d = 10 computes in tens of milliseconds but compiles for about a second.  JAX can
keep compiled programs on disk and load them in a later process; this module turns that on
for every hsens_jax entry point (:func:`ensure_compilation_cache` is called at the top of
``hsic``, ``sobol``, ... and by the sweep engine and the CLI).

Where the cache lives
---------------------
1. an explicit ``enable_compilation_cache(path)`` (overrides everything below);
2. the environment variable ``HSENS_COMPILATION_CACHE``: a directory, or ``0`` / ``off`` /
   ``false`` / ``none`` (any case) to keep the cache off;
3. a cache directory the user already gave JAX (``JAX_COMPILATION_CACHE_DIR`` or
   ``jax.config.update("jax_compilation_cache_dir", ...)``): it is used as is;
4. otherwise ``$XDG_CACHE_HOME/hsens_jax/jax-<jax version>`` (``~/.cache/...`` without
   ``XDG_CACHE_HOME``).  One directory per JAX version: entries of another version can never
   be used (JAX keys them by its version), so an upgrade starts a new directory and old ones
   can be deleted whole.

Settings (chosen by measurement on a 2-core x86 CPU, jax 0.10.2; ``python
benchmarks/bench_compile_cache.py``, results in ``benchmarks/results/compile_cache_cpu.md``)
----------------------------------------------------------------------------------------
* ``jax_persistent_cache_min_compile_time_secs = MIN_COMPILE_TIME_SECS`` (0.1 s; JAX's
  default is 1 s, under which none of the estimators' programs would ever be written:
  ``hsic``'s and ``sobol_indices``' compile in 0.4-1.2 s, the sweep's in seconds).  Loading an
  entry took 45 ms against 1.1 s of compilation for the estimators' programs.  The one-operation
  programs of eager ``jax.numpy`` calls compile in 15-110 ms and load in 1.6-13 ms, so caching
  them saves at most a few tens of milliseconds each; on a loaded machine a 20 ms threshold
  wrote them by the hundred (one entry per operation, dtype and shape: 1012 files part-way
  through the test suite), and every entry written is one more serialization of an executable
  (a rare crash inside XLA's serialization was once seen on a long-lived process).  0.1 s
  keeps every estimator and sweep program and leaves most eager operations out.
* ``jax_persistent_cache_min_entry_size_bytes = 0``: no size floor; the entries measured are
  2-62 kB compressed, and small ones pay as well as large ones.
* Size cap: ``MAX_CACHE_BYTES`` (2 GiB, tens of thousands of such entries).  JAX's own cap
  (``jax_compilation_cache_max_size``) needs the ``filelock`` package and locks a file on
  every read; instead, when a process first enables the cache and the directory holds more
  than the cap, the least recently used entries (file access time, else modification time)
  are deleted until it holds 3/4 of the cap.

Failures never raise
--------------------
A directory that cannot be created, is not a directory or is not readable: a warning
(once per process) and no persistent cache.  A directory that can be read but not written
(read-only file system, missing permission) or a file system with less than
``MIN_FREE_BYTES`` free: a warning (once) and the cache is used read-only (entries already
there are loaded, nothing is written).  Results never depend on the cache.

The cache is trusted code: do not point it at a directory others can write to (see JAX's
"Persistent compilation cache" guide).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Optional

__all__ = [
    "ENV_VAR",
    "MAX_CACHE_BYTES",
    "MIN_COMPILE_TIME_SECS",
    "MIN_FREE_BYTES",
    "compilation_cache_dir",
    "disable_compilation_cache",
    "enable_compilation_cache",
    "ensure_compilation_cache",
]

#: Environment variable: a cache directory, or 0/off/false/none to disable the cache.
ENV_VAR = "HSENS_COMPILATION_CACHE"
#: Programs compiling faster than this are not written (see the module docstring).
MIN_COMPILE_TIME_SECS = 0.1
#: Size cap of the cache directory, enforced when a process enables it.
MAX_CACHE_BYTES = 2 * 1024**3
#: Below this much free space the cache is used read-only.
MIN_FREE_BYTES = 64 * 1024**2

_OFF_VALUES = {"0", "off", "false", "none", "no", ""}
_lock = threading.Lock()
_state = {"decided": False, "dir": None, "read_only": False, "warned": set()}


def _warn_once(kind: str, message: str) -> None:
    if kind in _state["warned"]:
        return
    _state["warned"].add(kind)
    warnings.warn(message, RuntimeWarning, stacklevel=3)


def _default_dir() -> Path:
    import jax

    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "hsens_jax" / f"jax-{jax.__version__}"


def _env_setting():
    """``None`` (not set), ``False`` (disabled) or a Path."""
    raw = os.environ.get(ENV_VAR)
    if raw is None:
        return None
    if raw.strip().lower() in _OFF_VALUES:
        return False
    return Path(os.path.expanduser(raw.strip()))


def _can_write(path: Path) -> bool:
    """Whether a file can be created in ``path`` (by this user, on this file system)."""
    try:
        fd, name = tempfile.mkstemp(prefix=".hsens-probe-", dir=path)
        os.close(fd)
        os.unlink(name)
    except OSError:
        return False
    return True


def _free_bytes(path: Path) -> Optional[int]:
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def _probe(path: Path) -> Optional[str]:
    """Creates ``path`` if needed; returns None when it can be read and written, ``"ro"`` when
    it can only be read, else the reason it cannot be used (a string starting with "!")."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if path.is_dir() and os.access(path, os.R_OK | os.X_OK):
            return "ro"
        return f"!{exc.strerror or exc}"
    if not path.is_dir():
        return "!not a directory"
    if not os.access(path, os.R_OK | os.X_OK):
        return "!not readable"
    if not _can_write(path):
        return "ro"
    free = _free_bytes(path)
    if free is not None and free < MIN_FREE_BYTES:
        return "full"
    return None


def _trim(path: Path, max_bytes: int = MAX_CACHE_BYTES) -> int:
    """Deletes least recently used entries until ``path`` holds <= 3/4 of ``max_bytes`` (only
    when it holds more than ``max_bytes``).  Returns the number of files removed."""
    entries = []
    total = 0
    try:
        with os.scandir(path) as it:
            for e in it:
                if not e.is_file(follow_symlinks=False) or e.name.startswith("."):
                    continue
                st = e.stat(follow_symlinks=False)
                entries.append((max(st.st_atime, st.st_mtime), st.st_size, e.path))
                total += st.st_size
    except OSError:
        return 0
    if total <= max_bytes:
        return 0
    removed = 0
    for _, size, p in sorted(entries):
        if total <= 0.75 * max_bytes:
            break
        try:
            os.unlink(p)
        except OSError:
            continue
        total -= size
        removed += 1
    return removed


def _apply(path: Optional[Path], read_only: bool = False) -> None:
    import jax
    from jax.experimental.compilation_cache import compilation_cache as jcc

    if path is None:
        jax.config.update("jax_enable_compilation_cache", False)
    else:
        jax.config.update("jax_enable_compilation_cache", True)
        jax.config.update("jax_compilation_cache_dir", str(path))
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
        # a read-only cache: nothing ever takes this long to compile, so nothing is written
        jax.config.update("jax_persistent_cache_min_compile_time_secs",
                          float("inf") if read_only else MIN_COMPILE_TIME_SECS)
    jcc.reset_cache()  # the next compilation opens the cache at the new place (or none)
    _state.update(decided=True, dir=path, read_only=read_only)


def enable_compilation_cache(path=None) -> Path:
    """Turns JAX's persistent compilation cache on, at ``path``.

    Args:
      path: the cache directory (created if missing).  ``None``: ``$HSENS_COMPILATION_CACHE``
        if it names a directory, else the default ``$XDG_CACHE_HOME/hsens_jax/jax-<version>``.
        An explicit path overrides the environment variable.

    Returns:
      The directory in use.  When it cannot be used a ``RuntimeWarning`` says why (once per
      process) and the cache stays off; a directory that is read-only (or on a file system
      with less than ``MIN_FREE_BYTES`` free) is used read-only, with a warning.
    """
    with _lock:
        if path is None:
            env = _env_setting()
            path = env if isinstance(env, Path) else _default_dir()
        path = Path(os.path.expanduser(str(path))).absolute()
        status = _probe(path)
        if status is not None and status.startswith("!"):
            _warn_once(f"unusable:{path}", f"hsens_jax: the compilation cache directory {path} "
                       f"cannot be used ({status[1:]}); continuing without a persistent "
                       f"compilation cache (set {ENV_VAR} to another directory, or to 'off')")
            _apply(None)
            _state["dir"] = None
            return path
        if status in ("ro", "full"):
            why = ("it is read-only or not writable by this user" if status == "ro" else
                   f"its file system has less than {MIN_FREE_BYTES // 2**20} MiB free")
            _warn_once(f"ro:{path}", f"hsens_jax: the compilation cache directory {path} is "
                       f"used read-only because {why}: programs already cached are loaded, "
                       f"new ones are not written")
            _apply(path, read_only=True)
            return path
        _trim(path)
        _apply(path)
        return path


def disable_compilation_cache() -> None:
    """Turns the persistent compilation cache off for this process (compiled programs are
    then kept in memory only, as JAX does by default).  :func:`ensure_compilation_cache`
    does not turn it back on; :func:`enable_compilation_cache` does."""
    with _lock:
        _apply(None)


def compilation_cache_dir() -> Optional[Path]:
    """The cache directory in use, or None when the persistent cache is off (or has not been
    turned on yet in this process)."""
    return _state["dir"]


def ensure_compilation_cache() -> Optional[Path]:
    """Turns the persistent compilation cache on unless it is disabled; idempotent and cheap
    (after the first call, one dictionary lookup).  Called by every hsens_jax entry point.

    Returns the directory in use, or None when the cache is off: ``$HSENS_COMPILATION_CACHE``
    set to ``0``/``off``/``false``/``none``, after :func:`disable_compilation_cache`, or when
    the directory cannot be used (a warning then says why).  A cache directory configured in
    JAX by the user is respected and returned.
    """
    if _state["decided"]:
        return _state["dir"]
    env = _env_setting()
    if env is False:
        with _lock:
            _state.update(decided=True, dir=None)
        return None
    if env is None:
        import jax

        user_dir = jax.config.jax_compilation_cache_dir
        if user_dir and jax.config.jax_enable_compilation_cache:
            with _lock:  # the user's own JAX setting: keep it; at JAX's default threshold
                # (1 s) none of the estimators' programs would be written: lower it
                if jax.config.jax_persistent_cache_min_compile_time_secs == 1.0:
                    jax.config.update("jax_persistent_cache_min_compile_time_secs",
                                      MIN_COMPILE_TIME_SECS)
                _state.update(decided=True, dir=Path(user_dir))
            return _state["dir"]
    enable_compilation_cache(env if isinstance(env, Path) else None)
    return _state["dir"]


def _reset_for_tests() -> None:
    """Forgets the decision of this process (the next ensure call decides again)."""
    _state.update(decided=False, dir=None, read_only=False)
    _state["warned"].clear()
