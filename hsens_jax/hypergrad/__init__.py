"""Hypergradients: derivatives of a validation objective through training."""

from hsens_jax.hypergrad.adjoint import ADJOINTS, symmetric_step
from hsens_jax.hypergrad.coordinates import DEFAULT_LOG_SCALED, log_scaled_names, natural_gradient, unit_gradient
from hsens_jax.hypergrad.core import HypergradientWarning, HypergradResult, hypergradient, hypergradients
from hsens_jax.hypergrad.descent import DescentTrajectory, hypergradient_descent
from hsens_jax.hypergrad.dgsm import DGSMResult, dgsm_from_gradients, hypergradient_dgsm
from hsens_jax.hypergrad.implicit import IMPLICIT_HYPERPARAMETERS, engine_implicit_gradient, implicit_gradient
from hsens_jax.hypergrad.unrolled import (
    DIFFERENTIABLE,
    MODES,
    final_state,
    forward_directions,
    forward_gradient,
    objective_value,
    run_steps,
    segment_for,
    sharded_forward_gradient,
    unrolled_gradient,
)
