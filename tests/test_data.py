"""Tests for hsens_jax.data: IDX / CIFAR parsing on fixtures written here, splits, synthetic data.

The IDX and CIFAR fixtures are produced by independent writers in this file (struct / pickle /
tarfile); the Bateman solution is checked against scipy's solve_ivp, the closed Bateman formula
and the equal-rate analytic limit.
"""

import gzip
import io
import math
import os
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from scipy.integrate import solve_ivp

from hsens_jax.data import (
    DATASETS,
    Dataset,
    bateman,
    bateman_solution,
    default_data_dir,
    load_cifar10,
    load_dataset,
    load_digits,
    load_fashion_mnist,
    load_mnist,
    read_idx,
    runge,
)

# ----------------------------------------------------------------------------- fixture writers

_CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D,
          np.float64: 0x0E}


def idx_bytes(arr: np.ndarray) -> bytes:
    code = _CODES[arr.dtype.type]
    header = struct.pack(">BBBB", 0, 0, code, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, arr: np.ndarray, gz: bool) -> Path:
    data = idx_bytes(arr)
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def mnist_images(n: int, offset: int) -> tuple[np.ndarray, np.ndarray]:
    """Images whose first two pixels encode the example id (offset + i); balanced labels."""
    rng = np.random.default_rng(offset)
    img = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    ids = offset + np.arange(n)
    img[:, 0, 0] = ids % 256
    img[:, 0, 1] = ids // 256
    labels = (np.arange(n) % 10).astype(np.uint8)
    rng.shuffle(labels)
    return img, labels


def image_ids(x: np.ndarray) -> np.ndarray:
    px = np.rint(x[:, 0, :2, 0] * 255).astype(int)
    return px[:, 0] + 256 * px[:, 1]


def write_mnist(root: Path, subdir: str = "mnist", gz: bool = True, n_train=200, n_test=30):
    folder = root / subdir
    tr, trl = mnist_images(n_train, 0)
    te, tel = mnist_images(n_test, 10_000)
    write_idx(folder / "train-images-idx3-ubyte", tr, gz)
    write_idx(folder / "train-labels-idx1-ubyte", trl, gz)
    write_idx(folder / "t10k-images-idx3-ubyte", te, gz)
    write_idx(folder / "t10k-labels-idx1-ubyte", tel, gz)
    return tr, trl, te, tel


def cifar_batch(n: int, offset: int) -> dict:
    rng = np.random.default_rng(offset + 1)
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, 10, n)]
    return {b"batch_label": b"fixture", b"labels": labels, b"data": data,
            b"filenames": [b"f%d.png" % i for i in range(n)]}


def write_cifar(root: Path, n=12, protocol=2, as_archive=False):
    batches = {f"data_batch_{i}": cifar_batch(n, i) for i in range(1, 6)}
    batches["test_batch"] = cifar_batch(n, 99)
    if as_archive:
        root.mkdir(parents=True, exist_ok=True)
        with tarfile.open(root / "cifar-10-python.tar.gz", "w:gz") as tar:
            for name, d in batches.items():
                raw = pickle.dumps(d, protocol=protocol)
                info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
                info.size = len(raw)
                tar.addfile(info, io.BytesIO(raw))
    else:
        folder = root / "cifar-10-batches-py"
        folder.mkdir(parents=True, exist_ok=True)
        for name, d in batches.items():
            (folder / name).write_bytes(pickle.dumps(d, protocol=protocol))
    return batches


# ----------------------------------------------------------------------------- read_idx


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_round_trip(tmp_path, dtype, gz):
    rng = np.random.default_rng(0)
    arr = (rng.standard_normal((3, 4, 5)) * 100).astype(dtype)
    path = write_idx(tmp_path / "a-idx3", arr, gz)
    out = read_idx(path)
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    np.testing.assert_array_equal(out, arr)


def test_read_idx_gzip_detected_by_content(tmp_path):
    arr = np.arange(10, dtype=np.uint8)
    path = tmp_path / "labels-no-suffix"
    path.write_bytes(gzip.compress(idx_bytes(arr)))
    np.testing.assert_array_equal(read_idx(str(path)), arr)


