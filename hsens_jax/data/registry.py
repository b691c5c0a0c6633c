"""The data sets known by name, and :func:`load_dataset` to load one."""

from __future__ import annotations

import os
from typing import Any

from hsens_jax.data.cifar import load_cifar10
from hsens_jax.data.dataset import Dataset
from hsens_jax.data.digits import load_digits
from hsens_jax.data.idx import load_fashion_mnist, load_mnist
from hsens_jax.data.synthetic import bateman, runge

DATASETS = ("digits", "mnist", "fashion_mnist", "cifar10", "runge", "bateman")
_FILE_SUFFIXES = (".npz", ".npy", ".csv", ".tsv")


def load_dataset(
    name: str,
    *,
    data_dir: str | os.PathLike | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    n_train: int | None = None,
    **kwargs: Any,
) -> Dataset:
    """Load a data set by name.

    Args:
      name: one of ``"digits"``, ``"mnist"``, ``"fashion_mnist"``, ``"cifar10"``, ``"runge"``,
        ``"bateman"`` (case and hyphens do not matter: ``"Fashion-MNIST"``, ``"cifar-10"``).
      data_dir: root of the file-based data sets (default ``$HSENS_DATA``, else
        ``~/.cache/hsens_jax``); ignored by the offline ones.
      val_fraction: fraction of the training data held out for validation.
      seed: seed of the subsample, the split (and the synthetic data).
      n_train: if given, subsample this many training examples before the split.
      **kwargs: passed to the synthetic generators (e.g. ``n``, ``noise``, ``n_nuclides``).
    Returns:
      a :class:`Dataset`.

    Data of one's own: :meth:`Dataset.from_arrays` (arrays) and :func:`hsens_jax.data.load_file`
    (``.npz``, ``.npy`` directories, CSV).
    """
    common = dict(val_fraction=val_fraction, seed=seed, n_train=n_train)
    given = name
    name = str(name).strip().lower().replace("-", "_")
    name = {"cifar_10": "cifar10"}.get(name, name)
    if name not in DATASETS:
        if str(given).lower().endswith(_FILE_SUFFIXES) or os.sep in str(given):
            raise ValueError(
                f"{given!r} is not a data set name ({list(DATASETS)}); to read a data file use "
                f"hsens_jax.data.load_file({str(given)!r})"
            )
        raise ValueError(f"unknown data set {given!r}; valid names: {list(DATASETS)}; for a data file of "
                         f"your own use load_file(path)")
    if kwargs and name not in ("runge", "bateman"):
        raise TypeError(f"load_dataset({name!r}) got unexpected arguments {sorted(kwargs)}")
    if name == "digits":
        return load_digits(**common)
    if name == "mnist":
        return load_mnist(data_dir, **common)
    if name == "fashion_mnist":
        return load_fashion_mnist(data_dir, **common)
    if name == "cifar10":
        return load_cifar10(data_dir, **common)
    if name == "runge":
        return runge(**kwargs, **common)
    return bateman(**kwargs, **common)
