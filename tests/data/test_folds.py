"""Tests for hsens_jax.data.folds: cross-validation folds equal scikit-learn's, and their errors."""

import numpy as np
import pytest
from sklearn.model_selection import KFold, StratifiedKFold, check_cv

from hsens_jax.data import Dataset


def labelled(n=47, seed=0):
    """A classification data set with string labels, uneven classes (22 / 15 / 10) and a test split."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 2))
    x[:, 0] = np.arange(n)
    y = np.array(["cat"] * 22 + ["dog"] * 15 + ["emu"] * 10)[rng.permutation(n)]
    return Dataset.from_arrays(x, y, val_fraction=0.25, seed=seed, x_test=x[:3], y_test=y[:3])


def regression(n=23):
    x = np.random.default_rng(1).standard_normal((n, 3))
    return Dataset.from_arrays(x, x.sum(axis=1), val_fraction=0.2)


def assert_same_folds(ours, theirs):
    theirs = list(theirs)
    assert len(ours) == len(theirs)
    for (tr, va), (tr_ref, va_ref) in zip(ours, theirs):
        assert tr.dtype == np.int64 and va.dtype == np.int64
        np.testing.assert_array_equal(tr, tr_ref)
        np.testing.assert_array_equal(va, va_ref)


@pytest.mark.parametrize("k", [2, 3, 5])
@pytest.mark.parametrize("shuffle, seed", [(False, None), (True, 0), (True, 123)])
def test_classification_folds_are_scikit_learns(k, shuffle, seed):
    d = labelled()
    x, y = d.pool()
    original = d.classes[y]  # scikit-learn sees the user's own labels; the mapping to 0..k-1 changes nothing
    ref = StratifiedKFold(n_splits=k, shuffle=shuffle, random_state=seed).split(x, original)
    assert_same_folds(d.folds(k, shuffle=shuffle, seed=seed), ref)


def test_default_equals_gridsearchcv_cv3():
    """GridSearchCV(cv=3) on a classifier resolves cv with check_cv(3, y, classifier=True)."""
    d = labelled()
    x, y = d.pool()
    cv = check_cv(3, d.classes[y], classifier=True)
    assert isinstance(cv, StratifiedKFold) and not cv.shuffle
    assert_same_folds(d.folds(3), cv.split(x, d.classes[y]))


@pytest.mark.parametrize("shuffle, seed", [(False, None), (True, 7)])
def test_regression_and_unstratified_folds_are_kfold(shuffle, seed):
    d = regression()
    x, _ = d.pool()
    assert_same_folds(d.folds(4, shuffle=shuffle, seed=seed), KFold(4, shuffle=shuffle, random_state=seed).split(x))
    c = labelled()
    xc, _ = c.pool()
    assert_same_folds(c.folds(3, shuffle=shuffle, seed=seed, stratify=False),
                      KFold(3, shuffle=shuffle, random_state=seed).split(xc))


def test_fold_properties():
    d = labelled()
    n = d.n_train + d.n_val
    _, y = d.pool()
    k = 4
    folds = d.folds(k, shuffle=True, seed=3)
    vals = np.concatenate([va for _, va in folds])
    np.testing.assert_array_equal(np.sort(vals), np.arange(n))  # every pool row validates exactly once
    for tr, va in folds:
        np.testing.assert_array_equal(np.sort(np.concatenate([tr, va])), np.arange(n))
        assert abs(len(va) - n / k) < 2
        # stratified: each class's validation count is within 1 of its share
        assert np.all(np.abs(np.bincount(y[va], minlength=3) - np.bincount(y, minlength=3) / k) < 1)
    assert d.x_test is not None and len(d.x_test) == 3  # the test split is not in the pool


def test_fold_dataset():
    d = labelled()
    x, y = d.pool()
    for f, (tr, va) in enumerate(d.folds(3)):
        fd = d.fold(f, 3)
        np.testing.assert_array_equal(fd.x_train, x[tr])
        np.testing.assert_array_equal(fd.y_train, y[tr])
        np.testing.assert_array_equal(fd.x_val, x[va])
        np.testing.assert_array_equal(fd.y_val, y[va])
        np.testing.assert_array_equal(fd.x_test, d.x_test)
        assert fd.classes.tolist() == ["cat", "dog", "emu"] and fd.n_classes == 3
    shuffled = d.fold(2, 3, shuffle=True, seed=5)
    tr, va = d.folds(3, shuffle=True, seed=5)[2]
    np.testing.assert_array_equal(shuffled.x_val, x[va])
    with pytest.raises(ValueError, match="fold index f must be an integer in 0..2, got 3"):
        d.fold(3, 3)


def test_fold_errors():
    d = labelled()  # a pool of 47 rows; emu, the rarest class, has 10 rows in all
    _, y = d.pool()
    fewest = int(np.bincount(y).min())
    with pytest.raises(ValueError, match="k \\(the number of folds\\) must be >= 2, got 1"):
        d.folds(1)
    with pytest.raises(TypeError, match="must be an integer >= 2"):
        d.folds(True)
    with pytest.raises(TypeError, match="must be an integer >= 2"):
        d.folds(3.0)
    with pytest.raises(ValueError, match="k=48 folds exceed the 47 rows of the pool"):
        d.folds(48, stratify=False)
    with pytest.raises(ValueError, match=f"k={fewest + 1} stratified folds need at least {fewest + 1} rows of "
                                         f"every class, but class 'emu' has {fewest} in the pool"):
        d.folds(fewest + 1)
    assert len(d.folds(fewest + 1, stratify=False)) == fewest + 1
    with pytest.raises(ValueError, match="shuffle=True needs an integer seed"):
        d.folds(3, shuffle=True)
    with pytest.raises(ValueError, match="seed=0 has no effect without shuffle=True"):
        d.folds(3, seed=0)
    with pytest.raises(ValueError, match="stratify=True needs classification"):
        regression().folds(3, stratify=True)
