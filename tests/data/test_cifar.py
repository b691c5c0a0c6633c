"""Tests for hsens_jax.data.cifar: CIFAR-10 batches from a folder or the archive, on fixtures."""

import io
import os
import pickle
import tarfile

import numpy as np
import pytest

from hsens_jax.data import load_cifar10, load_dataset
from tests.data.fixtures import cifar_batch, write_cifar

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
    assert f"`hsens data fetch cifar10 --dir {tmp_path}`" in msg
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

