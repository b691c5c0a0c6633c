"""Tests for hsens_jax.data.arrays: Dataset.from_arrays (casts, task rule, labels, splits, errors)."""

import numpy as np
import pytest

from hsens_jax.data import Dataset, infer_task, load_digits


def rows(n, d=3, seed=0):
    """x whose first column is the row id (float64), so rows can be traced through the split."""
    x = np.random.default_rng(seed).standard_normal((n, d))
    x[:, 0] = np.arange(n)
    return x


def ids(x):
    return np.rint(x[:, 0]).astype(int)


def test_casts_float64_and_int64_and_keeps_pairs():
    x = rows(60)
    y = np.arange(60, dtype=np.int64) % 3
    d = Dataset.from_arrays(x, y, val_fraction=0.25, seed=1)
    assert d.task == "classification" and d.n_classes == 3 and d.name == "arrays"
    assert d.x_train.dtype == np.float32 and d.y_train.dtype == np.int32 and d.y_train.shape == (45,)
    assert d.n_train == 45 and d.n_val == 15 and d.x_test is None
    for xs, ys in ((d.x_train, d.y_train), (d.x_val, d.y_val)):
        np.testing.assert_array_equal(xs, x[ids(xs)].astype(np.float32))
        np.testing.assert_array_equal(ys, y[ids(xs)])
    assert sorted(np.concatenate([ids(d.x_train), ids(d.x_val)])) == list(range(60))
    np.testing.assert_array_equal(d.classes, [0, 1, 2])
    # stratified: every class gets its exact share (20 rows each, 5 held out)
    np.testing.assert_array_equal(np.bincount(d.y_val), [5, 5, 5])


def test_lists_bools_and_uint8_work():
    d = Dataset.from_arrays([[0, 1], [1, 0], [1, 1], [0, 0]] * 5, [1, 0, 1, 0] * 5, val_fraction=0.5)
    assert d.x_train.dtype == np.float32 and d.input_shape == (2,) and d.n_classes == 2
    img = np.random.default_rng(0).integers(0, 256, (20, 4, 4, 1), dtype=np.uint8)
    d = Dataset.from_arrays(img, np.array([True, False] * 10), val_fraction=0.2)
    assert d.input_shape == (4, 4, 1) and d.x_train.max() > 1  # no rescaling: pixels stay 0..255
    np.testing.assert_array_equal(d.classes, [False, True])
    # a 1-D x is n examples of one feature
    assert Dataset.from_arrays(np.arange(10.0), np.arange(10) % 2).input_shape == (1,)


def test_labels_that_are_not_0_to_k_minus_1():
    x = rows(40)
    y = np.where(np.arange(40) % 2 == 0, 3, 7)
    d = Dataset.from_arrays(x, y, val_fraction=0.25)
    np.testing.assert_array_equal(d.classes, [3, 7])
    assert d.n_classes == 2 and set(np.unique(d.y_train)) == {0, 1}
    np.testing.assert_array_equal(d.classes[d.y_train], y[ids(d.x_train)])  # the original labels, recovered
    np.testing.assert_array_equal(d.classes[d.y_val], y[ids(d.x_val)])


def test_string_labels_over_all_splits():
    x = rows(30)
    y = np.array(["dog", "cat", "emu"] * 10)
    y_test = np.array(["cat", "yak"])
    d = Dataset.from_arrays(x, y, x_test=rows(2, seed=1), y_test=y_test, val_fraction=0.2, name="pets")
    np.testing.assert_array_equal(d.classes, ["cat", "dog", "emu", "yak"])  # sorted, test labels included
    assert d.n_classes == 4 and d.name == "pets"
    np.testing.assert_array_equal(d.classes[d.y_train], y[ids(d.x_train)])
    np.testing.assert_array_equal(d.y_test, [0, 3])
    # Python lists of strings (object dtype on the way) work as well
    d2 = Dataset.from_arrays(x.tolist(), y.tolist(), val_fraction=0.2)
    np.testing.assert_array_equal(d2.classes[d2.y_val], y[ids(d2.x_val)])


