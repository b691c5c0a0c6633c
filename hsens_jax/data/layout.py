"""Where file-based data sets live on disk: the data directory and the files each data set needs.

The loaders (:mod:`hsens_jax.data.idx`, :mod:`hsens_jax.data.cifar`) read this layout and
``hsens data fetch`` (:mod:`hsens_jax.data.fetch`) writes it::

    data_dir/mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]
    data_dir/fashion-mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]
    data_dir/cifar-10-batches-py/{data_batch_1..5,test_batch}   or   data_dir/cifar-10-python.tar.gz

``data_dir`` defaults to ``$HSENS_DATA``, else ``~/.cache/hsens_jax``.
"""

from __future__ import annotations

import os
from pathlib import Path

IDX_STEMS = tuple(f"{split}-{kind}-ubyte" for split in ("train", "t10k") for kind in ("images-idx3", "labels-idx1"))
"""The four IDX files of MNIST and Fashion-MNIST, without the optional ``.gz``."""

CIFAR_DIR = "cifar-10-batches-py"
CIFAR_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST = "test_batch"

FETCHABLE = {"mnist": "mnist", "fashion-mnist": "fashion-mnist", "cifar10": ""}
"""Names ``hsens data fetch`` accepts -> the subdirectory of ``data_dir`` their files go to."""


def default_data_dir() -> Path:
    """``$HSENS_DATA`` if set, else ``~/.cache/hsens_jax``."""
    env = os.environ.get("HSENS_DATA")
    return Path(env).expanduser() if env else Path("~/.cache/hsens_jax").expanduser()


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path:
    """``data_dir`` as a Path (``~`` expanded), or :func:`default_data_dir` when None."""
    return default_data_dir() if data_dir is None else Path(data_dir).expanduser()


def fetch_command(name: str, data_dir: Path) -> str:
    """The shell command that downloads data set ``name`` into ``data_dir``."""
    if data_dir == default_data_dir():
        return f"hsens data fetch {name}"
    return f"hsens data fetch {name} --dir {data_dir}"
