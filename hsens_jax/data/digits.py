"""The 8x8 handwritten digits bundled with scikit-learn: offline, the default data set."""

from __future__ import annotations

import numpy as np

from hsens_jax.data.dataset import Dataset
from hsens_jax.data.split import holdout_dataset


def load_digits(*, val_fraction: float = 0.2, seed: int = 0, n_train: int | None = None) -> Dataset:
    """The 8x8 handwritten digits bundled with scikit-learn (1797 images, 10 classes, offline).

    Args:
      val_fraction: fraction held out for validation (stratified).
      seed: seed of the subsample and of the split.
      n_train: if given, subsample this many examples before the split.
    Returns:
      Dataset with x (n, 8, 8, 1) float32 = pixel / 16 in [0, 1], y int32; no test split.
    """
    from sklearn.datasets import load_digits as _sk_load_digits

    X, y = _sk_load_digits(return_X_y=True)
    x = (X.reshape(-1, 8, 8, 1) / 16.0).astype(np.float32)
    return holdout_dataset("digits", "classification", x, y.astype(np.int32), n_classes=10,
                           val_fraction=val_fraction, seed=seed, n_train=n_train)