def test_explicit_classes_fix_the_order_and_may_include_absent_ones():
    x = rows(20)
    y = np.array(["b", "a"] * 10)
    d = Dataset.from_arrays(x, y, classes=["b", "c", "a"], val_fraction=0.5)
    np.testing.assert_array_equal(d.classes, ["b", "c", "a"])
    assert d.n_classes == 3 and d.output_dim == 3
    np.testing.assert_array_equal(d.y_train, np.where(y[ids(d.x_train)] == "b", 0, 2))
    with pytest.raises(ValueError, match=r"y has labels not in classes \['b', 'c'\]: \['a'\]"):
        Dataset.from_arrays(x, y, classes=["b", "c"])
    with pytest.raises(ValueError, match="classes has repeated labels"):
        Dataset.from_arrays(x, y, classes=["a", "b", "a"])
    with pytest.raises(TypeError, match="classes holds numbers but y holds strings"):
        Dataset.from_arrays(x, y, classes=[0, 1])
    # a single class is refused unless the others are declared
    with pytest.raises(ValueError, match=r"y holds a single class \(\[4\]\).*classes="):
        Dataset.from_arrays(x, np.full(20, 4))
    d = Dataset.from_arrays(x, np.full(20, 4), classes=[4, 5], stratify=False)
    assert d.n_classes == 2 and set(d.y_train) == {0}


def test_regression_targets():
    x = rows(50)
    y = np.sin(x[:, 1])  # float64, 1-D
    d = Dataset.from_arrays(x, y, val_fraction=0.2, seed=3)
    assert d.task == "regression" and d.n_classes is None and d.classes is None
    assert d.y_train.shape == (40, 1) and d.y_train.dtype == np.float32 and d.output_dim == 1
    np.testing.assert_array_equal(d.y_train[:, 0], y[ids(d.x_train)].astype(np.float32))
    y2 = np.stack([y, np.cos(x[:, 1])], axis=1)
    d2 = Dataset.from_arrays(x, y2, task="regression", x_val=rows(5, seed=2), y_val=np.zeros((5, 2)))
    assert d2.output_dim == 2 and d2.n_val == 5
    # whole-number float targets are regression when asked
    d3 = Dataset.from_arrays(x, np.round(y * 10), task="regression")
    assert d3.task == "regression"


