import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from hsens_jax.plotting.sobol import plot_sobol  # noqa: E402
from hsens_jax.sensitivity.sobol import sobol  # noqa: E402
from hsens_jax.sensitivity.test_functions import ISHIGAMI_BOUNDS, ishigami  # noqa: E402


def test_plot_sobol_bars_and_errorbars():
    import matplotlib.pyplot as plt

    res = sobol(ishigami, ISHIGAMI_BOUNDS, 256, n_bootstrap=50, names=["a", "b", "c"])
    ax = plot_sobol(res)
    bars = [p for p in ax.patches]
    assert len(bars) == 6
    np.testing.assert_allclose([b.get_height() for b in bars[:3]], res.S1, rtol=1e-6)
    np.testing.assert_allclose([b.get_height() for b in bars[3:]], res.ST, rtol=1e-6)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    assert len(ax.collections) >= 2 or len(ax.lines) > 0  # error bars drawn
    fig, ax2 = plt.subplots()
    assert plot_sobol(res, names=["u", "v", "w"], ax=ax2, interval="conf") is ax2
    with pytest.raises(ValueError, match="names"):
        plot_sobol(res, names=["u"])
    plt.close("all")
