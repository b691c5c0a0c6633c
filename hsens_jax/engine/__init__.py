"""The training engine: one room with one door, the model interface.

* :mod:`~hsens_jax.engine.model`            :class:`Model`, the interface a Flax module plugs into
* :mod:`~hsens_jax.engine.builtin`          the built-in masked MLP and CNN (instances of it)
* :mod:`~hsens_jax.engine.hyperparameters`  who reads which hyperparameter; static or traced
* :mod:`~hsens_jax.engine.optimizers`       the engine's optimizer choice; :mod:`~hsens_jax.engine.adam`
* :mod:`~hsens_jax.engine.train`            init / step / finalize, one ``lax.scan`` loop
* :mod:`~hsens_jax.engine.sweep`            groups, chunks, sharding, resume
* :mod:`~hsens_jax.engine.devices`          local devices and CPU cores
* :mod:`~hsens_jax.engine.counters`         counter-based random draws
"""

from hsens_jax.engine.builtin import CNN, MLP, MaskedNet, sized_model
from hsens_jax.engine.devices import cpu_cores, use_cpu_cores
from hsens_jax.engine.hyperparameters import HyperparameterWarning
from hsens_jax.engine.model import Dropout, Model, ModelError, accuracy, cross_entropy, mean_squared_error
from hsens_jax.engine.optimizers import OPTIMIZERS, SCHEDULES, make_optimizer
from hsens_jax.engine.sweep import as_model, plan_sweep, program, run_sweep
from hsens_jax.engine.train import (DIVERGENCE_REASONS, Patience, TrainData, TrainSpec, advance, hp_from_values,
                                    init_carry, prepare_data)

__all__ = [
    "CNN", "DIVERGENCE_REASONS", "Dropout", "HyperparameterWarning", "MLP", "MaskedNet", "Model", "ModelError",
    "OPTIMIZERS", "Patience", "SCHEDULES", "advance", "init_carry", "TrainData", "TrainSpec", "accuracy", "as_model", "cpu_cores", "cross_entropy",
    "hp_from_values", "make_optimizer", "mean_squared_error", "plan_sweep", "prepare_data", "program", "run_sweep",
    "sized_model", "use_cpu_cores",
]
