"""Holding out a validation split: seeded, stratified by class for classification."""

from __future__ import annotations

from typing import Any

import numpy as np

from hsens_jax.data.dataset import Dataset


def rngs(seed: int, k: int) -> list[np.random.Generator]:
    """k independent generators derived from one integer seed."""
    return [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(k)]


def check_fraction(val_fraction: Any) -> float:
    """``val_fraction`` as a float in [0, 1), or a TypeError / ValueError naming it."""
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float, np.integer, np.floating)):
        raise TypeError(f"val_fraction must be a number in [0, 1), got {val_fraction!r}")
    if not 0.0 <= float(val_fraction) < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    return float(val_fraction)


def check_seed(seed: Any) -> int:
    """``seed`` as a non-negative int, or a TypeError / ValueError naming it."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be a non-negative integer, got {seed!r}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def split_indices(
    y: np.ndarray, val_fraction: float, rng: np.random.Generator, stratify: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Shuffled (train_idx, val_idx) with round(val_fraction * n) validation examples.

    Stratified: each class c gets floor(f n_c) or ceil(f n_c) validation examples (largest
    remainders take the ceiling, ties broken at random), so class proportions match to within one.
    """
    n = len(y)
    n_val = int(round(val_fraction * n))
    perm = rng.permutation(n)
    if not stratify:
        return perm[n_val:], perm[:n_val]
    classes, inverse = np.unique(y, return_inverse=True)
    counts = np.bincount(inverse, minlength=len(classes))
    exact = counts * val_fraction
    alloc = np.floor(exact).astype(np.int64)
    order = np.lexsort((rng.random(len(classes)), -(exact - alloc)))
    alloc[order[: n_val - int(alloc.sum())]] += 1
    # rank of each permuted example within its class, in permutation order
    cls_p = inverse[perm]
    rank = np.empty(n, dtype=np.int64)
    for c in range(len(classes)):
        mask = cls_p == c
        rank[mask] = np.arange(int(mask.sum()))
    is_val = rank < alloc[cls_p]
    return perm[~is_val], perm[is_val]


def holdout_dataset(
    name: str,
    task: str,
    x: np.ndarray,
    y: np.ndarray,
    *,
    n_classes: int | None,
    val_fraction: float,
    seed: int,
    n_train: int | None,
    stratify: bool | None = None,
    x_test: np.ndarray | None = None,
    y_test: np.ndarray | None = None,
    classes: np.ndarray | None = None,
    source: str | None = None,
) -> Dataset:
    """Subsample (``n_train``), then hold out a validation split, then build the Dataset.

    ``x``, ``y`` must already have the dtypes and shapes :class:`Dataset` requires. The
    subsample and the split use two generators spawned from ``seed``; ``stratify`` defaults to
    True for classification and False for regression.
    """
    val_fraction = check_fraction(val_fraction)
    seed = check_seed(seed)
    if stratify is None:
        stratify = task == "classification"
    rng_sub, rng_split = rngs(seed, 2)
    if n_train is not None:
        if isinstance(n_train, bool) or not isinstance(n_train, (int, np.integer)) or n_train < 1:
            raise ValueError(f"n_train must be a positive integer or None, got {n_train!r}")
        if n_train > len(x):
            raise ValueError(f"n_train={n_train} exceeds the {len(x)} training examples of {name!r}")
        keep = np.sort(rng_sub.choice(len(x), size=int(n_train), replace=False))
        x, y = x[keep], y[keep]
    tr, va = split_indices(y, val_fraction, rng_split, stratify=stratify)
    return Dataset(
        name=name, task=task, x_train=x[tr], y_train=y[tr], x_val=x[va], y_val=y[va],
        n_classes=n_classes, x_test=x_test, y_test=y_test, classes=classes, source=source,
        split={"val_fraction": val_fraction, "seed": seed, "stratify": bool(stratify), "n_train": n_train},
    )
