"""Sensitivity estimators: HSIC, Sobol, Morris, one-at-a-time and DGSM."""

from hsens_jax.sensitivity import test_functions
from hsens_jax.sensitivity.dgsm import DGSMResult, dgsm, dgsm_indices
from hsens_jax.sensitivity.given_data import GivenDataResult, given_data_first_order
from hsens_jax.sensitivity.morris import MorrisResult, morris, morris_design, morris_indices
from hsens_jax.sensitivity.oat import OATDesign, OATResult, oat_analyze, oat_design, one_at_a_time
from hsens_jax.sensitivity.sobol import SobolResult, sobol, sobol_design, sobol_indices
from hsens_jax.sensitivity.hsic import (
    HSICResult,
    TargetFilter,
    best_fraction,
    critical_domain,
    hsic,
    hsic_interactions,
    hsic_novello,
)
from hsens_jax.sensitivity.kernels import (
    categorical_kernel,
    gaussian_kernel,
    linear_kernel,
    median_bandwidth,
    pairwise_distance_order_statistic,
    pooled_median_bandwidth,
    std_bandwidth,
)
from hsens_jax.sensitivity.buckets import bucket_size
