"""A :class:`Dataset` from a user's own arrays: dtype casts, task inference, label mapping, checks."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from hsens_jax.data.dataset import TASKS, Dataset
from hsens_jax.data.split import check_fraction, check_seed, holdout_dataset, rngs

DEFAULT_VAL_FRACTION = 0.2
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def infer_task(y: Any) -> str:
    """The task a target array implies, by the rule of :func:`dataset_from_arrays`.

    * ``"classification"`` when y holds integers, booleans or strings (dtype kinds ``i``, ``u``,
      ``b``, ``U``, ``S``, and ``O`` objects such as Python strings);
    * ``"regression"`` when y is floating point and not every value is a whole number;
    * a floating y whose values are all whole numbers (``[0., 1., 1., 0.]``) is ambiguous (class
      labels stored as floats, or integer-valued targets) and raises ValueError asking for
      ``task``.
    """
    y = _as_array("y", y)
    kind = y.dtype.kind
    if kind in "iubUSO":
        return "classification"
    if kind == "f":
        finite = y[np.isfinite(y)]
        if y.size and finite.size == y.size and np.all(finite == np.round(finite)):
            raise ValueError(
                "y is floating point but every value is a whole number: pass task='classification' "
                "(class labels) or task='regression' (numeric targets)"
            )
        return "regression"
    raise TypeError(f"y must hold numbers or labels, got dtype {y.dtype}")


def dataset_from_arrays(
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
) -> Dataset:
    """Build a :class:`Dataset` from arrays (also lists, or anything ``np.asarray`` accepts).

    Inputs ``x`` of any numeric dtype (bool, integers, float64...) are cast to float32 with no
    rescaling (divide 8-bit images by 255 yourself); shape ``(n, *input_shape)``, and a 1-D ``x``
    of n scalars becomes ``(n, 1)``. Values must be finite and within float32's range.

    Task: ``task="classification"`` or ``"regression"``; when None it is inferred from ``y``'s
    dtype by :func:`infer_task` (integers, booleans, strings: classification; non-integral
    floats: regression; whole-number floats: an error asking for ``task``).

    Classification: ``y`` of shape ``(n,)`` or ``(n, 1)`` holding any labels (integers, strings,
    booleans, whole-number floats). Labels are mapped to ``0..k-1``: label ``classes[i]`` becomes
    ``i``, and ``classes`` is kept on the returned data set (``Dataset.classes``) so predictions
    can be mapped back. ``classes`` defaults to the sorted distinct labels of y, y_val and y_test
    together (``{3, 7}`` -> ``[3, 7]``, 3 -> 0, 7 -> 1); pass it to fix the order or to include a
    class absent from the data. Regression: ``y`` numeric of shape ``(n, k)``; a 1-D y becomes
    ``(n, 1)``; cast to float32.

    Validation split: either given as ``x_val`` / ``y_val`` (then no split is drawn and the
    training rows keep their order), or drawn from ``x`` / ``y``: ``val_fraction`` (default 0.2)
    of the rows, shuffled and seeded by ``seed``, stratified by class for classification unless
    ``stratify=False``. ``x_test`` / ``y_test``, when given, are a test split that is never
    used for validation.

    Args:
      x, y: the (training) inputs and targets, ``len(x) == len(y)``.
      task: see above.
      val_fraction: fraction of the rows held out for validation, in [0, 1); not with x_val.
      stratify: stratify the drawn split by class (default: True for classification; True is
        an error for regression, or when x_val is given).
      seed: seed of the subsample and the split (a non-negative integer).
      x_val, y_val: a validation split of one's own (both or neither).
      x_test, y_test: a test split (both or neither).
      classes: classification only: the class labels, in the order that defines 0..k-1.
      n_train: if given, subsample this many rows of x / y (seeded) before the split.
      name: the data set's name (recorded in run directories).
      source: where the arrays came from (e.g. a file path), recorded as ``Dataset.source``.
    Returns:
      a :class:`Dataset` with x float32 and y int32 ``(n,)`` (classification) or float32
      ``(n, k)`` (regression).
    Raises:
      ValueError / TypeError naming the argument: ragged or non-numeric x, mismatched lengths or
      example shapes, non-finite values, an ambiguous or unknown task, a label not in
      ``classes``, fewer than 2 classes, a split given by halves, conflicting options.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty string, got {name!r}")
    if task is not None and task not in TASKS:
        raise ValueError(f"task must be one of {list(TASKS)} or None, got {task!r}")
    seed = check_seed(seed)
    if stratify is not None and not isinstance(stratify, (bool, np.bool_)):
        raise TypeError(f"stratify must be True, False or None, got {stratify!r}")
    for (a, av), (b, bv) in ((("x_val", x_val), ("y_val", y_val)), (("x_test", x_test), ("y_test", y_test))):
        if (av is None) != (bv is None):
            given, missing = (a, b) if av is not None else (b, a)
            raise ValueError(f"{given} is given but {missing} is not: give both or neither")
    explicit_val = x_val is not None
    if explicit_val and val_fraction is not None:
        raise ValueError("give val_fraction or x_val / y_val, not both (x_val is the validation split)")
    if explicit_val and stratify:
        raise ValueError("stratify=True has no effect when x_val / y_val are given (no split is drawn)")

    xs = {"x": _features("x", x)}
    ys = {"y": _as_array("y", y)}
    if explicit_val:
        xs["x_val"], ys["y_val"] = _features("x_val", x_val), _as_array("y_val", y_val)
    if x_test is not None:
        xs["x_test"], ys["y_test"] = _features("x_test", x_test), _as_array("y_test", y_test)
    shape = xs["x"].shape[1:]
    for (xa, xv), (ya, yv) in zip(xs.items(), ys.items()):
        if xv.shape[1:] != shape:
            raise ValueError(f"{xa} has examples of shape {xv.shape[1:]}, x has {shape}")
        if yv.ndim == 0 or len(yv) != len(xv):
            rows = "a scalar" if yv.ndim == 0 else f"{len(yv)} rows"
            raise ValueError(f"{ya} has {rows} but {xa} has {len(xv)}")

    if task is None:
        task = infer_task(ys["y"])
    if task == "classification":
        ys, classes = _encode_labels(ys, classes)
        n_classes = len(classes)
    else:
        if classes is not None:
            raise ValueError("classes applies to classification only (task='regression')")
        if stratify:
            raise ValueError("stratify=True needs classification (task='regression' has no classes)")
        ys = _regression_targets(ys)
        n_classes = None

    common = dict(n_classes=n_classes, classes=classes, source=source,
                  x_test=xs.get("x_test"), y_test=ys.get("y_test"))
    if not explicit_val:
        frac = DEFAULT_VAL_FRACTION if val_fraction is None else check_fraction(val_fraction)
        return holdout_dataset(name, task, xs["x"], ys["y"], val_fraction=frac, seed=seed,
                               n_train=n_train, stratify=stratify, **common)
    x_train, y_train = xs["x"], ys["y"]
    if n_train is not None:
        if isinstance(n_train, bool) or not isinstance(n_train, (int, np.integer)) or n_train < 1:
            raise ValueError(f"n_train must be a positive integer or None, got {n_train!r}")
        if n_train > len(x_train):
            raise ValueError(f"n_train={n_train} exceeds the {len(x_train)} rows of x")
        keep = np.sort(rngs(seed, 2)[0].choice(len(x_train), size=int(n_train), replace=False))
        x_train, y_train = x_train[keep], y_train[keep]
    return Dataset(name=name, task=task, x_train=x_train, y_train=y_train, x_val=xs["x_val"],
                   y_val=ys["y_val"], split={"given": True, "n_train": n_train, "seed": seed}, **common)


