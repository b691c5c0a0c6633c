"""hsens_jax: which hyperparameters do deep-learning results depend on, and by how much.

The data flow is one-directional:

    space -> design -> sweep -> results -> analysis -> report

* :mod:`hsens_jax.space`        search spaces, designs and encodings
* :mod:`hsens_jax.data`         offline and file-based data sets
* :mod:`hsens_jax.models`       Flax models whose architecture varies inside one program
* :mod:`hsens_jax.optimizers`   one optax optimizer whose kind is a hyperparameter
* :mod:`hsens_jax.train`        the pure training step and the ``lax.scan`` loop
* :mod:`hsens_jax.sweep`        vmapped, chunked, sharded, resumable sweeps
* :mod:`hsens_jax.host`         one JAX device per CPU core, for sweeps on a CPU
* :mod:`hsens_jax.results`      run directories that survive being killed
* :mod:`hsens_jax.sensitivity`  HSIC, Sobol, Morris, one-at-a-time, DGSM
* :mod:`hsens_jax.hypergrad`    derivatives of validation loss through training
"""

__version__ = "0.1.0"

from hsens_jax.analysis import SensitivityReport, analyze
from hsens_jax.compile_cache import compilation_cache_dir, disable_compilation_cache, enable_compilation_cache
from hsens_jax.config import SweepConfig
from hsens_jax.data import Dataset, load_dataset
from hsens_jax.host import use_cpu_cores
from hsens_jax.models import CNN, MLP, ModelSpec
from hsens_jax.objective import sweep_objective
from hsens_jax.optimizers import make_optimizer
from hsens_jax.results import RunDirectory, SweepResult, load_results
from hsens_jax.space import Bool, Categorical, Float, Int, Space
from hsens_jax.sweep import run_sweep
from hsens_jax.train import TrainSpec, hp_from_values, prepare_data

__all__ = [
    "SensitivityReport", "analyze", "Bool", "CNN", "Categorical", "Dataset", "Float", "Int", "MLP", "ModelSpec", "RunDirectory", "Space",
    "SweepConfig", "SweepResult", "TrainSpec", "hp_from_values", "load_dataset", "load_results",
    "make_optimizer", "prepare_data", "run_sweep", "sweep_objective", "use_cpu_cores",
    "compilation_cache_dir", "disable_compilation_cache", "enable_compilation_cache",
]
