"""Models of one's own, swept by hsens_jax's engine (run by the tests, shown in the README)."""
