"""Data sets: offline (8x8 digits, synthetic regression) and file-based (MNIST, Fashion-MNIST, CIFAR-10).

Every loader returns a :class:`Dataset` of NumPy arrays:

* ``x`` float32 of shape ``(n, *input_shape)``; images are NHWC with pixels in [0, 1]
  (digits ``(n, 8, 8, 1)``, MNIST ``(n, 28, 28, 1)``, CIFAR-10 ``(n, 32, 32, 3)``);
* ``y`` int32 class labels ``(n,)`` for classification, float32 ``(n, k)`` for regression.

The validation set is always held out from the *training* data (``val_fraction``, stratified by
class for classification, seeded); a data set's own test split (MNIST ``t10k``, CIFAR-10
``test_batch``) is exposed as ``x_test`` / ``y_test`` and is never used for validation.

File-based data live under ``data_dir`` (default ``$HSENS_DATA``, else ``~/.cache/hsens_jax``)::

    data_dir/mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]
    data_dir/fashion-mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]
    data_dir/cifar-10-batches-py/{data_batch_1..5,test_batch}   or   data_dir/cifar-10-python.tar.gz

the layout written by ``bash ../shared/fetch-datasets.sh DIR`` (MNIST and Fashion-MNIST).

References
----------
Y. LeCun, L. Bottou, Y. Bengio, P. Haffner, "Gradient-based learning applied to document
recognition", Proc. IEEE 86 (1998) (MNIST and the IDX format).
H. Xiao, K. Rasul, R. Vollgraf, "Fashion-MNIST", arXiv:1708.07747 (2017).
A. Krizhevsky, "Learning multiple layers of features from tiny images", tech. report (2009).
C. Runge, "Ueber empirische Funktionen und die Interpolation zwischen aequidistanten
Ordinaten", Z. Math. Phys. 46 (1901).
H. Bateman, "The solution of a system of differential equations occurring in the theory of
radioactive transformations", Proc. Cambridge Phil. Soc. 15 (1910).
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import os
import pickle
import tarfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "Dataset",
    "load_dataset",
    "load_digits",
    "load_mnist",
    "load_fashion_mnist",
    "load_cifar10",
    "read_idx",
    "runge",
    "bateman",
    "bateman_solution",
    "default_data_dir",
    "DATASETS",
]

DATASETS = ("digits", "mnist", "fashion_mnist", "cifar10", "runge", "bateman")
_TASKS = ("classification", "regression")

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
_IDX_URLS = {
    "mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/ (mirror of http://yann.lecun.com/exdb/mnist/)",
    "fashion-mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/ "
    "(see https://github.com/zalandoresearch/fashion-mnist)",
}


# ----------------------------------------------------------------------------- Dataset


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
      x_test, y_test: the data set's own test split, or None. Never used for validation.

    Properties ``input_shape`` (per-example shape of x), ``output_dim`` (n_classes or k),
    ``n_train``, ``n_val``.
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

    def __post_init__(self) -> None:
        if self.task not in _TASKS:
            raise ValueError(f"Dataset {self.name!r}: task {self.task!r} is not one of {list(_TASKS)}")
        if self.task == "classification":
            if not isinstance(self.n_classes, (int, np.integer)) or self.n_classes < 2:
                raise ValueError(
                    f"Dataset {self.name!r}: n_classes must be an int >= 2 for classification, "
                    f"got {self.n_classes!r}"
                )
        elif self.n_classes is not None:
            raise ValueError(f"Dataset {self.name!r}: n_classes must be None for regression")
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

    def __repr__(self) -> str:
        test = f", n_test={len(self.x_test)}" if self.x_test is not None else ""
        return (
            f"Dataset(name={self.name!r}, task={self.task!r}, input_shape={self.input_shape}, "
            f"output_dim={self.output_dim}, n_train={self.n_train}, n_val={self.n_val}{test})"
        )


def _rngs(seed: int, k: int) -> list[np.random.Generator]:
    """k independent generators derived from one integer seed."""
    return [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(k)]


def _check_fraction(val_fraction: Any) -> float:
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float, np.floating)):
        raise TypeError(f"val_fraction must be a number in [0, 1), got {val_fraction!r}")
    if not 0.0 <= float(val_fraction) < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    return float(val_fraction)


def _split_indices(
    y: np.ndarray, val_fraction: float, rng: np.random.Generator, stratify: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Shuffled (train_idx, val_idx) with round(val_fraction * n) validation examples.

    Stratified: each class c gets floor(f n_c) or ceil(f n_c) validation examples (largest
    remainders take the ceiling, ties broken at random), so class proportions match to within one.
    """
    n = len(y)
    n_val = int(round(val_fraction * n))
    perm = rng.permutation(n)
    if not stratify:
        return perm[n_val:], perm[:n_val]
    classes, inverse = np.unique(y, return_inverse=True)
    counts = np.bincount(inverse, minlength=len(classes))
    exact = counts * val_fraction
    alloc = np.floor(exact).astype(np.int64)
    order = np.lexsort((rng.random(len(classes)), -(exact - alloc)))
    alloc[order[: n_val - int(alloc.sum())]] += 1
    # rank of each permuted example within its class, in permutation order
    cls_p = inverse[perm]
    rank = np.empty(n, dtype=np.int64)
    for c in range(len(classes)):
        mask = cls_p == c
        rank[mask] = np.arange(int(mask.sum()))
    is_val = rank < alloc[cls_p]
    return perm[~is_val], perm[is_val]


