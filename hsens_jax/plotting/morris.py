"""Morris mu*-sigma plane."""

from __future__ import annotations

import numpy as np

from hsens_jax.plotting._labels import input_names, output_column


def plot_morris(result, names=None, ax=None, *, output: int = 0, annotate: bool = True):
    """Scatter of ``mu_star`` (x) against ``sigma`` (y), with ``mu_star_conf`` error bars.

    Inputs far right matter; high ``sigma`` relative to ``mu_star`` indicates non-linearity
    or interactions. The dashed line ``sigma = mu_star`` is drawn for reference.

    Args:
      result: a :class:`hsens_jax.sensitivity.morris.MorrisResult` (``mu_star``, ``sigma``,
        optional ``mu_star_conf``, ``names``).
      names: labels (default ``result.names``); ax: Axes (default new); output: output index
        for multi-output results; annotate: write the names next to the points.

    Returns:
      the matplotlib Axes.
    """
    import matplotlib.pyplot as plt

    def pick(a):
        return output_column(a, output)

    ms, sg = pick(result.mu_star), pick(result.sigma)
    d = ms.shape[0]
    names = input_names(result, names, d)
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 4.0))
    conf = getattr(result, "mu_star_conf", None)
    xerr = pick(conf) if conf is not None and np.all(np.isfinite(pick(conf))) else None
    ax.errorbar(ms, sg, xerr=xerr, fmt="o", capsize=3)
    top = float(np.nanmax(np.concatenate([ms, sg]))) if d else 1.0
    ax.plot([0, top * 1.05], [0, top * 1.05], "--", color="0.6", lw=0.8, label=r"$\sigma = \mu^*$")
    if annotate:
        for i, nm in enumerate(names):
            ax.annotate(nm, (ms[i], sg[i]), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel(r"$\mu^*$")
    ax.set_ylabel(r"$\sigma$")
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.legend(frameon=False, loc="upper left")
    return ax
