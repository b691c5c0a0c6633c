"""Tests of hsens_jax.sensitivity.hsic against independent float64 NumPy formulas, OpenTURNS and
statistical calibration."""

import numpy as np
import pytest
import scipy.stats

import jax
import jax.numpy as jnp

from hsens_jax.sensitivity.hsic import (
    HSICResult,
    _gamma_sf,
    _hsic_core,
    _hsic_native_core,
    _perm_core,
    best_fraction,
    critical_domain,
    hsic,
    hsic_interactions,
    hsic_novello,
)

# ----------------------------------------------------------------------------- NumPy reference
# Textbook O(n^3) formulas written independently of the package.


def np_gauss(x, theta):
    x = np.asarray(x, float)
    if x.ndim == 1:
        x = x[:, None]
    theta = np.broadcast_to(np.asarray(theta, float), (x.shape[1],))
    K = np.ones((x.shape[0], x.shape[0]))
    for k in range(x.shape[1]):
        K *= np.exp(-0.5 * ((x[:, None, k] - x[None, :, k]) / theta[k]) ** 2)
    return K


def np_hsic_v(K, L):
    n = K.shape[0]
    H = np.eye(n) - np.ones((n, n)) / n
    return np.trace(K @ H @ L @ H) / n**2


def np_hsic_u(K, L):
    """Song et al. (2012), eq. (5)."""
    n = K.shape[0]
    Kt = K - np.diag(np.diag(K))
    Lt = L - np.diag(np.diag(L))
    o = np.ones(n)
    return (np.trace(Kt @ Lt) + (o @ Kt @ o) * (o @ Lt @ o) / ((n - 1) * (n - 2))
            - 2.0 / (n - 2) * (o @ Kt @ Lt @ o)) / (n * (n - 3))


def np_hsic_weighted(K, L, w):
    """Conditional HSIC (Marrel & Chabridon 2021): tr(W K W H1 L H2), w normalized to mean 1."""
    n = K.shape[0]
    w = np.asarray(w, float) / np.mean(w)
    W = np.diag(w)
    U = np.ones((n, n)) / n
    H1 = np.eye(n) / n - U @ W / n
    H2 = np.eye(n) / n - W @ U / n
    return np.trace(W @ K @ W @ H1 @ L @ H2)


def np_r2(f, K, L, *extra):
    return f(K, L, *extra) / np.sqrt(f(K, K, *extra) * f(L, L, *extra))


def np_gamma_pvalue(K, L, estimator):
    """Gretton et al. (2007) Gamma approximation with the OpenTURNS mean/variance formulas."""
    n = K.shape[0]
    H = np.eye(n) - np.ones((n, n)) / n
    ex = (K.sum() - np.trace(K)) / (n * (n - 1))
    ey = (L.sum() - np.trace(L)) / (n * (n - 1))
    B = (H @ K @ H * (H @ L @ H)) ** 2
    np.fill_diagonal(B, 0.0)
    mean = (1 + ex * ey - ex - ey) / n
    var = B.sum() * 2 * (n - 4) * (n - 5) / (n * (n - 1) * (n - 2) * (n - 3)) / (n * (n - 1))
    a, scale = mean**2 / var, n * var / mean
    if estimator == "V":
        x = n * np_hsic_v(K, L)
    else:
        x = n * np_hsic_u(K, L) + n * mean
    return scipy.stats.gamma.sf(x, a, scale=scale)


def ishigami(X):
    return np.sin(X[:, 0]) + 7 * np.sin(X[:, 1]) ** 2 + 0.1 * X[:, 2] ** 4 * np.sin(X[:, 0])


def data(seed, n=40, d=3):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-np.pi, np.pi, (n, d))
    return X, ishigami(X)


def x64():
    return jax.enable_x64(True)


def np_permutations(key, B, n):
    """hsic's documented permutation draw, rebuilt in NumPy from jax.random.bits: permutation
    b sorts the rows by the 64-bit keys (bits(k1), bits(k2)), k1, k2 = split(split(key, B)[b])."""
    out = []
    for kb in jax.random.split(key, B):
        k1, k2 = jax.random.split(kb)
        b1 = np.minimum(np.asarray(jax.random.bits(k1, (n,), jnp.uint32)), 2**32 - 2)
        b2 = np.asarray(jax.random.bits(k2, (n,), jnp.uint32))
        out.append(np.lexsort((b2, b1)))
    return np.array(out)


