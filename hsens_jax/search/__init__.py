"""Adaptive search: designs that learn from the runs already trained, batch by batch.

* :mod:`hsens_jax.search.optuna`   batched Bayesian optimization through Optuna (TPE, GP,
                                   CMA-ES), studies in Optuna storage, ``to_optuna`` /
                                   ``from_optuna``, an HSIC importance evaluator
* :mod:`hsens_jax.search.halving`  successive halving, Hyperband and ASHA over a vectorized
                                   population (stopped runs leave the compiled chunks)
* :mod:`hsens_jax.search.sklearn`  ``GridSearchCV`` / ``RandomizedSearchCV`` front ends for
                                   scikit-learn's ``MLPClassifier`` / ``MLPRegressor``

Optuna is an optional dependency (``pip install 'hsens_jax[search]'``), imported only by
:mod:`hsens_jax.search.optuna` when it is used.
"""

from hsens_jax.search.halving import asha, hyperband, successive_halving


def optimize(*args, **kwargs):
    """Batched Bayesian optimization of a model's hyperparameters with Optuna: see
    :func:`hsens_jax.search.optuna.optimize` (Optuna is imported only now)."""
    from hsens_jax.search.optuna import optimize as _optimize

    return _optimize(*args, **kwargs)


__all__ = ["asha", "hyperband", "optimize", "successive_halving"]
