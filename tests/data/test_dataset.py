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



def small(task="classification", n=10, n_val=4, k=3):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 2)).astype(np.float32)
    xv = rng.standard_normal((n_val, 2)).astype(np.float32)
    if task == "classification":
        y, yv = (np.arange(n) % k).astype(np.int32), (np.arange(n_val) % k).astype(np.int32)
        return Dataset("t", task, x, y, xv, yv, n_classes=k)
    return Dataset("t", task, x, rng.standard_normal((n, 1)).astype(np.float32), xv,
                   rng.standard_normal((n_val, 1)).astype(np.float32))


def test_classes_default_and_validation():
    d = small()
    np.testing.assert_array_equal(d.classes, [0, 1, 2])
    assert small("regression").classes is None
    x, y = d.x_train, d.y_train
    named = Dataset("t", "classification", x, y, x, y, n_classes=3, classes=np.array(["a", "b", "c"]))
    assert named.classes.tolist() == ["a", "b", "c"]
    with pytest.raises(ValueError, match="classes must be a 1-D array of n_classes = 3 labels"):
        Dataset("t", "classification", x, y, x, y, n_classes=3, classes=["a", "b"])
    with pytest.raises(ValueError, match="classes has repeated labels"):
        Dataset("t", "classification", x, y, x, y, n_classes=3, classes=["a", "b", "a"])
    with pytest.raises(ValueError, match="classes must be None for regression"):
        Dataset("t", "regression", x, y[:, None].astype(np.float32), x, y[:, None].astype(np.float32),
                classes=[0])
    with pytest.raises(ValueError, match="n_classes must be an int >= 2"):
        Dataset("t", "classification", x, y, x, y, n_classes=True)


def test_pool_and_with_split():
    d = small()
    x, y = d.pool()
    np.testing.assert_array_equal(x, np.concatenate([d.x_train, d.x_val]))
    np.testing.assert_array_equal(y[d.n_train:], d.y_val)
    tr, va = np.array([13, 0, 5, 2, 11, 7, 1, 3]), np.array([4, 12])
    s = d.with_split(tr, va)
    np.testing.assert_array_equal(s.x_train, x[tr])  # in the given order
    np.testing.assert_array_equal(s.y_val, y[va])
    assert s.n_classes == 3 and s.name == "t" and s.x_test is None
    for bad, match in [
        ((tr, [4, 14]), "val_indices must lie in 0..13"),
        ((tr, [-1]), "val_indices must lie in 0..13"),
        ((tr, [4, 4]), "must not repeat an index"),
        ((tr, [0]), "must not repeat an index"),
        ((tr.astype(float), va), "train_indices must be a 1-D array of integers"),
        ((tr[None], va), "train_indices must be a 1-D array of integers"),
    ]:
        with pytest.raises(ValueError, match=match):
            d.with_split(*bad)