# ----------------------------------------------------------------------------- vs NumPy


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("estimator", ["V", "U"])
def test_indices_r2_gamma_match_numpy(seed, estimator):
    X, Y = data(seed)
    f = np_hsic_v if estimator == "V" else np_hsic_u
    th = X.std(0, ddof=1)
    L = np_gauss(Y, Y.std(ddof=1))
    Ks = [np_gauss(X[:, i], th[i]) for i in range(X.shape[1])]
    with x64():
        r = hsic(X, Y, estimator=estimator, pvalue="gamma")
        assert r.hsic.dtype == jnp.float64
    np.testing.assert_allclose(r.hsic, [f(K, L) for K in Ks], rtol=1e-11, atol=1e-15)
    np.testing.assert_allclose(r.r2, [np_r2(f, K, L) for K in Ks], rtol=1e-11)
    np.testing.assert_allclose(r.hsic_yy, f(L, L), rtol=1e-11)
    np.testing.assert_allclose(r.pvalue, [np_gamma_pvalue(K, L, estimator) for K in Ks],
                               rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(r.bandwidth, th, rtol=1e-12)
    assert r.estimator == estimator and r.pvalue_method == "gamma" and r.goal == "global"


def test_multivariate_output_product_kernel():
    X, Y = data(3)
    Y2 = np.stack([Y, np.cos(X[:, 1]) + X[:, 2]], axis=1)
    thy = Y2.std(0, ddof=1)
    L = np_gauss(Y2, thy)
    th = X.std(0, ddof=1)
    with x64():
        r = hsic(X, Y2)
        ru = hsic(X, Y2, estimator="U", output_bandwidth=[1.5, 0.7])
    assert r.hsic.shape == (3,)
    np.testing.assert_allclose(r.hsic, [np_hsic_v(np_gauss(X[:, i], th[i]), L) for i in range(3)],
                               rtol=1e-11)
    L2 = np_gauss(Y2, [1.5, 0.7])
    np.testing.assert_allclose(ru.hsic, [np_hsic_u(np_gauss(X[:, i], th[i]), L2)
                                         for i in range(3)], rtol=1e-10, atol=1e-15)


def test_bandwidth_options_match_numpy():
    X, Y = data(4)
    L = np_gauss(Y, Y.std(ddof=1))
    with x64():
        r_num = hsic(X, Y, bandwidth=0.8)
        r_arr = hsic(X, Y, bandwidth=np.array([0.5, 1.0, 2.0]), output_bandwidth=3.0)
        r_med = hsic(X, Y, bandwidth="median")
    np.testing.assert_allclose(r_num.hsic, [np_hsic_v(np_gauss(X[:, i], 0.8), L)
                                            for i in range(3)], rtol=1e-11)
    L3 = np_gauss(Y, 3.0)
    np.testing.assert_allclose(r_arr.hsic, [np_hsic_v(np_gauss(X[:, i], t), L3)
                                            for i, t in enumerate([0.5, 1.0, 2.0])], rtol=1e-11)
    iu = np.triu_indices(40, 1)
    med = [np.median(np.abs(X[:, i][:, None] - X[:, i][None, :])[iu]) for i in range(3)]
    medy = np.median(np.abs(Y[:, None] - Y[None, :])[iu])
    Lm = np_gauss(Y, medy)
    np.testing.assert_allclose(r_med.bandwidth, med, rtol=1e-12)
    np.testing.assert_allclose(r_med.output_bandwidth, [medy], rtol=1e-12)
    np.testing.assert_allclose(r_med.hsic, [np_hsic_v(np_gauss(X[:, i], med[i]), Lm)
                                            for i in range(3)], rtol=1e-11)


def test_categorical_columns_match_numpy():
    rng = np.random.default_rng(5)
    n = 40
    c = rng.integers(0, 3, n).astype(float)
    x = rng.normal(size=n)
    Y = c + 0.3 * x + 0.1 * rng.normal(size=n)
    X = np.stack([x, c], axis=1)
    Kc = (c[:, None] == c[None, :]).astype(float)
    Kx = np_gauss(x, x.std(ddof=1))
    L = np_gauss(Y, Y.std(ddof=1))
    expect = [np_hsic_v(Kx, L), np_hsic_v(Kc, L)]
    with x64():
        for spec in ([False, True], [1], ["gaussian", "categorical"]):
            r = hsic(X, Y, kernel=spec)
            np.testing.assert_allclose(r.hsic, expect, rtol=1e-11)
            assert float(r.bandwidth[1]) == 1.0


def test_target_best_fraction_linear_kernel():
    X, Y = data(6)
    wv = (Y <= np.quantile(Y, 0.2)).astype(float)
    Lw = np.outer(wv, wv)
    th = X.std(0, ddof=1)
    Ks = [np_gauss(X[:, i], th[i]) for i in range(3)]
    with x64():
        r1 = hsic(X, Y, target=best_fraction(0.2), pvalue="gamma")
        r2 = hsic(X, Y, target=("best", 0.2))
    np.testing.assert_allclose(r1.hsic, [np_hsic_v(K, Lw) for K in Ks], rtol=1e-11)
    np.testing.assert_allclose(r1.r2, [np_r2(np_hsic_v, K, Lw) for K in Ks], rtol=1e-11)
    np.testing.assert_allclose(r2.hsic, r1.hsic, rtol=1e-14)
    assert r1.goal == "target" and np.isnan(np.asarray(r1.output_bandwidth)).all()
    # Gamma p-values with a non-unit-diagonal (linear) output kernel: general mean formula
    n = 40
    H = np.eye(n) - 1.0 / n
    for i, K in enumerate(Ks):
        ex = (K.sum() - np.trace(K)) / (n * (n - 1))
        ey = (Lw.sum() - np.trace(Lw)) / (n * (n - 1))
        mean = (1 - ex) * (np.trace(Lw) / n - ey) / n
        B = (H @ K @ H * (H @ Lw @ H)) ** 2
        np.fill_diagonal(B, 0)
        var = B.sum() * 2 * (n - 4) * (n - 5) / (n * (n - 1) * (n - 2) * (n - 3)) / (n * (n - 1))
        p = scipy.stats.gamma.sf(n * np_hsic_v(K, Lw), mean**2 / var, scale=n * var / mean)
        np.testing.assert_allclose(r1.pvalue[i], p, rtol=1e-9, atol=1e-14)


@pytest.mark.parametrize("estimator", ["V", "U"])
def test_target_domain_and_callable_filters(estimator):
    X, Y = data(7)
    f = np_hsic_v if estimator == "V" else np_hsic_u
    s = 0.2 * Y.std(ddof=1)
    z = np.exp(-np.maximum(np.maximum(4.0 - Y, Y - 9.0), 0.0) / s)
    th = X.std(0, ddof=1)
    Ks = [np_gauss(X[:, i], th[i]) for i in range(3)]
    L = np_gauss(z, z.std(ddof=1))
    with x64():
        r = hsic(X, Y, estimator=estimator, target=critical_domain(4.0, 9.0, 0.2))
        rc = hsic(X, Y, estimator=estimator, target=lambda y: jnp.sin(y))
        ri = hsic(X, Y, estimator=estimator, target=critical_domain(5.0, smoothing=None),
                  output_bandwidth=1.0)
    np.testing.assert_allclose(r.hsic, [f(K, L) for K in Ks], rtol=1e-10, atol=1e-16)
    Ls = np_gauss(np.sin(Y), np.sin(Y).std(ddof=1))
    np.testing.assert_allclose(rc.hsic, [f(K, Ls) for K in Ks], rtol=1e-10, atol=1e-16)
    Li = np_gauss((Y >= 5.0).astype(float), 1.0)
    np.testing.assert_allclose(ri.hsic, [f(K, Li) for K in Ks], rtol=1e-10, atol=1e-16)


def test_conditional_matches_numpy():
    X, Y = data(8)
    s = 0.1 * Y.std(ddof=1)
    wv = np.exp(-np.maximum(5.0 - Y, 0.0) / s)
    th = X.std(0, ddof=1)
    Ks = [np_gauss(X[:, i], th[i]) for i in range(3)]
    L = np_gauss(Y, Y.std(ddof=1))
    with x64():
        r = hsic(X, Y, conditional=critical_domain(5.0, np.inf, 0.1))
        ra = hsic(X, Y, conditional=3.0 * wv)  # raw weights, any scale
    expect = [np_hsic_weighted(K, L, wv) for K in Ks]
    np.testing.assert_allclose(r.hsic, expect, rtol=1e-10)
    np.testing.assert_allclose(ra.hsic, expect, rtol=1e-10)
    np.testing.assert_allclose(r.r2, [np_r2(np_hsic_weighted, K, L, wv) for K in Ks],
                               rtol=1e-10)
    # uniform weights give back the global V-statistic
    with x64():
        r1 = hsic(X, Y, conditional=np.ones(40))
    np.testing.assert_allclose(r1.hsic, [np_hsic_v(K, L) for K in Ks], rtol=1e-11)


@pytest.mark.parametrize("estimator", ["V", "U"])
def test_interactions_match_numpy(estimator):
    X, Y = data(9, d=4)
    f = np_hsic_v if estimator == "V" else np_hsic_u
    th = X.std(0, ddof=1)
    Ks = [np_gauss(X[:, i], th[i]) for i in range(4)]
    L = np_gauss(Y, Y.std(ddof=1))
    with x64():
        M = hsic_interactions(X, Y, estimator=estimator)
        Mr2 = hsic_interactions(X, Y, estimator=estimator, metric="r2", pairs=[(0, 2)])
        G = hsic_interactions(X, Y, estimator=estimator, groups=[[0, 1, 2], [3]])
    for i in range(4):
        for j in range(4):
            K = Ks[i] if i == j else Ks[i] * Ks[j]
            np.testing.assert_allclose(M[i, j], f(K, L), rtol=1e-10, atol=1e-16)
    np.testing.assert_allclose(Mr2[0, 2], np_r2(f, Ks[0] * Ks[2], L), rtol=1e-10)
    assert np.isnan(Mr2[0, 1]) and np.isnan(Mr2[1, 3])
    np.testing.assert_allclose(Mr2[1, 1], np_r2(f, Ks[1], L), rtol=1e-10)
    np.testing.assert_allclose(G, [f(Ks[0] * Ks[1] * Ks[2], L), f(Ks[3], L)], rtol=1e-10)


def np_novello(x, Y, p, bw):
    """Novello et al. (2023), hsic.py, transcribed in float64 NumPy: p^2 MMD^2 between the
    sample and its rows with Y <= np.quantile(Y, p, method="lower"), isotropic Gaussian kernel
    exp(-|x - x'|^2 / (2 bw^2)) on the given column(s)."""
    x = np.asarray(x, float).reshape(len(Y), -1)
    sel = x[Y <= np.quantile(Y, p, method="lower")]

    def mean_k(a, b):
        diff = a[:, None, :] - b[None, :, :]
        return np.mean(np.exp(-np.sum(diff**2, axis=-1) / (2 * bw**2)))

    return p**2 * (mean_k(x, x) + mean_k(sel, sel) - 2 * mean_k(x, sel))


def np_novello_median(x):
    x = np.asarray(x, float).reshape(x.shape[0], -1)
    return np.median(np.abs(x[:, None, :] - x[None, :, :]))  # all ordered pairs, zeros too


def novello_data(seed, n=70):
    rng = np.random.default_rng(seed)
    X = rng.uniform(0, 1, (n, 3))
    Y = np.round((X[:, 0] - 0.3) ** 2 + 0.05 * X[:, 1] + 0.01 * rng.normal(size=n), 2)  # ties
    return X, Y


def test_novello_convention_equals_the_authors_formulas():
    X, Y = novello_data(10)
    q = 0.1
    m = int(np.sum(Y <= np.quantile(Y, q, method="lower")))
    assert m != round(q * len(Y))  # ties: m / n differs from q, the scale matters
    with x64():
        r = hsic_novello(X, Y, q)
        r2 = hsic(X, Y, convention="novello2023", target=best_fraction(q))
        r_text = hsic(X, Y, target=best_fraction(q), bandwidth=np.asarray(r.bandwidth))
        M = hsic_interactions(X, Y, convention="novello2023", target=best_fraction(q))
    bws = [np_novello_median(X[:, i]) for i in range(3)]  # one median per input
    np.testing.assert_allclose(r.bandwidth, bws, rtol=1e-14)
    expect = [np_novello(X[:, i], Y, q, bws[i]) for i in range(3)]
    np.testing.assert_allclose(r.hsic, expect, rtol=1e-11)
    np.testing.assert_allclose(r2.hsic, r.hsic, rtol=1e-14)
    # the factor between the conventions: (q n / m)^2; R2 and p-values do not change
    np.testing.assert_allclose(r.hsic, np.asarray(r_text.hsic) * (q * len(Y) / m) ** 2,
                               rtol=1e-11)
    np.testing.assert_allclose(r.r2, r_text.r2, rtol=1e-11)
    assert int(np.argmax(r.r2)) == 0
    # pairs: one median bandwidth pooled over the pair's 2 n^2 distances, isotropic kernel
    for i in range(3):
        for j in range(3):
            cols = [i] if i == j else [i, j]
            bw = np_novello_median(X[:, cols])
            np.testing.assert_allclose(M[i, j], np_novello(X[:, cols], Y, q, bw), rtol=1e-10)


def test_novello_max_bandwidth_finds_the_maximum():
    X, Y = novello_data(11)
    q = 0.2
    with x64():
        r = hsic_novello(X, Y, q, bandwidth="max")
        M = hsic_interactions(X, Y, pairs=[(0, 1)], convention="novello2023",
                              target=best_fraction(q), bandwidth="max")
    grid = np.geomspace(1e-4, 5, 4000)
    for i in range(3):
        vals = np.array([np_novello(X[:, i], Y, q, b) for b in grid])
        best = vals.max()
        # the index at the returned bandwidth is the authors' index there ...
        np.testing.assert_allclose(r.hsic[i], np_novello(X[:, i], Y, q, float(r.bandwidth[i])),
                                   rtol=1e-11)
        # ... and it is the maximum over the interval (a fine grid cannot beat it)
        assert float(r.hsic[i]) >= best * (1 - 1e-9), (i, float(r.hsic[i]), best)
        assert abs(np.log(float(r.bandwidth[i]) / grid[np.argmax(vals)])) < 0.01
    # the same as scipy's bounded Brent search used by the authors
    from scipy.optimize import minimize_scalar
    b0 = minimize_scalar(lambda b: -np_novello(X[:, 0], Y, q, b), bounds=(1e-4, 5),
                         method="bounded").x
    np.testing.assert_allclose(r.bandwidth[0], b0, atol=2e-5)
    vals = np.array([np_novello(X[:, [0, 1]], Y, q, b) for b in grid])
    assert float(M[0, 1]) >= vals.max() * (1 - 1e-9)
    np.testing.assert_allclose(M[0, 0], r.hsic[0], rtol=1e-9)


# ----------------------------------------------------------------------------- permutations


def np_perm_pvalues(K_list, L, key, B, wv=None, estimator="V", convention="conservative"):
    """Permutation p-values with the same permutations as the package (documented draw)."""
    n = L.shape[0]
    perms = np_permutations(key, B, n)
    f = np_hsic_v if estimator == "V" else np_hsic_u
    if wv is None:
        obs = np.array([f(K, L) for K in K_list])
        st = np.array([[f(K, L[np.ix_(p, p)]) for K in K_list] for p in perms])
    else:
        obs = np.array([np_hsic_weighted(K, L, wv) for K in K_list])
        st = np.array([[np_hsic_weighted(K, L[np.ix_(p, p)], wv[p]) for K in K_list]
                       for p in perms])
    if convention == "openturns":
        return (st > obs).sum(0) / (B + 1.0), st, obs
    return (1.0 + (st >= obs).sum(0)) / (B + 1.0), st, obs


@pytest.mark.parametrize("goal", ["global-V", "global-U", "conditional", "target-best",
                                  "multi-output"])
def test_permutation_pvalues_match_numpy(goal):
    X, Y = data(11)
    rng = np.random.default_rng(0)
    X[:, 2] = rng.normal(size=40)  # an inert column so p-values are not all minimal
    th = X.std(0, ddof=1)
    Ks = [np_gauss(X[:, i], th[i]) for i in range(3)]
    L = np_gauss(Y, Y.std(ddof=1))
    key = jax.random.key(42)
    B = 60
    kw, wv, est = {}, None, "V"
    if goal == "global-U":
        est = "U"
    if goal == "conditional":
        wv = np.exp(-np.maximum(4.0 - Y, 0) / (0.5 * Y.std(ddof=1)))
        kw = dict(conditional=critical_domain(4.0, np.inf, 0.5))
    Yin = Y
    if goal == "target-best":  # linear kernel on the best-30% indicator
        ind = (Y <= np.quantile(Y, 0.3)).astype(float)
        L = np.outer(ind, ind)
        kw = dict(target=best_fraction(0.3))
    if goal == "multi-output":  # product Gaussian kernel on (n, 2) outputs
        Yin = np.stack([Y, np.cos(X[:, 0])], axis=1)
        L = np_gauss(Yin, Yin.std(0, ddof=1))
    for conv in ("conservative", "openturns"):
        with x64():
            r = hsic(X, Yin, estimator=est, pvalue="permutation", n_permutations=B, key=key,
                     pvalue_convention=conv, perm_chunk=7, **kw)
        p_ref, st, obs = np_perm_pvalues(Ks, L, key, B, wv=wv, estimator=est, convention=conv)
        # no near-ties, so the counts are exact
        assert np.min(np.abs(st - obs)) > 1e-12 * np.max(np.abs(obs))
        np.testing.assert_allclose(r.pvalue, p_ref, rtol=0, atol=1e-12)
        assert r.n_permutations == B and r.pvalue_convention == conv


def test_permutation_counting_conventions_and_chunking():
    X, Y = data(12)
    key = jax.random.key(3)
    a = hsic(X, Y, pvalue="permutation", n_permutations=99, key=key)
    b = hsic(X, Y, pvalue="permutation", n_permutations=99, key=key, perm_chunk=10)
    c = hsic(X, Y, pvalue="permutation", n_permutations=99, key=key,
             pvalue_convention="openturns")
    np.testing.assert_allclose(a.pvalue, b.pvalue, atol=1.5 / 100)  # float32 near-ties only
    assert np.all(np.asarray(a.pvalue) >= 1 / 100) and np.all(np.asarray(a.pvalue) <= 1)
    # with no ties: conservative = openturns + 1/(B+1)
    np.testing.assert_allclose(a.pvalue, np.asarray(c.pvalue) + 1 / 100, atol=1e-6)


# ----------------------------------------------------------------------------- tiling, dtypes


def test_tiled_equals_untiled(monkeypatch):
    monkeypatch.setenv("HSENS_NATIVE", "off")  # the blocks are the pure-JAX programs'
    X, Y = data(13)
    key = jax.random.key(0)
    with x64():
        for kw in (dict(estimator="V", pvalue="gamma"), dict(estimator="U", pvalue="gamma"),
                   dict(conditional=critical_domain(4.0, smoothing=0.3)),
                   dict(target=best_fraction(0.3))):
            full = hsic(X, Y, tile_size=40, **kw)  # one (d, n, n) block
            for tile in (7,):  # 7 does not divide 40: a padded last tile
                til = hsic(X, Y, tile_size=tile, **kw)
                np.testing.assert_allclose(til.hsic, full.hsic, rtol=1e-12, atol=1e-17)
                np.testing.assert_allclose(til.r2, full.r2, rtol=1e-12)
                np.testing.assert_allclose(til.pvalue, full.pvalue, rtol=1e-10, atol=1e-15,
                                           equal_nan=True)
        p_full = hsic(X, Y, tile_size=40, pvalue="permutation", n_permutations=40, key=key)
        p_til = hsic(X, Y, tile_size=7, pvalue="permutation", n_permutations=40, key=key)
        np.testing.assert_array_equal(p_til.pvalue, p_full.pvalue)
        m_full = hsic_interactions(X, Y, tile_size=40)
        m_til = hsic_interactions(X, Y, tile_size=7)
        np.testing.assert_allclose(m_til, m_full, rtol=1e-12)


def test_float32_default_and_close_to_float64_n1e4():
    rng = np.random.default_rng(14)
    n = 10_000
    X = rng.uniform(-np.pi, np.pi, (n, 3))
    Y = ishigami(X)
    r32 = hsic(X, Y, estimator="V")
    assert r32.hsic.dtype == jnp.float32
    with x64():
        r64 = hsic(X, Y, estimator="V")
    np.testing.assert_allclose(np.asarray(r32.hsic, float), r64.hsic, rtol=1e-4)
    np.testing.assert_allclose(np.asarray(r32.r2, float), r64.r2, rtol=1e-4)


@pytest.mark.parametrize("estimator", ["V", "U"])
def test_float32_close_to_float64_small(estimator):
    X, Y = data(15, n=500, d=4)
    r32 = hsic(X, Y, estimator=estimator, pvalue="gamma")
    with x64():
        r64 = hsic(X, Y, estimator=estimator, pvalue="gamma")
    np.testing.assert_allclose(np.asarray(r32.hsic, float), r64.hsic, rtol=1e-4,
                               atol=1e-4 * float(np.max(np.abs(r64.hsic))))
    np.testing.assert_allclose(np.asarray(r32.pvalue, float), r64.pvalue, rtol=2e-3, atol=1e-5)


def test_result_is_pytree_and_no_recompilation():
    X, Y = data(16)
    r = hsic(X, Y)
    assert isinstance(r, HSICResult)
    leaves = jax.tree_util.tree_leaves(r)
    assert len(leaves) == 6
    r2 = jax.tree_util.tree_map(lambda a: a * 2, r)
    np.testing.assert_allclose(r2.hsic, 2 * np.asarray(r.hsic), rtol=1e-6)
    assert r2.estimator == "V" and np.isnan(np.asarray(r.pvalue)).all()
    def cores():
        return _hsic_core._cache_size() + _hsic_native_core._cache_size()

    size = cores()
    X2, Y2 = data(17)
    hsic(X2, Y2)
    hsic(jnp.asarray(X2, jnp.float32), jnp.asarray(Y2, jnp.float32))
    assert cores() == size
    hsic(X2, Y2, pvalue="permutation", n_permutations=10, key=jax.random.key(0))
    size_p = _perm_core._cache_size()
    hsic(X, Y, pvalue="permutation", n_permutations=10, key=jax.random.key(1))
    assert _perm_core._cache_size() == size_p


# ----------------------------------------------------------------------------- errors


def test_bad_input_errors():
    X, Y = data(18, n=20, d=3)
    with pytest.raises(ValueError, match="2-D"):
        hsic(X[:, 0], Y)
    with pytest.raises(ValueError, match="same number of rows"):
        hsic(X, Y[:-1])
    with pytest.raises(ValueError, match="Y must be"):
        hsic(X, Y[:, None, None])
    Xn = X.copy()
    Xn[3, 2] = np.nan
    with pytest.raises(ValueError, match="X column 2"):
        hsic(Xn, Y)
    Yn = Y.copy()
    Yn[0] = np.inf
    with pytest.raises(ValueError, match="Y column 0"):
        hsic(X, Yn)
    with pytest.raises(ValueError, match=r"n >= 3 \(at n = 2 .*R2-HSIC = 1"):
        hsic(X[:2], Y[:2])  # gave R2 = 1 for every input
    assert np.all(np.isfinite(np.asarray(hsic(X[:3], Y[:3]).r2)))
    with pytest.raises(ValueError, match="n >= 4"):
        hsic(X[:3], Y[:3], estimator="U")
    with pytest.raises(ValueError, match="n >= 6"):
        hsic(X[:5], Y[:5], pvalue="gamma")
    with pytest.raises(ValueError, match="estimator"):
        hsic(X, Y, estimator="W")
    with pytest.raises(ValueError, match="pvalue"):
        hsic(X, Y, pvalue="bootstrap")
    with pytest.raises(ValueError, match="pvalue_convention"):
        hsic(X, Y, pvalue_convention="x")
    with pytest.raises(ValueError, match="key"):
        hsic(X, Y, pvalue="permutation")
    with pytest.raises(ValueError, match="n_permutations"):
        hsic(X, Y, pvalue="permutation", n_permutations=0, key=jax.random.key(0))
    with pytest.raises(ValueError, match="conditional"):
        hsic(X, Y, conditional=critical_domain(3.0), estimator="U")
    with pytest.raises(ValueError, match="gamma"):
        hsic(X, Y, conditional=critical_domain(3.0), pvalue="gamma")
    with pytest.raises(ValueError, match="not both"):
        hsic(X, Y, conditional=critical_domain(3.0), target=best_fraction(0.2))
    with pytest.raises(ValueError, match="bandwidth"):
        hsic(X, Y, bandwidth="silverman")
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        hsic(X, Y, bandwidth=[1.0, 2.0])
    with pytest.raises(ValueError, match="column 1"):
        hsic(X, Y, bandwidth=[1.0, -2.0, 1.0])
    Xc = X.copy()
    Xc[:, 1] = 2.0
    with pytest.raises(ValueError, match="column 1"):
        hsic(Xc, Y)
    with pytest.raises(ValueError, match="kernel"):
        hsic(X, Y, kernel="laplace")
    with pytest.raises(ValueError, match="out of range"):
        hsic(X, Y, kernel=[5])
    with pytest.raises(ValueError, match="tile_size"):
        hsic(X, Y, tile_size=0)
    with pytest.raises(ValueError, match=r"q must be"):
        best_fraction(1.5)
    with pytest.raises(ValueError, match="lower <= upper"):
        critical_domain(3.0, 1.0)
    with pytest.raises(ValueError, match="univariate"):
        hsic(X, np.stack([Y, Y], 1), target=best_fraction(0.2))
    with pytest.raises(ValueError, match="target"):
        hsic(X, Y, target=("worst", 0.1))
    with pytest.raises(ValueError, match="constant"):
        hsic(X, Y, target=lambda y: jnp.ones_like(y))
    with pytest.raises(ValueError, match=">= 0"):
        hsic(X, Y, conditional=-np.ones(20))
    with pytest.raises(ValueError, match="convention"):
        hsic(X, Y, convention="novello")
    with pytest.raises(ValueError, match="best_fraction"):
        hsic(X, Y, convention="novello2023")
    with pytest.raises(ValueError, match="best_fraction"):
        hsic(X, Y, convention="novello2023", target=critical_domain(3.0))
    with pytest.raises(ValueError, match="target=best_fraction"):
        hsic(X, Y, bandwidth="max")
    with pytest.raises(TypeError, match="numeric"):
        hsic(np.array([["a", "b"]] * 20), Y)
    Yb = Y.copy()
    Yb[7] = 3.5e39  # finite in float64, inf in float32
    with pytest.raises(ValueError, match=r"Y column 0 overflows float32 \(row 7 holds 3\.5e\+39"):
        hsic(X, Yb)
    with x64():  # fine in float64
        assert np.isfinite(float(hsic(X, Yb).r2[0]))
    with pytest.raises(ValueError, match="pairs"):
        hsic_interactions(X, Y, pairs=[(0, 0)])
    with pytest.raises(ValueError, match="out of range"):
        hsic_interactions(X, Y, groups=[[0, 7]])
    with pytest.raises(ValueError, match="metric"):
        hsic_interactions(X, Y, metric="p")


# ----------------------------------------------------------------------------- OpenTURNS


def _ot_setup(ot, X, Y):
    cov = [ot.SquaredExponential([float(t)]) for t in X.std(0, ddof=1)]
    cov.append(ot.SquaredExponential([float(Y.std(ddof=1))]))
    return cov, ot.Sample(X), ot.Sample(Y[:, None])


def _ot_filter(ot, lower, s):
    dist = ot.DistanceToDomainFunction(ot.Interval(lower, float("inf")))
    f = ot.SymbolicFunction(["x", "s"], ["exp(-x/s)"])
    return ot.ComposedFunction(ot.ParametricFunction(f, [1], [s]), dist)


def _close(ours, ref, rtol=1e-10):
    ours, ref = np.asarray(ours, float), np.asarray(ref, float)
    np.testing.assert_allclose(ours, ref, rtol=rtol, atol=rtol * np.max(np.abs(ref)))


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("estimator", ["V", "U"])
def test_global_matches_openturns(seed, estimator):
    ot = pytest.importorskip("openturns")
    X, Y = data(seed)
    cov, Xs, Ys = _ot_setup(ot, X, Y)
    stat = ot.HSICVStat() if estimator == "V" else ot.HSICUStat()
    g = ot.HSICEstimatorGlobalSensitivity(cov, Xs, Ys, stat)
    with x64():
        r = hsic(X, Y, estimator=estimator, pvalue="gamma")
    _close(r.hsic, g.getHSICIndices())
    _close(r.r2, g.getR2HSICIndices())
    _close(r.pvalue, g.getPValuesAsymptotic(), rtol=1e-9)


@pytest.mark.parametrize("estimator", ["V", "U"])
def test_target_matches_openturns(estimator):
    ot = pytest.importorskip("openturns")
    X, Y = data(2)
    cov, Xs, Ys = _ot_setup(ot, X, Y)
    s = 0.1 * Y.std(ddof=1)
    stat = ot.HSICVStat() if estimator == "V" else ot.HSICUStat()
    t = ot.HSICEstimatorTargetSensitivity(cov, Xs, Ys, stat, _ot_filter(ot, 5.0, s))
    with x64():
        # the OpenTURNS example keeps the output kernel scaled by the unfiltered std
        r = hsic(X, Y, estimator=estimator, target=critical_domain(5.0, np.inf, 0.1),
                 output_bandwidth=float(Y.std(ddof=1)), pvalue="gamma")
    # OpenTURNS' own float64 rounding on these small indices is ~4e-10 relative (its
    # trace-of-products formula); ours agrees with the NumPy textbook formula to 1e-13.
    _close(r.hsic, t.getHSICIndices())
    _close(r.r2, t.getR2HSICIndices())
    _close(r.pvalue, t.getPValuesAsymptotic(), rtol=1e-9)


def test_conditional_matches_openturns():
    ot = pytest.importorskip("openturns")
    X, Y = data(3)
    cov, Xs, Ys = _ot_setup(ot, X, Y)
    s = 0.1 * Y.std(ddof=1)
    try:
        c = ot.HSICEstimatorConditionalSensitivity(cov, Xs, Ys, _ot_filter(ot, 5.0, s))
    except TypeError:  # older OpenTURNS took the estimator type too
        c = ot.HSICEstimatorConditionalSensitivity(cov, Xs, Ys, ot.HSICVStat(),
                                                   _ot_filter(ot, 5.0, s))
    with x64():
        r = hsic(X, Y, conditional=critical_domain(5.0, np.inf, 0.1))
    _close(r.hsic, c.getHSICIndices())
    _close(r.r2, c.getR2HSICIndices())


def test_permutation_pvalues_agree_with_openturns_statistically():
    ot = pytest.importorskip("openturns")
    X, Y = data(4)
    rng = np.random.default_rng(1)
    X[:, 2] = rng.normal(size=40)
    cov, Xs, Ys = _ot_setup(ot, X, Y)
    B = 1000
    g = ot.HSICEstimatorGlobalSensitivity(cov, Xs, Ys, ot.HSICVStat())
    g.setPermutationSize(B)
    ot.RandomGenerator.SetSeed(1)
    p_ot = np.array(g.getPValuesPermutation())
    r = hsic(X, Y, pvalue="permutation", n_permutations=B, key=jax.random.key(5),
             pvalue_convention="openturns")
    p = np.asarray(r.pvalue, float)
    # two independent Monte Carlo estimates of the same p-value: |diff| <~ 5 sigma
    sd = np.sqrt(2 * np.maximum(p_ot, 1 / B) * (1 - np.minimum(p_ot, 0.5)) / B)
    assert np.all(np.abs(p - p_ot) <= 5 * sd + 2.0 / B), (p, p_ot)


# ----------------------------------------------------------------------------- calibration


def _null_batch(seed, reps, n, d=2):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(reps, n, d))
    Y = rng.uniform(size=(reps, n, 1))  # independent of X
    return X.astype(np.float32), Y.astype(np.float32)


