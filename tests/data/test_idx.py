"""Tests for hsens_jax.data.idx: the IDX format and the MNIST / Fashion-MNIST loaders, on fixtures."""

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest

from hsens_jax.data import Dataset, default_data_dir, load_dataset, load_fashion_mnist, load_mnist, read_idx
from tests.data.fixtures import idx_bytes, image_ids, write_idx, write_mnist

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
    assert f"`hsens data fetch mnist --dir {tmp_path}`" in msg  # the command, and the directory searched
    assert f"data directory {tmp_path})" in msg
    assert "https://ossci-datasets.s3.amazonaws.com/mnist/" in msg
    assert "../shared" not in msg and "fetch-datasets" not in msg
    # one file missing among present ones: names that one
    write_mnist(tmp_path)
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte.gz"):
        load_mnist(tmp_path)
    with pytest.raises(FileNotFoundError, match="fashion-mnist.*`hsens data fetch fashion-mnist --dir "):
        load_fashion_mnist(tmp_path)


def test_missing_file_message_in_the_default_directory(tmp_path, monkeypatch):
    """Without --dir when the searched directory is the default one ($HSENS_DATA)."""
    monkeypatch.setenv("HSENS_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError) as info:
        load_dataset("fashion_mnist")
    msg = str(info.value)
    assert "`hsens data fetch fashion-mnist`" in msg and f"data directory {tmp_path})" in msg


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