@pytest.mark.parametrize(
    "content, match",
    [
        (b"\x01\x00\x08\x01" + struct.pack(">I", 2) + b"ab", "bad IDX magic number 0x01000801"),
        (b"\x00\x00\x07\x01" + struct.pack(">I", 2) + b"ab", "unknown dtype code 0x07"),
        (b"\x00\x00", "truncated IDX header"),
        (b"\x00\x00\x08\x03" + struct.pack(">I", 2), "truncated IDX header: 3 dimensions need 16"),
        (b"\x00\x00\x08\x02" + struct.pack(">II", 2, 3) + b"abcde", "truncated IDX data: shape \\(2, 3\\) needs 6 bytes, file has 5"),
        (b"\x00\x00\x08\x01" + struct.pack(">I", 2) + b"abc", "wrong size.*1 trailing bytes"),
        (b"\x00\x00\x08\x00", "declares 0 dimensions"),
        (b"\x1f\x8b\x08\x00garbage", "corrupt gzip stream"),
    ],
)
def test_read_idx_corrupt(tmp_path, content, match):
    path = tmp_path / "bad-idx"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=match) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_read_idx_truncated_gz(tmp_path):
    arr = np.arange(100, dtype=np.uint8).reshape(10, 10)
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(idx_bytes(arr))[:-30])
    with pytest.raises(ValueError, match="corrupt gzip stream") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_read_idx_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        read_idx(tmp_path / "nope")


# ----------------------------------------------------------------------------- MNIST


@pytest.mark.parametrize("gz", [True, False])
def test_load_mnist_fixture(tmp_path, gz):
    tr, trl, te, tel = write_mnist(tmp_path, gz=gz)
    d = load_mnist(tmp_path, val_fraction=0.25, seed=1)
    assert isinstance(d, Dataset) and d.name == "mnist" and d.task == "classification"
    assert d.input_shape == (28, 28, 1) and d.output_dim == 10 and d.n_classes == 10
    assert d.n_train == 150 and d.n_val == 50
    for x, y in [(d.x_train, d.y_train), (d.x_val, d.y_val), (d.x_test, d.y_test)]:
        assert x.dtype == np.float32 and x.shape[1:] == (28, 28, 1)
        assert y.dtype == np.int32 and y.shape == (len(x),)
    # scaling: exactly pixel / 255, pairing image <-> label preserved through the shuffle
    ids = image_ids(d.x_train)
    np.testing.assert_array_equal(d.x_train[..., 0], (tr[ids] / np.float32(255)).astype(np.float32))
    np.testing.assert_array_equal(d.y_train, trl[ids])
    np.testing.assert_array_equal(d.y_val, trl[image_ids(d.x_val)])
    # train and val partition the training file; the test split is t10k untouched, in order
    all_ids = np.concatenate([ids, image_ids(d.x_val)])
    np.testing.assert_array_equal(np.sort(all_ids), np.arange(200))
    np.testing.assert_array_equal(d.x_test[..., 0], te / np.float32(255))
    np.testing.assert_array_equal(d.y_test, tel)
    assert d.x_train.min() >= 0 and d.x_train.max() <= 1


def test_load_fashion_mnist_and_env_default(tmp_path, monkeypatch):
    write_mnist(tmp_path, subdir="fashion-mnist", gz=True, n_train=50, n_test=10)
    monkeypatch.setenv("HSENS_DATA", str(tmp_path))
    assert default_data_dir() == tmp_path
    d = load_fashion_mnist()
    assert d.name == "fashion_mnist" and d.n_train + d.n_val == 50 and len(d.x_test) == 10
    d2 = load_dataset("fashion_mnist")
    np.testing.assert_array_equal(d.x_train, d2.x_train)
    for spelling in ("fashion-mnist", "Fashion-MNIST", " FASHION_MNIST "):  # the directory's and common spellings
        assert load_dataset(spelling).name == "fashion_mnist"
    monkeypatch.delenv("HSENS_DATA")
    assert default_data_dir() == Path("~/.cache/hsens_jax").expanduser()


