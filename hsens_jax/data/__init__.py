"""Data sets: offline (8x8 digits, synthetic regression), file-based (MNIST, Fashion-MNIST,
CIFAR-10), and the user's own (arrays, ``.npz`` / ``.npy`` / CSV files).

Every loader returns a :class:`Dataset` of NumPy arrays:

* ``x`` float32 of shape ``(n, *input_shape)``; images are NHWC with pixels in [0, 1]
  (digits ``(n, 8, 8, 1)``, MNIST ``(n, 28, 28, 1)``, CIFAR-10 ``(n, 32, 32, 3)``);
* ``y`` int32 class labels ``(n,)`` for classification, float32 ``(n, k)`` for regression.

The validation set is held out from the *training* data (``val_fraction``, stratified by class
for classification, seeded) unless one is given; a data set's own test split (MNIST ``t10k``,
CIFAR-10 ``test_batch``, or ``x_test`` / ``y_test`` of one's own) is exposed as ``x_test`` /
``y_test`` and is never used for validation. Cross-validation folds (:meth:`Dataset.folds`)
cut the pool of train followed by validation rows, as scikit-learn's ``(Stratified)KFold``.

File-based data live under ``data_dir`` (default ``$HSENS_DATA``, else ``~/.cache/hsens_jax``),
in the layout ``hsens data fetch mnist|fashion-mnist|cifar10`` writes (:mod:`.layout`).

Modules: :mod:`.dataset` (the Dataset), :mod:`.split` (validation hold-out), :mod:`.arrays`
(from one's own arrays), :mod:`.files` (from one's own files), :mod:`.folds` (cross-validation),
:mod:`.digits`, :mod:`.idx` (MNIST, Fashion-MNIST), :mod:`.cifar`, :mod:`.synthetic` (Runge,
Bateman), :mod:`.registry` (:func:`load_dataset` by name), :mod:`.layout` (the data directory),
:mod:`.fetch` (downloads).
"""

from hsens_jax.data.arrays import infer_task
from hsens_jax.data.cifar import load_cifar10
from hsens_jax.data.dataset import Dataset
from hsens_jax.data.digits import load_digits
from hsens_jax.data.fetch import FetchError, fetch_dataset
from hsens_jax.data.files import load_file
from hsens_jax.data.idx import load_fashion_mnist, load_mnist, read_idx
from hsens_jax.data.layout import default_data_dir
from hsens_jax.data.registry import DATASETS, load_dataset
from hsens_jax.data.synthetic import bateman, bateman_solution, runge

__all__ = [
    "Dataset",
    "load_dataset",
    "load_file",
    "load_digits",
    "load_mnist",
    "load_fashion_mnist",
    "load_cifar10",
    "read_idx",
    "runge",
    "bateman",
    "bateman_solution",
    "default_data_dir",
    "fetch_dataset",
    "FetchError",
    "infer_task",
    "DATASETS",
]
