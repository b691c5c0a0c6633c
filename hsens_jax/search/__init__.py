"""Adaptive search: designs that learn from the runs already trained, batch by batch.

* :mod:`hsens_jax.search.optuna`   batched Bayesian optimization through Optuna (TPE, GP,
                                   CMA-ES), studies in Optuna storage, ``to_optuna`` /
                                   ``from_optuna``, an HSIC importance evaluator
* :mod:`hsens_jax.search.halving`  successive halving, Hyperband and ASHA over a vectorized
                                   population (stopped runs leave the compiled chunks)
* :mod:`hsens_jax.search.sklearn`  ``GridSearchCV`` / ``RandomizedSearchCV`` front ends for
                                   scikit-learn's ``MLPClassifier`` / ``MLPRegressor``

Optuna is an optional dependency (``pip install 'hsens_jax[search]'``): importing this package
does not import it; the functions that need it do, with an error that says how to install it.
"""

from hsens_jax.search.halving import asha, hyperband, successive_halving
from hsens_jax.search.optuna import from_optuna, optimize, to_optuna

__all__ = ["asha", "from_optuna", "hyperband", "optimize", "successive_halving", "to_optuna"]
