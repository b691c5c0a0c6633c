"""Tests for hsens_jax.encoding: the unit cube (against independent float64 NumPy formulas written
here), one-hot, and the normalization of Novello et al. (2023)."""

import numpy as np
import pytest
from scipy import stats

from hsens_jax import design, encoding
from hsens_jax.space import Bool, Categorical, Float, Int, Space

from .spaces import opt_space





def ref_from_unit_column(p, u):
    """Independent textbook maps, float64."""
    if isinstance(p, Float):
        if p.log:
            return 10 ** (np.log10(p.low) + u * (np.log10(p.high) - np.log10(p.low)))
        return p.low + u * (p.high - p.low)
    if isinstance(p, Int) and p.log:
        # integer v owns the u-interval [log(v/low), log((v+1)/low)) / log((high+1)/low)
        L = np.log((p.high + 1) / p.low)
        vals = np.arange(p.low, p.high + 1)
        edges = np.log(vals / p.low) / L
        return vals[np.searchsorted(edges, u, side="right") - 1].astype(float)
    k = p.n_values
    j = np.minimum((u * k).astype(int), k - 1)
    return (p.low + j).astype(float) if isinstance(p, Int) else j.astype(float)


def test_from_unit_matches_reference():
    s = Space(
        [
            Float("f", -2.0, 5.0),
            Float("lf", 1e-4, 10.0, log=True),
            Int("i", -3, 7),
            Int("li", 3, 300, log=True),
            Categorical("c", ["a", "b", "c"]),
            Bool("b"),
        ]
    )
    rng = np.random.default_rng(0)
    U = rng.random((5000, 6))
    U[:6] = np.eye(6)  # exact 0 and 1 endpoints
    U[6:12] = 1 - np.eye(6)
    c = encoding.from_unit(s, U)
    for j, p in enumerate(s):
        ref = ref_from_unit_column(p, U[:, j])
        if isinstance(p, Float):
            np.testing.assert_allclose(c[p.name], ref, rtol=1e-12, err_msg=p.name)
        else:
            np.testing.assert_array_equal(c[p.name], ref, err_msg=p.name)
    assert c["f"].min() == -2.0 and c["f"].max() == 5.0
    assert c["lf"].min() >= 1e-4 and c["lf"].max() <= 10.0
    assert c["i"].max() == 7 and c["c"].max() == 2 and c["b"].max() == 1


def test_from_unit_inactive_and_errors():
    s = opt_space()
    U = np.array([[0.1, 0.5, 0.5], [0.5, 0.5, 0.5], [0.9, 0.5, 0.5]])
    c = encoding.from_unit(s, U)
    assert np.isnan(c["momentum"][0]) and np.isnan(c["momentum"][2])
    assert c["momentum"][1] == pytest.approx(0.745)
    with pytest.raises(ValueError, match="column 1 \\('lr'\\) has 1.5 outside \\[0, 1\\]"):
        encoding.from_unit(s, np.array([[0.1, 1.5, 0.5]]))
    with pytest.raises(ValueError, match="'momentum'\\) has nan outside"):
        encoding.from_unit(s, np.array([[0.1, 0.5, np.nan]]))
    with pytest.raises(ValueError, match="U must have shape \\(n, 3\\)"):
        encoding.from_unit(s, np.zeros((4, 2)))


def test_unit_round_trips():
    s = Space(
        [
            Float("f", -2.0, 5.0),
            Float("lf", 1e-4, 10.0, log=True),
            Int("i", -3, 7),
            Int("li", 1, 1000, log=True),
            Categorical("c", ["a", "b", "c"]),
            Bool("b", condition={"c": ["a", "c"]}),
        ]
    )
    # discrete: every possible value round-trips exactly
    n = 1000
    rng = np.random.default_rng(1)
    c = {
        "f": rng.uniform(-2, 5, n),
        "lf": np.exp(rng.uniform(np.log(1e-4), np.log(10.0), n)),
        "i": np.resize(np.arange(-3, 8.0), n),
        "li": np.arange(1, 1001.0),
        "c": np.resize([0.0, 1.0, 2.0], n),
        "b": np.resize([0.0, 1.0], n),
    }
    c["b"][c["c"] == 1] = np.nan
    s.validate(c)
    U = encoding.to_unit(s, c)
    assert U.shape == (n, 6) and np.all((U[~np.isnan(U)] >= 0) & (U[~np.isnan(U)] <= 1))
    np.testing.assert_array_equal(np.isnan(U[:, 5]), c["c"] == 1)
    # bin centres
    np.testing.assert_allclose(U[:, 2], (c["i"] + 3 + 0.5) / 11)
    np.testing.assert_allclose(U[:, 4], (c["c"] + 0.5) / 3)
    li = c["li"]
    np.testing.assert_allclose(U[:, 3], np.log(np.sqrt(li * (li + 1))) / np.log(1001), rtol=1e-12)
    U_filled = np.where(np.isnan(U), 0.5, U)
    back = encoding.from_unit(s, U_filled)
    for name in ["i", "li", "c", "b"]:
        np.testing.assert_array_equal(back[name], c[name], err_msg=name)
    np.testing.assert_allclose(back["f"], c["f"], rtol=1e-12)
    np.testing.assert_allclose(back["lf"], c["lf"], rtol=1e-12)
    # and the other way: to_unit(from_unit(U)) == U for the Float columns
    U2 = rng.random((200, 6))
    np.testing.assert_allclose(encoding.to_unit(s, encoding.from_unit(s, U2))[:, :2], U2[:, :2], rtol=1e-12, atol=1e-15)



