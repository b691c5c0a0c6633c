"""Tests of hsens_jax.sensitivity.given_data: textbook NumPy, SALib, analytic values, bias."""

import jax
import numpy as np
import pytest

from hsens_jax.sensitivity.given_data import default_bins, given_data_first_order, plischke_bins
from hsens_jax.sensitivity.test_functions import ishigami, ishigami_indices


def ref_binning(x, y, M):
    """Textbook correlation ratio with equal-count bins and the epsilon^2 correction."""
    n = len(y)
    order = np.argsort(x, kind="stable")
    groups = np.array_split(order, M)  # equal-count bins (sizes differ by <= 1)
    ybar = y.mean()
    ssb = sum(len(g) * (y[g].mean() - ybar) ** 2 for g in groups)
    ssw = sum(((y[g] - y[g].mean()) ** 2).sum() for g in groups)
    sst = ((y - ybar) ** 2).sum()
    return ssb / sst, (ssb - (M - 1) * ssw / (n - M)) / sst


def test_matches_textbook_and_salib_sobol_first():
    from SALib.analyze.delta import sobol_first

    rng = np.random.default_rng(1)
    n, M = 3000, 20
    X = rng.uniform(-np.pi, np.pi, (n, 3))
    Y = np.asarray(ishigami(X), dtype=np.float64)
    with jax.enable_x64(True):
        r = given_data_first_order(X, Y, bins=M)
    for i in range(3):
        raw, corr = ref_binning(X[:, i], Y, M)
        assert abs(r.S1_raw[i] - raw) < 1e-10 and abs(r.S1[i] - corr) < 1e-10
        assert abs(r.S1_raw[i] - sobol_first(Y, X[:, i], np.linspace(0, n, M + 1))) < 1e-10
    assert list(r.bins) == [M] * 3


def test_ishigami_analytic_and_shrinking_error():
    exact = ishigami_indices()["S1"]
    rng = np.random.default_rng(2)
    errs = []
    for n in (1000, 16000):
        X = rng.uniform(-np.pi, np.pi, (n, 3))
        with jax.enable_x64(True):
            r = given_data_first_order(X, np.asarray(ishigami(X)))
        err = np.max(np.abs(r.S1 - exact))
        assert err < 2.5 / np.sqrt(n), (n, err)
        errs.append(err)
    assert errs[1] < errs[0]


def test_bias_correction_removes_positive_bias_for_inert_input():
    """Raw estimate of an inert input ~ (M-1)/n > 0; the corrected one is centred on 0."""
    rng = np.random.default_rng(3)
    n, M, reps = 400, 20, 200
    X = rng.uniform(size=(reps, n, 2))
    Y = X[..., 0] + rng.standard_normal((reps, n)) * 0.3  # x2 inert
    raw, cor = [], []
    for i in range(reps):
        r = given_data_first_order(X[i], Y[i], bins=M)
        raw.append(r.S1_raw[1])
        cor.append(r.S1[1])
    raw, cor = np.array(raw), np.array(cor)
    se = raw.std() / np.sqrt(reps)
    assert abs(raw.mean() - (M - 1) / n) < 4 * se  # documented bias
    assert abs(cor.mean()) < 4 * cor.std() / np.sqrt(reps)


def test_discrete_categorical_and_inactive():
    rng = np.random.default_rng(4)
    n = 4000
    cat = rng.integers(0, 3, n).astype(float)  # categorical choice index
    effect = np.array([0.0, 2.0, -1.0])
    lr = rng.uniform(size=n)
    child = np.where(cat == 1, rng.uniform(size=n), np.nan)  # active only for choice 1
    y = effect[cat.astype(int)] + lr + np.nan_to_num(child)
    cfg = {"opt": cat, "lr": lr, "momentum": child}
    r = given_data_first_order(cfg, y, discrete=["opt"])
    assert r.names == ("opt", "lr", "momentum") and r.discrete[0] and not r.discrete[1]
    assert r.bins[0] == 3
    # exact conditional variance of the categorical: Var(E[y|opt]) with E[y|opt] = eff + 0.5 + 0.5*[opt==1]
    m = effect + 0.5 + np.array([0, 0.5, 0])
    v_opt = m.var()
    v_tot = v_opt + 1 / 12 + (1 / 3) * (1 / 12)
    np.testing.assert_allclose(r.S1[0], v_opt / v_tot, atol=0.03)
    np.testing.assert_allclose(r.S1[1], (1 / 12) / v_tot, atol=0.03)
    # auto-detection of a discrete column with few values
    r2 = given_data_first_order(cfg, y)
    assert r2.discrete[0] and r2.bins[0] == 3


def test_multi_output_and_errors():
    rng = np.random.default_rng(5)
    X = rng.uniform(size=(500, 2))
    Y = np.stack([X[:, 0], X[:, 1]], 1)
    r = given_data_first_order(X, Y)
    assert r.S1.shape == (2, 2) and r.S1[0, 0] > 0.95 and r.S1[1, 1] > 0.95
    assert abs(r.S1[1, 0]) < 0.05
    with pytest.raises(ValueError, match="Y must"):
        given_data_first_order(X, Y[:10])
    with pytest.raises(ValueError, match="bins"):
        given_data_first_order(X, Y, bins=1)
    with pytest.raises(ValueError, match="unknown input"):
        given_data_first_order(X, Y[:, 0], discrete=["zz"])
    with pytest.raises(ValueError, match="NaN"):
        given_data_first_order(X, np.full(500, np.nan))
    assert default_bins(1000) == 32 and plischke_bins(1000) == 6


def test_table_lists_s1_raw_and_bins():
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(2000, 2))
    res = given_data_first_order(X, X[:, 0] + 0.01 * rng.normal(size=2000), names=["a", "b"])
    lines = res.table(digits=3).splitlines()
    assert lines[0] == "Given-data first-order indices" and lines[1].split() == ["input", "S1", "S1", "raw", "bins"]
    a = lines[2].split()
    assert a[0] == "a" and float(a[1]) == round(float(res.S1[0]), 3) and int(a[3]) == int(res.bins[0])
    assert float(a[1]) > 0.99 and abs(float(lines[3].split()[1])) < 0.02


def test_nearby_sample_sizes_share_one_program_and_padding_changes_nothing():
    import importlib

    gd = importlib.import_module("hsens_jax.sensitivity.given_data")
    rng = np.random.default_rng(7)
    X = rng.uniform(size=(710, 3))
    Y = np.sin(3 * X[:, 0]) + X[:, 1] ** 2 + 0.1 * rng.normal(size=710)
    with jax.enable_x64(True):
        a = given_data_first_order(X[:640], Y[:640], bins=16)  # bucket 710
        size = gd._binned._cache_size()
        b = given_data_first_order(X[:700], Y[:700], bins=16)
        assert gd._binned._cache_size() == size  # no new program
        full = given_data_first_order(X, Y, bins=16)  # n = bucket: nothing padded
    # the estimate at n = 700 by hand: bins of 700 / 16 ranks, conditional means
    y = Y[:700] - Y[:700].mean()
    ref = []
    for j in range(3):
        r = np.argsort(np.argsort(X[:700, j])) + 1
        ids = (r * 16 + 700 - 1) // 700 - 1
        ssb = sum(y[ids == k].sum() ** 2 / (ids == k).sum() for k in range(16))
        sst = (y * y).sum()
        ref.append((ssb - 15 * (sst - ssb) / (700 - 16)) / sst)
    np.testing.assert_allclose(b.S1, ref, rtol=1e-12)
    assert np.all(np.isfinite(a.S1)) and np.all(np.isfinite(full.S1))