def _batched(X, Y, estimator, want_gamma):
    """vmap of the jitted core over repetitions (one compilation)."""
    reps, n, d = X.shape

    def one(x, y):
        th = jnp.std(x, axis=0, ddof=1)
        thy = jnp.std(y, axis=0, ddof=1)
        ones = jnp.ones(n, x.dtype)
        return _hsic_core(x.T, th, jnp.ones(1, x.dtype), jnp.zeros((1, d), x.dtype), y, thy,
                          ones, ones, estimator=estimator, out_kind="gaussian", cat=None,
                          block=n, want_gamma=want_gamma, has_groups=False,
                          single_pass=estimator == "V"), th, thy  # the path hsic() takes

    return jax.jit(jax.vmap(one))(jnp.asarray(X), jnp.asarray(Y))


def _ks_uniform(p):
    return scipy.stats.kstest(np.ravel(p), "uniform").pvalue


@pytest.mark.parametrize("estimator", ["V", "U"])
def test_gamma_pvalues_calibrated_under_null_and_powerful(estimator):
    X, Y = _null_batch(0, 200, 100)
    res, _, _ = _batched(X, Y, estimator, True)
    p = np.asarray(_gamma_sf(res, jnp.float32), float)  # (200, 2)
    assert p.shape == (200, 2)
    assert _ks_uniform(p) > 0.01
    frac = np.mean(p < 0.05)
    assert 0.02 <= frac <= 0.09, frac  # 400 p-values, binomial(400, 0.05): sd ~ 0.011
    # power: Y depends on X[:, 0] only
    rng = np.random.default_rng(1)
    Yd = (np.sin(2 * X[:, :, :1]) + 0.5 * rng.normal(size=(200, 100, 1))).astype(np.float32)
    res, _, _ = _batched(X, Yd, estimator, True)
    pd = np.asarray(_gamma_sf(res, jnp.float32), float)
    assert np.mean(pd[:, 0] < 0.01) > 0.95
    assert 0.01 <= np.mean(pd[:, 1] < 0.05) <= 0.1  # the inert input stays calibrated


