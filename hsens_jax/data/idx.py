"""MNIST and Fashion-MNIST: the IDX file format and the two loaders.

References
----------
Y. LeCun, L. Bottou, Y. Bengio, P. Haffner, "Gradient-based learning applied to document
recognition", Proc. IEEE 86 (1998) (MNIST and the IDX format).
H. Xiao, K. Rasul, R. Vollgraf, "Fashion-MNIST", arXiv:1708.07747 (2017).
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from hsens_jax.data.dataset import Dataset
from hsens_jax.data.layout import fetch_command, resolve_data_dir
from hsens_jax.data.split import holdout_dataset

_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _read_bytes(path: Path) -> bytes:
    """File contents, gunzipped when the file starts with the gzip magic (whatever its name)."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise ValueError(f"{path}: corrupt gzip stream ({e})") from None
    return raw


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Parse an IDX file (the MNIST format), raw or gzipped.

    Format: 2 zero bytes, a dtype code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
    0x0D float32, 0x0E float64), the number of dimensions d, then d big-endian uint32 sizes, then
    the data, big-endian, C order.

    Args:
      path: the file; gzip is detected from its content, not its name.
    Returns:
      ndarray of the stored shape, native byte order.
    Raises:
      FileNotFoundError if the file does not exist; ValueError naming the path for a bad magic
      number, an unknown dtype code, a truncated header or data, or trailing bytes.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file not found: {path}")
    buf = _read_bytes(path)
    if len(buf) < 4:
        raise ValueError(f"{path}: truncated IDX header ({len(buf)} bytes)")
    if buf[0] != 0 or buf[1] != 0:
        raise ValueError(
            f"{path}: bad IDX magic number 0x{buf[:4].hex()} (must start with two zero bytes)"
        )
    code, ndim = buf[2], buf[3]
    if code not in _IDX_DTYPES:
        raise ValueError(f"{path}: bad IDX magic number 0x{buf[:4].hex()} (unknown dtype code 0x{code:02x})")
    if ndim == 0:
        raise ValueError(f"{path}: IDX header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(buf) < header:
        raise ValueError(f"{path}: truncated IDX header: {ndim} dimensions need {header} bytes")
    dims = tuple(int(d) for d in np.frombuffer(buf, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    got = len(buf) - header
    if got < expected:
        raise ValueError(
            f"{path}: truncated IDX data: shape {dims} needs {expected} bytes, file has {got}"
        )
    if got > expected:
        raise ValueError(
            f"{path}: wrong size: shape {dims} needs {expected} data bytes, file has {got} "
            f"({got - expected} trailing bytes)"
        )
    arr = np.frombuffer(buf, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="))


def _find_idx(folder: Path, stem: str, fetch_name: str, data_dir: Path) -> Path:
    for candidate in (folder / stem, folder / (stem + ".gz")):
        if candidate.is_file():
            return candidate
    from hsens_jax.data.fetch import SOURCES

    raise FileNotFoundError(
        f"{fetch_name} file not found: looked for {folder / stem} and {folder / (stem + '.gz')} "
        f"(data directory {data_dir}). Run `{fetch_command(fetch_name, data_dir)}` to download "
        f"the data set from {SOURCES[fetch_name].base_url}"
    )


def _load_idx_pair(folder: Path, split: str, fetch_name: str, data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    img_path = _find_idx(folder, f"{split}-images-idx3-ubyte", fetch_name, data_dir)
    lab_path = _find_idx(folder, f"{split}-labels-idx1-ubyte", fetch_name, data_dir)
    images, labels = read_idx(img_path), read_idx(lab_path)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise ValueError(
            f"{img_path}: expected uint8 images of shape (n, rows, cols), got {images.dtype} "
            f"{images.shape}"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise ValueError(f"{lab_path}: expected uint8 labels of shape (n,), got {labels.dtype} {labels.shape}")
    if len(images) != len(labels):
        raise ValueError(
            f"count mismatch: {img_path} holds {len(images)} images but {lab_path} holds "
            f"{len(labels)} labels"
        )
    if labels.size and labels.max() > 9:
        raise ValueError(f"{lab_path}: label {int(labels.max())} outside 0..9")
    x = (images[..., None] / np.float32(255.0)).astype(np.float32)
    return x, labels.astype(np.int32)


def _load_idx_dataset(name: str, subdir: str, data_dir, val_fraction, seed, n_train) -> Dataset:
    root = resolve_data_dir(data_dir)
    folder = root / subdir
    x, y = _load_idx_pair(folder, "train", subdir, root)
    x_test, y_test = _load_idx_pair(folder, "t10k", subdir, root)
    return holdout_dataset(name, "classification", x, y, n_classes=10, val_fraction=val_fraction,
                           seed=seed, n_train=n_train, x_test=x_test, y_test=y_test)


def load_mnist(
    data_dir: str | os.PathLike | None = None,
    *,
    val_fraction: float = 0.2,
    seed: int = 0,
    n_train: int | None = None,
) -> Dataset:
    """MNIST from IDX files in ``data_dir/mnist/`` (raw or .gz).

    Args:
      data_dir: root folder (default ``$HSENS_DATA``, else ``~/.cache/hsens_jax``).
      val_fraction: fraction of the 60k training images held out for validation (stratified).
      seed: seed of the subsample and the split.
      n_train: if given, subsample this many training images before the split.
    Returns:
      Dataset with x (n, 28, 28, 1) float32 = pixel / 255, y int32 in 0..9, and the t10k split
      as x_test / y_test.
    Raises:
      FileNotFoundError naming the paths looked for and the command that downloads them
      (``hsens data fetch mnist``); ValueError for a
      corrupt file (see :func:`read_idx`) or an image/label count mismatch.
    """
    return _load_idx_dataset("mnist", "mnist", data_dir, val_fraction, seed, n_train)


def load_fashion_mnist(
    data_dir: str | os.PathLike | None = None,
    *,
    val_fraction: float = 0.2,
    seed: int = 0,
    n_train: int | None = None,
) -> Dataset:
    """Fashion-MNIST from IDX files in ``data_dir/fashion-mnist/``; otherwise as :func:`load_mnist`."""
    return _load_idx_dataset("fashion_mnist", "fashion-mnist", data_dir, val_fraction, seed, n_train)