def test_one_hot():
    s = Space(
        [
            Categorical("opt", ["sgd", "momentum", "adam"]),
            Float("lr", 1e-4, 1e-1, log=True),
            Float("momentum", 0.5, 1.0, condition={"opt": "momentum"}),
            Categorical("sched", ["cos", "step"], condition={"opt": ["momentum", "adam"]}),
            Bool("bn"),
            Int("depth", 2, 6),
        ]
    )
    c = s.encode(
        [
            {"opt": "sgd", "lr": 1e-4, "bn": True, "depth": 2},
            {"opt": "momentum", "lr": 1e-1, "momentum": 0.75, "sched": "step", "bn": False, "depth": 6},
            {"opt": "adam", "lr": 1e-2, "sched": "cos", "bn": True, "depth": 3},
        ]
    )
    X, names = encoding.one_hot(s, c)
    assert names == [
        "opt=sgd", "opt=momentum", "opt=adam", "lr", "momentum", "sched=cos", "sched=step", "bn",
        "depth",
    ]
    nan = np.nan
    ref = np.array(
        [
            [1, 0, 0, 0.0, nan, 0, 0, 1, 0.0],
            [0, 1, 0, 1.0, 0.5, 0, 1, 0, 1.0],
            [0, 0, 1, 2 / 3, nan, 1, 0, 1, 0.25],
        ]
    )
    assert X.dtype == np.float64 and X.shape == (3, 9)
    np.testing.assert_allclose(X, ref, rtol=1e-12, atol=1e-15)


def novello_space():
    return Space(
        [
            Float("lr", 1e-4, 1e-1, log=True),
            Categorical("c", ["a", "b", "c"]),
            Int("depth", 1, 4),
            Int("width", 1, 64, log=True),
            Bool("bn", condition={"c": "b"}),
        ]
    )


def test_normalize_novello_bins_and_determinism():
    s = novello_space()
    c = design.sample(s, 3000, "random", seed=0)
    X = encoding.normalize(s, c, seed=1)
    assert X.shape == (3000, 5) and X.dtype == np.float64
    U = encoding.to_unit(s, c)
    np.testing.assert_array_equal(X[:, 0], U[:, 0])  # Float: min-max on the log scale
    np.testing.assert_allclose(
        X[:, 0], (np.log(c["lr"]) - np.log(1e-4)) / (np.log(1e-1) - np.log(1e-4)), rtol=1e-12
    )
    # categorical / linear int: bin [j/k, (j+1)/k]
    j = c["c"]
    assert np.all((X[:, 1] >= j / 3) & (X[:, 1] <= (j + 1) / 3))
    j = c["depth"] - 1
    assert np.all((X[:, 2] >= j / 4) & (X[:, 2] <= (j + 1) / 4))
    # log int: the log-scale bin of the value, the same bin from_unit maps back to the value
    w = c["width"]
    L = np.log(65.0)
    assert np.all((X[:, 3] >= np.log(w) / L) & (X[:, 3] <= np.log(w + 1) / L))
    # inactive stays NaN, active bool in its half
    np.testing.assert_array_equal(np.isnan(X[:, 4]), c["c"] != 1)
    act = c["c"] == 1
    assert np.all((X[act, 4] >= c["bn"][act] / 2) & (X[act, 4] <= (c["bn"][act] + 1) / 2))
    # the jittered value maps back to the original value
    back = encoding.from_unit(s, np.nan_to_num(X, nan=0.5))
    for name in ["c", "depth", "width", "bn"]:
        np.testing.assert_array_equal(back[name], c[name], err_msg=name)
    np.testing.assert_array_equal(encoding.normalize(s, c, seed=1), X)
    X2 = encoding.normalize(s, c, seed=2)
    assert not np.array_equal(X2[:, 1], X[:, 1])
    np.testing.assert_array_equal(X2[:, 0], X[:, 0])
    np.testing.assert_array_equal(encoding.normalize(s, c, method="unit"), U)
    with pytest.raises(ValueError, match="method 'zscore' is not one of"):
        encoding.normalize(s, c, method="zscore")


