"""Helpers shared by the index plots: one output's column, and the input labels."""

from __future__ import annotations

import numpy as np


def output_column(a, output: int) -> np.ndarray:
    """Indices of one output: ``a[..., output]`` for a (d, k) array, ``a`` itself for (d,)."""
    a = np.asarray(a, dtype=float)
    return a[..., output] if a.ndim == 2 else a


def input_names(result, names, d: int) -> list[str]:
    """``names``, else ``result.names``, else x1..xd; checked against the d inputs."""
    if names is None:
        names = getattr(result, "names", None) or [f"x{i + 1}" for i in range(d)]
    names = list(names)
    if len(names) != d:
        raise ValueError(f"names has {len(names)} entries, result has {d} inputs")
    return names