def _make_dataset(
    name: str,
    task: str,
    x: np.ndarray,
    y: np.ndarray,
    *,
    n_classes: int | None,
    val_fraction: float,
    seed: int,
    n_train: int | None,
    x_test: np.ndarray | None = None,
    y_test: np.ndarray | None = None,
) -> Dataset:
    """Subsample (``n_train``), then hold out a validation split, then build the Dataset."""
    val_fraction = _check_fraction(val_fraction)
    rng_sub, rng_split = _rngs(seed, 2)
    if n_train is not None:
        if isinstance(n_train, bool) or not isinstance(n_train, (int, np.integer)) or n_train < 1:
            raise ValueError(f"n_train must be a positive integer or None, got {n_train!r}")
        if n_train > len(x):
            raise ValueError(f"n_train={n_train} exceeds the {len(x)} training examples of {name!r}")
        keep = np.sort(rng_sub.choice(len(x), size=int(n_train), replace=False))
        x, y = x[keep], y[keep]
    tr, va = _split_indices(y, val_fraction, rng_split, stratify=task == "classification")
    return Dataset(
        name=name, task=task, x_train=x[tr], y_train=y[tr], x_val=x[va], y_val=y[va],
        n_classes=n_classes, x_test=x_test, y_test=y_test,
    )


def default_data_dir() -> Path:
    """``$HSENS_DATA`` if set, else ``~/.cache/hsens_jax``."""
    env = os.environ.get("HSENS_DATA")
    return Path(env).expanduser() if env else Path("~/.cache/hsens_jax").expanduser()


def _data_dir(data_dir: str | os.PathLike | None) -> Path:
    return default_data_dir() if data_dir is None else Path(data_dir).expanduser()


# ----------------------------------------------------------------------------- digits


def load_digits(*, val_fraction: float = 0.2, seed: int = 0, n_train: int | None = None) -> Dataset:
    """The 8x8 handwritten digits bundled with scikit-learn (1797 images, 10 classes, offline).

    Args:
      val_fraction: fraction held out for validation (stratified).
      seed: seed of the subsample and of the split.
      n_train: if given, subsample this many examples before the split.
    Returns:
      Dataset with x (n, 8, 8, 1) float32 = pixel / 16 in [0, 1], y int32; no test split.
    """
    from sklearn.datasets import load_digits as _sk_load_digits

    X, y = _sk_load_digits(return_X_y=True)
    x = (X.reshape(-1, 8, 8, 1) / 16.0).astype(np.float32)
    return _make_dataset("digits", "classification", x, y.astype(np.int32), n_classes=10,
                         val_fraction=val_fraction, seed=seed, n_train=n_train)


# ----------------------------------------------------------------------------- IDX (MNIST)

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


def _find_idx(folder: Path, stem: str, subdir: str, data_dir: Path) -> Path:
    for candidate in (folder / stem, folder / (stem + ".gz")):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"{subdir} file not found: looked for {folder / stem} and {folder / (stem + '.gz')}. "
        f"Get it with `bash ../shared/fetch-datasets.sh {data_dir}` (from the hsens_jax checkout) "
        f"or download {stem}.gz from {_IDX_URLS[subdir]} into {folder}/"
    )


