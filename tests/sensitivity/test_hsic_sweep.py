"""Tests of the block-sweep code paths of hsens_jax.sensitivity.hsic (symmetric blocks, one-pass
V + Gamma moments, batched permutations) against independent float64 NumPy formulas."""

import importlib

import numpy as np
import pytest

import jax
import jax.numpy as jnp

hsic_mod = importlib.import_module("hsens_jax.sensitivity.hsic")
_hsic_core = hsic_mod._hsic_core
_perm_core = hsic_mod._perm_core
_balanced_block = hsic_mod._balanced_block


# ----------------------------------------------------------------------------- NumPy reference


def np_gauss(x, theta):
    x = np.asarray(x, float)
    x = x[:, None] if x.ndim == 1 else x
    theta = np.broadcast_to(np.asarray(theta, float), (x.shape[1],))
    K = np.ones((x.shape[0], x.shape[0]))
    for k in range(x.shape[1]):
        K *= np.exp(-0.5 * ((x[:, None, k] - x[None, :, k]) / theta[k]) ** 2)
    return K


def np_reference(K, L):
    """V-statistic HSIC, HSIC(X, X), HSIC(Y, Y) and Gretton's Gamma moments (OpenTURNS)."""
    n = K.shape[0]
    H = np.eye(n) - np.ones((n, n)) / n
    Kc, Lc = H @ K @ H, H @ L @ H
    hxy, hxx, hyy = np.sum(Kc * Lc) / n**2, np.sum(Kc * Kc) / n**2, np.sum(Lc * Lc) / n**2
    ex = (K.sum() - np.trace(K)) / (n * (n - 1))
    ey = (L.sum() - np.trace(L)) / (n * (n - 1))
    B = (Kc * Lc) ** 2
    np.fill_diagonal(B, 0.0)
    mean = (1 + ex * ey - ex - ey) / n
    var = B.sum() * 2 * (n - 4) * (n - 5) / (n * (n - 1) * (n - 2) * (n - 3)) / (n * (n - 1))
    return dict(hsic=hxy, hxx=hxx, hyy=hyy, mean=mean, var=var,
                ca=K.mean(1), cb=L.mean(1))


def make(seed, n, d):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-np.pi, np.pi, (n, d))
    Y = np.sin(X[:, 0]) + 7 * np.sin(X[:, 1]) ** 2 + 0.3 * rng.normal(size=n)
    return X, Y[:, None]


def padded(X, Y, pad):
    """Rows padded with copies of the last one, and the validity mask (weights)."""
    n = X.shape[0]
    rows = np.minimum(np.arange(n + pad), n - 1)
    valid = (np.arange(n + pad) < n).astype(X.dtype)
    return X[rows], Y[rows], valid


def core(X, Y, block, want_gamma, single_pass, pad=0, estimator="V"):
    n, d = X.shape
    th, ty = X.std(0, ddof=1), Y.std(0, ddof=1)
    Xp, Yp, valid = padded(X, Y, pad)
    return _hsic_core(jnp.asarray(Xp.T), jnp.asarray(th), jnp.ones(1, X.dtype),
                      jnp.zeros((1, d), X.dtype), jnp.asarray(Yp), jnp.asarray(ty),
                      jnp.asarray(valid), jnp.asarray(valid), estimator=estimator,
                      out_kind="gaussian", cat=None, block=block, want_gamma=want_gamma,
                      has_groups=False, single_pass=single_pass), th, ty


def np_permutations(key, B, n):
    """The documented draw of hsic's permutations, rebuilt from jax.random.bits in NumPy:
    permutation b sorts the rows by the 64-bit keys (bits(k1), bits(k2)) of
    k1, k2 = split(split(key, B)[b])."""
    out = []
    for kb in jax.random.split(key, B):
        k1, k2 = jax.random.split(kb)
        b1 = np.minimum(np.asarray(jax.random.bits(k1, (n,), jnp.uint32)), 2**32 - 2)
        b2 = np.asarray(jax.random.bits(k2, (n,), jnp.uint32))
        out.append(np.lexsort((b2, b1)))
    return np.array(out)


# ----------------------------------------------------------------------------- one pass


# n = 37 (odd, prime): blocks 5 (last block padded), 37 (one block), 64 (block > n);
# n = 40: block 8 (divides n), block 7 (padded)
# pad: rows of weight zero after the sample (a sample-size bucket larger than n)
@pytest.mark.parametrize("n,block,pad", [(37, 5, 0), (37, 37, 3), (37, 64, 0), (40, 8, 0),
                                         (40, 7, 5)])
@pytest.mark.parametrize("want_gamma", [False, True])
def test_single_pass_matches_numpy_float64(n, block, pad, want_gamma):
    X, Y = make(n, n, 3)
    with jax.enable_x64(True):
        res, th, ty = core(X, Y, block, want_gamma, True, pad=pad)
    L = np_gauss(Y, ty)
    for i in range(3):
        ref = np_reference(np_gauss(X[:, i], th[i]), L)
        np.testing.assert_allclose(res["hsic"][i], ref["hsic"], rtol=1e-10)
        np.testing.assert_allclose(res["hxx"][i], ref["hxx"], rtol=1e-10)
        np.testing.assert_allclose(res["ca"][i][:n], ref["ca"], rtol=1e-12)
        np.testing.assert_allclose(res["sxy"][i], n * n * ref["hsic"], rtol=1e-10)
        if want_gamma:
            np.testing.assert_allclose(res["gamma_mean"][i], ref["mean"], rtol=1e-10)
            np.testing.assert_allclose(res["gamma_var"][i], ref["var"], rtol=1e-10)
    np.testing.assert_allclose(res["hyy"], ref["hyy"], rtol=1e-10)
    np.testing.assert_allclose(res["cb"][:n], ref["cb"], rtol=1e-12)
    np.testing.assert_allclose(res["gb"], ref["cb"].mean(), rtol=1e-12)