def test_mnist_missing_file_message(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_mnist(tmp_path)
    msg = str(info.value)
    assert str(tmp_path / "mnist" / "train-images-idx3-ubyte") in msg
    assert str(tmp_path / "mnist" / "train-images-idx3-ubyte.gz") in msg
    assert f"bash ../shared/fetch-datasets.sh {tmp_path}" in msg
    assert "mnist" in msg and "http" in msg
    # one file missing among present ones: names that one
    write_mnist(tmp_path)
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte.gz"):
        load_mnist(tmp_path)
    with pytest.raises(FileNotFoundError, match="fashion-mnist.*fetch-datasets.sh"):
        load_fashion_mnist(tmp_path)


def test_mnist_corrupt_files(tmp_path):
    write_mnist(tmp_path, gz=False)
    folder = tmp_path / "mnist"
    # count mismatch
    write_idx(folder / "train-labels-idx1-ubyte", np.zeros(199, np.uint8), gz=False)
    with pytest.raises(ValueError, match="count mismatch.*200 images.*199 labels"):
        load_mnist(tmp_path)
    # labels stored as a 2-D array
    write_idx(folder / "train-labels-idx1-ubyte", np.zeros((200, 1), np.uint8), gz=False)
    with pytest.raises(ValueError, match="train-labels-idx1-ubyte: expected uint8 labels"):
        load_mnist(tmp_path)
    # bad magic in the image file
    write_idx(folder / "train-labels-idx1-ubyte", np.zeros(200, np.uint8), gz=False)
    raw = (folder / "train-images-idx3-ubyte").read_bytes()
    (folder / "train-images-idx3-ubyte").write_bytes(b"\x08\x03" + raw[2:])
    with pytest.raises(ValueError, match="train-images-idx3-ubyte: bad IDX magic"):
        load_mnist(tmp_path)
    # truncated image data
    (folder / "train-images-idx3-ubyte").write_bytes(raw[:-100])
    with pytest.raises(ValueError, match="train-images-idx3-ubyte: truncated IDX data"):
        load_mnist(tmp_path)
    # labels out of range
    (folder / "train-images-idx3-ubyte").write_bytes(raw)
    write_idx(folder / "train-labels-idx1-ubyte", np.full(200, 12, np.uint8), gz=False)
    with pytest.raises(ValueError, match="label 12 outside 0..9"):
        load_mnist(tmp_path)


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

    from hsens_jax.data import _split_indices

    y = sk().target
    n_seeds = 200
    hits = np.zeros(len(y))
    for seed in range(n_seeds):
        tr, va = _split_indices(y, 0.2, np.random.default_rng(seed), stratify=True)
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


# ----------------------------------------------------------------------------- CIFAR-10


def check_cifar(d, batches):
    assert d.name == "cifar10" and d.input_shape == (32, 32, 3) and d.output_dim == 10
    assert d.n_train + d.n_val == 60 and len(d.x_test) == 12
    ref = batches["test_batch"]
    data = ref[b"data"]
    # pixel (h, w, c) of image i is data[i, c * 1024 + h * 32 + w] / 255
    i, h, w, c = 3, 5, 17, 2
    assert d.x_test[i, h, w, c] == np.float32(data[i, c * 1024 + h * 32 + w] / np.float32(255))
    hh, ww, cc = np.meshgrid(np.arange(32), np.arange(32), np.arange(3), indexing="ij")
    np.testing.assert_array_equal(
        d.x_test, (data[:, cc * 1024 + hh * 32 + ww] / np.float32(255)).astype(np.float32)
    )
    np.testing.assert_array_equal(d.y_test, ref[b"labels"])
    assert d.x_train.dtype == np.float32 and d.y_train.dtype == np.int32
    # the training pool is exactly the 5 data batches
    train_sums = np.sort(np.concatenate([d.x_train, d.x_val]).reshape(60, -1).sum(axis=1))
    ref_sums = np.sort(np.concatenate(
        [batches[f"data_batch_{k}"][b"data"] for k in range(1, 6)]
    ).astype(np.float32).sum(axis=1) / 255)
    np.testing.assert_allclose(train_sums, ref_sums, rtol=1e-5)


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_load_cifar10_folder(tmp_path, protocol):
    batches = write_cifar(tmp_path, protocol=protocol)
    d = load_cifar10(tmp_path, val_fraction=0.25)
    assert d.n_val == 15
    check_cifar(d, batches)


def test_load_cifar10_archive(tmp_path):
    batches = write_cifar(tmp_path, as_archive=True)
    d = load_dataset("cifar10", data_dir=tmp_path)
    check_cifar(d, batches)
    assert not (tmp_path / "cifar-10-batches-py").exists()  # read in place
    assert load_dataset("CIFAR-10", data_dir=tmp_path).name == d.name


def test_cifar10_missing(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_cifar10(tmp_path)
    msg = str(info.value)
    assert str(tmp_path / "cifar-10-batches-py") in msg
    assert str(tmp_path / "cifar-10-python.tar.gz") in msg
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in msg
    write_cifar(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_4").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_4"):
        load_cifar10(tmp_path)


def test_cifar10_corrupt(tmp_path):
    batches = write_cifar(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match="data_batch_2: unpickling error"):
        load_cifar10(tmp_path)
    path.write_bytes(b"not a pickle at all")
    with pytest.raises(ValueError, match="data_batch_2: unpickling error"):
        load_cifar10(tmp_path)
    d = dict(batches["data_batch_2"])
    d[b"data"] = d[b"data"][:, :3000]
    path.write_bytes(pickle.dumps(d, protocol=2))
    with pytest.raises(ValueError, match="data_batch_2: wrong size.*\\(12, 3000\\)"):
        load_cifar10(tmp_path)
    d = dict(batches["data_batch_2"])
    d[b"labels"] = d[b"labels"][:-1]
    path.write_bytes(pickle.dumps(d, protocol=2))
    with pytest.raises(ValueError, match="data_batch_2: count mismatch: 12 images but 11 labels"):
        load_cifar10(tmp_path)
    path.write_bytes(pickle.dumps({b"data": 1}))
    with pytest.raises(ValueError, match="data_batch_2: missing key"):
        load_cifar10(tmp_path)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_cifar10_refuses_arbitrary_pickles(tmp_path):
    write_cifar(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    path.write_bytes(pickle.dumps({b"data": _Evil(), b"labels": []}))
    with pytest.raises(ValueError, match="test_batch: unpickling error.*refusing to load global"):
        load_cifar10(tmp_path)


def test_cifar10_corrupt_archive(tmp_path):
    write_cifar(tmp_path, as_archive=True)
    arc = tmp_path / "cifar-10-python.tar.gz"
    arc.write_bytes(arc.read_bytes()[:200])
    with pytest.raises(ValueError, match="cifar-10-python.tar.gz: corrupt archive"):
        load_cifar10(tmp_path)
    with tarfile.open(arc, "w:gz") as tar:
        raw = pickle.dumps(cifar_batch(4, 1))
        info = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
        info.size = len(raw)
        tar.addfile(info, io.BytesIO(raw))
    with pytest.raises(ValueError, match="member cifar-10-batches-py/data_batch_2 is missing"):
        load_cifar10(tmp_path)


# ----------------------------------------------------------------------------- digits / dispatch


def test_digits():
    from sklearn.datasets import load_digits as sk

    d = load_digits()
    assert d.input_shape == (8, 8, 1) and d.n_classes == 10 and d.x_test is None
    assert d.n_train + d.n_val == 1797 and d.n_val == round(0.2 * 1797)
    assert d.x_train.dtype == np.float32 and d.x_train.max() == 1.0 and d.x_train.min() == 0.0
    np.testing.assert_array_equal(d.x_train * 16, np.round(d.x_train * 16))  # multiples of 1/16
    # same multiset of (image, label) as sklearn's
    X, y = sk(return_X_y=True)
    ours = np.concatenate([np.concatenate([d.x_train, d.x_val]).reshape(1797, 64) * 16,
                           np.concatenate([d.y_train, d.y_val])[:, None]], axis=1)
    ref = np.concatenate([X, y[:, None]], axis=1)
    np.testing.assert_array_equal(np.unique(ours, axis=0), np.unique(ref, axis=0))
    val_counts = np.bincount(d.y_val, minlength=10)
    assert np.all(np.abs(val_counts - 0.2 * np.bincount(y)) < 1)
    small = load_dataset("digits", n_train=100, seed=3)
    assert small.n_train == 80 and small.n_val == 20


def test_load_dataset_dispatch_and_errors():
    with pytest.raises(ValueError) as info:
        load_dataset("Image-Net")
    assert "'Image-Net'" in str(info.value)  # the name as given
    for name in DATASETS:
        assert repr(name) in str(info.value)
    with pytest.raises(TypeError, match="unexpected arguments \\['noise'\\]"):
        load_dataset("digits", noise=0.1)
    d = load_dataset("runge", n=50, noise=0.0, seed=2)
    assert d.name == "runge" and d.n_train + d.n_val == 50
    b = load_dataset("bateman", n=40, n_nuclides=2, val_fraction=0.5)
    assert b.input_shape == (3,) and b.output_dim == 2 and b.n_val == 20


def test_dataset_validation():
    x = np.zeros((4, 2), np.float32)
    y = np.zeros(4, np.int32)
    with pytest.raises(ValueError, match="task 'ranking'"):
        Dataset("t", "ranking", x, y, x, y, n_classes=2)
    with pytest.raises(ValueError, match="n_classes must be an int >= 2"):
        Dataset("t", "classification", x, y, x, y)
    with pytest.raises(TypeError, match="x_val must be a float32"):
        Dataset("t", "classification", x, y, x.astype(np.float64), y, n_classes=2)
    with pytest.raises(ValueError, match="y_train has labels outside 0..1"):
        Dataset("t", "classification", x, y + 2, x, y, n_classes=2)
    with pytest.raises(TypeError, match="y_train must be float32 of shape \\(n, k\\)"):
        Dataset("t", "regression", x, y, x, y)
    with pytest.raises(ValueError, match="x_val has example shape \\(3,\\)"):
        Dataset("t", "classification", x, y, np.zeros((4, 3), np.float32), y, n_classes=2)
    with pytest.raises(ValueError, match="y_val must be an array with len\\(x_val\\) = 4"):
        Dataset("t", "classification", x, y, x, y[:3], n_classes=2)


# ----------------------------------------------------------------------------- runge


def test_runge():
    d = runge(500, seed=1, val_fraction=0.2)
    assert d.task == "regression" and d.n_classes is None and d.output_dim == 1
    assert d.x_train.shape == (400, 1) and d.y_train.shape == (400, 1)
    assert d.x_train.dtype == np.float32 and d.y_val.dtype == np.float32
    x = np.concatenate([d.x_train, d.x_val]).astype(np.float64)
    y = np.concatenate([d.y_train, d.y_val]).astype(np.float64)
    assert x.min() >= 0 and x.max() <= 1
    np.testing.assert_allclose(y, 1 / (1 + 25 * (x - 0.5) ** 2), rtol=1e-6)
    assert stats.kstest(x.ravel(), "uniform").pvalue > 1e-3
    np.testing.assert_array_equal(runge(500, seed=1).x_train, d.x_train)
    assert not np.array_equal(runge(500, seed=2).x_train, d.x_train)
    with pytest.raises(ValueError, match="noise must be a finite number >= 0"):
        runge(10, noise=-1)
    with pytest.raises(ValueError, match="n must be a positive integer"):
        runge(0)


def test_runge_noise_is_calibrated():
    d = runge(20000, noise=0.1, seed=4, val_fraction=0.0)
    x, y = d.x_train.astype(np.float64), d.y_train.astype(np.float64)
    r = (y - 1 / (1 + 25 * (x - 0.5) ** 2)).ravel()
    # N(0, 0.1^2): KS on the standardized residuals; mean and std within 4 standard errors
    assert stats.kstest(r / 0.1, "norm").pvalue > 1e-3
    assert abs(r.mean()) < 4 * 0.1 / math.sqrt(r.size)
    assert abs(r.std() - 0.1) < 4 * 0.1 / math.sqrt(2 * r.size)


# ----------------------------------------------------------------------------- Bateman


def bateman_closed_form(rates, t):
    """Bateman (1910): N_k(t) = (prod_{i<k} l_i) sum_{i<=k} exp(-l_i t) / prod_{j<=k, j!=i} (l_j - l_i)."""
    m = len(rates)
    out = np.zeros(m)
    for k in range(m):
        pre = np.prod(rates[:k])
        s = 0.0
        for i in range(k + 1):
            den = np.prod([rates[j] - rates[i] for j in range(k + 1) if j != i])
            s += np.exp(-rates[i] * t) / den
        out[k] = pre * s
    return out


def bateman_ode(rates, t):
    m = len(rates)

    def f(_, N):
        dN = -rates * N
        dN[1:] += rates[:-1] * N[:-1]
        return dN

    y0 = np.zeros(m)
    y0[0] = 1.0
    if t == 0:
        return y0
    sol = solve_ivp(f, (0, t), y0, method="LSODA", rtol=1e-11, atol=1e-13)
    return sol.y[:, -1]


def test_bateman_solution_matches_ode_and_closed_form():
    rng = np.random.default_rng(0)
    for m in (1, 2, 3, 5):
        for _ in range(3):
            rates = rng.uniform(0.1, 2.0, m)
            t = rng.uniform(0, 5)
            N = bateman_solution(rates, t)
            assert N.shape == (m,)
            np.testing.assert_allclose(N, bateman_ode(rates, t), rtol=1e-7, atol=1e-10)
            np.testing.assert_allclose(N, bateman_closed_form(rates, t), rtol=1e-9, atol=1e-12)
    # first nuclide: pure exponential decay
    np.testing.assert_allclose(bateman_solution([0.7, 1.3], 2.0)[0], np.exp(-1.4), rtol=1e-13)


def test_bateman_solution_equal_and_near_equal_rates():
    """Equal rates: N_k(t) = (l t)^(k-1) / (k-1)! exp(-l t); the closed form divides by zero there,
    and near-equal rates (1e-9 apart) must stay continuous with that limit."""
    lam, t = 0.8, 2.5
    ref = np.array([(lam * t) ** k / math.factorial(k) * np.exp(-lam * t) for k in range(4)])
    np.testing.assert_allclose(bateman_solution(np.full(4, lam), t), ref, rtol=1e-12)
    near = lam + np.array([0, 1e-9, 2e-9, 3e-9])
    np.testing.assert_allclose(bateman_solution(near, t), ref, rtol=1e-7)
    np.testing.assert_allclose(bateman_solution(near, t), bateman_ode(near, t), rtol=1e-7)


def test_bateman_solution_batched_and_conservation():
    rng = np.random.default_rng(1)
    rates = rng.uniform(0.1, 2.0, (7, 3))
    t = rng.uniform(0, 5, 7)
    N = bateman_solution(rates, t)
    assert N.shape == (7, 3)
    for i in range(7):
        np.testing.assert_allclose(N[i], bateman_solution(rates[i], t[i]), rtol=1e-14)
    assert np.all(N >= 0) and np.all(N.sum(axis=1) <= 1 + 1e-12)
    # reference library: scipy.linalg.expm of the bidiagonal rate matrix, one chain at a time
    from scipy.linalg import expm

    for i in range(7):
        A = np.diag(-rates[i]) + np.diag(rates[i, :-1], k=-1)
        np.testing.assert_allclose(N[i], expm(A * t[i])[:, 0], rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(bateman_solution(rates, 0.0), np.tile([1.0, 0, 0], (7, 1)))
    # broadcasting one chain against several times
    N2 = bateman_solution(rates[0], t)
    assert N2.shape == (7, 3)
    with pytest.raises(ValueError, match="rates must be finite and positive"):
        bateman_solution([1.0, 0.0], 1.0)
    with pytest.raises(ValueError, match="t must be finite and >= 0"):
        bateman_solution([1.0], -1.0)


def test_bateman_dataset():
    d = bateman(300, n_nuclides=4, rate_range=(0.2, 1.5), t_range=(1.0, 3.0), seed=3)
    assert d.task == "regression" and d.input_shape == (5,) and d.output_dim == 4
    assert d.n_train == 240 and d.n_val == 60
    x = np.concatenate([d.x_train, d.x_val]).astype(np.float64)
    y = np.concatenate([d.y_train, d.y_val]).astype(np.float64)
    assert x[:, :4].min() >= 0.2 and x[:, :4].max() <= 1.5
    assert x[:, 4].min() >= 1.0 and x[:, 4].max() <= 3.0
    for i in range(0, 300, 37):
        np.testing.assert_allclose(y[i], bateman_closed_form(x[i, :4], x[i, 4]), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(bateman(300, n_nuclides=4, rate_range=(0.2, 1.5),
                                          t_range=(1.0, 3.0), seed=3).y_val, d.y_val)
    with pytest.raises(ValueError, match="rate_range must satisfy 0 < low < high"):
        bateman(10, rate_range=(0.0, 1.0))
    with pytest.raises(ValueError, match="t_range must satisfy 0 <= low < high"):
        bateman(10, t_range=(2.0, 1.0))
    with pytest.raises(ValueError, match="n_nuclides must be a positive integer"):
        bateman(10, n_nuclides=0)


# ----------------------------------------------------------------------------- real data (optional)

_REAL = Path(os.environ.get("HSENS_DATA", "/nonexistent")) / "mnist"


@pytest.mark.skipif(
    not (_REAL / "t10k-labels-idx1-ubyte.gz").exists() and not (_REAL / "t10k-labels-idx1-ubyte").exists(),
    reason="real MNIST not in $HSENS_DATA/mnist",
)
def test_real_mnist():
    d = load_mnist(val_fraction=1 / 6)
    assert d.n_train == 50000 and d.n_val == 10000 and len(d.x_test) == 10000
    assert d.input_shape == (28, 28, 1)
    assert np.bincount(d.y_test).tolist()[:2] == [980, 1135]