def test_permutation_pvalues_calibrated_under_null_and_powerful():
    reps, n, B = 200, 100, 49
    X, Y = _null_batch(2, reps, n)

    def pvals(X, Y):
        res, th, thy = _batched(X, Y, "V", False)
        keys = jax.random.split(jax.random.key(7), reps)

        def one(k, x, y, t, ty, ca, ga, cb, gb):
            ones = jnp.ones(n, x.dtype)
            return _perm_core(k, x.T, t, jnp.ones(1, x.dtype), jnp.zeros((1, 2), x.dtype), y, ty,
                              ones, ones, ca, ga, cb, gb, estimator="V",
                              out_kind="gaussian", cat=None, block=n, has_groups=False,
                              n_perm=B, chunk=33, weighted=False)

        st = jax.jit(jax.vmap(one))(keys, jnp.asarray(X), jnp.asarray(Y), th, thy, res["ca"],
                                    res["ga"], res["cb"], res["gb"])
        st, obs = np.asarray(st), np.asarray(res["sxy"])[:, None, :]
        return (1.0 + (st >= obs).sum(1)) / (B + 1.0)

    p = pvals(X, Y)
    assert p.shape == (reps, 2)
    # discrete uniform on {1/100, ..., 1}: compare the empirical CDF at a few levels
    for level in (0.06, 0.1, 0.5):
        frac = np.mean(p <= level)
        assert abs(frac - level) < 4 * np.sqrt(level * (1 - level) / p.size), (level, frac)
    assert _ks_uniform(p - 0.5 / (B + 1)) > 0.01
    rng = np.random.default_rng(3)
    Yd = (X[:, :, :1] ** 2 + 0.5 * rng.normal(size=(reps, n, 1))).astype(np.float32)
    pd = pvals(X, Yd)
    assert np.mean(pd[:, 0] <= 0.02) > 0.95  # 0.02 = the smallest p-value, 1/(B+1)


