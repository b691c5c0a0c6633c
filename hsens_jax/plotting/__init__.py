"""Plots of sweep results and sensitivity indices (matplotlib)."""
