"""How many XLA compilations a process has run, from JAX's monitoring events.

A search pays off only if its batches after the first reuse the compiled programs; this
counter is how the tests and :func:`hsens_jax.search.optuna.optimize` check it. It counts the
``/jax/core/compile/backend_compile_duration`` events JAX records for every program that XLA
compiles (programs taken from the persistent compilation cache are not compiled, and not
counted; neither are programs found in a jitted function's in-memory cache).
"""

from __future__ import annotations

import threading

import jax.monitoring

_EVENT = "/jax/core/compile/backend_compile_duration"
_lock = threading.Lock()
_state = {"count": 0, "seconds": 0.0, "registered": False}


def _listener(event: str, duration: float, **_kwargs) -> None:
    if event == _EVENT:
        with _lock:
            _state["count"] += 1
            _state["seconds"] += float(duration)


def _register() -> None:
    with _lock:
        if _state["registered"]:
            return
        _state["registered"] = True
    jax.monitoring.register_event_duration_secs_listener(_listener)


def compilations() -> tuple[int, float]:
    """``(number, seconds)`` of the XLA compilations this process has run since the counter
    was first read (the first call starts counting and returns ``(0, 0.0)``)."""
    _register()
    with _lock:
        return _state["count"], _state["seconds"]
