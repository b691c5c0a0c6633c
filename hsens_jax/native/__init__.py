"""Native CPU kernels, compiled on the user's machine and called from jitted code through XLA's
FFI (:func:`jax.ffi.ffi_call`).

XLA:CPU computes HSIC's sums by materialising each block of kernel entries and reducing it
once per sum (seven passes over every block for the Gamma p-values).  ``hsic_pass.c`` computes
every entry once, in registers, and accumulates all the sums from it: the pass of
:func:`hsens_jax.sensitivity.hsic.hsic` (V-statistic, R2, Gamma moments) in one sweep.

How it is built
---------------
On first use in a process, :func:`hsic_pass_target` compiles ``hsic_pass.c`` with the C
compiler (``$CC``, else ``cc``), ``-O2 -march=native`` (512-bit vectors preferred on x86-64)
against the XLA FFI C header that jaxlib ships, and registers it for the CPU platform.  The
shared library is kept beside the compilation cache (``<compilation cache>/hsens-native/``, see
:mod:`hsens_jax.compile_cache`), keyed by the source, the header, the compiler's version, the
machine and its CPU flags, so a new process only finds and loads it (about 10 ms, most of it
asking the compiler its version); without a cache directory it is built in a temporary
directory once per process (about 0.7 s with gcc 12 on a 2-core Xeon).

When it is not used
-------------------
``HSENS_NATIVE=off`` (or ``0``/``false``/``none``/``no``) turns it off; so does a machine
without a working C compiler (or a failed build: a ``RuntimeWarning`` says why, once per
process).  Every caller then runs its pure-JAX program, which computes the same quantities
(tests hold the two to float32 rounding).  Only CPU backends use it.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Optional

__all__ = ["ENV_VAR", "HSIC_PASS", "enabled", "hsic_pass_target", "library_path", "num_threads"]

#: Environment variable: ``off`` (or 0/false/none/no) keeps the native kernels unused.
ENV_VAR = "HSENS_NATIVE"
#: Name of the FFI target of the fused HSIC pass.
HSIC_PASS = "hsens_hsic_pass"
_OFF = {"0", "off", "false", "none", "no"}
_SOURCES = ("hsic_pass.c", "hsic_pass_body.h")
_SUBDIR = "hsens-native"

_lock = threading.Lock()
_state: dict = {"registered": None, "path": None, "warned": False, "tmp": None}
# XLA's FFI registry is process-wide and takes one handler per name: the library registered
# first (kept loaded here) serves every later lookup of this process.
_ffi_registered: dict = {}


def enabled() -> bool:
    """False when ``$HSENS_NATIVE`` turns the native kernels off."""
    return os.environ.get(ENV_VAR, "").strip().lower() not in _OFF


@functools.lru_cache(maxsize=1)
def num_threads() -> int:
    """The cores this process may run on (its CPU affinity), which the kernels' threads share."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _compiler() -> Optional[str]:
    cc = os.environ.get("CC", "").strip() or "cc"
    return shutil.which(cc.split()[0]) and cc


def _cpu_description() -> str:
    from hsens_jax.executables import _cpu_flags

    return f"{platform.system()}|{platform.machine()}|{platform.processor()}|{' '.join(sorted(_cpu_flags()))}"


def _flag_sets() -> list:
    """Compiler flags, best first: tuned for this CPU, then portable.  ``-O2``: the kernel's
    loops are vectorised by their ``omp simd`` pragmas, and it runs as fast as with ``-O3``
    (the C function called directly on float32 arrays, n = 2000, d = 10, Gamma moments, 2
    threads: 12.9 against 12.7 ms; gcc 12) for half the build (0.7 against 1.3 s).  Through
    ``hsic``, warm, the whole call takes 10-11 ms (``benchmarks/results/hsic_cpu.md``)."""
    base = ["-O2", "-fno-math-errno", "-fopenmp-simd", "-fPIC", "-shared"]
    tuned = ["-march=native"]
    if platform.machine().lower() in ("x86_64", "amd64"):
        tuned.append("-mprefer-vector-width=512")
    return [base + tuned, base]


def _sources_dir() -> Path:
    return Path(__file__).resolve().parent


