"""Plain-text tables of sensitivity results (one row per input), shared by their ``table()``."""

from __future__ import annotations

import numpy as np


def columns(header, rows) -> list[str]:
    """Left-aligned first column, right-aligned others, widths fitted to the content."""
    widths = [max(len(str(r[c])) for r in [header, *rows]) for c in range(len(header))]
    return ["  ".join(str(v).ljust(w) if c == 0 else str(v).rjust(w) for c, (v, w) in enumerate(zip(r, widths)))
            for r in [header, *rows]]


def picker(per_input, output: int):
    """``a -> a[..., output]`` for results with a trailing outputs axis (checked), else identity."""
    shape = np.shape(per_input)
    if len(shape) < 2:
        return np.asarray, False
    if not 0 <= output < shape[-1]:
        raise ValueError(f"output={output} out of range for {shape[-1]} outputs")
    return (lambda a: np.asarray(a)[..., output]), True


def number(x, digits: int) -> str:
    return f"{x:.{digits}f}" if np.isfinite(x) else "-"


def interval(lo, hi, digits: int) -> str:
    return f"[{lo:.{digits}f}, {hi:.{digits}f}]" if np.isfinite(lo) and np.isfinite(hi) else "-"


def per_input_table(title: str, names, header, cells, output: int, multi: bool) -> str:
    """``cells``: one list of strings per input, in the order of ``header[1:]``."""
    rows = [[str(n), *c] for n, c in zip(names, cells)]
    return "\n".join([title + (f", output {output}" if multi else ""), *columns(header, rows)])
