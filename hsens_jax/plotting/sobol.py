"""Bar plot of first- and total-order Sobol' indices with their intervals."""

from __future__ import annotations

import numpy as np

from hsens_jax.plotting._labels import input_names, output_column


def plot_sobol(result, names=None, ax=None, *, output: int = 0, interval: str = "ci"):
    """S1 and ST bars per input with bootstrap intervals.

    Args:
      result: a :class:`hsens_jax.sensitivity.sobol.SobolResult` (or any object with ``S1``,
        ``ST`` and, optionally, ``S1_ci``/``ST_ci`` or ``S1_conf``/``ST_conf``).
      names: input labels (default ``result.names``).
      ax: matplotlib Axes (default: a new figure).
      output: which output to draw when the indices have a trailing output axis.
      interval: ``"ci"`` (percentile interval) or ``"conf"`` (SALib's +- half-width).

    Returns:
      the matplotlib Axes.
    """
    import matplotlib.pyplot as plt

    if interval not in ("ci", "conf"):
        raise ValueError(f"interval must be 'ci' or 'conf', got {interval!r}")

    def pick(a):
        return output_column(a, output)

    S1, ST = pick(result.S1), pick(result.ST)
    d = S1.shape[0]
    names = input_names(result, names, d)
    if ax is None:
        _, ax = plt.subplots(figsize=(max(4.0, 0.6 * d + 2), 3.2))
    x = np.arange(d)
    width = 0.38
    for off, key, est, color in ((-width / 2, "S1", S1, "C0"), (width / 2, "ST", ST, "C1")):
        yerr = None
        if interval == "ci" and getattr(result, key + "_ci", None) is not None:
            lo, hi = (pick(v) for v in getattr(result, key + "_ci"))
            if np.all(np.isfinite(lo)):
                yerr = np.vstack([np.maximum(est - lo, 0), np.maximum(hi - est, 0)])
        elif interval == "conf" and getattr(result, key + "_conf", None) is not None:
            c = pick(getattr(result, key + "_conf"))
            if np.all(np.isfinite(c)):
                yerr = c
        ax.bar(x + off, est, width, yerr=yerr, capsize=3, color=color, label=key)
    ax.axhline(0.0, color="0.5", lw=0.8)
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=45 if d > 6 else 0, ha="right" if d > 6 else "center")
    ax.set_ylabel("Sobol' index")
    ax.legend(frameon=False)
    return ax
