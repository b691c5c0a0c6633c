"""Tests for hsens_jax.data.files: .npz, .npy directories and CSV files, checked against
Dataset.from_arrays on the same arrays and against pandas' CSV reader."""

import numpy as np
import pandas as pd
import pytest

from hsens_jax.data import Dataset, load_file


def arrays(n=40, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 3))
    y = np.array([3, 7])[rng.integers(0, 2, n)]
    return x, y


def assert_same(a, b):
    for split in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test", "classes"):
        np.testing.assert_array_equal(getattr(a, split), getattr(b, split))
    assert (a.task, a.n_classes) == (b.task, b.n_classes)


def test_npz(tmp_path):
    x, y = arrays()
    f = tmp_path / "mine.npz"
    np.savez(f, x=x, y=y)
    d = load_file(f, val_fraction=0.25, seed=2)
    assert d.name == "mine" and d.source == str(f) and d.task == "classification"
    assert_same(d, Dataset.from_arrays(x, y, val_fraction=0.25, seed=2))
    # with validation and test splits of one's own; string labels stored as a NumPy string array
    labels = np.array(["a", "b"])[(y == 7).astype(int)]
    np.savez(f, x=x[:30], y=labels[:30], x_val=x[30:35], y_val=labels[30:35], x_test=x[35:], y_test=labels[35:])
    d = load_file(f, name="custom")
    assert d.name == "custom" and (d.n_train, d.n_val, len(d.x_test)) == (30, 5, 5)
    assert_same(d, Dataset.from_arrays(x[:30], labels[:30], x_val=x[30:35], y_val=labels[30:35],
                                       x_test=x[35:], y_test=labels[35:]))


def test_npy_directory(tmp_path):
    x, y = arrays()
    folder = tmp_path / "set"
    folder.mkdir()
    np.save(folder / "x.npy", x)
    np.save(folder / "y.npy", np.sin(x[:, 0]))
    (folder / "README.txt").write_text("other files are ignored")
    d = load_file(folder, seed=1)
    assert d.task == "regression" and d.name == "set" and d.output_dim == 1
    assert_same(d, Dataset.from_arrays(x, np.sin(x[:, 0]), seed=1))
    np.save(folder / "x_val.npy", x[:4])
    np.save(folder / "y_val.npy", np.zeros(4))
    assert load_file(folder).n_val == 4
    np.save(folder / "x_valid.npy", x)
    with pytest.raises(ValueError, match=r"set: unexpected .npy files \['x_valid.npy'\]"):
        load_file(folder)
    (folder / "x_valid.npy").unlink()
    (folder / "y.npy").unlink()
    with pytest.raises(FileNotFoundError, match="set: missing y.npy"):
        load_file(folder)
    np.save(folder / "y.npy", np.zeros(4))
    with pytest.raises(ValueError, match=f"{folder}: y has 4 rows but x has 40"):
        load_file(folder)
    (folder / "y.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(ValueError, match="y.npy: not a readable .npy array"):
        load_file(folder)


def test_npz_errors_name_the_file_and_the_problem(tmp_path):
    x, y = arrays()
    f = tmp_path / "d.npz"
    np.savez(f, x=x)
    with pytest.raises(ValueError, match=r"d.npz: missing key 'y' \(found \['x'\]\)"):
        load_file(f)
    np.savez(f, x=x, y=y, x_valid=x)
    with pytest.raises(ValueError, match=r"d.npz: unknown keys \['x_valid'\]"):
        load_file(f)
    np.savez(f, x=x, y=y[:-1])
    with pytest.raises(ValueError, match="d.npz: y has 39 rows but x has 40"):
        load_file(f)
    np.savez(f, x=x, y=np.array(["a", 1] * 20, dtype=object))
    with pytest.raises(ValueError, match="d.npz: key 'y' holds Python objects"):
        load_file(f)
    f.write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="d.npz: not a readable .npz file"):
        load_file(f)
    np.save(tmp_path / "x.npy", x)
    with pytest.raises(ValueError, match="x.npy: a single .npy file holds one array; put x.npy and y.npy"):
        load_file(tmp_path / "x.npy")
    np.savez(f, x=x, y=y)
    with pytest.raises(ValueError, match="target='y' applies to CSV files only"):
        load_file(f, target="y")
    with pytest.raises(FileNotFoundError, match="data file not found: .*nope.npz"):
        load_file(tmp_path / "nope.npz")
    (tmp_path / "d.parquet").write_bytes(b"")
    with pytest.raises(ValueError, match="unknown data file type '.parquet'"):
        load_file(tmp_path / "d.parquet")