def _key(cc: str, include: str) -> str:
    h = hashlib.sha256()
    for name in _SOURCES:
        h.update((_sources_dir() / name).read_bytes())
    h.update(Path(include, "xla", "ffi", "api", "c_api.h").read_bytes())
    try:
        version = subprocess.run(cc.split() + ["--version"], capture_output=True, text=True,
                                 timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        version = "?"
    h.update(version.encode())
    h.update(_cpu_description().encode())
    h.update(repr(_flag_sets()).encode())
    return h.hexdigest()[:24]


def _cache_dir():
    """``(directory, writable)``: the native libraries' directory beside the compilation cache,
    or ``(None, False)`` when the cache is off."""
    from hsens_jax.compile_cache import compilation_cache_dir, ensure_compilation_cache

    ensure_compilation_cache()
    base = compilation_cache_dir()
    if base is None:
        return None, False
    path = Path(base) / _SUBDIR
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        pass
    return path, path.is_dir() and os.access(path, os.W_OK | os.X_OK)


def _process_dir() -> Path:
    """A temporary directory for this process's build, when the cache cannot hold it."""
    if _state["tmp"] is None:
        _state["tmp"] = tempfile.mkdtemp(prefix="hsens-native-")
    return Path(_state["tmp"])


def _build(cc: str, include: str, out: Path) -> None:
    """Compiles the library to ``out`` (atomically: concurrent processes may build it too)."""
    src = _sources_dir() / "hsic_pass.c"
    errors = []
    for flags in _flag_sets():
        fd, tmp = tempfile.mkstemp(prefix=".build-", suffix=".so", dir=out.parent)
        os.close(fd)
        cmd = cc.split() + flags + ["-I", include, str(src), "-o", tmp, "-lm", "-lpthread"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        except (OSError, subprocess.SubprocessError) as exc:
            proc = None
            errors.append(f"{' '.join(cmd)}: {exc}")
        if proc is not None and proc.returncode == 0:
            os.replace(tmp, out)
            return
        if proc is not None:
            errors.append(f"{' '.join(cmd)}: {proc.stderr.strip()[-2000:]}")
        try:
            os.unlink(tmp)
        except OSError:
            pass
    raise RuntimeError("; ".join(errors))


def library_path(rebuild: bool = False) -> Path:
    """The built library, built first if needed (or if ``rebuild``); raises RuntimeError when
    it cannot be.  A read-only cache directory that holds it serves it; one that does not
    leaves the build to a temporary directory of this process."""
    cc = _compiler()
    if cc is None:
        raise RuntimeError(f"no C compiler found ({os.environ.get('CC') or 'cc'}; set $CC)")
    import jax.ffi

    include = jax.ffi.include_dir()
    name = f"hsic_pass-{_key(cc, include)}{'.dll' if sys.platform == 'win32' else '.so'}"
    cache, writable = _cache_dir()
    if cache is not None and (cache / name).exists() and not rebuild:
        return cache / name
    out = (cache if cache is not None and writable else _process_dir()) / name
    if rebuild or not out.exists():
        _build(cc, include, out)
    return out


def _load(path: Path):
    """The library at ``path``, loaded; a file that does not load (damaged, or truncated by an
    interrupted copy) is built again once."""
    import ctypes

    try:
        return path, ctypes.CDLL(str(path))
    except OSError:
        path = library_path(rebuild=True)
        return path, ctypes.CDLL(str(path))


def hsic_pass_target() -> Optional[str]:
    """The FFI target name of the fused HSIC pass, registered for the CPU platform (building
    the library on first use), or None when native kernels are off or cannot be built."""
    if not enabled():
        return None
    if _state["registered"] is not None:
        return HSIC_PASS if _state["registered"] else None
    with _lock:
        if _state["registered"] is None:
            try:
                import jax.ffi

                path = library_path()
                if HSIC_PASS not in _ffi_registered:
                    path, lib = _load(path)
                    jax.ffi.register_ffi_target(HSIC_PASS, jax.ffi.pycapsule(lib.hsens_hsic_pass_ffi),
                                                platform="cpu")
                    _ffi_registered[HSIC_PASS] = lib
                _state.update(registered=True, path=path)
            except Exception as exc:  # no compiler, a failed build or load: pure JAX instead
                _state["registered"] = False
                if not _state["warned"]:
                    _state["warned"] = True
                    warnings.warn(f"hsens_jax: the native HSIC kernel is unavailable ({type(exc).__name__}: "
                                  f"{exc}); using the pure-JAX program (slower on CPUs). Set {ENV_VAR}=off "
                                  f"to silence this.", RuntimeWarning, stacklevel=3)
    return HSIC_PASS if _state["registered"] else None
