import os
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The persistent compilation cache of the tests: one fresh directory per session (shared with
# the subprocesses the tests start), never the user's own cache.
os.environ.setdefault("HSENS_COMPILATION_CACHE", tempfile.mkdtemp(prefix="hsens-test-cache-"))
# Compiled programs are kept in memory only, not written beside it (hsens_jax.executables):
# tests/test_executables.py turns the disk layer on where it tests it.
os.environ.setdefault("HSENS_EXECUTABLE_CACHE", "off")
import jax  # noqa: E402

# One CPU device in the test process, whatever runs first: the CLI splits the CPU into one
# device per core when it is the first to compute (hsens_jax.engine.devices), and the in-process CLI
# tests must not change the devices of the tests after them. Multi-device runs are tested
# in subprocesses.
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    jax.config.update("jax_num_cpu_devices", 1)
import matplotlib  # noqa: E402

matplotlib.use("Agg")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def small_digits():
    """300 digits examples (240 train / 60 validation): fast and offline."""
    from hsens_jax.data import load_dataset

    return load_dataset("digits", n_train=300, seed=0)


class CompilationCounter:
    """Counts XLA backend compilations (JAX's monitoring events) while active."""

    EVENT = "/jax/core/compile/backend_compile_duration"

    def __init__(self):
        self.count = 0
        self.active = False

    def __call__(self, event, duration, **kwargs):
        if self.active and event == self.EVENT:
            self.count += 1


_COUNTER = CompilationCounter()
jax.monitoring.register_event_duration_secs_listener(_COUNTER)


@pytest.fixture
def compilations():
    """``with compilations() as c: ...`` then ``c.count``: XLA compilations inside the block
    (any thread: the sweep compiles on a background thread)."""
    import contextlib

    @contextlib.contextmanager
    def counting():
        _COUNTER.count, _COUNTER.active = 0, True
        try:
            yield _COUNTER
        finally:
            _COUNTER.active = False

    return counting


@pytest.fixture(autouse=True)
def _precision_is_left_as_found():
    """A test that turns float64 on for the whole process (``jax.config.update("jax_enable_x64",
    True)``, directly or by importing a module that does) would change every later test of its
    worker: fail it and restore the setting."""
    before = bool(jax.config.jax_enable_x64)
    yield
    after = bool(jax.config.jax_enable_x64)
    if after != before:
        jax.config.update("jax_enable_x64", before)
        pytest.fail(f"jax_enable_x64 changed from {before} to {after} during the test (use `with jax.enable_x64(...)`)")
