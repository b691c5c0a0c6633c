"""CIFAR-10 (python version): batches read from the extracted folder or the archive in place.

Reference: A. Krizhevsky, "Learning multiple layers of features from tiny images", tech. report
(2009).
"""

from __future__ import annotations

import io
import os
import pickle
import tarfile
import zlib
from pathlib import Path

import numpy as np

from hsens_jax.data.dataset import Dataset
from hsens_jax.data.layout import CIFAR_ARCHIVE, CIFAR_DIR, CIFAR_TEST, CIFAR_TRAIN, fetch_command, resolve_data_dir
from hsens_jax.data.split import holdout_dataset

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
    folder, archive = root / CIFAR_DIR, root / CIFAR_ARCHIVE
    names = CIFAR_TRAIN + (CIFAR_TEST,)
    if folder.is_dir():
        out = {}
        for name in names:
            path = folder / name
            if not path.is_file():
                raise FileNotFoundError(
                    f"CIFAR-10 file not found: {path} (the folder {folder} is incomplete). Remove "
                    f"the folder and run `{fetch_command('cifar10', root)}` to download the archive "
                    f"(read in place)"
                )
            out[name] = _parse_cifar_batch(path.read_bytes(), str(path))
        return out
    if archive.is_file():
        out = {}
        try:
            with tarfile.open(archive, "r:gz") as tar:
                for name in names:
                    member = f"{CIFAR_DIR}/{name}"
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
    from hsens_jax.data.fetch import SOURCES

    raise FileNotFoundError(
        f"CIFAR-10 not found: looked for {folder}/ and {archive} (data directory {root}). Run "
        f"`{fetch_command('cifar10', root)}` to download {SOURCES['cifar10'].base_url}{CIFAR_ARCHIVE}"
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
      FileNotFoundError naming the paths looked for and the command that downloads them
      (``hsens data fetch cifar10``); ValueError naming the
      file for a corrupt batch (unpickling error, wrong size, count mismatch) or archive.
    """
    root = resolve_data_dir(data_dir)
    batches = _cifar_batches(root)
    x = np.concatenate([batches[n][0] for n in CIFAR_TRAIN])
    y = np.concatenate([batches[n][1] for n in CIFAR_TRAIN])
    x_test, y_test = batches[CIFAR_TEST]
    return holdout_dataset("cifar10", "classification", x, y, n_classes=10,
                           val_fraction=val_fraction, seed=seed, n_train=n_train,
                           x_test=x_test, y_test=y_test)
