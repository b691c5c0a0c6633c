"""Tests of hsens_jax.plotting.hsic (Agg backend)."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import jax.numpy as jnp  # noqa: E402

from hsens_jax.plotting.hsic import plot_hsic, plot_interactions  # noqa: E402
from hsens_jax.sensitivity.hsic import HSICResult  # noqa: E402


def _result(pvalue):
    return HSICResult(hsic=jnp.array([0.02, 0.001, 0.01]), r2=jnp.array([0.5, 0.01, 0.2]),
                      pvalue=jnp.asarray(pvalue), bandwidth=jnp.ones(3),
                      output_bandwidth=jnp.ones(1), hsic_yy=jnp.array(0.1),
                      pvalue_method="gamma")


def test_plot_hsic_bars_and_pvalue_annotations():
    fig, ax = plt.subplots()
    out = plot_hsic(_result([0.001, 0.6, 0.02]), names=["lr", "wd", "bs"], ax=ax)
    assert out is ax
    heights = [p.get_height() for p in ax.patches]
    np.testing.assert_allclose(heights, [0.5, 0.01, 0.2], rtol=1e-6)
    texts = [t.get_text() for t in ax.texts]
    assert texts == ["p=0.001", "p=0.6", "p=0.02"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["lr", "wd", "bs"]
    # significant bars are dark, the others light
    c0, c1 = ax.patches[0].get_facecolor(), ax.patches[1].get_facecolor()
    assert c0 != c1
    plt.close(fig)


def test_plot_hsic_metric_sort_and_no_pvalues():
    ax = plot_hsic(_result([np.nan] * 3), metric="hsic", sort=True)
    np.testing.assert_allclose([p.get_height() for p in ax.patches], [0.02, 0.01, 0.001],
                               rtol=1e-6)
    assert ax.texts == [] or len(ax.texts) == 0
    assert ax.get_ylabel() == "HSIC"
    plt.close(ax.figure)
    with pytest.raises(ValueError, match="metric"):
        plot_hsic(_result([np.nan] * 3), metric="p")
    with pytest.raises(ValueError, match="names"):
        plot_hsic(_result([np.nan] * 3), names=["a"])


def test_plot_interactions_heatmap():
    m = np.array([[0.1, 0.2, np.nan], [0.2, 0.05, 0.3], [np.nan, 0.3, 0.0]])
    ax = plot_interactions(m, names=["a", "b", "c"])
    assert len(ax.images) == 1
    assert len(ax.texts) == 7  # NaN cells left blank
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b", "c"]
    plt.close(ax.figure)
    with pytest.raises(ValueError, match="square"):
        plot_interactions(np.zeros((2, 3)))


def test_plot_hsic_leaves_room_for_the_labels_and_tolerates_non_finite_indices():
    fig, ax = plt.subplots()
    plot_hsic(_result([0.001, 0.6, 0.02]), ax=ax)
    assert ax.get_ylim()[1] >= 1.12 * 0.5 - 1e-9
    res = _result([0.001, 0.6, 0.02])
    bad = HSICResult(hsic=res.hsic, r2=jnp.array([0.5, jnp.inf, jnp.nan]), pvalue=res.pvalue,
                     bandwidth=res.bandwidth, output_bandwidth=res.output_bandwidth, hsic_yy=res.hsic_yy,
                     pvalue_method="gamma")
    fig, ax = plt.subplots()
    plot_hsic(bad, ax=ax)  # no error from an infinite or NaN bar
    assert np.isfinite(ax.get_ylim()).all()
    plt.close("all")


def test_legend_explains_the_shading_and_small_n_bars_are_hatched():
    fig, ax = plt.subplots()
    plot_hsic(_result([0.001, 0.6, np.nan]), names=["lr", "wd", "bs"], ax=ax, n=[100, 100, 12], small_n=30)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["p < 0.05", "p >= 0.05", "no p-value", "n < 30"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["lr\n(n=100)", "wd\n(n=100)", "bs\n(n=12)"]
    assert [p.get_hatch() for p in ax.patches] == [None, None, "//"]
    plt.close(fig)
    fig, ax = plt.subplots()
    plot_hsic(_result([np.nan] * 3), ax=ax)  # no p-values: one colour, nothing to explain
    assert ax.get_legend() is None
    plt.close(fig)


def test_explicit_order_and_sort_put_nan_last():
    res = HSICResult(hsic=jnp.array([0.02, jnp.nan, 0.01]), r2=jnp.array([0.2, jnp.nan, 0.5]),
                     pvalue=jnp.array([0.01, jnp.nan, 0.01]), bandwidth=jnp.ones(3),
                     output_bandwidth=jnp.ones(1), hsic_yy=jnp.array(0.1))
    ax = plot_hsic(res, names=["a", "b", "c"], sort=True)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["c", "a", "b"]
    ax = plot_hsic(res, names=["a", "b", "c"], order=[1, 0, 2])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["b", "a", "c"]
    with pytest.raises(ValueError, match="order must be a permutation"):
        plot_hsic(res, order=[0, 0, 1])
    with pytest.raises(ValueError, match="n must have shape"):
        plot_hsic(res, n=[1, 2])
    plt.close("all")


def test_report_plots_sort_like_the_table_and_name_the_goal():
    from hsens_jax.analysis import SensitivityReport

    names = ("lr", "momentum", "width", "dropout")
    r2 = np.array([[0.3, 0.6, 0.01, np.nan]])
    rep = SensitivityReport(names, ("val_f1",), hsic=r2 / 10, r2=r2, pvalue=np.array([[0.001, 0.2, 0.7, np.nan]]),
                            n_used=np.array([[200, 12, 200, 5]]), directions={"val_f1": "maximize"},
                            settings={"target": 0.1, "small_n": 30, "estimator": "U"})
    # momentum's index is the largest but from 12 configurations: after the indices from enough rows
    assert rep.ranking() == ["lr", "width", "momentum", "dropout"]
    table_order = [line.split()[0] for line in rep.table().splitlines()[2:6]]
    assert table_order == rep.ranking()
    ax = rep.plot()
    assert [t.get_text().split("\n")[0] for t in ax.get_xticklabels()] == rep.ranking()
    assert ax.get_title() == "Sensitivity of val_f1 (maximize), goal: best 10%"
    assert ax.get_ylabel() == "R2-HSIC (U-statistic)"
    plt.close("all")


def test_plot_interactions_label_and_title():
    ax = plot_interactions(np.array([[np.nan, 0.2], [0.2, np.nan]]), names=["a", "b"], label="S_ij",
                           title="main effects removed")
    assert ax.get_title() == "main effects removed"
    assert ax.figure.axes[-1].get_ylabel() == "S_ij"
    plt.close(ax.figure)
