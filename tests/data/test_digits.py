"""Tests for hsens_jax.data.digits: scikit-learn's 8x8 digits."""

import numpy as np

from hsens_jax.data import load_dataset, load_digits


def test_digits():
    from sklearn.datasets import load_digits as sk

    d = load_digits()
    assert d.input_shape == (8, 8, 1) and d.n_classes == 10 and d.x_test is None
    assert d.n_train + d.n_val == 1797 and d.n_val == round(0.2 * 1797)
    assert d.x_train.dtype == np.float32 and d.x_train.max() == 1.0 and d.x_train.min() == 0.0
    np.testing.assert_array_equal(d.x_train * 16, np.round(d.x_train * 16))  # multiples of 1/16
    # same multiset of (image, label) as sklearn's
    X, y = sk(return_X_y=True)
    ours = np.concatenate([np.concatenate([d.x_train, d.x_val]).reshape(1797, 64) * 16,
                           np.concatenate([d.y_train, d.y_val])[:, None]], axis=1)
    ref = np.concatenate([X, y[:, None]], axis=1)
    np.testing.assert_array_equal(np.unique(ours, axis=0), np.unique(ref, axis=0))
    val_counts = np.bincount(d.y_val, minlength=10)
    assert np.all(np.abs(val_counts - 0.2 * np.bincount(y)) < 1)
    small = load_dataset("digits", n_train=100, seed=3)
    assert small.n_train == 80 and small.n_val == 20

