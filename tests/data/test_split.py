"""Tests for hsens_jax.data.split: the seeded, stratified validation hold-out."""

import numpy as np
import pytest
from scipy import stats

from hsens_jax.data import load_mnist
from hsens_jax.data.split import split_indices
from tests.data.fixtures import image_ids, write_mnist

# ----------------------------------------------------------------------------- splits


def test_split_is_stratified_deterministic_and_partitions(tmp_path):
    write_mnist(tmp_path, n_train=1000)
    d = load_mnist(tmp_path, val_fraction=0.23, seed=5)
    assert d.n_val == round(0.23 * 1000)
    ids_tr, ids_va = image_ids(d.x_train), image_ids(d.x_val)
    assert len(set(ids_tr) & set(ids_va)) == 0 and len(ids_tr) + len(ids_va) == 1000
    full = np.bincount(np.concatenate([d.y_train, d.y_val]), minlength=10)
    val = np.bincount(d.y_val, minlength=10)
    assert np.all(np.abs(val - 0.23 * full) < 1)  # floor or ceil of the exact share
    again = load_mnist(tmp_path, val_fraction=0.23, seed=5)
    np.testing.assert_array_equal(again.x_train, d.x_train)
    np.testing.assert_array_equal(again.y_val, d.y_val)
    other = load_mnist(tmp_path, val_fraction=0.23, seed=6)
    assert set(image_ids(other.x_val)) != set(ids_va)
    # validation order is shuffled (not grouped by class)
    assert not np.all(np.diff(d.y_val) >= 0)


def test_stratified_split_random_membership():
    """Within each class every example is equally likely to be held out (membership is random,
    not the first examples of the class): chi-square of per-example hit counts over 200 seeds."""
    from sklearn.datasets import load_digits as sk

    y = sk().target
    n_seeds = 200
    hits = np.zeros(len(y))
    for seed in range(n_seeds):
        tr, va = split_indices(y, 0.2, np.random.default_rng(seed), stratify=True)
        assert len(va) == 359 and len(np.union1d(tr, va)) == len(y)
        hits[va] += 1
    for c in range(10):
        h = hits[y == c]
        assert abs(h.mean() / n_seeds - 0.2) < 1 / len(h)
        # sampling without replacement is under-dispersed w.r.t. chi-square: conservative test
        assert stats.chisquare(h).pvalue > 1e-4
    # and the test has power: a split that always takes the first examples fails it
    biased = np.zeros(len(y))
    biased[np.flatnonzero(y == 0)[:36]] = n_seeds
    assert stats.chisquare(biased[y == 0] + 1).pvalue < 1e-10


def test_n_train_and_bad_arguments(tmp_path):
    write_mnist(tmp_path, n_train=300)
    d = load_mnist(tmp_path, n_train=100, val_fraction=0.2, seed=0)
    assert d.n_train == 80 and d.n_val == 20 and len(d.x_test) == 30
    ids = np.concatenate([image_ids(d.x_train), image_ids(d.x_val)])
    assert len(np.unique(ids)) == 100 and ids.max() < 300
    d0 = load_mnist(tmp_path, val_fraction=0.0)
    assert d0.n_val == 0 and d0.x_val.shape == (0, 28, 28, 1) and d0.n_train == 300
    with pytest.raises(ValueError, match="n_train=301 exceeds the 300 training examples"):
        load_mnist(tmp_path, n_train=301)
    with pytest.raises(ValueError, match="n_train must be a positive integer"):
        load_mnist(tmp_path, n_train=0)
    for bad in (1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="val_fraction must be in \\[0, 1\\)"):
            load_mnist(tmp_path, val_fraction=bad)