def test_normalize_novello_jitter_is_uniform():
    """Within its bin the jitter is U(0,1); a uniformly distributed discrete variable therefore
    becomes U(0,1) on [0, 1] (KS tests, fixed seeds)."""
    s = novello_space()
    c = design.sample(s, 4000, "random", seed=3)
    X = encoding.normalize(s, c, seed=4)
    pos_c = X[:, 1] * 3 - c["c"]
    pos_d = X[:, 2] * 4 - (c["depth"] - 1)
    for pos in (pos_c, pos_d):
        assert stats.kstest(pos, "uniform").pvalue > 1e-3
    assert stats.kstest(X[:, 1], "uniform").pvalue > 1e-3
    assert stats.kstest(X[:, 2], "uniform").pvalue > 1e-3
    # log-int sampled log-uniformly becomes U(0,1) too
    assert stats.kstest(X[:, 3], "uniform").pvalue > 1e-3
    # the jitter is independent of the value: the within-bin position has the same law per level
    for k in range(3):
        assert stats.kstest(pos_c[c["c"] == k], "uniform").pvalue > 1e-3
    # and the KS test has power here: bin centres (method="unit") are far from uniform
    assert stats.kstest(encoding.normalize(s, c, method="unit")[:, 1], "uniform").pvalue < 1e-6



# ----------------------------------------------------------------------------- threshold conditions


def test_encodings_of_threshold_conditional_hyperparameters():
    """x3 exists where x2 > 0.5, c (categorical) where x2 <= 0.5, k (Int) where 0.25 <= x3 < 0.75:
    every encoding is NaN (one-hot: zeros for categorical indicators) exactly where inactive, and
    from_unit decides activity on the mapped parent value."""
    s = Space(
        [
            Float("x2", 0.0, 1.0),
            Float("x3", 1e-3, 1.0, log=True, condition={"x2": {"gt": 0.5}}),
            Categorical("c", ["a", "b"], condition={"x2": {"le": 0.5}}),
            Int("k", 1, 4, condition={"x3": {"ge": 0.25, "lt": 0.75}}),
        ]
    )
    rng = np.random.default_rng(0)
    U = rng.random((400, 4))
    c = encoding.from_unit(s, U)
    x3_active = U[:, 0] > 0.5  # x2 = u on [0, 1]
    x3 = np.exp(np.log(1e-3) + U[:, 1] * (np.log(1.0) - np.log(1e-3)))
    k_active = x3_active & (x3 >= 0.25) & (x3 < 0.75)
    np.testing.assert_array_equal(~np.isnan(c["x3"]), x3_active)
    np.testing.assert_array_equal(~np.isnan(c["c"]), ~x3_active)
    np.testing.assert_array_equal(~np.isnan(c["k"]), k_active)
    assert 0 < k_active.sum() < x3_active.sum()
    Xu = encoding.to_unit(s, c)
    Xn = encoding.normalize(s, c, seed=3)
    for X in (Xu, Xn):
        np.testing.assert_array_equal(~np.isnan(X), np.stack([np.ones(400, bool), x3_active, ~x3_active, k_active], 1))
    np.testing.assert_allclose(Xu[x3_active, 1], U[x3_active, 1], rtol=1e-12, atol=1e-15)
    H, names = encoding.one_hot(s, c)
    assert names == ["x2", "x3", "c=a", "c=b", "k"]
    np.testing.assert_array_equal(H[x3_active][:, 2:4], 0.0)
    np.testing.assert_array_equal(H[~x3_active][:, 2:4].sum(1), 1.0)
    np.testing.assert_array_equal(np.isnan(H[:, 4]), ~k_active)


def test_encoding_settings_are_checked():
    s = opt_space()
    c = design.sample(s, 4, seed=0)
    for seed in (-1, 0.5, None, True):
        with pytest.raises(ValueError, match="normalize: seed must be a non-negative integer"):
            encoding.normalize(s, c, seed=seed)
    for method in ("zscore", None, ["unit"]):
        with pytest.raises(ValueError, match="normalize: method .* is not one of \\['novello', 'unit'\\]"):
            encoding.normalize(s, c, method=method)
    with pytest.raises(TypeError, match="from_unit: U must be a numeric \\(n, 3\\) array"):
        encoding.from_unit(s, [["a", "b", "c"]])
    with pytest.raises(ValueError, match="configs: missing column\\(s\\) \\['momentum'\\]"):
        encoding.to_unit(s, {"optimizer": [0.0], "lr": [0.01]})