def test_table_lists_indices_and_pvalues():
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(200, 2))
    res = hsic(X, X[:, 0] + 0.1 * rng.normal(size=200), pvalue="gamma")
    lines = res.table(names=["a", "b"]).splitlines()
    assert lines[0] == "HSIC (V-statistic, global, gamma p-values)"
    assert lines[1].split() == ["input", "HSIC", "R2-HSIC", "p-value"]
    a = lines[2].split()
    assert a[0] == "a" and float(a[2]) == round(float(res.r2[0]), 4) and float(a[3]) < 1e-3
    assert hsic(X, X[:, 1]).table().splitlines()[2].split()[0] == "x1"  # default names, no p-value
    assert hsic(X, X[:, 1]).table().splitlines()[2].split()[-1] == "-"
    with pytest.raises(ValueError, match="1 names for 2 indices"):
        res.table(names=["a"])


# ----------------------------------------------------------------------------- sample-size buckets


def _count_core_compilations(fn):
    """Number of compilations of the HSIC programs while ``fn`` runs (jax_log_compiles)."""
    import logging

    seen = []

    class Handler(logging.Handler):
        def emit(self, record):
            msg = record.getMessage()
            if msg.startswith(("Compiling jit(_hsic_core)", "Compiling jit(_hsic_native_core)",
                               "Compiling jit(_perm_core)")):
                seen.append(msg)

    h = Handler()
    logger = logging.getLogger("jax")
    logger.addHandler(h)
    try:
        with jax.log_compiles(True):
            fn()
    finally:
        logger.removeHandler(h)
    return len(seen)


