"""hsens_jax: which hyperparameters do deep-learning results depend on, and by how much.

The package top shows the pipeline's stages; the data flow is one-directional:

    space -> design -> engine (sweep) -> results -> analysis -> report

* :mod:`hsens_jax.space`        the search space: hyperparameters and their conditions
* :mod:`hsens_jax.design`       designs drawn from a space (grid, random, Sobol, Halton, LHS)
* :mod:`hsens_jax.data`         offline, file-based and user data sets; cross-validation folds
* :mod:`hsens_jax.engine`       the training engine, whose one door is :class:`hsens_jax.Model`
                               (a user's Flax module, or the built-in MLP and CNN)
* :mod:`hsens_jax.results`      run directories that survive being killed; loading results
* :mod:`hsens_jax.analysis`     objectives with directions -> HSIC sensitivity reports
* :mod:`hsens_jax.sensitivity`  the estimators: HSIC, Sobol, Morris, one-at-a-time, DGSM
* :mod:`hsens_jax.objective`    trained networks as functions of hyperparameters (for Sobol, Morris...)
* :mod:`hsens_jax.hypergrad`    derivatives of validation losses through training
* :mod:`hsens_jax.plotting`, :mod:`hsens_jax.config`, :mod:`hsens_jax.cli`   reports and the command line
"""

__version__ = "0.1.0"

from hsens_jax.analysis import SensitivityReport, analyze
from hsens_jax.compile_cache import compilation_cache_dir, disable_compilation_cache, enable_compilation_cache
from hsens_jax.config import SweepConfig
from hsens_jax.data import Dataset, load_dataset
from hsens_jax.engine import CNN, MLP, Dropout, Model, ModelError, run_sweep, use_cpu_cores
from hsens_jax.objective import sweep_objective
from hsens_jax.results import RunDirectory, SweepResult, load_results
from hsens_jax.space import Bool, Categorical, Float, Int, Space, Threshold
from hsens_jax.search import optimize
from hsens_jax import design, encoding

__all__ = [
    "Bool", "CNN", "Categorical", "Dataset", "Dropout", "Float", "Int", "MLP", "Model", "ModelError", "RunDirectory",
    "SensitivityReport", "Space", "SweepConfig", "Threshold", "SweepResult", "analyze", "load_dataset", "load_results",
    "compilation_cache_dir", "design", "disable_compilation_cache", "enable_compilation_cache", "encoding",
    "optimize", "run_sweep", "sweep_objective", "use_cpu_cores",
]
