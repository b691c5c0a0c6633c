"""Sample-size buckets: the sizes the estimators compile their programs for.

A compiled XLA program has fixed array shapes, so every new sample size ``n`` costs a
compilation (about a second for ``hsic`` on a CPU).  The estimators instead pad ``n`` up to
the next bucket size with rows of weight zero (exactly as they pad the last tile of a block
sweep), so that calls with nearby ``n`` share one program, in memory and in the persistent
compilation cache (:mod:`hsens_jax.compile_cache`).

The buckets are the Renard R20 preferred numbers (ISO 3), 20 per decade, rounded to
integers: ..., 100, 112, 125, 140, 160, 180, 200, 224, 250, 280, 315, 355, 400, 450, 500, 560,
630, 710, 800, 900, 1000, ...; every size up to ``MIN_BUCKET`` = 16 shares the bucket 16.
Consecutive buckets differ by at most 14.3% (1400 -> 1600), so the padded rows add at most
31% to an ``O(n^2)`` computation (12% on average over n = 100..10^5), and round sample sizes
(100, 200, 250, 500, 1000, 2000, 5000, 10^4, ...) are buckets themselves: no padding.
"""

from __future__ import annotations

import bisect

__all__ = ["MIN_BUCKET", "R20", "bucket_size"]

#: Every n <= MIN_BUCKET is padded to MIN_BUCKET.
MIN_BUCKET = 16
#: The R20 series of one decade (x 100).
R20 = (100, 112, 125, 140, 160, 180, 200, 224, 250, 280, 315, 355, 400, 450, 500, 560, 630, 710,
       800, 900)

_SIZES = sorted({MIN_BUCKET} | {round(v * 10**e / 100) for e in range(1, 11) for v in R20
                                if round(v * 10**e / 100) > MIN_BUCKET})


def bucket_size(n: int) -> int:
    """The bucket of a sample size: the smallest bucket >= n (``n`` itself above 10^12)."""
    n = int(n)
    if n <= MIN_BUCKET:
        return MIN_BUCKET
    i = bisect.bisect_left(_SIZES, n)
    return _SIZES[i] if i < len(_SIZES) else n
