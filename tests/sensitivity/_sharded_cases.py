"""Estimator cases run on one device and sharded over several (devices="all").

Used by tests/sensitivity/test_hsic_sharded.py (one process, several CPU devices) and by the
process group of tests/engine/test_distributed.py (several processes): both compare the
sharded results with the single-device ones of the same cases.
"""

import numpy as np


def data(n=150, d=3, seed=0):
    """Inputs with two influential columns out of ``d``, and their output."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(size=(n, d))
    Y = np.sin(3 * X[:, 0]) + X[:, 1] ** 2 + 0.2 * rng.normal(size=n)
    return X, Y


def _hsic_fields(r):
    return {"hsic": np.asarray(r.hsic), "r2": np.asarray(r.r2), "pvalue": np.asarray(r.pvalue),
            "hsic_yy": np.asarray(r.hsic_yy), "bandwidth": np.asarray(r.bandwidth)}


def hsic_case(name, devices):
    import jax

    from hsens_jax.sensitivity.hsic import best_fraction, hsic, hsic_interactions

    X, Y = data()
    key = jax.random.key(7)
    options = {  # tile_size 16: several blocks per device, so every kind of block pair is visited
        "V_gamma": {"pvalue": "gamma", "kernel": [2], "tile_size": 16},
        "U_gamma": {"estimator": "U", "pvalue": "gamma"},
        "V_perm": {"pvalue": "permutation", "n_permutations": 120, "key": key},
        "U_perm": {"estimator": "U", "pvalue": "permutation", "n_permutations": 60, "key": key, "tile_size": 16},
        "conditional_perm": {"conditional": best_fraction(0.3), "pvalue": "permutation", "n_permutations": 40,
                             "key": key},
        "target_max": {"target": best_fraction(0.2), "bandwidth": "max"},
    }
    if name == "interactions":
        return {"matrix": np.asarray(hsic_interactions(X, Y, bandwidth="pooled_median", devices=devices))}
    Xc = X.copy()
    if name != "target_max":  # (its search for the bandwidth would find one of a flat optimum's points)
        Xc[:, 2] = np.floor(4 * X[:, 2])  # a categorical column (kernel=[2] treats it so)
    return _hsic_fields(hsic(Xc, Y, devices=devices, **options[name]))


def sobol_case(devices):
    from hsens_jax.sensitivity.sobol import sobol_design, sobol_indices
    from hsens_jax.sensitivity.test_functions import ishigami

    X = sobol_design(np.array([[-np.pi, np.pi]] * 3), 64, second_order=True, seed=1)
    Y = np.asarray(ishigami(X))
    r = sobol_indices(Y, 3, second_order=True, n_bootstrap=90, bootstrap_chunk=16, devices=devices)
    return {f: np.asarray(getattr(r, f)) for f in ("S1", "ST", "S2", "S1_conf", "ST_conf", "S2_conf")} | {
        "S1_low": np.asarray(r.S1_ci[0]), "S1_high": np.asarray(r.S1_ci[1])}


def run_cases(names, devices):
    """``{case/field: array}`` for the HSIC cases ``names`` (and ``"sobol"``)."""
    out = {}
    for name in names:
        fields = sobol_case(devices) if name == "sobol" else hsic_case(name, devices)
        out.update({f"{name}/{f}": v for f, v in fields.items()})
    return out
