"""Tests of hsens_jax.sensitivity.morris: design structure, textbook EE formula, SALib."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hsens_jax.sensitivity.morris import MorrisResult, morris, morris_design, morris_indices
from hsens_jax.sensitivity.test_functions import ISHIGAMI_BOUNDS, ishigami


def ref_morris(U, Y, d, delta):
    """Textbook elementary effects with explicit loops (unit-cube design U)."""
    r = U.shape[0] // (d + 1)
    ee = np.zeros((d, r))
    for t in range(r):
        for s in range(d):
            a, b = t * (d + 1) + s, t * (d + 1) + s + 1
            dx = U[b] - U[a]
            j = int(np.argmax(np.abs(dx)))
            ee[j, t] = (Y[b] - Y[a]) / delta * np.sign(dx[j])
    return ee


@pytest.mark.parametrize("levels", [4, 6])
def test_design_structure(levels):
    d, r = 5, 40
    U = morris_design(np.array([[0.0, 1.0]] * d), r, levels=levels, seed=3, unit=True)
    assert U.shape == (r * (d + 1), d)
    delta = levels / (2 * (levels - 1))
    grid = np.arange(levels) / (levels - 1)
    assert np.all(np.min(np.abs(U[..., None] - grid), -1) < 1e-9)  # on the p-level grid
    T = U.reshape(r, d + 1, d)
    steps = np.diff(T, axis=1)
    assert np.all(np.count_nonzero(np.abs(steps) > 1e-12, axis=2) == 1)  # one input per step
    np.testing.assert_allclose(np.abs(steps).sum(2), delta)  # by +-Delta
    assert np.all(np.count_nonzero(np.abs(steps) > 1e-12, axis=1) == 1)  # each input moves once
    # direction and base level are random: both signs occur for every input
    sgn = np.sign(steps.sum(1))
    assert np.all((sgn > 0).any(0)) and np.all((sgn < 0).any(0))
    X = morris_design(ISHIGAMI_BOUNDS, 4, seed=3)
    assert X.min() >= -np.pi - 1e-12 and X.max() <= np.pi + 1e-12


def test_matches_textbook_and_salib_on_salib_sample():
    from SALib.analyze import morris as salib_analyze
    from SALib.sample import morris as salib_sample

    problem = {"num_vars": 3, "names": ["x1", "x2", "x3"], "bounds": ISHIGAMI_BOUNDS.tolist()}
    r, R = 60, 200
    X = salib_sample.sample(problem, r, num_levels=4, seed=2)
    with jax.enable_x64(True):
        Y = np.asarray(ishigami(jnp.asarray(X)))
        S = salib_analyze.analyze(problem, X, Y, num_resamples=R, num_levels=4, seed=9)
        idx = np.random.default_rng(9).integers(r, size=(3, R, r))  # SALib's draws for seed=9
        res = morris_indices(X, Y, ISHIGAMI_BOUNDS, n_bootstrap=R, resample_indices=idx)
    for k in ("mu", "mu_star", "sigma", "mu_star_conf"):
        np.testing.assert_allclose(getattr(res, k), S[k], rtol=0, atol=1e-10, err_msg=k)
    U = (X + np.pi) / (2 * np.pi)
    ee = ref_morris(U, Y, 3, 2 / 3)
    np.testing.assert_allclose(res.ee, ee, atol=1e-10)
    np.testing.assert_allclose(res.sigma, ee.std(1, ddof=1), atol=1e-10)
    lo, hi = res.mu_star_ci
    assert np.all(lo <= res.mu_star + 1e-9) and np.all(res.mu_star <= hi + 1e-9)


def test_linear_model_exact_effects_and_one_call():
    c = np.array([1.0, -2.0, 0.0, 5.0])
    bounds = np.array([[0, 1], [0, 2], [-1, 1], [0, 10]], dtype=float)
    f = lambda X: X @ jnp.asarray(c, X.dtype)  # noqa: E731
    res = morris(f, bounds, 30, n_bootstrap=100, seed=1, chunk_size=37)
    assert isinstance(res, MorrisResult)
    width = bounds[:, 1] - bounds[:, 0]
    # EE of a linear model is constant: c_i * (b_i - a_i) (SALib convention: per unit-cube Delta)
    np.testing.assert_allclose(res.mu, c * width, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(res.mu_star, np.abs(c * width), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(res.sigma, 0.0, atol=1e-3)
    np.testing.assert_allclose(res.mu_star_conf, 0.0, atol=1e-3)


def test_multi_output_and_ishigami_ranking():
    X = morris_design(ISHIGAMI_BOUNDS, 200, seed=0)
    Y = np.asarray(ishigami(jnp.asarray(X)))
    res = morris_indices(X, np.stack([Y, 2 * Y], 1), ISHIGAMI_BOUNDS, n_bootstrap=50)
    assert res.mu_star.shape == (3, 2)
    np.testing.assert_allclose(res.mu_star[:, 1], 2 * res.mu_star[:, 0], rtol=1e-5)
    # x3 only acts through the interaction with x1: large sigma relative to |mu|
    assert res.sigma[2, 0] > abs(res.mu[2, 0])
    assert res.mu_star[1, 0] > res.mu_star[2, 0]


def test_bootstrap_mu_star_coverage():
    """Percentile CI of mu* covers E|EE| at about the nominal level (i.i.d. effects)."""
    d, r, reps = 1, 100, 200
    hits = 0
    true = 1.0  # EE = 1 + 0.5 * N(0,1) noise -> E|EE| computed by quadrature below
    z = np.linspace(-12, 12, 200001)
    true = np.trapezoid(np.abs(1 + 0.5 * z) * np.exp(-z**2 / 2) / np.sqrt(2 * np.pi), z)
    rng = np.random.default_rng(0)
    for i in range(reps):
        X = morris_design(np.array([[0.0, 1.0]]), r, seed=i, unit=True)
        steps = np.diff(X.reshape(r, 2), axis=1)[:, 0]
        ee = 1 + 0.5 * rng.standard_normal(r)
        Y = np.stack([np.zeros(r), ee * steps], 1).reshape(-1)  # y_after - y_before = ee * dx
        res = morris_indices(X, Y, np.array([[0.0, 1.0]]), levels=4, n_bootstrap=400, seed=i)
        lo, hi = res.mu_star_ci
        hits += int(lo[0] <= true <= hi[0])
    assert abs(hits / reps - 0.95) < 3 * np.sqrt(0.95 * 0.05 / reps)


def test_errors():
    b = np.array([[0.0, 1.0]] * 2)
    with pytest.raises(ValueError, match="levels"):
        morris_design(b, 4, levels=5)
    with pytest.raises(ValueError, match="r must"):
        morris_design(b, 1)
    X = morris_design(b, 4)
    with pytest.raises(ValueError, match="Y must"):
        morris_indices(X, np.zeros(5), b)
    with pytest.raises(ValueError, match="not a Morris"):
        morris_indices(np.random.default_rng(0).random((12, 2)), np.zeros(12), b)
    with pytest.raises(ValueError, match="NaN"):
        morris_indices(X, np.full(12, np.nan), b)


class TinySpace:
    """Duck-typed stand-in for hsens_jax.space.Space: lr (log10 on [1e-4, 1e-1]), width (Int 1..8)."""

    names = ("lr", "width")

    def __len__(self):
        return 2

    def from_unit(self, U):
        U = np.asarray(U, dtype=np.float64)
        return {"lr": 10.0 ** (-4 + 3 * U[:, 0]), "width": np.minimum(np.floor(U[:, 1] * 8), 7) + 1}

    def to_unit(self, c):
        return np.stack([(np.log10(c["lr"]) + 4) / 3, (c["width"] - 0.5) / 8], 1)


def test_space_configs_round_trip():
    sp = TinySpace()
    X = morris_design(sp, 10, seed=4)
    assert set(X) == {"lr", "width"} and X["lr"].shape == (30,)
    res = morris(lambda c: np.log10(c["lr"]), sp, 10, n_bootstrap=0, seed=4)
    # log10(lr) is linear in the unit coordinate with slope 3: every EE equals 3
    np.testing.assert_allclose(res.mu_star, [3.0, 0.0], atol=1e-5)
    np.testing.assert_allclose(res.sigma, [0.0, 0.0], atol=1e-5)
    assert res.names == ("lr", "width") and np.all(np.isnan(res.mu_star_conf))


def test_table_lists_mu_star_with_its_interval():
    bounds = np.array([[0.0, 1.0]] * 3)
    res = morris(lambda X: 3 * X[:, 0] + X[:, 1] ** 2, bounds, 20, n_bootstrap=200, names=["a", "b", "c"])
    lines = res.table(digits=3).splitlines()
    assert lines[0] == "Morris elementary effects (20 trajectories, 4 levels)"
    assert lines[1].split() == ["input", "mu*", "mu*", "95%", "CI", "mu", "sigma"]
    a = lines[2].split()
    assert a[0] == "a" and float(a[1]) == pytest.approx(3.0, abs=1e-3) and a[2] == f"[{res.mu_star_ci[0][0]:.3f},"
    assert lines[4].split()[1] == "0.000"  # c does not matter
    two = morris(lambda X: jnp.stack([X[:, 0], 2 * X[:, 2]], 1), bounds, 10, n_bootstrap=0).table(output=1)
    assert two.splitlines()[0].endswith("output 1") and two.splitlines()[4].split()[1] == "2.0000"
    assert two.splitlines()[2].split()[2] == "-"  # no bootstrap, no interval
    with pytest.raises(ValueError, match="output=5 out of range for 2 outputs"):
        morris(lambda X: jnp.stack([X[:, 0], X[:, 1]], 1), bounds, 4, n_bootstrap=0).table(output=5)
