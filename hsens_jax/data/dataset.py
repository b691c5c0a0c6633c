"""The :class:`Dataset`: train / validation (/ test) splits as NumPy arrays, the engine's input."""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

TASKS = ("classification", "regression")


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """A data set split into train / validation (/ test), as NumPy arrays.

    Attributes:
      name: data set name (e.g. ``"mnist"``).
      task: ``"classification"`` or ``"regression"``.
      x_train, x_val: float32 ``(n, *input_shape)``; images NHWC in [0, 1].
      y_train, y_val: int32 ``(n,)`` labels in ``0..n_classes-1`` (classification) or float32
        ``(n, k)`` targets (regression).
      n_classes: number of classes (classification) or None (regression).
      x_test, y_test: a held-out test split, or None. Never used for validation, nor in
        :meth:`folds`.
      classes: classification only: ``classes[i]`` is the original label of class ``i`` (e.g.
        ``array(["cat", "dog"])`` or ``array([3, 7])`` for data given with those labels, see
        :meth:`from_arrays`); ``np.arange(n_classes)`` when not given. None for regression.
      split: how the validation set was made (``val_fraction``, ``seed``, ``stratify``,
        ``n_train`` of a drawn split; ``{"given": True}``; a fold's ``fold`` and ``k``), recorded with
        sweeps' results; None when unknown.
      source: where the data came from (a file path, for :func:`hsens_jax.data.load_file`), or
        None.

    Properties ``input_shape`` (per-example shape of x), ``output_dim`` (n_classes or k),
    ``n_train``, ``n_val``.

    Cross-validation works on the *pool*, ``x_train`` followed by ``x_val`` (see :meth:`pool`,
    :meth:`folds`, :meth:`fold`); the test split stays held out.
    """

    name: str
    task: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    n_classes: int | None = None
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    classes: np.ndarray | None = None
    source: str | None = None
    split: dict | None = None

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"Dataset {self.name!r}: task {self.task!r} is not one of {list(TASKS)}")
        if self.task == "classification":
            if isinstance(self.n_classes, bool) or not isinstance(self.n_classes, (int, np.integer)) \
                    or self.n_classes < 2:
                raise ValueError(
                    f"Dataset {self.name!r}: n_classes must be an int >= 2 for classification, "
                    f"got {self.n_classes!r}"
                )
            self._check_classes()
        else:
            if self.n_classes is not None:
                raise ValueError(f"Dataset {self.name!r}: n_classes must be None for regression")
            if self.classes is not None:
                raise ValueError(f"Dataset {self.name!r}: classes must be None for regression")
        if (self.x_test is None) != (self.y_test is None):
            raise ValueError(f"Dataset {self.name!r}: x_test and y_test must both be given or both None")
        splits = [("train", self.x_train, self.y_train), ("val", self.x_val, self.y_val)]
        if self.x_test is not None:
            splits.append(("test", self.x_test, self.y_test))
        input_shape = self.x_train.shape[1:] if isinstance(self.x_train, np.ndarray) else None
        for split, x, y in splits:
            if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.ndim < 2:
                raise TypeError(
                    f"Dataset {self.name!r}: x_{split} must be a float32 array of shape (n, ...)"
                )
            if x.shape[1:] != input_shape:
                raise ValueError(
                    f"Dataset {self.name!r}: x_{split} has example shape {x.shape[1:]}, "
                    f"x_train has {input_shape}"
                )
            if not isinstance(y, np.ndarray) or len(y) != len(x):
                raise ValueError(
                    f"Dataset {self.name!r}: y_{split} must be an array with len(x_{split}) = "
                    f"{len(x)} rows"
                )
            if self.task == "classification":
                if y.dtype != np.int32 or y.ndim != 1:
                    raise TypeError(f"Dataset {self.name!r}: y_{split} must be int32 of shape (n,)")
                if y.size and (y.min() < 0 or y.max() >= self.n_classes):
                    raise ValueError(
                        f"Dataset {self.name!r}: y_{split} has labels outside 0..{self.n_classes - 1}"
                    )
            else:
                if y.dtype != np.float32 or y.ndim != 2:
                    raise TypeError(
                        f"Dataset {self.name!r}: y_{split} must be float32 of shape (n, k)"
                    )
                if y.shape[1] != self.y_train.shape[1]:
                    raise ValueError(f"Dataset {self.name!r}: y_{split} has a different k")

    def _check_classes(self) -> None:
        if self.classes is None:
            object.__setattr__(self, "classes", np.arange(int(self.n_classes)))
            return
        classes = np.asarray(self.classes)
        if classes.ndim != 1 or len(classes) != self.n_classes:
            raise ValueError(
                f"Dataset {self.name!r}: classes must be a 1-D array of n_classes = {self.n_classes} "
                f"labels, got shape {classes.shape}"
            )
        if len(np.unique(classes)) != len(classes):
            raise ValueError(f"Dataset {self.name!r}: classes has repeated labels: {classes.tolist()}")
        object.__setattr__(self, "classes", classes)

    @classmethod
    def from_arrays(
        cls,
        x: Any,
        y: Any,
        *,
        task: str | None = None,
        val_fraction: float | None = None,
        stratify: bool | None = None,
        seed: int = 0,
        x_val: Any = None,
        y_val: Any = None,
        x_test: Any = None,
        y_test: Any = None,
        classes: Sequence[Any] | None = None,
        n_train: int | None = None,
        name: str = "arrays",
        source: str | None = None,
    ) -> "Dataset":
        """A :class:`Dataset` from the user's own arrays (NumPy arrays, lists, anything
        ``np.asarray`` takes). See :func:`hsens_jax.data.arrays.dataset_from_arrays` for the
        rules (dtype casts, task inference, label mapping, shapes)."""
        from hsens_jax.data.arrays import dataset_from_arrays

        return dataset_from_arrays(
            x, y, task=task, val_fraction=val_fraction, stratify=stratify, seed=seed,
            x_val=x_val, y_val=y_val, x_test=x_test, y_test=y_test, classes=classes,
            n_train=n_train, name=name, source=source,
        )

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input example, e.g. ``(28, 28, 1)``."""
        return tuple(self.x_train.shape[1:])

    @property
    def output_dim(self) -> int:
        """Number of classes (classification) or of regression targets k."""
        return int(self.n_classes) if self.task == "classification" else int(self.y_train.shape[1])

    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def n_val(self) -> int:
        return int(self.x_val.shape[0])

    def pool(self) -> tuple[np.ndarray, np.ndarray]:
        """The cross-validation pool ``(x, y)``: ``x_train`` followed by ``x_val`` (new arrays,
        ``n_train + n_val`` rows); pool index ``i < n_train`` is ``x_train[i]``, the others are
        ``x_val[i - n_train]``. The test split is not part of it."""
        return (np.concatenate([self.x_train, self.x_val]), np.concatenate([self.y_train, self.y_val]))

    def folds(
        self, k: int, *, shuffle: bool = False, seed: int | None = None, stratify: bool | None = None
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """k cross-validation folds over the pool (:meth:`pool`), exactly scikit-learn's.

        See :func:`hsens_jax.data.folds.fold_indices`. Returns a list of k
        ``(train_indices, val_indices)`` pairs of int64 arrays indexing the pool.
        """
        from hsens_jax.data.folds import fold_indices

        return fold_indices(self, k, shuffle=shuffle, seed=seed, stratify=stratify)

    def fold(
        self, f: int, k: int, *, shuffle: bool = False, seed: int | None = None,
        stratify: bool | None = None,
    ) -> "Dataset":
        """The single-fold Dataset of fold ``f`` of :meth:`folds` (same arguments): train = the
        pool at that fold's train indices, val = the pool at its validation indices, in that
        order; the test split is kept."""
        folds = self.folds(k, shuffle=shuffle, seed=seed, stratify=stratify)
        if isinstance(f, bool) or not isinstance(f, (int, np.integer)) or not 0 <= f < len(folds):
            raise ValueError(f"fold index f must be an integer in 0..{len(folds) - 1}, got {f!r}")
        train_idx, val_idx = folds[f]
        out = self.with_split(train_idx, val_idx)
        return dataclasses.replace(out, split={"fold": int(f), "k": int(k), "shuffle": shuffle, "seed": seed,
                                               "of": self.split})

    def with_split(self, train_indices: Any, val_indices: Any) -> "Dataset":
        """This data set re-split: train = ``pool[train_indices]``, val = ``pool[val_indices]``
        (in the given orders), test, classes, name and source unchanged.

        Raises ValueError naming the argument for indices that are not 1-D integers in
        ``0..n_train + n_val - 1`` or that repeat (within or across the two)."""
        n = self.n_train + self.n_val
        checked = []
        for arg, idx in (("train_indices", train_indices), ("val_indices", val_indices)):
            idx = np.asarray(idx)
            if idx.ndim != 1 or (idx.size and idx.dtype.kind not in "iu"):
                raise ValueError(f"{arg} must be a 1-D array of integers, got {idx.dtype} {idx.shape}")
            idx = idx.astype(np.int64)
            if idx.size and (idx.min() < 0 or idx.max() >= n):
                raise ValueError(f"{arg} must lie in 0..{n - 1} (the pool of n_train + n_val rows)")
            checked.append(idx)
        both = np.concatenate(checked)
        if len(np.unique(both)) != len(both):
            raise ValueError("train_indices and val_indices must not repeat an index (within or across them)")
        x, y = self.pool()
        tr, va = checked
        return dataclasses.replace(self, x_train=x[tr], y_train=y[tr], x_val=x[va], y_val=y[va],
                                   split={"given": True, "of": self.split})

    def __repr__(self) -> str:
        test = f", n_test={len(self.x_test)}" if self.x_test is not None else ""
        return (
            f"Dataset(name={self.name!r}, task={self.task!r}, input_shape={self.input_shape}, "
            f"output_dim={self.output_dim}, n_train={self.n_train}, n_val={self.n_val}{test})"
        )
