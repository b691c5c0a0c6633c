import jax
import jax.numpy as jnp
import numpy as np

from hsens_jax.search.compilations import compilations


def test_counts_xla_compilations_and_not_cached_calls():
    f = jax.jit(lambda x: jnp.sin(x) * 3.0 + 1.25)
    n0, s0 = compilations()
    f(np.arange(7.0, dtype=np.float32)).block_until_ready()
    n1, s1 = compilations()
    assert n1 == n0 + 1 and s1 > s0
    f(np.arange(7.0, dtype=np.float32) + 1).block_until_ready()  # same shapes: the cached program
    assert compilations()[0] == n1
    f(np.arange(9.0, dtype=np.float32)).block_until_ready()  # a new shape compiles
    assert compilations()[0] == n1 + 1
