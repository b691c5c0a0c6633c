"""Tests of hsens_jax.sensitivity.buckets (sample-size buckets)."""

import numpy as np

from hsens_jax.sensitivity.buckets import MIN_BUCKET, bucket_size


def test_buckets_cover_every_n_with_little_padding():
    ns = np.arange(1, 200_001)
    b = np.array([bucket_size(int(n)) for n in ns])
    assert np.all(b >= ns)
    assert np.all(b[ns <= MIN_BUCKET] == MIN_BUCKET)
    assert np.all(np.diff(b) >= 0)
    big = ns > MIN_BUCKET
    assert np.max(b[big] / ns[big]) < 1.15  # at most 14.3% padded rows
    sizes = np.unique(b)
    assert len(sizes) < 110  # few programs: 20 per decade
    for n in (100, 200, 250, 500, 1000, 2000, 5000, 10_000, 100_000):
        assert bucket_size(n) == n  # round sample sizes are not padded
    assert bucket_size(10**13 + 7) == 10**13 + 7
