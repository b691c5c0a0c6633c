"""Plots of HSIC sensitivity results (matplotlib).

* :func:`plot_hsic`: one bar per input (R2-HSIC or HSIC), p-values written above the bars.
* :func:`plot_interactions`: heat map of the (d, d) matrix of :func:`hsic_interactions`.

Both return the matplotlib ``Axes`` they drew on.  References: Da Veiga (2015); Novello et al.
(2023) J. Sci. Comput. 94:45.
"""

from __future__ import annotations

import numpy as np

__all__ = ["plot_hsic", "plot_interactions"]


def _axes(ax):
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots()
    return ax


def _names(names, d, what):
    if names is None:
        return [f"x{i}" for i in range(d)]
    names = [str(s) for s in names]
    if len(names) != d:
        raise ValueError(f"names has {len(names)} entries but {what} has {d}")
    return names


def plot_hsic(result, names=None, metric="r2", ax=None, alpha=0.05, sort=False):
    """Bar chart of HSIC sensitivity indices with p-values annotated.

    Args:
      result: an :class:`hsens_jax.sensitivity.hsic.HSICResult`.
      names: optional list of d input names (default ``x0, x1, ...``).
      metric: ``"r2"`` (R2-HSIC, dimensionless in [0, 1] for V) or ``"hsic"`` (raw HSIC).
      ax: matplotlib Axes to draw on (a new figure if None).
      alpha: bars whose p-value is below ``alpha`` are drawn in a dark colour, the others light.
      sort: sort the bars by decreasing index.

    Returns:
      The matplotlib ``Axes``.
    """
    if metric not in ("r2", "hsic"):
        raise ValueError(f"metric must be 'r2' or 'hsic', got {metric!r}")
    vals = np.asarray(result.r2 if metric == "r2" else result.hsic, dtype=float)
    if vals.ndim != 1:
        raise ValueError(f"result.{metric} must be 1-D, got shape {vals.shape}")
    pv = np.asarray(result.pvalue, dtype=float)
    d = vals.shape[0]
    labels = _names(names, d, f"result.{metric}")
    order = np.argsort(-vals) if sort else np.arange(d)
    ax = _axes(ax)
    has_p = np.isfinite(pv).any()
    colors = [("tab:blue" if (not has_p or (np.isfinite(pv[i]) and pv[i] < alpha))
               else "lightsteelblue") for i in order]
    bars = ax.bar(np.arange(d), vals[order], color=colors)
    ax.set_xticks(np.arange(d))
    ax.set_xticklabels([labels[i] for i in order], rotation=45 if d > 6 else 0, ha="right"
                       if d > 6 else "center")
    ax.set_ylabel("R2-HSIC" if metric == "r2" else "HSIC")
    method = getattr(result, "pvalue_method", None)
    title = f"HSIC sensitivity ({getattr(result, 'estimator', 'V')}-statistic"
    if method:
        title += f", {method} p-values"
    ax.set_title(title + ")")
    if has_p:
        for b, i in zip(bars, order):
            if np.isfinite(pv[i]):
                ax.annotate(f"p={pv[i]:.2g}", (b.get_x() + b.get_width() / 2, b.get_height()),
                            ha="center", va="bottom", fontsize=8, xytext=(0, 2),
                            textcoords="offset points")
        finite = vals[np.isfinite(vals)]
        top = finite.max() if finite.size else 0.0
        if top > 0:  # headroom for the labels above the tallest bar
            ax.set_ylim(top=max(ax.get_ylim()[1], 1.12 * top))
    ax.axhline(0.0, color="black", lw=0.5)
    return ax


def plot_interactions(matrix, names=None, ax=None, cmap="viridis", annotate=True):
    """Heat map of a (d, d) interaction matrix from ``hsic_interactions``.

    Args:
      matrix: (d, d) array (diagonal = first-order index, (i, j) = index of the pair); NaN
        entries (pairs not computed) are left blank.
      names: optional list of d input names.
      ax: matplotlib Axes (new figure if None).
      cmap: colour map name.
      annotate: write the values in the cells (only when d <= 12).

    Returns:
      The matplotlib ``Axes``.
    """
    m = np.asarray(matrix, dtype=float)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"matrix must be square (d, d), got shape {m.shape}")
    d = m.shape[0]
    labels = _names(names, d, "matrix")
    ax = _axes(ax)
    im = ax.imshow(np.ma.masked_invalid(m), cmap=cmap)
    ax.set_xticks(np.arange(d))
    ax.set_yticks(np.arange(d))
    ax.set_xticklabels(labels, rotation=45 if d > 6 else 0)
    ax.set_yticklabels(labels)
    ax.figure.colorbar(im, ax=ax)
    if annotate and d <= 12:
        finite = m[np.isfinite(m)]
        mid = (finite.max() + finite.min()) / 2 if finite.size else 0.0
        for i in range(d):
            for j in range(d):
                if np.isfinite(m[i, j]):
                    ax.text(j, i, f"{m[i, j]:.2g}", ha="center", va="center", fontsize=7,
                            color="white" if m[i, j] < mid else "black")
    ax.set_title("HSIC of input pairs")
    return ax
