"""Floating and other leaves of a pytree, apart and back."""

import jax.numpy as jnp
import numpy as np

from hsens_jax.hypergrad.leaves import merge_float, split_float


def test_split_and_merge_round_trip_in_leaf_order():
    tree = {"w": jnp.ones((2, 3)), "count": jnp.int32(4), "flag": jnp.bool_(True),
            "inner": (jnp.float32(0.5), jnp.arange(3))}
    fl, other, meta = split_float(tree)
    assert [a.dtype.kind for a in fl] == ["f", "f"] and [a.dtype.kind for a in other] == ["i", "b", "i"]  # dict keys in sorted order
    back = merge_float([2 * a for a in fl], other, meta)
    np.testing.assert_array_equal(back["w"], 2 * np.ones((2, 3)))
    assert float(back["inner"][0]) == 1.0 and int(back["count"]) == 4 and bool(back["flag"])
    np.testing.assert_array_equal(back["inner"][1], np.arange(3))
