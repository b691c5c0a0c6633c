"""Tests for hsens_jax.data.dataset: the Dataset's invariants, pool and re-splits."""

import numpy as np
import pytest

from hsens_jax.data import Dataset


def test_dataset_validation():
    x = np.zeros((4, 2), np.float32)
    y = np.zeros(4, np.int32)
    with pytest.raises(ValueError, match="task 'ranking'"):
        Dataset("t", "ranking", x, y, x, y, n_classes=2)
    with pytest.raises(ValueError, match="n_classes must be an int >= 2"):
        Dataset("t", "classification", x, y, x, y)
    with pytest.raises(TypeError, match="x_val must be a float32"):
        Dataset("t", "classification", x, y, x.astype(np.float64), y, n_classes=2)
    with pytest.raises(ValueError, match="y_train has labels outside 0..1"):
        Dataset("t", "classification", x, y + 2, x, y, n_classes=2)
    with pytest.raises(TypeError, match="y_train must be float32 of shape \\(n, k\\)"):
        Dataset("t", "regression", x, y, x, y)
    with pytest.raises(ValueError, match="x_val has example shape \\(3,\\)"):
        Dataset("t", "classification", x, y, np.zeros((4, 3), np.float32), y, n_classes=2)
    with pytest.raises(ValueError, match="y_val must be an array with len\\(x_val\\) = 4"):
        Dataset("t", "classification", x, y, x, y[:3], n_classes=2)

