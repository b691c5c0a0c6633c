"""Tests of hsens_jax.sensitivity.oat."""

import jax.numpy as jnp
import numpy as np
import pytest

from hsens_jax.sensitivity.oat import OATDesign, OATResult, oat_analyze, oat_design, one_at_a_time


class TinySpace:
    """Duck-typed stand-in for hsens_jax.space.Space.

    lr: Float log10 on [1e-4, 1e-1]; layers: Int 1..4; opt: Categorical 3 choices;
    momentum: Float [0, 0.99], active only when opt == 1 (NaN otherwise).
    """

    names = ("lr", "layers", "opt", "momentum")

    def __len__(self):
        return 4

    def from_unit(self, U):
        U = np.asarray(U, dtype=np.float64)
        opt = np.minimum(np.floor(U[:, 2] * 3), 2)
        return {"lr": 10.0 ** (-4 + 3 * U[:, 0]),
                "layers": np.minimum(np.floor(U[:, 1] * 4), 3) + 1,
                "opt": opt,
                "momentum": np.where(opt == 1, 0.99 * U[:, 3], np.nan)}

    def to_unit(self, c):
        return np.stack([(np.log10(c["lr"]) + 4) / 3, (c["layers"] - 0.5) / 4, (c["opt"] + 0.5) / 3,
                         np.nan_to_num(c["momentum"] / 0.99, nan=0.5)], 1)


def test_bounds_design_and_exact_curves():
    bounds = np.array([[0.0, 1.0], [1e-3, 1.0], [-2.0, 2.0]])
    base = np.array([0.5, 0.01, 0.0])
    des = oat_design(bounds, base, n_points=5, log_scale=[False, True, False])
    assert isinstance(des, OATDesign) and len(des) == 15 and des.X.shape == (15, 3)
    for j in range(3):
        rows = des.X[des.param == j]
        others = np.delete(rows, j, axis=1)
        np.testing.assert_array_equal(others, np.repeat(np.delete(base, j)[None], 5, 0))
        np.testing.assert_array_equal(rows[:, j], des.values[des.param == j])
    np.testing.assert_allclose(des.values[des.param == 1], np.geomspace(1e-3, 1, 5))
    c = np.array([3.0, 0.0, -1.0])
    res = one_at_a_time(lambda X: X @ jnp.asarray(c, X.dtype), bounds, base, n_points=5,
                        log_scale=[False, True, False])
    assert isinstance(res, OATResult)
    np.testing.assert_allclose(res.range, np.abs(c) * (bounds[:, 1] - bounds[:, 0]) * [1, 0, 1], rtol=1e-5)
    v, y = res.curves["x1"]
    np.testing.assert_allclose(y, 3 * v + c[2] * base[2], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(res.std[0], np.std(3 * np.linspace(0, 1, 5)), rtol=1e-5)
    assert res.ranking() == ["x3", "x1", "x2"]  # ranges 4, 3, 0


def test_space_design_all_choices_and_log_grid():
    sp = TinySpace()
    base = {"lr": 1e-3, "layers": 2.0, "opt": 1.0, "momentum": 0.9}
    des = oat_design(sp, base, n_points=7)
    vals = {n: des.values[des.param == j] for j, n in enumerate(sp.names)}
    np.testing.assert_allclose(vals["lr"], np.geomspace(1e-4, 1e-1, 7), rtol=1e-12)  # log grid
    np.testing.assert_array_equal(vals["layers"], [1, 2, 3, 4])  # every Int value
    np.testing.assert_array_equal(vals["opt"], [0, 1, 2])  # every choice
    assert list(des.log_x) == [True, False, False, False]
    # others held at base; the conditional child follows its parent
    rows_opt = {k: v[des.param == 2] for k, v in des.X.items()}
    np.testing.assert_allclose(rows_opt["lr"], 1e-3)
    assert np.isnan(rows_opt["momentum"][[0, 2]]).all()
    np.testing.assert_allclose(rows_opt["momentum"][1], 0.9)

    def f(cfg):  # vectorized "training": one call for all variations
        return np.log10(cfg["lr"]) + 0.1 * cfg["layers"] + np.where(cfg["opt"] == 2, np.nan, cfg["opt"])

    res = one_at_a_time(f, sp, base, n_points=7)
    np.testing.assert_allclose(res.range[0], 3.0)
    np.testing.assert_allclose(res.range[1], 0.3)
    np.testing.assert_allclose(res.range[2], 1.0)  # NaN (diverged) run ignored
    assert np.isnan(res.curves["opt"][1][2])
    np.testing.assert_allclose(res.range[3], 0.0)


def test_multi_output_and_errors():
    b = np.array([[0.0, 1.0]] * 2)
    des = oat_design(b, n_points=3)
    res = oat_analyze(des, np.stack([des.X[:, 0], 2 * des.X[:, 1]], 1))
    np.testing.assert_allclose(res.range, [[1, 0], [0, 2]])
    with pytest.raises(ValueError, match="Y must"):
        oat_analyze(des, np.zeros(5))
    with pytest.raises(ValueError, match="n_points"):
        oat_design(b, n_points=1)
    with pytest.raises(ValueError, match="base outside"):
        oat_design(b, np.array([0.5, 2.0]))
    with pytest.raises(ValueError, match="positive bounds"):
        oat_design(b, log_scale=[True, False])
    with pytest.raises(ValueError, match="lacks"):
        oat_design(TinySpace(), {"lr": 1e-3})
    with pytest.raises(TypeError, match="OATDesign"):
        oat_analyze({"X": 1}, np.zeros(3))


def test_table_ranks_inputs_by_range():
    bounds = np.array([[0.0, 1.0]] * 3)
    res = one_at_a_time(lambda X: X[:, 0] + 5 * X[:, 2], bounds, n_points=5, names=["a", "b", "c"])
    lines = res.table(digits=2).splitlines()
    assert lines[0] == "One-at-a-time response ranges" and lines[1].split() == ["input", "range", "std", "points"]
    assert [l.split()[0] for l in lines[2:]] == ["c", "a", "b"]
    assert lines[2].split()[1:] == ["5.00", f"{float(res.std[2]):.2f}", "5"]
    two = one_at_a_time(lambda X: jnp.stack([X[:, 0], 3 * X[:, 1]], 1), bounds, n_points=3)
    assert two.table(output=1).splitlines()[0].endswith("output 1") and two.table(output=1).splitlines()[2].startswith("x2")
    with pytest.raises(ValueError, match="output=2 out of range for 2 outputs"):
        two.table(output=2)
