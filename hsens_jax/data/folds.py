"""Cross-validation folds over a data set's pool (train followed by validation), as scikit-learn's.

The pool of a :class:`~hsens_jax.data.Dataset` is ``x_train`` followed by ``x_val``
(:meth:`Dataset.pool`); the test split is never part of it. The folds are exactly those of
scikit-learn's ``StratifiedKFold`` (classification, by default) or ``KFold`` with the same
``n_splits``, ``shuffle`` and ``random_state`` on the pool in that order, so a scikit-learn
front end given the same rows in the same order gets the same folds as ``GridSearchCV(cv=k)``
(whose default for classifiers is ``StratifiedKFold(k)`` without shuffling). Stratification
only depends on which rows share a class, so mapping labels to ``0..k-1`` changes nothing.

Reference: scikit-learn's ``sklearn.model_selection.StratifiedKFold`` and ``KFold``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from hsens_jax.data.dataset import Dataset


def fold_indices(
    dataset: "Dataset", k: Any, *, shuffle: bool = False, seed: int | None = None, stratify: bool | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """k folds ``(train_indices, val_indices)`` over the pool of ``dataset``.

    Args:
      dataset: the data set; its pool has ``n = n_train + n_val`` rows.
      k: number of folds, an integer ``2 <= k <= n``; with stratification also at most the
        number of pool rows of the least populated class (scikit-learn only warns there and
        returns folds missing that class; this refuses).
      shuffle: shuffle each class's rows (or the rows) before cutting folds, as scikit-learn's
        ``shuffle=True``.
      seed: scikit-learn's ``random_state``: required (an integer) with ``shuffle=True``, not
        allowed without (as in scikit-learn), so folds are always reproducible.
      stratify: use ``StratifiedKFold`` (default for classification) or ``KFold`` (default for
        regression; stratify=True is an error there).
    Returns:
      a list of k pairs of int64 arrays, in scikit-learn's order: every pool index is in
      exactly one ``val_indices``, and ``train_indices`` is the complement of its fold's
      ``val_indices``.
    Raises:
      ValueError / TypeError naming the argument.
    """
    from sklearn.model_selection import KFold, StratifiedKFold

    n = dataset.n_train + dataset.n_val
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"k (the number of folds) must be an integer >= 2, got {k!r}")
    if k < 2:
        raise ValueError(f"k (the number of folds) must be >= 2, got {k}")
    if k > n:
        raise ValueError(f"k={k} folds exceed the {n} rows of the pool (n_train + n_val)")
    if not isinstance(shuffle, (bool, np.bool_)):
        raise TypeError(f"shuffle must be True or False, got {shuffle!r}")
    if shuffle:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
            raise ValueError(f"shuffle=True needs an integer seed in [0, 2**32), got {seed!r}")
        seed = int(seed)
    elif seed is not None:
        raise ValueError(f"seed={seed!r} has no effect without shuffle=True (the folds are not shuffled)")
    if stratify is None:
        stratify = dataset.task == "classification"
    elif not isinstance(stratify, (bool, np.bool_)):
        raise TypeError(f"stratify must be True, False or None, got {stratify!r}")
    _, y = dataset.pool()
    if stratify:
        if dataset.task != "classification":
            raise ValueError("stratify=True needs classification (a regression data set has no classes)")
        counts = np.bincount(y, minlength=int(dataset.n_classes))
        present = np.flatnonzero(counts)
        smallest = present[np.argmin(counts[present])]
        if counts[smallest] < k:
            raise ValueError(
                f"k={k} stratified folds need at least {k} rows of every class, but class "
                f"{dataset.classes[smallest].item()!r} has {counts[smallest]} in the pool (use fewer folds, or "
                f"stratify=False)"
            )
        splitter = StratifiedKFold(n_splits=int(k), shuffle=bool(shuffle), random_state=seed)
    else:
        splitter = KFold(n_splits=int(k), shuffle=bool(shuffle), random_state=seed)
    return [(tr.astype(np.int64), va.astype(np.int64)) for tr, va in splitter.split(np.zeros((n, 1)), y)]