def write_csv(path, header, rows, sep=","):
    path.write_text(sep.join(header) + "\n" + "".join(sep.join(map(str, r)) + "\n" for r in rows))
    return path


def test_csv_matches_pandas(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((30, 3))
    species = np.array(["setosa", "virginica", "versicolor"])[np.arange(30) % 3]
    f = write_csv(tmp_path / "iris.csv", ["a", "species", "b", "c"],
                  [[x[i, 0], species[i], x[i, 1], x[i, 2]] for i in range(30)])
    d = load_file(f, target="species", seed=4)
    ref = pd.read_csv(f)
    expected = Dataset.from_arrays(ref[["a", "b", "c"]].to_numpy(), ref["species"].to_numpy(dtype=str), seed=4)
    assert_same(d, expected)
    assert d.classes.tolist() == ["setosa", "versicolor", "virginica"] and d.input_shape == (3,)
    with pytest.raises(ValueError, match=r"iris.csv: no column named 'label' for the target; columns: \['a', 'species'"):
        load_file(f, target="label")
    # default target: the last column; integers -> classification, non-integral numbers -> regression
    f2 = write_csv(tmp_path / "reg.tsv", ["u", "v", "out"],
                   [[x[i, 0], x[i, 1], x[i, 2]] for i in range(30)], sep="\t")
    d2 = load_file(f2)
    assert d2.task == "regression" and d2.input_shape == (2,)
    ref2 = pd.read_csv(f2, sep="\t")
    assert_same(d2, Dataset.from_arrays(ref2[["u", "v"]].to_numpy(), ref2["out"].to_numpy()))
    f3 = write_csv(tmp_path / "int.csv", ["u", "label"], [[x[i, 0], i % 2 * 5] for i in range(30)])
    d3 = load_file(f3)
    assert d3.task == "classification" and d3.classes.tolist() == [0, 5]


@pytest.mark.parametrize("text, match", [
    ("a,b,y\n1,2,0\n3,oops,1\n", r"column 'b' is not numeric: data row 2 holds 'oops'"),
    ("a,b,y\n1,2,0\n3,,1\n", r"column 'b' is not numeric: data row 2 is empty \(a missing value\)"),
    ("a,b,y\n1,2,0\n3,4,\n", r"target column 'y' is empty \(a missing value\) in data row 2"),
    ("a,b,y\n1,2,0\n3,4\n", "line 3 has 2 fields, the header has 3"),
    ("1,2,0\n3,4,1\n", "looks like data; the file needs a header row"),
    ("", "empty file"),
    ("a,b,y\n", "no data rows after the header"),
    ("a,a,y\n1,2,0\n", r"the header repeats column names \['a'\]"),
    ("y\n1\n", "needs at least two columns"),
    ("a,b,y\n1,2,0.0\n3,4,1.0\n", "every value is a whole number: pass task="),
    ("a,,y\n1,2,0\n", "column 2 of the header has no name"),
])
def test_csv_errors(tmp_path, text, match):
    f = tmp_path / "bad.csv"
    f.write_text(text)
    with pytest.raises(ValueError, match=match) as info:
        load_file(f)
    assert str(f) in str(info.value)


def test_csv_details(tmp_path):
    # quoted fields, a byte-order mark, blank lines and spaces around values are handled
    f = tmp_path / "q.csv"
    f.write_text('\ufeff"width, cm",height,kind\n 1.5 ,2," small "\n\n3,4e-1,big\n')
    d = load_file(f, val_fraction=0.0)
    assert d.classes.tolist() == ["big", "small"]
    np.testing.assert_allclose(np.sort(d.x_train[:, 0]), [1.5, 3.0])
    # a float target that is all whole numbers is classification when asked
    g = write_csv(tmp_path / "g.csv", ["a", "y"], [[i, float(i % 2)] for i in range(6)])
    assert load_file(g, task="classification").classes.tolist() == [0, 1]
    assert load_file(g, task="regression").y_train.dtype == np.float32