def test_sample_sizes_of_one_bucket_share_one_compiled_program():
    rng = np.random.default_rng(30)
    X = rng.uniform(size=(60, 7))  # d = 7: shapes no other test compiles
    Y = np.sin(4 * X[:, 0]) + X[:, 1]
    kw = dict(pvalue="gamma", bandwidth="median")
    assert _count_core_compilations(lambda: hsic(X[:41], Y[:41], **kw)) == 1  # bucket 45
    assert _count_core_compilations(lambda: hsic(X[:43], Y[:43], **kw)) == 0
    assert _count_core_compilations(lambda: hsic(X[:45], Y[:45], **kw)) == 0
    assert _count_core_compilations(lambda: hsic(X[:46], Y[:46], **kw)) == 1  # bucket 50
    assert _count_core_compilations(lambda: hsic(X[:46], Y[:46], bucket=False, **kw)) == 1


@pytest.mark.parametrize("precision", ["float64", "float32"])
def test_padded_results_equal_unpadded(precision):
    X, Y = data(31, n=37, d=3)  # bucket 40: three padded rows
    rng = np.random.default_rng(0)
    X[:, 2] = rng.normal(size=37)
    key = jax.random.key(9)
    f64 = precision == "float64"
    rtol = 1e-11 if f64 else 2e-5
    perm = dict(pvalue="permutation", n_permutations=30, key=key)
    cases = [dict(estimator="V", pvalue="gamma"),
             dict(conditional=critical_domain(4.0, smoothing=0.3), **perm)]
    if f64:
        cases += [dict(estimator="U", **perm),
                  dict(target=best_fraction(0.3), convention="novello2023", bandwidth="max")]
    with jax.enable_x64(f64):
        for kw in cases:
            pad, exact = hsic(X, Y, **kw), hsic(X, Y, bucket=False, **kw)
            scale = float(np.max(np.abs(np.asarray(exact.hsic))))
            for f in ("hsic", "r2", "pvalue", "bandwidth"):
                np.testing.assert_allclose(np.asarray(getattr(pad, f)), np.asarray(getattr(exact, f)),
                                           rtol=rtol, atol=rtol * scale if f == "hsic" else 0,
                                           equal_nan=True, err_msg=f"{kw} {f}")
            np.testing.assert_allclose(pad.hsic_yy, exact.hsic_yy, rtol=rtol)
        if f64:
            kw = dict(target=best_fraction(0.3), convention="novello2023")
            np.testing.assert_allclose(hsic_interactions(X, Y, **kw),
                                       hsic_interactions(X, Y, bucket=False, **kw), rtol=rtol)


