"""Compiled programs kept whole across processes: a new process skips tracing and lowering.

JAX's persistent compilation cache (:mod:`hsens_jax.compile_cache`) saves XLA's compilation,
but a new process must still trace the Python function and lower it to StableHLO before it
can even look the program up: for ``hsic(X, Y, pvalue="gamma")`` at n = 2000, d = 10 on a
2-core CPU, 22 ms of tracing, 53 ms of lowering and 43 ms of lookup and loading, against
38 ms of arithmetic; for a sweep's training program, 0.4-0.7 s of tracing and lowering each.
This module keeps the compiled executable itself (``jax.experimental.serialize_executable``)
on disk, keyed by what determines the program *without tracing it*:

* a name for the program and the repr of its static arguments (plain values: strings,
  numbers, tuples, frozen dataclasses of them);
* the structure, shapes, dtypes, weak types and shardings of its array arguments;
* the code: a hash of every source file of the installed hsens_jax, the versions of jax and
  jaxlib, ``XLA_FLAGS``;
* the context: the JAX settings that change what a trace produces (64-bit mode, default
  matmul precision, PRNG implementation, ...) and the devices (platform, kind, ids).

Any change of these is a new key, never a stale program.  A program whose static arguments
have no stable repr (a user's function or model object: ``<... at 0x...>``) is not written;
neither is any program in a process group (``jax.process_count() > 1``).

Where, and when not
-------------------
Entries live in ``<compilation cache>/hsens-executables/`` (see
:func:`hsens_jax.compile_cache.compilation_cache_dir`): relocating or disabling the
compilation cache does the same to this one, a read-only cache directory is only read.
``HSENS_EXECUTABLE_CACHE=off`` (or ``0``/``false``/``none``) turns this layer alone off.
The directory is capped at :data:`MAX_EXECUTABLE_BYTES` (least recently used entries deleted
when a process first uses it).  An entry that cannot be read or loaded is ignored with a
warning (once per process) and the program is compiled as usual; failures never raise.

Within a process every program is compiled (or loaded) once and kept in memory
(:data:`MEMORY_ENTRIES` programs, least recently used dropped).

Like JAX's cache, the directory is trusted code: loading an executable runs it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import os
import pickle
import tempfile
import threading
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Optional

import jax
import numpy as np

__all__ = ["ENV_VAR", "MAX_EXECUTABLE_BYTES", "MEMORY_ENTRIES", "compiled", "executable_cache_dir", "kernel_options",
           "memo", "signature", "stable_repr", "stats"]

#: Environment variable: ``off`` (or 0/false/none/no) keeps executables out of the disk cache.
ENV_VAR = "HSENS_EXECUTABLE_CACHE"
#: Size cap of the executables' directory, enforced when a process first uses it.
MAX_EXECUTABLE_BYTES = 512 * 1024**2
#: Programs kept in memory per process.
MEMORY_ENTRIES = 128
_FORMAT = 2
_SUBDIR = "hsens-executables"
_OFF = {"0", "off", "false", "none", "no"}

_lock = threading.Lock()
_memory: "OrderedDict[Any, jax.stages.Compiled]" = OrderedDict()
_state: dict = {"trimmed": set(), "warned": set()}
#: Counters of this process: ``memory`` hits, ``disk`` loads, ``compiled`` programs, ``written``
#: entries, ``unstable`` programs not written (static arguments without a stable repr).
stats = {"memory": 0, "disk": 0, "compiled": 0, "written": 0, "unstable": 0}


def _warn_once(kind: str, message: str) -> None:
    if kind not in _state["warned"]:
        _state["warned"].add(kind)
        warnings.warn(message, RuntimeWarning, stacklevel=4)


@functools.lru_cache(maxsize=1)
def _code_hash() -> str:
    """Hash of every source file of the installed package (``.py``, and the native kernels'
    ``.c``/``.h``): their relative paths and bytes."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for p in sorted(q for pattern in ("*.py", "*.c", "*.h") for q in root.rglob(pattern)):
        h.update(str(p.relative_to(root)).encode())
        try:
            h.update(p.read_bytes())
        except OSError:
            h.update(b"?")
    return h.hexdigest()


