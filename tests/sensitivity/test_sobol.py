"""Tests of hsens_jax.sensitivity.sobol against textbook NumPy formulas, analytic values,
SALib and SciPy, and calibration of the bootstrap intervals."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from hsens_jax.sensitivity.sobol import ESTIMATORS, SobolResult, sobol, sobol_design, sobol_indices
from hsens_jax.sensitivity.test_functions import (
    ISHIGAMI_BOUNDS,
    g_function,
    g_function_indices,
    ishigami,
    ishigami_indices,
)

G_A = np.array([0, 1, 4.5, 9, 99, 99, 99, 99], dtype=float)


# ----------------------------------------------------------------- independent reference


def ref_blocks(Y, d, second_order):
    """Textbook split of the SALib layout, written with explicit loops."""
    step = 2 * d + 2 if second_order else d + 2
    n = len(Y) // step
    A = np.array([Y[r * step] for r in range(n)])
    B = np.array([Y[r * step + step - 1] for r in range(n)])
    AB = np.array([[Y[r * step + 1 + j] for j in range(d)] for r in range(n)])
    BA = np.array([[Y[r * step + 1 + d + j] for j in range(d)] for r in range(n)]) if second_order else None
    return A, AB, BA, B


def ref_indices(Y, d, second_order, estimator):
    """float64 NumPy implementation of the published formulas (outputs standardised first)."""
    Y = np.asarray(Y, dtype=np.float64)
    Y = (Y - Y.mean()) / Y.std()
    A, AB, BA, B = ref_blocks(Y, d, second_order)
    V = np.var(np.concatenate([A, B]))
    S1, ST = np.zeros(d), np.zeros(d)
    for j in range(d):
        if estimator == "saltelli-jansen":
            S1[j] = np.mean(B * (AB[:, j] - A)) / V
            ST[j] = 0.5 * np.mean((A - AB[:, j]) ** 2) / V
        elif estimator == "martinez":
            S1[j] = np.corrcoef(B, AB[:, j])[0, 1]
            ST[j] = 1 - np.corrcoef(A, AB[:, j])[0, 1]
        elif estimator == "janon":
            def janon(u, v):
                m = np.mean((u + v) / 2)
                return (np.mean(u * v) - m**2) / (np.mean((u**2 + v**2) / 2) - m**2)
            S1[j] = janon(B, AB[:, j])
            ST[j] = 1 - janon(A, AB[:, j])
        elif estimator == "azzini":
            den = np.sum((A - B) ** 2 + (BA[:, j] - AB[:, j]) ** 2)
            S1[j] = 2 * np.sum((B - BA[:, j]) * (AB[:, j] - A)) / den
            ST[j] = np.sum((B - BA[:, j]) ** 2 + (A - AB[:, j]) ** 2) / den
    out = {"S1": S1, "ST": ST}
    if second_order:
        s1 = np.array([np.mean(B * (AB[:, j] - A)) / V for j in range(d)])
        S2 = np.full((d, d), np.nan)
        for j in range(d):
            for k in range(j + 1, d):
                S2[j, k] = np.mean(BA[:, j] * AB[:, k] - A * B) / V - s1[j] - s1[k]
        out["S2"] = S2
    return out


def ishigami_Y(n, second_order, seed=0):
    X = sobol_design(ISHIGAMI_BOUNDS, n, second_order=second_order, seed=seed)
    with jax.enable_x64(True):
        return np.asarray(ishigami(jnp.asarray(X)))


# ----------------------------------------------------------------- design


@pytest.mark.parametrize("second_order", [False, True])
def test_design_equals_salib_sample_and_layout(second_order):
    from SALib.sample import sobol as salib_sample

    d, n = 4, 64
    bounds = np.array([[0, 1], [-2, 3], [10, 20], [-1, 0]], dtype=float)
    problem = {"num_vars": d, "names": list("abcd"), "bounds": bounds.tolist()}
    X = sobol_design(bounds, n, second_order=second_order, seed=7)
    Xs = salib_sample.sample(problem, n, calc_second_order=second_order, seed=7)
    np.testing.assert_allclose(X, Xs, rtol=0, atol=1e-12)
    step = 2 * d + 2 if second_order else d + 2
    assert X.shape == (n * step, d)
    U = sobol_design(bounds, n, second_order=second_order, seed=7, unit=True).reshape(n, step, d)
    A, B = U[:, 0], U[:, -1]
    for i in range(d):
        expect = A.copy()
        expect[:, i] = B[:, i]
        np.testing.assert_array_equal(U[:, 1 + i], expect)
        if second_order:
            expect = B.copy()
            expect[:, i] = A[:, i]
            np.testing.assert_array_equal(U[:, 1 + d + i], expect)
    # A and B are the two halves of a balanced scrambled Sobol' sequence
    assert np.all((U >= 0) & (U < 1))
    np.testing.assert_allclose(np.concatenate([A, B], 1).mean(0), 0.5, atol=0.02)


@pytest.mark.parametrize("n", [0, 1, 3, 100, 2.0])
def test_design_rejects_non_power_of_two(n):
    with pytest.raises((ValueError, TypeError), match="n must"):
        sobol_design(ISHIGAMI_BOUNDS, n)


def test_bad_bounds_and_arguments():
    with pytest.raises(ValueError, match="shape"):
        sobol_design(np.zeros((3, 3)), 8)
    with pytest.raises(ValueError, match=r"row\(s\) \[1\]"):
        sobol_design(np.array([[0, 1], [2, 1]]), 8)
    with pytest.raises(TypeError, match="bounds_or_space"):
        sobol_design(object(), 8)
    Y = ishigami_Y(16, False)
    with pytest.raises(ValueError, match="multiple of"):
        sobol_indices(Y[:-1], 3)
    with pytest.raises(ValueError, match="estimator"):
        sobol_indices(Y, 3, estimator="sobol2007")
    with pytest.raises(ValueError, match="second_order=True"):
        sobol_indices(Y, 3, estimator="azzini")
    Yn = Y.copy()
    Yn[7] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        sobol_indices(Yn, 3)
    with pytest.raises(ValueError, match="confidence"):
        sobol_indices(Y, 3, confidence=1.5)
    with pytest.raises(ValueError, match="resample_indices"):
        sobol_indices(Y, 3, n_bootstrap=4, resample_indices=np.zeros((4, 3), int))
    with pytest.raises(ValueError, match="d must"):
        sobol_indices(Y, 0)
    with pytest.raises(ValueError, match="bootstrap_chunk"):
        sobol_indices(Y, 3, n_bootstrap=4, bootstrap_chunk=0)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_constant_output_gives_zero_indices(estimator):
    res = sobol_indices(np.full(16 * 8, 3.0), 3, second_order=True, estimator=estimator, n_bootstrap=8)
    assert np.all(res.S1 == 0) and np.all(res.ST == 0) and np.all(res.S1_conf == 0)


# ----------------------------------------------------------------- textbook formulas


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_matches_textbook_numpy_float64(estimator):
    Y = ishigami_Y(256, True, seed=3)
    ref = ref_indices(Y, 3, True, estimator)
    with jax.enable_x64(True):
        res = sobol_indices(Y, 3, second_order=True, estimator=estimator)
    assert res.S1.dtype == np.float64
    np.testing.assert_allclose(res.S1, ref["S1"], rtol=0, atol=1e-10)
    np.testing.assert_allclose(res.ST, ref["ST"], rtol=0, atol=1e-10)
    np.testing.assert_allclose(res.S2, ref["S2"], rtol=0, atol=1e-10)


def test_float32_default_is_accurate():
    Y = ishigami_Y(1024, True)
    r32 = sobol_indices(Y, 3, second_order=True)
    with jax.enable_x64(True):
        r64 = sobol_indices(Y, 3, second_order=True)
    assert r32.S1.dtype == np.float32
    for k in ("S1", "ST", "S2"):
        np.testing.assert_allclose(getattr(r32, k), getattr(r64, k), atol=2e-5)


def test_multi_output_equals_separate_runs():
    X = sobol_design(ISHIGAMI_BOUNDS, 128, seed=2)
    with jax.enable_x64(True):
        y1 = np.asarray(ishigami(jnp.asarray(X)))
        y2 = np.asarray(ishigami(jnp.asarray(X), a=2.0, b=0.5))
        both = sobol_indices(np.stack([y1, y2], 1), 3, n_bootstrap=50, seed=1)
        one = sobol_indices(y1, 3, n_bootstrap=50, seed=1)
        two = sobol_indices(y2, 3, n_bootstrap=50, seed=1)
    assert both.S1.shape == (3, 2)
    np.testing.assert_allclose(both.S1[:, 0], one.S1, atol=1e-12)
    np.testing.assert_allclose(both.ST[:, 1], two.ST, atol=1e-12)
    # same resample draws for every output
    np.testing.assert_allclose(both.S1_conf[:, 0], one.S1_conf, atol=1e-12)
    np.testing.assert_allclose(both.ST_ci[0][:, 1], two.ST_ci[0], atol=1e-12)


# ----------------------------------------------------------------- references


def test_matches_salib_including_bootstrap():
    from SALib.analyze import sobol as salib_sobol

    n, R, seed = 512, 64, 11
    Y = ishigami_Y(n, True, seed=5)
    problem = {"num_vars": 3, "names": ["x1", "x2", "x3"], "bounds": ISHIGAMI_BOUNDS.tolist()}
    S = salib_sobol.analyze(problem, Y, calc_second_order=True, num_resamples=R, seed=seed)
    r = np.random.default_rng(seed).integers(n, size=(n, R))  # SALib's draws for this seed
    with jax.enable_x64(True):
        res = sobol_indices(Y, 3, second_order=True, n_bootstrap=R, resample_indices=r.T, bootstrap_chunk=24)
    for k in ("S1", "ST", "S2", "S1_conf", "ST_conf", "S2_conf"):
        np.testing.assert_allclose(getattr(res, k), S[k], rtol=0, atol=1e-10, err_msg=k)
    # without second order, SALib reads our design/outputs the same way
    Y1 = ishigami_Y(n, False, seed=5)
    S = salib_sobol.analyze(problem, Y1, calc_second_order=False, num_resamples=10, seed=1)
    with jax.enable_x64(True):
        res = sobol_indices(Y1, 3)
    np.testing.assert_allclose(res.S1, S["S1"], atol=1e-10)
    np.testing.assert_allclose(res.ST, S["ST"], atol=1e-10)


def test_matches_scipy_sobol_indices():
    n, d = 256, 3
    U = sobol_design(ISHIGAMI_BOUNDS, n, seed=4)
    with jax.enable_x64(True):
        Y = np.asarray(ishigami(jnp.asarray(U)))
        res = sobol_indices(Y, d, centering="AB")
    Yr = Y.reshape(n, d + 2)
    f_A, f_B, f_AB = Yr[:, 0][None], Yr[:, -1][None], Yr[:, 1:d + 1].T[:, None, :]
    sp = stats.sobol_indices(func={"f_A": f_A, "f_B": f_B, "f_AB": f_AB}, n=n)
    np.testing.assert_allclose(res.S1, sp.first_order, atol=1e-10)
    np.testing.assert_allclose(res.ST, sp.total_order, atol=1e-10)


# ----------------------------------------------------------------- analytic values


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_ishigami_analytic_error_shrinks_with_n(estimator):
    exact = ishigami_indices(7.0, 0.1)
    errs = []
    for log2n in (10, 14):
        Y = ishigami_Y(2**log2n, True, seed=1)
        with jax.enable_x64(True):
            res = sobol_indices(Y, 3, second_order=True, estimator=estimator)
        err = max(np.max(np.abs(res.S1 - exact["S1"])), np.max(np.abs(res.ST - exact["ST"])),
                  abs(res.S2[0, 2] - exact["S2"][0, 2]))
        assert err < 4.0 / np.sqrt(2**log2n), (log2n, err)
        errs.append(err)
    assert errs[1] < errs[0]


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_g_function_analytic(estimator):
    exact = g_function_indices(G_A)
    d = len(G_A)
    errs = []
    for log2n in (10, 14):
        X = sobol_design(np.array([[0.0, 1.0]] * d), 2**log2n, second_order=True, seed=2)
        with jax.enable_x64(True):
            Y = np.asarray(g_function(jnp.asarray(X), G_A))
            res = sobol_indices(Y, d, second_order=True, estimator=estimator)
        err = max(np.max(np.abs(res.S1 - exact["S1"])), np.max(np.abs(res.ST - exact["ST"])),
                  abs(res.S2[0, 1] - exact["S2"][0, 1]))
        assert err < 4.0 / np.sqrt(2**log2n), (log2n, err)
        errs.append(err)
    assert errs[1] < errs[0]


def test_g_function_and_ishigami_exact_values():
    # closed forms cross-checked by brute-force quadrature on a grid
    ex = ishigami_indices(7, 0.1)
    np.testing.assert_allclose(ex["S1"], [0.3139, 0.4424, 0.0], atol=1e-4)
    np.testing.assert_allclose(ex["ST"], [0.5576, 0.4424, 0.2437], atol=1e-4)
    g = np.linspace(0, 1, 2001)[:-1] + 0.00025  # midpoints
    a = np.array([0.0, 2.0])
    f = (np.abs(4 * g[:, None] - 2) + a[None]) / (1 + a[None])  # (m, 2) factors
    F = f[:, 0][:, None] * f[:, 1][None, :]
    V = F.var()
    S1 = np.array([F.mean(1).var(), F.mean(0).var()]) / V
    np.testing.assert_allclose(g_function_indices(a)["S1"], S1, atol=1e-5)


# ----------------------------------------------------------------- one-call API and spaces


class TinySpace:
    """Duck-typed stand-in for hsens_jax.space.Space: x (float, log10 on [1e-3, 1]), k (int 1..4)."""

    names = ("lr", "k")

    def __len__(self):
        return 2

    def from_unit(self, U):
        U = np.asarray(U, dtype=np.float64)
        return {"lr": 10.0 ** (-3 + 3 * U[:, 0]), "k": np.minimum(np.floor(U[:, 1] * 4), 3) + 1.0}

    def to_unit(self, configs):
        return np.stack([(np.log10(configs["lr"]) + 3) / 3, (configs["k"] - 0.5) / 4], 1)


def test_sobol_one_call_chunked_and_space():
    f = lambda X: ishigami(X)  # noqa: E731
    full = sobol(f, ISHIGAMI_BOUNDS, 256, seed=3)
    chunked = sobol(f, ISHIGAMI_BOUNDS, 256, seed=3, chunk_size=100)
    np.testing.assert_allclose(full.S1, chunked.S1, atol=1e-6)
    assert isinstance(full, SobolResult) and full.names == ("x1", "x2", "x3")
    calls = []

    def g(cfg):
        calls.append(len(cfg["lr"]))
        return np.log10(cfg["lr"]) + 0.0 * cfg["k"]

    res = sobol(g, TinySpace(), 64, chunk_size=128)
    assert res.names == ("lr", "k") and sum(calls) == 64 * 4 and max(calls) == 128
    np.testing.assert_allclose(res.S1, [1.0, 0.0], atol=0.01)  # QMC error at n = 64
    np.testing.assert_allclose(res.ST, [1.0, 0.0], atol=0.01)
    assert abs(res.S1[1]) < 1e-6 and abs(res.ST[1]) < 1e-6  # k has no effect at all
    with pytest.raises(ValueError, match="f must return"):
        sobol(lambda X: X[:5, 0], ISHIGAMI_BOUNDS, 8)


# ----------------------------------------------------------------- bootstrap calibration


def test_bootstrap_interval_coverage_linear_model():
    """Percentile and normal-approximation intervals cover the true S1/ST at ~95%."""
    c = jnp.array([1.0, 2.0, 3.0])
    true = np.asarray(c**2 / jnp.sum(c**2))
    d, n, reps = 3, 512, 200

    @jax.jit
    def saltelli_outputs(key):  # i.i.d. (not QMC) design, as the bootstrap assumes
        kA, kB = jax.random.split(key)
        A = jax.random.uniform(kA, (n, d))
        B = jax.random.uniform(kB, (n, d))
        eye = jnp.eye(d, dtype=bool)[None]
        AB = jnp.where(eye, B[:, None, :], A[:, None, :])
        X = jnp.concatenate([A[:, None], AB, B[:, None]], 1)  # (n, d + 2, d)
        return (X @ c).reshape(-1)

    Ys = np.asarray(jax.vmap(saltelli_outputs)(jax.random.split(jax.random.key(0), reps)))
    hit_pct = {"S1": 0, "ST": 0}
    hit_norm = {"S1": 0, "ST": 0}
    for i in range(reps):
        res = sobol_indices(Ys[i], d, n_bootstrap=300, seed=i)
        for k in hit_pct:
            est, (lo, hi), conf = getattr(res, k), getattr(res, k + "_ci"), getattr(res, k + "_conf")
            hit_pct[k] += np.sum((lo <= true) & (true <= hi))
            hit_norm[k] += np.sum(np.abs(est - true) <= conf)
    m = reps * d
    tol = 3 * np.sqrt(0.95 * 0.05 / reps)  # per-index binomial sd, 3 sigma (indices are dependent)
    for k in hit_pct:
        assert abs(hit_pct[k] / m - 0.95) < tol, (k, hit_pct[k] / m)
        assert abs(hit_norm[k] / m - 0.95) < tol, (k, hit_norm[k] / m)


def test_bootstrap_intervals_shrink_and_bracket():
    Y = ishigami_Y(1024, False)
    res = sobol_indices(Y, 3, n_bootstrap=200, seed=0)
    lo, hi = res.S1_ci
    assert np.all(lo <= res.S1 + 1e-6) and np.all(res.S1 <= hi + 1e-6)
    Y2 = ishigami_Y(4096, False)
    res2 = sobol_indices(Y2, 3, n_bootstrap=200, seed=0)
    assert np.all(res2.ST_conf < res.ST_conf)
    no = sobol_indices(Y, 3, n_bootstrap=0)
    assert np.all(np.isnan(no.S1_conf)) and no.S2 is None
    assert sobol_indices(Y, 3).n_bootstrap == 100  # intervals by default, as SALib's num_resamples


def test_table_lists_every_index_with_its_interval():
    Y = ishigami_Y(256, True)
    res = sobol_indices(Y, 3, second_order=True, n_bootstrap=50, names=["a", "b", "c"])
    text = res.table(digits=3)
    lines = text.splitlines()
    assert lines[0].startswith("Sobol' indices (saltelli-jansen, n = 256, 50 bootstrap resamples)")
    row = lines[2].split()
    assert row[0] == "a" and float(row[1]) == round(float(res.S1[0]), 3)
    assert row[2] == f"[{res.S1_ci[0][0]:.3f}," and float(row[4]) == round(float(res.ST[0]), 3)
    assert "a x b" in text and "b x c" in text and "c x a" not in text
    Y1 = ishigami_Y(256, False)
    two = sobol_indices(np.stack([Y1, 2 * Y1], 1), 3, n_bootstrap=0).table(output=1)
    assert "output 1" in two and " - " in two + " "
    with pytest.raises(ValueError, match="output=2 out of range for 2 outputs"):
        sobol_indices(np.stack([Y1, Y1], 1), 3, n_bootstrap=0).table(output=2)