def _as_array(arg: str, value: Any) -> np.ndarray:
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{arg} is not a rectangular array ({e})") from None
    if arr.dtype.kind == "O" and arr.ndim >= 1 and any(isinstance(v, (list, tuple, np.ndarray)) for v in arr.flat):
        raise ValueError(f"{arg} is not a rectangular array (its rows have different lengths)")
    return arr


def _features(arg: str, value: Any) -> np.ndarray:
    """``value`` as a float32 array of shape (n, ...), n >= 1, finite."""
    arr = _as_array(arg, value)
    if arr.dtype.kind == "O":
        try:
            arr = arr.astype(np.float64)
        except (ValueError, TypeError):
            raise TypeError(f"{arg} must be numeric, got objects such as {arr.flat[0]!r}") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{arg} must be numeric (bool, integer or float), got dtype {arr.dtype}")
    if arr.ndim == 0:
        raise ValueError(f"{arg} must have shape (n, ...), got a scalar")
    if arr.ndim == 1:
        arr = arr[:, None]
    if len(arr) == 0:
        raise ValueError(f"{arg} has no rows")
    return _to_float32(arg, arr)


def _to_float32(arg: str, arr: np.ndarray) -> np.ndarray:
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr)
        if bad.any():
            row = int(np.argwhere(bad)[0][0])
            raise ValueError(f"{arg} has {int(bad.sum())} non-finite values (NaN or inf), the first in row {row}")
        too_big = np.abs(arr) > _FLOAT32_MAX
        if too_big.any():
            row = int(np.argwhere(too_big)[0][0])
            raise ValueError(f"{arg} has values beyond float32's range (|v| > 3.4e38), the first in row {row}")
    return arr.astype(np.float32)


