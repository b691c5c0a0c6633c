"""Fixture writers for the data tests: IDX and CIFAR-10 files produced by independent writers
(struct / pickle / tarfile), not by the code under test."""

import gzip
import io
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np

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
