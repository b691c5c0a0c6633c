"""Counter-based random draws: the value at an index depends on the key and the index only.

``jax.random`` draws depend on the array's shape (a draw of shape (n,) is not the first n
entries of a draw of shape (m,)). The engine needs draws that do not: the initial weights of a
masked network (the active block of a ``max_width`` layer must equal a ``width`` layer's
weights, :mod:`hsens_jax.engine.builtin`) and the per-epoch order of a training set (a
cross-validation fold padded to the largest fold must draw the order a fold of its own size
draws, :mod:`hsens_jax.engine.train`). Here a value is a hash (the murmur3 finalizer) of the
key's bits and integer counters: a few integer operations, cheap to compile and to run.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp


def _mix32(x):
    """The murmur3 32-bit finalizer: a bijective, well-avalanching mix of uint32 words."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x85EBCA6B)
    x = x ^ (x >> 13)
    x = x * jnp.uint32(0xC2B2AE35)
    return x ^ (x >> 16)


def counter_bits(key: jax.Array, *counters: jax.Array) -> jax.Array:
    """uint32 hashes of ``key`` and the integer counters (broadcast together)."""
    seed = jax.random.bits(key, (2,), jnp.uint32)
    h = _mix32(seed[0] ^ jnp.uint32(0x9E3779B9))
    for c in counters:
        h = _mix32(h ^ _mix32(jnp.asarray(c).astype(jnp.uint32) * jnp.uint32(0x7FEB352D) + seed[1]))
    return h


def counter_uniform(key: jax.Array, *counters: jax.Array) -> jax.Array:
    """Uniform draws in (0, 1) that depend only on ``key`` and the integer counters.

    Counter-based: the value at an index is a hash of the key's bits and the counters'
    values at that index (counters broadcast together), not of the array's shape. Two
    arrays of different sizes therefore agree wherever their counters agree, which a
    shape-based ``jax.random`` draw does not. One ``jax.random.bits`` call seeds the
    hash; the rest is a few integer operations (cheap to compile and to run).
    """
    h = counter_bits(key, *counters)
    return ((h >> 8).astype(jnp.float32) + 0.5) / float(1 << 24)


def elementwise_normal(key: jax.Array, shape: Sequence[int], dtype=jnp.float32) -> jax.Array:
    """Standard normal draws whose value at index (r, i, j) depends only on (key, r, i, j).

    The last two axes are (fan-in unit, fan-out unit), leading axes (a conv kernel's
    spatial extent) are flattened into ``r``. The draws of a smaller array equal the
    corresponding block of a larger one, which makes width masking exact.
    """
    *rest, n_in, n_out = shape
    n_rest = math.prod(rest)
    r = jnp.arange(n_rest).reshape(-1, 1, 1)
    i = jnp.arange(n_in).reshape(1, -1, 1)
    j = jnp.arange(n_out).reshape(1, 1, -1)
    u = counter_uniform(key, r, i, j)
    return jax.scipy.special.ndtri(u).astype(dtype).reshape(*rest, n_in, n_out)




def counter_permutation(key: jax.Array, n: int, n_valid=None) -> jax.Array:
    """A random permutation of ``0..n_valid-1`` in the first ``n_valid`` of ``n`` entries.

    The order sorts the entries by :func:`counter_bits` of their index, so the permutation of
    the first ``n_valid`` indices does not depend on ``n`` (entries ``>= n_valid``, padding,
    come last, in index order). ``n_valid`` may be traced; None means ``n``. Ties between 32-bit
    hashes (probability about ``n^2 / 2^33``) keep index order.
    """
    idx = jnp.arange(n, dtype=jnp.int32)
    bits = counter_bits(key, idx)
    if n_valid is not None:
        bits = jnp.where(idx < n_valid, bits, jnp.uint32(0xFFFFFFFF))
        # a valid entry hashing to the padding value still sorts before padding (stable sort)
    return jnp.argsort(bits, stable=True).astype(jnp.int32)