def _label_values(arg: str, arr: np.ndarray) -> np.ndarray:
    """1-D labels as int64, bool or str, or an error naming ``arg``."""
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(
            f"{arg} must be 1-D class labels (n,) or (n, 1) for classification, got shape {arr.shape} "
            f"(for k numeric targets pass task='regression')"
        )
    kind = arr.dtype.kind
    if kind == "O":
        if all(isinstance(v, str) for v in arr):
            return arr.astype(str)
        if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in arr):
            return arr.astype(np.int64)
        raise TypeError(f"{arg} mixes label types ({sorted({type(v).__name__ for v in arr})}): use one type")
    if kind in "iu":
        return arr.astype(np.int64)
    if kind in "bUS":
        return arr
    if kind == "f":
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{arg} has non-finite values (NaN or inf); class labels must be finite")
        if not np.all(arr == np.round(arr)):
            bad = arr[arr != np.round(arr)][0].item()
            raise ValueError(
                f"{arg} has non-integer values (e.g. {bad!r}) for classification: class labels must "
                f"be whole numbers or strings (or pass task='regression')"
            )
        return arr.astype(np.int64)
    raise TypeError(f"{arg} must hold class labels (integers, strings or booleans), got dtype {arr.dtype}")


def _family(labels: np.ndarray) -> str:
    return {"U": "strings", "S": "bytes", "b": "booleans"}.get(labels.dtype.kind, "numbers")


def _encode_labels(ys: dict[str, np.ndarray], classes: Sequence[Any] | None) -> tuple[dict, np.ndarray]:
    """Labels -> int32 indices into ``classes`` (given, or the sorted distinct labels)."""
    labels = {arg: _label_values(arg, v) for arg, v in ys.items()}
    families = {arg: _family(v) for arg, v in labels.items()}
    if len(set(families.values())) > 1:
        raise TypeError(f"class labels of different types: {families}; use one type for y, y_val, y_test")
    if classes is None:
        classes_arr = np.unique(np.concatenate(list(labels.values())))
        if len(classes_arr) < 2:
            raise ValueError(
                f"y holds a single class ({classes_arr.tolist()}); classification needs at least 2 "
                f"(pass classes=[...] to declare the others)"
            )
    else:
        classes_arr = _label_values("classes", _as_array("classes", classes))
        if len(classes_arr) < 2:
            raise ValueError(f"classes must list at least 2 labels, got {classes_arr.tolist()}")
        if len(np.unique(classes_arr)) != len(classes_arr):
            raise ValueError(f"classes has repeated labels: {classes_arr.tolist()}")
        if _family(classes_arr) != families["y"]:
            raise TypeError(f"classes holds {_family(classes_arr)} but y holds {families['y']}")
    order = np.argsort(classes_arr, kind="stable")
    ordered = classes_arr[order]
    out = {}
    for arg, v in labels.items():
        pos = np.minimum(np.searchsorted(ordered, v), len(ordered) - 1)
        unknown = ordered[pos] != v
        if unknown.any():
            missing = np.unique(v[unknown])[:5].tolist()
            raise ValueError(f"{arg} has labels not in classes {classes_arr.tolist()}: {missing}")
        out[arg] = order[pos].astype(np.int32)
    return out, classes_arr


def _regression_targets(ys: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {}
    for arg, v in ys.items():
        if v.dtype.kind not in "biuf":
            raise TypeError(
                f"{arg} must be numeric for regression, got dtype {v.dtype} (for class labels pass "
                f"task='classification')"
            )
        if v.ndim == 1:
            v = v[:, None]
        if v.ndim != 2:
            raise ValueError(f"{arg} must have shape (n,) or (n, k) for regression, got {v.shape}")
        out[arg] = _to_float32(arg, v)
    k = out["y"].shape[1]
    for arg, v in out.items():
        if v.shape[1] != k:
            raise ValueError(f"{arg} has {v.shape[1]} targets per row, y has {k}")
    return out
