"""Hypergradients: derivatives of a validation objective through training."""