def _context() -> tuple:
    """What a trace and its compilation depend on besides the function and its arguments."""
    import jaxlib

    cfg = jax.config
    settings = tuple((name, repr(getattr(cfg, name, None))) for name in (
        "jax_enable_x64", "jax_default_matmul_precision", "jax_default_prng_impl",
        "jax_threefry_partitionable", "jax_numpy_rank_promotion", "jax_numpy_dtype_promotion",
        "jax_enable_checks", "jax_debug_nans", "jax_debug_infs", "jax_disable_jit",
        "jax_use_shardy_partitioner", "jax_dynamic_shapes"))
    devices = tuple((d.platform, d.device_kind, d.id, d.process_index) for d in jax.devices())
    return (_code_hash(), jax.__version__, jaxlib.__version__, os.environ.get("XLA_FLAGS", ""),
            settings, devices, jax.process_count())


def _leaf(a) -> tuple:
    shape = tuple(np.shape(a))
    dtype = str(getattr(a, "dtype", None) or np.asarray(a).dtype)
    weak = bool(getattr(a, "weak_type", False)) or isinstance(a, (bool, int, float, complex))
    sharding = getattr(a, "sharding", None) if isinstance(a, jax.Array) else None
    return shape, dtype, weak, sharding


def signature(args) -> tuple:
    """What a compiled program depends on in its arguments: their pytree structure and, per leaf,
    shape, dtype, weak type and (for JAX arrays) sharding."""
    leaves, tree = jax.tree.flatten(args)
    return tree, tuple(_leaf(a) for a in leaves)


def _stable(text: str) -> bool:
    return " at 0x" not in text and "<function" not in text and "<lambda>" not in text