def test_r2_bias_under_independence_v_biased_u_unbiased():
    """The docstring's numbers: mean R2-HSIC of independent X, Y at n = 11 is about 0.19 with
    the V-statistic and 0 (within Monte Carlo error) with the U-statistic."""
    X, Y = _null_batch(5, 1500, 11, d=1)
    X, Y = X.astype(np.float64), Y.astype(np.float64)
    with x64():
        rv, _, _ = _batched(X, Y, "V", False)
        ru, _, _ = _batched(X, Y, "U", False)
    v, u = np.asarray(rv["r2"])[:, 0], np.asarray(ru["r2"])[:, 0]
    assert 0.17 < v.mean() < 0.21, v.mean()
    assert abs(u.mean()) < 4 * u.std(ddof=1) / np.sqrt(u.size), u.mean()
    assert np.all(np.abs(u) <= 1 + 1e-12)


# ----------------------------------------------------------------------------- native kernel
_NATIVE_CASES = {
    "gaussian": dict(),
    "gamma": dict(pvalue="gamma"),
    "categorical": dict(pvalue="gamma", kernel=["gaussian", "categorical", "gaussian"]),
    "two outputs": dict(pvalue="gamma", two_outputs=True),
    "target": dict(target=best_fraction(0.3), pvalue="gamma"),
    "novello": dict(target=best_fraction(0.3), convention="novello2023"),
    "permutation": dict(pvalue="permutation", n_permutations=40),
}


