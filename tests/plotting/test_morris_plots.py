import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402

from hsens_jax.plotting.morris import plot_morris  # noqa: E402
from hsens_jax.sensitivity.morris import morris  # noqa: E402
from hsens_jax.sensitivity.test_functions import ISHIGAMI_BOUNDS, ishigami  # noqa: E402


def test_plot_morris_points():
    import matplotlib.pyplot as plt

    res = morris(ishigami, ISHIGAMI_BOUNDS, 20, n_bootstrap=50)
    ax = plot_morris(res)
    xy = ax.lines[0].get_xydata()
    np.testing.assert_allclose(xy[:, 0], res.mu_star, rtol=1e-6)
    np.testing.assert_allclose(xy[:, 1], res.sigma, rtol=1e-6)
    assert [t.get_text() for t in ax.texts] == ["x1", "x2", "x3"]
    plt.close("all")
