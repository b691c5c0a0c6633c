"""Trained-network objectives as functions of hyperparameters.

:func:`sweep_objective` turns "train this model on this data and report the validation
loss" into a plain function ``f(configs) -> (N,)`` (or ``(N, k)`` for several
objectives) that trains all N configurations in one vectorized sweep. It is what the
design-based estimators of :mod:`hsens_jax.sensitivity` evaluate when they are given a
search space: ``sobol(f, space, n)``, ``one_at_a_time(f, space, base)``,
``morris(f, space, r)``.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np

from hsens_jax.results import reduce_seeds
from hsens_jax.space import Space
from hsens_jax.engine.sweep import run_sweep


def sweep_objective(
    dataset,
    space: Space,
    *,
    objective: str | Sequence[str] = "final_val_loss",
    fixed: Mapping[str, Any] | None = None,
    seeds: Sequence[int] = (0,),
    reduce: str = "mean",
    diverged_value: float | None = None,
    **sweep_kwargs,
) -> Callable[[Mapping[str, np.ndarray]], np.ndarray]:
    """A function that trains configurations and returns their objective.

    Args:
      dataset, space, fixed, seeds: as in :func:`hsens_jax.engine.sweep.run_sweep` (``model``,
        ``cv`` and the other options go through ``**sweep_kwargs``).
      objective: a scalar metric name (``final_val_loss``, ``best_val_accuracy``,
        ``param_count``, ``flops_per_example``...) or a list of them.
      reduce: how seeds are combined (``mean``, ``median``, ``min``, ``max``).
      diverged_value: if given, the objective of a run flagged as diverged is replaced by
        this value (e.g. the loss of a uniform guess), so that estimators see a number;
        otherwise it is whatever the frozen run recorded (possibly inf or NaN).
      **sweep_kwargs: passed to :func:`run_sweep` (``chunk_size``, ``run_dir``...).

    Returns:
      ``f(configs) -> (N,)`` array, or ``(N, k)`` for k objectives. Each call runs one
      sweep; ``f.last_result`` keeps its :class:`hsens_jax.results.SweepResult`.
    """
    names = [objective] if isinstance(objective, str) else list(objective)
    sweep_kwargs.setdefault("progress", False)

    def f(configs):
        configs = {n: np.asarray(configs[n], float) for n in space.names}
        result = run_sweep(dataset, space, configs, fixed=fixed, seeds=seeds, **sweep_kwargs)
        f.last_result = result
        cols = []
        for name in names:
            m = np.array(result.metrics[name], dtype=float)
            if diverged_value is not None and m.ndim >= 2:
                m = np.where(result.metrics["diverged"], diverged_value, m)
            cols.append(m if m.ndim == 1 else reduce_seeds(m.reshape(m.shape[0], -1), reduce))
        return cols[0] if isinstance(objective, str) else np.stack(cols, axis=1)

    f.last_result = None
    return f