def stable_repr(obj) -> str:
    """A repr of ``obj`` that is the same in every process: dataclasses, tuples, lists and dicts
    are walked; a function or class defined in hsens_jax is named by its import path (the code
    hash covers its code); any other function, or an object whose repr holds a memory address,
    gives a repr marked unstable (such programs are kept in memory only)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        inner = ", ".join(f"{f.name}={stable_repr(getattr(obj, f.name))}" for f in dataclasses.fields(obj))
        return f"{type(obj).__module__}.{type(obj).__qualname__}({inner})"
    if isinstance(obj, (tuple, list)):
        inner = ", ".join(stable_repr(x) for x in obj)
        return f"{type(obj).__name__}({inner})"
    if isinstance(obj, dict):
        return "{" + ", ".join(f"{stable_repr(k)}: {stable_repr(v)}" for k, v in obj.items()) + "}"
    if callable(obj) and hasattr(obj, "__qualname__"):
        module = getattr(obj, "__module__", "") or ""
        if (module == "hsens_jax" or module.startswith("hsens_jax.")) and "<" not in obj.__qualname__:
            return f"{module}.{obj.__qualname__}"
        return f"<unstable {module}.{obj.__qualname__} at 0x{id(obj):x}>"
    return repr(obj)


_hits = threading.local()
_bypass = {"depth": 0, "saved": None}
_bypass_lock = threading.Lock()


def _on_event(event: str, **_kwargs) -> None:
    if event == "/jax/compilation_cache/cache_hits":
        _hits.n = getattr(_hits, "n", 0) + 1


jax.monitoring.register_event_listener(_on_event)


@contextlib.contextmanager
def _fresh_compilation():
    """JAX's persistent cache bypassed while our programs compile.

    An executable JAX loaded from its persistent cache serializes without its compiled kernels
    (jax 0.10: the entry loads, then fails with "Function ... not found" when run), so a
    program this module writes must come from a real compilation. JAX keeps whether its cache
    is in use in a module-level flag; it is turned off while any of our compilations runs (a
    compilation of another thread in that window merely skips JAX's cache) and restored by the
    last one. Yields False when that flag is not where it was (another JAX version): the caller
    then writes nothing after a cache hit.
    """
    try:
        from jax._src import compilation_cache as jcc

        lock = jcc._cache_initialized_mutex
        jcc._cache_checked, jcc._cache_used  # noqa: B018 - both must exist
    except (ImportError, AttributeError):
        yield False
        return
    with _bypass_lock:
        if _bypass["depth"] == 0:
            with lock:
                _bypass["saved"] = (jcc._cache_checked, jcc._cache_used)
                jcc._cache_checked, jcc._cache_used = True, False
        _bypass["depth"] += 1
    try:
        yield True
    finally:
        with _bypass_lock:
            _bypass["depth"] -= 1
            if _bypass["depth"] == 0:
                with lock:
                    if (jcc._cache_checked, jcc._cache_used) == (True, False):
                        jcc._cache_checked, jcc._cache_used = _bypass["saved"]


def executable_cache_dir() -> Optional[Path]:
    """The directory executables are written to and read from, or None (layer off)."""
    if os.environ.get(ENV_VAR, "").strip().lower() in _OFF:
        return None
    from hsens_jax.compile_cache import compilation_cache_dir, ensure_compilation_cache

    ensure_compilation_cache()
    base = compilation_cache_dir()
    if base is None:
        return None
    return Path(base) / _SUBDIR


def _read_only() -> bool:
    from hsens_jax.compile_cache import _state as cc_state

    return bool(cc_state.get("read_only"))


def _prepare_dir(path: Path) -> bool:
    """Creates (once per process) and trims ``path``; False when it cannot be used."""
    key = str(path)
    if key in _state["trimmed"]:
        return path.is_dir()
    _state["trimmed"].add(key)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return path.is_dir()
    from hsens_jax.compile_cache import _trim

    _trim(path, MAX_EXECUTABLE_BYTES)
    return True


def _load(path: Path, key_text: str):
    try:
        with open(path, "rb") as f:
            fmt, stored_key, blob, in_tree, out_tree, device_ids = pickle.load(f)
        if fmt != _FORMAT or stored_key != key_text:
            return None
        from jax.experimental.serialize_executable import deserialize_and_load

        by_id = {d.id: d for d in jax.devices()}
        # the devices the program was compiled for, in order (by default all of the backend's)
        exe = deserialize_and_load(blob, in_tree, out_tree, execution_devices=[by_id[i] for i in device_ids])
    except FileNotFoundError:
        return None
    except Exception as exc:  # a corrupt or foreign entry: compile instead
        _warn_once(f"load:{path.parent}", f"hsens_jax: a cached executable in {path.parent} could not be "
                   f"loaded ({type(exc).__name__}: {exc}); compiling instead")
        return None
    try:
        os.utime(path)  # recently used: trimmed last
    except OSError:
        pass
    return exe


def _store(path: Path, key_text: str, exe) -> None:
    try:
        from jax.experimental.serialize_executable import serialize

        blob, in_tree, out_tree = serialize(exe)
        device_ids = [d.id for d in exe._executable._unloaded_executable.device_list]
        payload = pickle.dumps((_FORMAT, key_text, blob, in_tree, out_tree, device_ids),
                               protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # a program JAX cannot serialize (e.g. closed-over constants): memory only
        return
    try:
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(payload)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        stats["written"] += 1
    except OSError as exc:
        _warn_once(f"write:{path.parent}", f"hsens_jax: could not write a compiled program to {path.parent} "
                   f"({exc.strerror or exc}); programs are compiled again in each new process")


def _cpu_flags() -> frozenset:
    """The CPU's feature flags (Linux's /proc/cpuinfo: ``flags`` on x86, ``Features`` on Arm);
    empty elsewhere."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith(("flags", "Features")):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


@functools.lru_cache(maxsize=None)
def _kernel_options(platform: str, xla_flags: str) -> tuple:
    if platform != "cpu" or "xla_cpu_prefer_vector_width" in xla_flags or "avx512f" not in _cpu_flags():
        return ()
    return (("xla_cpu_prefer_vector_width", 512),)


def kernel_options() -> dict:
    """XLA compiler options for hsens_jax's arithmetic kernels (HSIC's sweeps over kernel
    blocks): on a CPU with AVX-512, 512-bit vectors (``xla_cpu_prefer_vector_width=512``; XLA
    prefers 256 by default).  Measured on a 2-core Xeon (AVX-512), warm calls of ``hsic`` on
    NumPy float64 inputs, n = 2000, d = 10 (best of 30): with Gamma p-values 34.5-36.2 ms ->
    29.3-31.3 ms, the V-statistic alone 17.3-17.9 -> 14.4-15.1 ms, 1000 permutations 2.70 ->
    2.41 s.  A sweep's training program runs no faster with it (0.85 against 0.87 s a call),
    so those keep XLA's default.  Empty elsewhere, and when ``XLA_FLAGS`` sets the option
    itself (the user's choice wins)."""
    return dict(_kernel_options(jax.default_backend(), os.environ.get("XLA_FLAGS", "")))


