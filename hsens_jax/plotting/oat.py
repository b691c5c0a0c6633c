"""Small multiples of one-at-a-time response curves."""

from __future__ import annotations

import numpy as np


def plot_oat(result, axes=None, *, ncols: int = 4, output: int = 0, sharey: bool = True):
    """One panel per input: output against the varied value, others at the base config.

    Args:
      result: :class:`hsens_jax.sensitivity.oat.OATResult`.
      axes: a sequence of at least ``d`` Axes (default: a new ``ceil(d / ncols) x ncols`` grid).
      ncols: columns of the new grid; output: which output for multi-output results;
      sharey: share the y axis between panels (comparable spreads).

    Returns:
      the flat array of Axes used (unused panels of a new grid are hidden). Log-scaled
      inputs get a log x axis; the panel title shows the range ``max - min``.
    """
    import matplotlib.pyplot as plt

    names = list(result.names)
    d = len(names)
    if axes is None:
        nrows = -(-d // ncols)
        _, axes = plt.subplots(nrows, min(ncols, d), figsize=(2.6 * min(ncols, d), 2.2 * nrows),
                               squeeze=False, sharey=sharey)
        axes = np.asarray(axes).ravel()
        for ax in axes[d:]:
            ax.set_visible(False)
    else:
        axes = np.asarray(axes, dtype=object).ravel()
        if axes.size < d:
            raise ValueError(f"axes has {axes.size} panels, need {d}")
    rng = np.asarray(result.range, dtype=float)
    for j, name in enumerate(names):
        ax = axes[j]
        v, y = result.curves[name]
        y = np.asarray(y, dtype=float)
        y = y[:, output] if y.ndim == 2 else y
        ax.plot(v, y, "o-", ms=3)
        if bool(np.asarray(result.log_x)[j]):
            ax.set_xscale("log")
        r = rng[j, output] if rng.ndim == 2 else rng[j]
        ax.set_title(f"{name}  (range {r:.3g})", fontsize=9)
        ax.tick_params(labelsize=7)
    return axes[:d]
