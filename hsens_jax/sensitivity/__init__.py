"""Sensitivity estimators: HSIC, Sobol, Morris, one-at-a-time and DGSM."""
