"""Plots of HSIC sensitivity results (matplotlib).

* :func:`plot_hsic`: one bar per input (R2-HSIC or HSIC), p-values written above the bars, a
  legend for the significance shading, optionally n under the names and small-n bars hatched.
* :func:`plot_interactions`: heat map of a (d, d) matrix of pairs (:func:`hsic_interactions`,
  or the second-order indices of :func:`hsic_anova`).

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


def plot_hsic(result, names=None, metric="r2", ax=None, alpha=0.05, sort=False, order=None, n=None,
              small_n=None):
    """Bar chart of HSIC sensitivity indices with p-values annotated.

    Args:
      result: an :class:`hsens_jax.sensitivity.hsic.HSICResult` (or anything with ``r2``,
        ``hsic`` and ``pvalue`` arrays of shape (d,)).
      names: optional list of d input names (default ``x0, x1, ...``).
      metric: ``"r2"`` (R2-HSIC, dimensionless in [0, 1] for V) or ``"hsic"`` (raw HSIC).
      ax: matplotlib Axes to draw on (a new figure if None).
      alpha: bars whose p-value is below ``alpha`` are drawn in a dark colour, the others light
        (grey where an index has no p-value); a legend explains the shading.
      sort: sort the bars by decreasing index (NaN last).
      order: explicit order of the bars (a permutation of ``range(d)``); overrides ``sort``.
        :meth:`hsens_jax.analysis.SensitivityReport.plot` passes the order of its table.
      n: optional (d,) number of samples behind each index, written under the name.
      small_n: with ``n``, bars whose index used fewer samples are hatched (and in the legend).

    Returns:
      The matplotlib ``Axes``.
    """
    from matplotlib.patches import Patch

    if metric not in ("r2", "hsic"):
        raise ValueError(f"metric must be 'r2' or 'hsic', got {metric!r}")
    vals = np.asarray(result.r2 if metric == "r2" else result.hsic, dtype=float)
    if vals.ndim != 1:
        raise ValueError(f"result.{metric} must be 1-D, got shape {vals.shape}")
    pv = np.asarray(result.pvalue, dtype=float)
    d = vals.shape[0]
    labels = _names(names, d, f"result.{metric}")
    if order is not None:
        order = np.asarray(order, dtype=int)
        if sorted(order.tolist()) != list(range(d)):
            raise ValueError(f"order must be a permutation of range({d}), got {order.tolist()}")
    elif sort:
        order = np.argsort(np.where(np.isnan(vals), np.inf, -vals), kind="stable")
    else:
        order = np.arange(d)
    if n is not None:
        n = np.asarray(n, dtype=int)
        if n.shape != (d,):
            raise ValueError(f"n must have shape ({d},) like the indices, got {n.shape}")
        sep = " " if d > 6 else "\n"  # rotated labels stay on one line
        labels = [f"{lab}{sep}(n={k})" for lab, k in zip(labels, n)]
    small = np.zeros(d, bool) if n is None or small_n is None else (n > 0) & (n < small_n)
    ax = _axes(ax)
    has_p = np.isfinite(pv).any()
    dark, light, none = "tab:blue", "lightsteelblue", "lightgray"

    def colour(i):
        if not has_p:
            return dark
        if not np.isfinite(pv[i]):
            return none
        return dark if pv[i] < alpha else light

    plotted = np.where(np.isfinite(vals), vals, 0.0)
    bars = ax.bar(np.arange(d), plotted[order], color=[colour(i) for i in order],
                  hatch=None, edgecolor="none")
    for b, i in zip(bars, order):
        if small[i]:
            b.set_hatch("//")
            b.set_edgecolor("dimgray")
    ax.set_xticks(np.arange(d))
    ax.set_xticklabels([labels[i] for i in order], rotation=45 if d > 6 else 0, ha="right"
                       if d > 6 else "center")
    ax.set_ylabel("R2-HSIC" if metric == "r2" else "HSIC")
    method = getattr(result, "pvalue_method", None)
    title = f"HSIC sensitivity ({getattr(result, 'estimator', 'V')}-statistic"
    if method:
        title += f", {method} p-values"
    ax.set_title(title + ")")
    handles = []
    if has_p:
        handles += [Patch(color=dark, label=f"p < {alpha:g}"), Patch(color=light, label=f"p >= {alpha:g}")]
        if not np.isfinite(pv).all():
            handles.append(Patch(color=none, label="no p-value"))
        for b, i in zip(bars, order):
            if np.isfinite(pv[i]):
                ax.annotate(f"p={pv[i]:.2g}", (b.get_x() + b.get_width() / 2, max(b.get_height(), 0.0)),
                            ha="center", va="bottom", fontsize=8, xytext=(0, 2),
                            textcoords="offset points")
        finite = vals[np.isfinite(vals)]
        top = finite.max() if finite.size else 0.0
        if top > 0:  # headroom for the labels above the tallest bar
            ax.set_ylim(top=max(ax.get_ylim()[1], 1.12 * top))
    if small.any():
        handles.append(Patch(facecolor="white", edgecolor="dimgray", hatch="//", label=f"n < {small_n}"))
    if handles:
        ax.legend(handles=handles, fontsize=8, frameon=False, loc="upper right")
    ax.axhline(0.0, color="black", lw=0.5)
    return ax


def plot_interactions(matrix, names=None, ax=None, cmap="viridis", annotate=True, label=None,
                      title="HSIC of input pairs"):
    """Heat map of a (d, d) interaction matrix.

    Args:
      matrix: (d, d) array: from ``hsic_interactions`` (diagonal = first-order index, (i, j) =
        index of the pair) or the second-order indices of ``hsic_anova`` (main effects
        removed, NaN diagonal); NaN entries (pairs not computed) are left blank.
      names: optional list of d input names.
      ax: matplotlib Axes (new figure if None).
      cmap: colour map name.
      annotate: write the values in the cells (only when d <= 12).
      label: colour bar label (what the values are).
      title: Axes title.

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
    ax.set_xticklabels(labels, rotation=45 if d > 3 else 0, ha="right" if d > 3 else "center",
                       rotation_mode="anchor")
    ax.set_yticklabels(labels)
    bar = ax.figure.colorbar(im, ax=ax)
    if label:
        bar.set_label(label)
    if annotate and d <= 12:
        finite = m[np.isfinite(m)]
        mid = (finite.max() + finite.min()) / 2 if finite.size else 0.0
        for i in range(d):
            for j in range(d):
                if np.isfinite(m[i, j]):
                    ax.text(j, i, f"{m[i, j]:.2g}", ha="center", va="center", fontsize=7,
                            color="white" if m[i, j] < mid else "black")
    ax.set_title(title)
    return ax
