"""A pytree's floating leaves apart from its other leaves (ints, bools, keys), and back.

Derivatives flow through the floating leaves only; the loops of :mod:`.unrolled` and the
custom rule of :mod:`.adjoint` carry the two lists separately.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def split_float(tree):
    """``(floating leaves, other leaves, meta)``: two lists in leaf order, and what
    :func:`merge_float` needs to put them back."""
    leaves, treedef = jax.tree.flatten(tree)
    isf = tuple(bool(jnp.issubdtype(jnp.result_type(a), jnp.inexact)) for a in leaves)
    return ([a for a, f in zip(leaves, isf) if f], [a for a, f in zip(leaves, isf) if not f],
            (treedef, isf))


def merge_float(fl, other, meta):
    """The pytree of :func:`split_float`'s lists (``fl`` may hold new values)."""
    treedef, isf = meta
    fi, oi = iter(fl), iter(other)
    return jax.tree.unflatten(treedef, [next(fi) if f else next(oi) for f in isf])