@pytest.mark.parametrize("block,pad", [(6, 0), (23, 7), (50, 0)])
def test_one_pass_gamma_moments_equal_two_pass(block, pad):
    """The expanded one-pass Gamma sum equals the two-pass sum of ((HKH) o (HLH))^2."""
    X, Y = make(1, 50, 4)
    with jax.enable_x64(True):
        one, _, _ = core(X, Y, block, True, True, pad=pad)
        two, _, _ = core(X, Y, block, True, False, pad=pad)
    for k in ("hsic", "hxx", "hyy", "r2", "gamma_mean", "gamma_var", "gamma_shape",
              "gamma_scale", "gamma_x"):
        np.testing.assert_allclose(one[k], two[k], rtol=1e-10, err_msg=k)
    for k in ("ca", "cb"):  # rows of the sample (padded rows: unused values)
        np.testing.assert_allclose(one[k][..., :50], two[k][..., :50], rtol=1e-10, err_msg=k)


def test_single_pass_float32_close_to_float64():
    X, Y = make(2, 600, 5)
    r32, _, _ = core(X.astype(np.float32), Y.astype(np.float32), 128, True, True)
    with jax.enable_x64(True):
        r64, _, _ = core(X, Y, 128, True, True)
    for k in ("hsic", "r2", "gamma_var", "gamma_mean"):
        np.testing.assert_allclose(np.asarray(r32[k], float), r64[k], rtol=1e-4, err_msg=k)


# ----------------------------------------------------------------------------- permutations


def perm_stats(X, Y, key, n_perm, chunk, block, estimator="V", pad=0):
    n, d = X.shape
    res, th, ty = core(X, Y, n + pad, False, estimator == "V", pad=pad, estimator=estimator)
    Xp, Yp, valid = padded(X, Y, pad)
    st = _perm_core(key, jnp.asarray(Xp.T), jnp.asarray(th), jnp.ones(1), jnp.zeros((1, d)),
                    jnp.asarray(Yp), jnp.asarray(ty), jnp.asarray(valid), jnp.asarray(valid),
                    res["ca"], res["ga"], res["cb"], res["gb"], estimator=estimator,
                    out_kind="gaussian", cat=None, block=block, has_groups=False,
                    n_perm=n_perm, chunk=chunk, weighted=False)
    return np.asarray(st), th, ty


@pytest.mark.parametrize("estimator", ["V", "U"])
def test_batched_permutations_equal_one_at_a_time_and_numpy(estimator):
    X, Y = make(3, 31, 3)
    key = jax.random.key(5)
    B = 9
    with jax.enable_x64(True):
        one, th, ty = perm_stats(X, Y, key, B, chunk=1, block=31, estimator=estimator)
        # chunk 4 does not divide B (a padded chunk); block 6 does not divide n; 5 padded rows
        batched, _, _ = perm_stats(X, Y, key, B, chunk=4, block=6, estimator=estimator, pad=5)
        full, _, _ = perm_stats(X, Y, key, B, chunk=B, block=40, estimator=estimator)
    np.testing.assert_allclose(batched, one, rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(full, one, rtol=1e-11, atol=1e-13)
    # the statistic of permutation b is sum_ij Kc_ij Lc_{pi(i) pi(j)} (U-centred for U)
    n = X.shape[0]
    perms = np_permutations(key, B, n)
    L = np_gauss(Y, ty)
    for i in range(3):
        K = np_gauss(X[:, i], th[i])
        for b, p in enumerate(perms):
            Lp = L[np.ix_(p, p)]
            if estimator == "V":
                H = np.eye(n) - np.ones((n, n)) / n
                ref = np.sum((H @ K @ H) * (H @ Lp @ H))
            else:
                ref = np_u_sum(K, Lp)
            np.testing.assert_allclose(one[b, i], ref, rtol=1e-10, atol=1e-12)


def np_u_sum(K, L):
    """n (n - 3) HSIC_U (Song et al. 2012) = sum_{i != j} of the U-centred products."""
    n = K.shape[0]
    Kt, Lt = K - np.diag(np.diag(K)), L - np.diag(np.diag(L))
    o = np.ones(n)
    return (np.trace(Kt @ Lt) + (o @ Kt @ o) * (o @ Lt @ o) / ((n - 1) * (n - 2))
            - 2.0 / (n - 2) * (o @ Kt @ Lt @ o))


# ----------------------------------------------------------------------------- block sizes


def test_balanced_block():
    assert _balanced_block(2000, 228) in (200, 250)  # a divisor: no padded block
    assert 2000 % _balanced_block(2000, 80) == 0
    assert _balanced_block(40, 500) == 40  # clipped to n
    assert _balanced_block(1000, 1) == 32  # at least 32
    for n, t in [(1999, 80), (997, 228), (20000, 228), (101, 32)]:
        b = _balanced_block(n, t)
        nb = -(-n // b)
        assert nb * b - n < b  # padding less than one block
        assert 0.5 * t <= b <= 1.5 * t