@pytest.mark.parametrize("case", list(_NATIVE_CASES))
@pytest.mark.parametrize("precision", ["float64", "float32"])
def test_native_kernel_agrees_with_the_pure_jax_program(case, precision, monkeypatch):
    """On a CPU the single pass runs in the fused native kernel (hsens_jax.native) when it can be
    built; ``HSENS_NATIVE=off`` runs the pure-JAX program: the same results, to rounding, on a
    padded bucket (n = 37 of 40) and at the smallest Gamma sample (n = 6)."""
    from hsens_jax import native

    if native.hsic_pass_target() is None:
        pytest.skip("the native kernel cannot be built here")
    from hsens_jax import executables

    names = []
    compiled = executables.compiled

    def spy(fn, name, *args, **kwargs):
        names.append(name)
        return compiled(fn, name, *args, **kwargs)

    monkeypatch.setattr(executables, "compiled", spy)
    kw = dict(_NATIVE_CASES[case])
    f64 = precision == "float64"
    rtol = 1e-10 if f64 else 3e-5
    for n in (37, 6):
        X, Y = data(40 + n, n=n, d=3)
        X[:, 1] = np.round(X[:, 1])  # ties: a categorical column with a few levels
        if kw.pop("two_outputs", False):
            Y = np.stack([Y, np.cos(X[:, 0])], axis=1)
        if "permutation" in kw.get("pvalue", ""):
            kw["key"] = jax.random.key(3)
        with jax.enable_x64(f64):
            names.clear()
            got = hsic(X, Y, **kw)
            assert "hsic._hsic_native_core" in names and "hsic._hsic_core" not in names
            names.clear()
            monkeypatch.setenv(native.ENV_VAR, "off")
            ref = hsic(X, Y, **kw)
            monkeypatch.delenv(native.ENV_VAR)
            assert "hsic._hsic_core" in names and "hsic._hsic_native_core" not in names
        scale = float(np.max(np.abs(np.asarray(ref.hsic))))
        for f in ("hsic", "r2", "pvalue", "bandwidth", "hsic_yy"):
            np.testing.assert_allclose(np.asarray(getattr(got, f)), np.asarray(getattr(ref, f)),
                                       rtol=rtol, atol=rtol * scale if f == "hsic" else 1e-7 * (not f64),
                                       equal_nan=True, err_msg=f"{case} n={n} {f}")


def test_the_native_kernel_gives_way_to_the_tiled_program_above_its_memory_budget(monkeypatch):
    import importlib

    from hsens_jax import executables

    hsic_mod = importlib.import_module("hsens_jax.sensitivity.hsic")
    if hsic_mod._native_target() is None:
        pytest.skip("the native kernel cannot be built here")
    names = []
    compiled = executables.compiled
    monkeypatch.setattr(executables, "compiled",
                        lambda fn, name, *a, **k: names.append(name) or compiled(fn, name, *a, **k))
    X, Y = data(5, n=30, d=3)
    assert hsic_mod._native_work_bytes(3, 30, 4) < hsic_mod.NATIVE_MAX_WORK_BYTES
    big = hsic_mod._native_work_bytes(1000, 10**6, 4)
    assert big > hsic_mod.NATIVE_MAX_WORK_BYTES  # 1000 inputs, a million rows: pure JAX, tiled
    native_r = hsic(X, Y, pvalue="gamma")
    monkeypatch.setattr(hsic_mod, "NATIVE_MAX_WORK_BYTES", 0)
    tiled_r = hsic(X, Y, pvalue="gamma")
    assert names == ["hsic._hsic_native_core", "hsic._hsic_core"]
    np.testing.assert_allclose(np.asarray(tiled_r.r2), np.asarray(native_r.r2), rtol=3e-5)