def _load_idx_pair(folder: Path, split: str, subdir: str, data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    img_path = _find_idx(folder, f"{split}-images-idx3-ubyte", subdir, data_dir)
    lab_path = _find_idx(folder, f"{split}-labels-idx1-ubyte", subdir, data_dir)
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
    root = _data_dir(data_dir)
    folder = root / subdir
    x, y = _load_idx_pair(folder, "train", subdir, root)
    x_test, y_test = _load_idx_pair(folder, "t10k", subdir, root)
    return _make_dataset(name, "classification", x, y, n_classes=10, val_fraction=val_fraction,
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
      FileNotFoundError naming the paths looked for and how to fetch them; ValueError for a
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


# ----------------------------------------------------------------------------- CIFAR-10

_CIFAR_DIR = "cifar-10-batches-py"
_CIFAR_ARCHIVE = "cifar-10-python.tar.gz"
_CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST = "test_batch"

# The only globals a CIFAR batch (a dict holding a uint8 array and a list) may reference:
# unpickling anything else is refused, so a hostile file cannot run code.
_SAFE_GLOBALS = {
    ("_codecs", "encode"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.numeric", "_frombuffer"),
}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if module.startswith("numpy.core."):  # pickles written by numpy < 2
            module = "numpy._core." + module[len("numpy.core."):]
        if (module, name) not in _SAFE_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        return super().find_class(module, name)


def _parse_cifar_batch(raw: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        d = _SafeUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as e:  # UnpicklingError, EOFError, ValueError, ... all mean a corrupt file
        raise ValueError(f"{where}: unpickling error ({type(e).__name__}: {e})") from None
    if not isinstance(d, dict):
        raise ValueError(f"{where}: expected a pickled dict, got {type(d).__name__}")
    data = d.get(b"data", d.get("data"))
    labels = d.get(b"labels", d.get("labels"))
    if data is None or labels is None:
        raise ValueError(f"{where}: missing key b'data' or b'labels' (keys: {list(d)})")
    data = np.asarray(data)
    labels = np.asarray(labels)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise ValueError(f"{where}: wrong size: b'data' must be uint8 of shape (n, 3072), got "
                         f"{data.dtype} {data.shape}")
    if labels.ndim != 1 or len(labels) != len(data):
        raise ValueError(f"{where}: count mismatch: {len(data)} images but {labels.size} labels")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"{where}: labels outside 0..9")
    x = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # CHW -> HWC
    return (x / np.float32(255.0)).astype(np.float32), labels.astype(np.int32)


def _cifar_batches(root: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    folder, archive = root / _CIFAR_DIR, root / _CIFAR_ARCHIVE
    names = _CIFAR_TRAIN + (_CIFAR_TEST,)
    if folder.is_dir():
        out = {}
        for name in names:
            path = folder / name
            if not path.is_file():
                raise FileNotFoundError(
                    f"CIFAR-10 file not found: {path}. Download {CIFAR10_URL} into {root}/ "
                    f"(the archive is read directly) or extract it there"
                )
            out[name] = _parse_cifar_batch(path.read_bytes(), str(path))
        return out
    if archive.is_file():
        out = {}
        try:
            with tarfile.open(archive, "r:gz") as tar:
                for name in names:
                    member = f"{_CIFAR_DIR}/{name}"
                    try:
                        f = tar.extractfile(member)
                    except KeyError:
                        f = None
                    if f is None:
                        raise ValueError(f"{archive}: member {member} is missing from the archive")
                    out[name] = _parse_cifar_batch(f.read(), f"{archive}:{member}")
        except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
            raise ValueError(f"{archive}: corrupt archive ({type(e).__name__}: {e})") from None
        return out
    raise FileNotFoundError(
        f"CIFAR-10 not found: looked for {folder}/ and {archive}. Download {CIFAR10_URL} "
        f"into {root}/ (e.g. `curl -L -o {archive} {CIFAR10_URL}`)"
    )


def load_cifar10(
    data_dir: str | os.PathLike | None = None,
    *,
    val_fraction: float = 0.2,
    seed: int = 0,
    n_train: int | None = None,
) -> Dataset:
    """CIFAR-10, python version: ``data_dir/cifar-10-batches-py/`` or ``data_dir/cifar-10-python.tar.gz``.

    Each batch is a pickled dict with ``b"data"`` (n, 3072) uint8 in CHW order and ``b"labels"``;
    it is unpickled with a restricted unpickler (numpy arrays only). The extracted folder is used
    when present, else the archive is read in place.

    Args:
      data_dir: root folder (default ``$HSENS_DATA``, else ``~/.cache/hsens_jax``).
      val_fraction, seed, n_train: as in :func:`load_mnist` (over the 50k training images).
    Returns:
      Dataset with x (n, 32, 32, 3) float32 = pixel / 255, y int32 in 0..9, test_batch as test.
    Raises:
      FileNotFoundError naming the paths looked for and the download URL; ValueError naming the
      file for a corrupt batch (unpickling error, wrong size, count mismatch) or archive.
    """
    root = _data_dir(data_dir)
    batches = _cifar_batches(root)
    x = np.concatenate([batches[n][0] for n in _CIFAR_TRAIN])
    y = np.concatenate([batches[n][1] for n in _CIFAR_TRAIN])
    x_test, y_test = batches[_CIFAR_TEST]
    return _make_dataset("cifar10", "classification", x, y, n_classes=10,
                         val_fraction=val_fraction, seed=seed, n_train=n_train,
                         x_test=x_test, y_test=y_test)


# ----------------------------------------------------------------------------- synthetic regression


def _positive_int(name: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{name} must be a positive integer, got {v!r}")
    return int(v)


def runge(
    n: int = 1000,
    *,
    noise: float = 0.0,
    seed: int = 0,
    val_fraction: float = 0.2,
    n_train: int | None = None,
) -> Dataset:
    """Runge's function ``y = 1 / (1 + 25 (x - 0.5)^2)`` on x ~ U[0, 1] (Runge 1901).

    Args:
      n: number of examples before the validation split.
      noise: standard deviation of additive Gaussian noise on y (>= 0).
      seed: seed of x, of the noise and of the split.
      val_fraction: fraction held out for validation.
      n_train: optional subsample before the split.
    Returns:
      regression Dataset, x (n, 1) float32, y (n, 1) float32, no test split.
    """
    n = _positive_int("n", n)
    if not np.isfinite(noise) or noise < 0:
        raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")
    rng_x, rng_noise, rng_split = _rngs(seed, 3)
    x = rng_x.random((n, 1))
    y = 1.0 / (1.0 + 25.0 * (x - 0.5) ** 2)
    if noise > 0:
        y = y + noise * rng_noise.standard_normal(y.shape)
    split_seed = int(rng_split.integers(2**63))
    return _make_dataset("runge", "regression", x.astype(np.float32), y.astype(np.float32),
                         n_classes=None, val_fraction=val_fraction, seed=split_seed,
                         n_train=n_train)


def _expm_batched(M: np.ndarray, order: int = 18) -> np.ndarray:
    """exp of a stack of small matrices (..., m, m): scaling and squaring with a Taylor series.

    Each matrix is scaled by 2^-s so its infinity norm is <= 1/2 (Taylor remainder of order 18
    below 1e-22 relative), then squared s times; all in vectorized float64 (scipy's expm loops
    over triangular stacks in Python, ~3 ms per matrix).
    """
    norm = np.abs(M).sum(axis=-1).max(axis=-1)
    s = np.maximum(0, np.ceil(np.log2(np.maximum(norm, 1e-300) / 0.5))).astype(np.int64)
    X = M / np.ldexp(1.0, s)[..., None, None]
    eye = np.broadcast_to(np.eye(M.shape[-1]), M.shape)
    E = eye.copy()
    for k in range(order, 0, -1):  # Horner: I + X/1 (I + X/2 (I + ...))
        E = eye + (X @ E) / k
    for j in range(int(s.max(initial=0))):
        E = np.where((j < s)[..., None, None], E @ E, E)
    return E


def bateman_solution(rates: Any, t: Any) -> np.ndarray:
    """Abundances of a radioactive decay chain (Bateman 1910), float64.

    Solves ``dN_1/dt = -l_1 N_1``, ``dN_i/dt = l_{i-1} N_{i-1} - l_i N_i`` with ``N_1(0) = 1``,
    ``N_i(0) = 0``, as ``N(t) = expm(A t) e_1`` for the lower-bidiagonal rate matrix A (vectorized
    scaling and squaring), which stays exact when rates coincide or nearly coincide (where the
    closed Bateman formula divides by zero or cancels catastrophically).

    Args:
      rates: (..., m) positive decay rates l_1..l_m (1 / time unit).
      t: time(s) >= 0, broadcastable against ``rates[..., 0]``.
    Returns:
      (..., m) abundances N_1(t)..N_m(t) (clipped at 0 against round-off).
    """
    rates = np.asarray(rates, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    if rates.ndim < 1 or rates.shape[-1] < 1:
        raise ValueError(f"rates must have shape (..., m) with m >= 1, got {rates.shape}")
    if not np.all(np.isfinite(rates)) or np.any(rates <= 0):
        raise ValueError("rates must be finite and positive")
    if not np.all(np.isfinite(t)) or np.any(t < 0):
        raise ValueError("t must be finite and >= 0")
    batch = np.broadcast_shapes(rates.shape[:-1], t.shape)
    m = rates.shape[-1]
    rates = np.broadcast_to(rates, batch + (m,))
    t = np.broadcast_to(t, batch)
    A = np.zeros(batch + (m, m))
    idx = np.arange(m)
    A[..., idx, idx] = -rates
    A[..., idx[1:], idx[:-1]] = rates[..., :-1]
    N = _expm_batched(A * t[..., None, None])[..., :, 0]
    return np.maximum(N, 0.0)


def bateman(
    n: int = 2000,
    *,
    n_nuclides: int = 3,
    rate_range: tuple[float, float] = (0.1, 2.0),
    t_range: tuple[float, float] = (0.0, 5.0),
    noise: float = 0.0,
    seed: int = 0,
    val_fraction: float = 0.2,
    n_train: int | None = None,
) -> Dataset:
    """Decay-chain regression: inputs (l_1..l_m, t) uniform, outputs N_1(t)..N_m(t).

    Args:
      n: number of examples before the validation split.
      n_nuclides: chain length m.
      rate_range: (low, high) of the uniform decay rates, ``0 < low < high``.
      t_range: (low, high) of the uniform time, ``0 <= low < high``.
      noise: standard deviation of additive Gaussian noise on the outputs.
      seed, val_fraction, n_train: as in :func:`runge`.
    Returns:
      regression Dataset, x (n, m + 1) float32 = (rates, t), y (n, m) float32 (see
      :func:`bateman_solution`).
    """
    n = _positive_int("n", n)
    m = _positive_int("n_nuclides", n_nuclides)
    (r0, r1), (t0, t1) = rate_range, t_range
    if not (np.isfinite(r0) and np.isfinite(r1) and 0 < r0 < r1):
        raise ValueError(f"rate_range must satisfy 0 < low < high, got {rate_range!r}")
    if not (np.isfinite(t0) and np.isfinite(t1) and 0 <= t0 < t1):
        raise ValueError(f"t_range must satisfy 0 <= low < high, got {t_range!r}")
    if not np.isfinite(noise) or noise < 0:
        raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")
    rng_x, rng_noise, rng_split = _rngs(seed, 3)
    rates = rng_x.uniform(r0, r1, (n, m))
    t = rng_x.uniform(t0, t1, n)
    y = bateman_solution(rates, t)
    if noise > 0:
        y = y + noise * rng_noise.standard_normal(y.shape)
    x = np.concatenate([rates, t[:, None]], axis=1)
    split_seed = int(rng_split.integers(2**63))
    return _make_dataset("bateman", "regression", x.astype(np.float32), y.astype(np.float32),
                         n_classes=None, val_fraction=val_fraction, seed=split_seed,
                         n_train=n_train)


# ----------------------------------------------------------------------------- dispatch


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
    """
    common = dict(val_fraction=val_fraction, seed=seed, n_train=n_train)
    given = name
    name = str(name).strip().lower().replace("-", "_")
    name = {"cifar_10": "cifar10"}.get(name, name)
    if name not in DATASETS:
        raise ValueError(f"unknown data set {given!r}; valid names: {list(DATASETS)}")
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
