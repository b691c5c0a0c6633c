"""Plots of sweep results and sensitivity indices (matplotlib)."""

from hsens_jax.plotting.morris import plot_morris
from hsens_jax.plotting.oat import plot_oat
from hsens_jax.plotting.sobol import plot_sobol
from hsens_jax.plotting.hsic import plot_hsic, plot_interactions