def test_task_rule():
    assert infer_task(np.array([1, 2])) == "classification"
    assert infer_task(np.array(["a", "b"])) == "classification"
    assert infer_task([True, False]) == "classification"
    assert infer_task(np.array([0.5, 1.0])) == "regression"
    assert infer_task(np.array([[0.5, 1.0]])) == "regression"
    with pytest.raises(ValueError, match="every value is a whole number: pass task='classification'"):
        infer_task(np.array([0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="whole number"):
        Dataset.from_arrays(rows(10), np.arange(10.0) % 2)
    d = Dataset.from_arrays(rows(10), np.arange(10.0) % 2, task="classification")
    np.testing.assert_array_equal(d.classes, [0, 1])
    assert d.classes.dtype.kind == "i"
    with pytest.raises(ValueError, match=r"y has non-integer values \(e.g. 0.5\) for classification"):
        Dataset.from_arrays(rows(4), [0.5, 1.0, 0.0, 1.0], task="classification")
    with pytest.raises(ValueError, match="task must be one of"):
        Dataset.from_arrays(rows(4), [0, 1, 0, 1], task="ranking")


def test_given_validation_split_draws_nothing():
    x, xv = rows(30), rows(6, seed=9)
    y, yv = np.arange(30) % 2, np.arange(6) % 2
    d = Dataset.from_arrays(x, y, x_val=xv, y_val=yv, x_test=xv[:2], y_test=yv[:2])
    np.testing.assert_array_equal(d.x_train, x.astype(np.float32))  # order kept, nothing held out
    np.testing.assert_array_equal(d.y_val, yv)
    np.testing.assert_array_equal(d.x_test, xv[:2].astype(np.float32))
    with pytest.raises(ValueError, match="give val_fraction or x_val / y_val, not both"):
        Dataset.from_arrays(x, y, x_val=xv, y_val=yv, val_fraction=0.2)
    with pytest.raises(ValueError, match="stratify=True has no effect when x_val"):
        Dataset.from_arrays(x, y, x_val=xv, y_val=yv, stratify=True)
    with pytest.raises(ValueError, match="x_val is given but y_val is not"):
        Dataset.from_arrays(x, y, x_val=xv)
    with pytest.raises(ValueError, match="y_test is given but x_test is not"):
        Dataset.from_arrays(x, y, y_test=yv)
    sub = Dataset.from_arrays(x, y, x_val=xv, y_val=yv, n_train=10, seed=4)
    assert sub.n_train == 10 and set(ids(sub.x_train)) < set(range(30))


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(x=rows(5), y=[0, 1, 0, 1]), ValueError, "y has 4 rows but x has 5"),
    (dict(x=rows(4), y=[0, 1, 0, 1], x_val=rows(2, d=2), y_val=[0, 1]), ValueError,
     r"x_val has examples of shape \(2,\), x has \(3,\)"),
    (dict(x=rows(4), y=[0, 1, 0, 1], x_val=rows(2), y_val=[0, 1, 1]), ValueError, "y_val has 3 rows but x_val has 2"),
    (dict(x=[[1, 2], [3]], y=[0, 1]), ValueError, "x is not a rectangular array"),
    (dict(x=np.array([["a", "b"], ["c", "d"]]), y=[0, 1]), TypeError, "x must be numeric"),
    (dict(x=np.array([[1.0, np.nan], [0, 0], [1, 1]]), y=[0, 1, 0]), ValueError,
     "x has 1 non-finite values \\(NaN or inf\\), the first in row 0"),
    (dict(x=np.array([[1.0], [1e39], [0.0]]), y=[0, 1, 0]), ValueError, "x has values beyond float32's range.*row 1"),
    (dict(x=np.zeros((0, 3)), y=np.zeros(0, int)), ValueError, "x has no rows"),
    (dict(x=rows(4), y=np.zeros((4, 2), int)), ValueError, r"y must be 1-D class labels .* got shape \(4, 2\).*task='regression'"),
    (dict(x=rows(4), y=np.zeros((4, 2), int), task="regression", x_val=rows(2), y_val=np.zeros((2, 3))),
     ValueError, "y_val has 3 targets per row, y has 2"),
    (dict(x=rows(4), y=[0.5, 1.5, np.inf, 0.0]), ValueError, "y has 1 non-finite values"),
    (dict(x=rows(4), y=["a", "b", "a", "b"], task="regression"), TypeError, "y must be numeric for regression"),
    (dict(x=rows(4), y=[0.5, 1.5, 2.5, 0.1], classes=[0, 1]), ValueError, "classes applies to classification only"),
    (dict(x=rows(4), y=[0.5, 1.5, 2.5, 0.1], stratify=True), ValueError, "stratify=True needs classification"),
    (dict(x=rows(4), y=[0, 1, 0, 1], x_test=rows(2), y_test=["a", "b"]), TypeError, "class labels of different types"),
    (dict(x=rows(4), y=np.array([0, "a", 1, 2], dtype=object)), TypeError, "y mixes label types"),
    (dict(x=rows(4), y=[0, 1, 0, 1], val_fraction=1.0), ValueError, r"val_fraction must be in \[0, 1\)"),
    (dict(x=rows(4), y=[0, 1, 0, 1], seed=-1), ValueError, "seed must be a non-negative integer"),
    (dict(x=rows(4), y=[0, 1, 0, 1], name=""), TypeError, "name must be a non-empty string"),
])
def test_errors_name_the_argument(kwargs, error, match):
    with pytest.raises(error, match=match):
        Dataset.from_arrays(**kwargs)


def test_same_split_as_the_builtin_loader():
    """from_arrays on scikit-learn's digits reproduces load_digits exactly (same seeded,
    stratified hold-out)."""
    from sklearn.datasets import load_digits as sk

    X, y = sk(return_X_y=True)
    mine = Dataset.from_arrays((X / 16.0).reshape(-1, 8, 8, 1), y, seed=7, name="digits")
    ref = load_digits(seed=7)
    for split in ("x_train", "y_train", "x_val", "y_val"):
        np.testing.assert_array_equal(getattr(mine, split), getattr(ref, split))
    # unstratified: a plain seeded shuffle, class shares then only match on average
    free = Dataset.from_arrays((X / 16.0).reshape(-1, 8, 8, 1), y, seed=7, stratify=False)
    assert free.n_val == ref.n_val and not np.array_equal(free.y_val, ref.y_val)


def test_readme_data_snippet_runs_as_written():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("## Data\n"):]
    code = section[section.index("```python\n") + len("```python\n"):]
    code = code[: code.index("```")]
    namespace = {}
    exec(compile(code, "README.md (Data)", "exec"), namespace)
    data = namespace["data"]
    assert data.classes.tolist() == ["down", "up"] and len(namespace["folds"]) == 3