def compiled(fn: Callable, name: str, args: tuple, static: Optional[dict] = None, *,
             key: Any = (), compiler_options: Optional[dict] = None) -> "jax.stages.Compiled":
    """The compiled program of the jitted ``fn`` for ``args`` (positional, arrays or pytrees of
    arrays) and ``static`` (its static keyword arguments): from this process's memory, else from
    the disk cache, else traced, lowered and compiled (then kept in both).

    Call the result with ``args`` only: ``compiled(fn, "name", args, static)(*args)``.

    Args:
      fn: a ``jax.jit``-wrapped function whose static arguments are the keys of ``static``.
      name: a name unique to ``fn`` within hsens_jax (part of the key).
      args: the dynamic arguments, as they will be passed.
      static: static keyword arguments (hashable; their repr should be stable across processes
        for the program to be written to disk).
      key: what else determines the program (hashable, stable repr), e.g. the arguments a
        ``functools.partial`` closed over before ``jax.jit``; not passed to ``fn``.
      compiler_options: XLA options for this compilation (``Lowered.compile``'s), part of the
        key; e.g. :func:`kernel_options`.
    """
    static = dict(static or {})
    statics = tuple(sorted(static.items()))
    options = dict(compiler_options or {})
    if options:  # a distinct program: keyed apart from the default compilation
        key = (key, ("compiler_options", tuple(sorted(options.items()))))
    sig = signature(args)
    ctx = _context()
    mem_key = (name, id(fn), key, statics, sig, ctx)
    with _lock:
        exe = _memory.get(mem_key)
        if exe is not None:
            _memory.move_to_end(mem_key)
            stats["memory"] += 1
            return exe
    key_text = repr((_FORMAT, name, key, statics, sig, ctx))
    directory = executable_cache_dir() if jax.process_count() == 1 else None
    stable = _stable(key_text)
    path = None
    if directory is not None and stable and _prepare_dir(directory):
        path = directory / (hashlib.sha256(key_text.encode()).hexdigest() + ".exe")
        exe = _load(path, key_text)
        if exe is not None:
            stats["disk"] += 1
    if exe is None:
        writing = path is not None and not _read_only()
        hits = getattr(_hits, "n", 0)
        if writing:
            with _fresh_compilation():
                exe = fn.lower(*args, **static).compile(compiler_options=options or None)
        else:
            exe = fn.lower(*args, **static).compile(compiler_options=options or None)
        stats["compiled"] += 1
        if not stable:
            stats["unstable"] += 1
        elif writing and getattr(_hits, "n", 0) == hits:  # never an executable JAX's cache loaded
            _store(path, key_text, exe)
    with _lock:
        _memory[mem_key] = exe
        while len(_memory) > MEMORY_ENTRIES:
            _memory.popitem(last=False)
    return exe


def memo(name: str, key: Any, args: Any, compute: Callable[[], Any]) -> Any:
    """A small picklable value derived from tracing (an output structure, say), kept on disk
    beside the executables under the same key rules (``key`` plus the signature of ``args``
    plus the code and context); ``compute()`` when absent. In-process caching is the caller's."""
    key_text = repr((_FORMAT, "memo", name, key, signature(args), _context()))
    directory = executable_cache_dir() if jax.process_count() == 1 else None
    if directory is None or not _stable(key_text) or not _prepare_dir(directory):
        return compute()
    path = directory / (hashlib.sha256(key_text.encode()).hexdigest() + ".val")
    try:
        with open(path, "rb") as f:
            fmt, stored, value = pickle.load(f)
        if fmt == _FORMAT and stored == key_text:
            return value
    except FileNotFoundError:
        pass
    except Exception:  # unreadable: computed again, and rewritten below
        pass
    value = compute()
    if not _read_only():
        try:
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
            with os.fdopen(fd, "wb") as f:
                pickle.dump((_FORMAT, key_text, value), f, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, path)
        except (OSError, pickle.PicklingError):
            pass
    return value


def _clear_memory_for_tests() -> None:
    with _lock:
        _memory.clear()
    _state["trimmed"].clear()
    _state["warned"].clear()
    for k in stats:
        stats[k] = 0
