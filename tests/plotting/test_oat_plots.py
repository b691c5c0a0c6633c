import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from hsens_jax.plotting.oat import plot_oat  # noqa: E402
from hsens_jax.sensitivity.oat import one_at_a_time  # noqa: E402


def test_plot_oat_small_multiples():
    import matplotlib.pyplot as plt

    b = np.array([[0.0, 1.0], [1e-3, 1.0], [0.0, 2.0]])
    res = one_at_a_time(lambda X: X.sum(1), b, n_points=4, log_scale=[False, True, False])
    axes = plot_oat(res, ncols=2)
    assert len(axes) == 3
    np.testing.assert_allclose(axes[0].lines[0].get_xdata(), res.curves["x1"][0])
    np.testing.assert_allclose(axes[0].lines[0].get_ydata(), res.curves["x1"][1], rtol=1e-6)
    assert axes[1].get_xscale() == "log" and axes[0].get_xscale() == "linear"
    assert "x3" in axes[2].get_title()
    fig, ax = plt.subplots(1, 2)
    with pytest.raises(ValueError, match="panels"):
        plot_oat(res, axes=ax)
    plt.close("all")
