import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import loguniform, rankdata
from sklearn.datasets import make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import KFold, ShuffleSplit, StratifiedKFold
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.svm import SVC

from hsens_jax.data import Dataset
from hsens_jax.engine.builtin import sized_model
from hsens_jax.engine.sweep import run_sweep
from hsens_jax.engine.train import Patience
from hsens_jax.search import sklearn as hss
from hsens_jax.space import Categorical, Space

CLASSIC = """
from sklearn.datasets import make_classification
from sklearn.neural_network import MLPClassifier
{import_line}

X, y = make_classification(n_samples=150, random_state=42)
param_grid = {{
    "hidden_layer_sizes": [(50,), (100,), (50, 50), (100, 50)],
    "activation": ["relu", "tanh"],
    "solver": ["adam", "sgd"],
    "learning_rate_init": [0.001, 0.01, 0.1],
}}
grid = GridSearchCV(MLPClassifier(max_iter=4, random_state=42), param_grid, cv=3, n_jobs={n_jobs})
grid.fit(X, y)
"""


def _run(import_line, n_jobs=-1):
    namespace = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        exec(CLASSIC.format(import_line=import_line, n_jobs=n_jobs), namespace)
    return namespace


def test_the_classic_example_runs_with_its_import_line_changed_and_follows_sklearns_conventions():
    ours = _run("from hsens_jax.search.sklearn import GridSearchCV")
    # the reference in this process: starting scikit-learn's worker processes costs more than its fits here
    theirs = _run("from sklearn.model_selection import GridSearchCV", n_jobs=None)
    hs, sk, X, y = ours["grid"], theirs["grid"], ours["X"], ours["y"]
    # on a CPU, 2 candidates x 3 folds per call (CPU_CONFIGS_PER_CHUNK); max_iter=4: so little
    # training that one masked program (one compilation) is the cheapest layout
    assert hs._sweeps == [{"candidates": 48, "group_by": (), "chunk_size": 6}]
    assert sorted(hs.cv_results_) == sorted(sk.cv_results_)
    assert hs.cv_results_["params"] == sk.cv_results_["params"]
    for key in sk.cv_results_:
        if key.startswith("param_"):
            a, b = hs.cv_results_[key], sk.cv_results_[key]
            assert a.dtype == b.dtype and list(a) == list(b) and np.array_equal(np.ma.getmaskarray(a),
                                                                               np.ma.getmaskarray(b)), key
        elif key != "params":
            assert hs.cv_results_[key].dtype == sk.cv_results_[key].dtype and hs.cv_results_[key].shape == (48,), key
    folds = list(StratifiedKFold(3).split(X, y))
    splits = np.stack([hs.cv_results_[f"split{i}_test_score"] for i in range(3)], 1)
    for i, (_, va) in enumerate(folds):  # accuracies: whole counts of the fold's examples, exact
        np.testing.assert_array_equal(splits[:, i], np.round(splits[:, i] * len(va)) / len(va))
    mean = hs.cv_results_["mean_test_score"]
    np.testing.assert_allclose(mean, splits.mean(1), rtol=1e-15)
    np.testing.assert_allclose(hs.cv_results_["std_test_score"], splits.std(1), rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(hs.cv_results_["rank_test_score"], rankdata(-mean, method="min"))
    assert len(set(mean)) < 48  # ties share the lowest rank
    assert hs.best_index_ == int(np.argmin(hs.cv_results_["rank_test_score"]))
    assert hs.best_score_ == mean[hs.best_index_] and hs.best_params_ == hs.cv_results_["params"][hs.best_index_]
    assert hs.n_splits_ == 3 and hs.refit_time_ >= 0
    best = hs.best_estimator_
    assert best.get_params()["estimator"].get_params()["hidden_layer_sizes"] == hs.best_params_["hidden_layer_sizes"]
    p = hs.predict_proba(X)
    assert p.shape == (150, 2) and np.allclose(p.sum(1), 1)
    assert set(hs.predict(X)) <= {0, 1} and hs.classes_.tolist() == [0, 1]
    assert hs.score(X, y) == best.score(X, y) == np.mean(best.predict(X) == y)
    # the refit is the engine's training on all of X: a sweep of the best configuration, scored on X
    values = best.engine_values_
    space = Space([Categorical("learning_rate", [values["learning_rate"]])])
    ds = Dataset.from_arrays(X, y, x_val=X[-1:], y_val=y[-1:], x_test=X, y_test=y)
    fixed = {n: v for n, v in values.items() if n != "learning_rate"}
    ref = run_sweep(ds, space, {"learning_rate": np.zeros(1)}, fixed=fixed, seeds=(42,), n_evals=1,
                    patience=Patience(10, 1e-4), progress=False)
    assert abs(float(ref.metrics["test_accuracy"][0, 0]) - best.score(X, y)) <= 1 / len(X)


def test_randomized_search_draws_sklearns_candidates_and_early_stopping_scores_the_held_out_fold():
    X, y = make_classification(n_samples=120, n_features=5, random_state=2)
    labels = np.array(["no", "yes"])[y]
    dists = {"learning_rate_init": loguniform(1e-3, 1e-1), "alpha": loguniform(1e-5, 1e-2)}
    est = MLPClassifier(hidden_layer_sizes=(6,), max_iter=8, random_state=0, early_stopping=True,
                        validation_fraction=0.25, n_iter_no_change=2, tol=0.01)
    search = hss.RandomizedSearchCV(est, dists, n_iter=3, cv=2, random_state=0).fit(X, labels)
    from sklearn.model_selection import ParameterSampler

    assert search.cv_results_["params"] == list(ParameterSampler(dists, 3, random_state=0))
    for i, (_, va) in enumerate(StratifiedKFold(2).split(X, y)):
        s = search.cv_results_[f"split{i}_test_score"]
        np.testing.assert_array_equal(s, np.round(s * len(va)) / len(va))
    assert 0 < search.best_score_ <= 1 and search.best_estimator_.n_iter_ <= 8
    best = search.best_estimator_
    assert best.classes_.tolist() == ["no", "yes"] and set(best.predict(X)) <= {"no", "yes"}
    assert best.score(X, labels) == np.mean(best.predict(X) == labels)


def test_parameters_map_onto_the_engine():
    base = MLPClassifier().get_params()
    adam = hss.engine_values({**base, "alpha": 1e-3, "hidden_layer_sizes": (50, 20)}, 800, "classification")
    assert adam == {"hidden_layer_sizes": "50,20", "activation": "relu", "batch_size": 200, "epochs": 200,
                    "weight_decay": 1e-3 / 200, "optimizer": "adam", "learning_rate": 1e-3, "b1": 0.9, "b2": 0.999,
                    "eps": 1e-8}
    sgd = hss.engine_values({**base, "solver": "sgd", "batch_size": 500, "activation": "logistic"}, 300,
                            "classification")
    assert sgd["optimizer"] == "nesterov" and sgd["momentum"] == 0.9 and sgd["batch_size"] == 300
    assert sgd["activation"] == "sigmoid" and "b1" not in sgd
    plain = hss.engine_values({**base, "solver": "sgd", "momentum": 0.0}, 300, "classification")
    assert plain["optimizer"] == "sgd" and "momentum" not in plain
    classic = hss.engine_values({**base, "solver": "sgd", "nesterovs_momentum": False}, 300, "classification")
    assert classic["optimizer"] == "momentum"
    # a regressor's half squared error: the engine's mean squared error over k targets has c = 2 / k
    # times its gradient, so sgd's rate is divided by c, adam's epsilon and the decay multiplied by it
    reg = MLPRegressor().get_params()
    r_sgd = hss.engine_values({**reg, "solver": "sgd", "learning_rate_init": 0.01, "alpha": 0.1}, 400, "regression")
    assert r_sgd["learning_rate"] == pytest.approx(0.005) and r_sgd["weight_decay"] == pytest.approx(2 * 0.1 / 200)
    r_adam = hss.engine_values({**reg, "epsilon": 1e-8}, 400, "regression", n_outputs=4)
    assert r_adam["eps"] == pytest.approx(0.5e-8) and r_adam["learning_rate"] == 1e-3


def test_identity_and_logistic_activations_are_what_they_say():
    model = sized_model("mlp", 4, 1, 2, (3,), activations=("identity", "sigmoid"))
    x = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    hp = {"widths": jnp.full(1, 4.0), "depth": jnp.float32(1), "activation": jnp.int32(0),
          "dropout": jnp.float32(0), "batch_norm": jnp.float32(0), "init_scale": jnp.float32(1)}
    variables = jax.jit(lambda key: model.init(hp, key, x))(jax.random.key(0))
    p = variables["params"]
    hidden = x @ np.asarray(p["hidden_0"]["kernel"]) + np.asarray(p["hidden_0"]["bias"])
    apply = jax.jit(lambda v, a: model.apply(v, x, {**hp, "activation": a}, train=False)[0])
    for index, fn in ((0, lambda z: z), (1, lambda z: 1 / (1 + np.exp(-z)))):
        out = apply(variables, np.int32(index))
        expected = fn(hidden) @ np.asarray(p["output"]["kernel"]) + np.asarray(p["output"]["bias"])
        np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-5, atol=1e-6)


def test_what_does_not_map_is_refused_by_name():
    X, y = make_classification(n_samples=60, n_features=4, random_state=0)
    est = MLPClassifier(max_iter=2)
    cases = [
        (hss.GridSearchCV(est, {"solver": ["lbfgs", "adam"]}), ValueError, "solver='lbfgs' is not supported"),
        (hss.GridSearchCV(est, {"shuffle": [False]}), ValueError, "shuffle=False is not supported"),
        (hss.GridSearchCV(MLPClassifier(solver="sgd"), {"learning_rate": ["invscaling"]}), ValueError,
         "learning_rate='invscaling' with solver='sgd'"),
        (hss.GridSearchCV(est, {"hidden_layer_size": [(4,)]}), ValueError,
         r"parameter\(s\) \['hidden_layer_size'\] are not parameters of MLPClassifier"),
        (hss.GridSearchCV(SVC(), {"C": [1.0]}), TypeError, "MLPClassifier or MLPRegressor, got SVC"),
        (hss.GridSearchCV(est, {"alpha": [1e-4]}, cv=ShuffleSplit(3)), ValueError, "cv=ShuffleSplit"),
        (hss.GridSearchCV(est, {"alpha": [1e-4]}, cv=StratifiedKFold(3, shuffle=True, random_state=0)), ValueError,
         "cv=StratifiedKFold"),
        (hss.GridSearchCV(est, {"alpha": [1e-4]}, scoring="f1"), ValueError, "scoring='f1' is not supported"),
        (hss.GridSearchCV(est, {"alpha": [1e-4]}, return_train_score=True), ValueError, "return_train_score=True"),
        (hss.GridSearchCV(MLPClassifier(random_state=np.random.RandomState(0)), {"alpha": [1e-4]}), ValueError,
         "random_state=RandomState"),
        (hss.GridSearchCV(MLPRegressor(), {"loss": ["poisson"]}), ValueError, "loss='poisson' is not supported"),
    ]
    for search, error, message in cases:
        with pytest.raises(error, match=message):
            search.fit(X, y if search.estimator.__class__ is not MLPRegressor else y.astype(float) + 0.5)
    with pytest.raises(ValueError, match="fit parameters \\['sample_weight'\\]"):
        hss.GridSearchCV(est, {"alpha": [1e-4]}).fit(X, y, sample_weight=np.ones(60))
    assert hss._n_splits(KFold(4), "regression") == 4 and hss._n_splits(None, "classification") == 5


def test_cv_results_rank_ties_and_missing_scores_as_sklearn():
    scores = np.array([[0.5, 0.7], [0.7, 0.5], [np.nan, 0.9], [0.8, 0.8]])
    res = hss._cv_results([{"a": i} for i in range(4)], scores, np.ones((4, 2)))
    assert res["rank_test_score"].tolist() == [2, 2, 4, 1] and res["rank_test_score"].dtype == np.int32
    all_nan = hss._cv_results([{"a": 0}, {"a": 1}], np.full((2, 2), np.nan), np.ones((2, 2)))
    assert all_nan["rank_test_score"].tolist() == [1, 1]


def _records(sizes, max_iter=300):
    from hsens_jax.search.sklearn import engine_values

    base = MLPClassifier(max_iter=max_iter, random_state=42).get_params()
    for name in ("verbose", "warm_start", "max_fun", "power_t"):
        base.pop(name)
    return [engine_values({**base, "hidden_layer_sizes": h, "solver": s, "learning_rate_init": lr}, 667,
                          "classification") for h in sizes for s in ("adam", "sgd") for lr in (1e-3, 1e-2)]


def test_auto_layout_weighs_compilations_against_padded_training():
    from hsens_jax.search.sklearn import _auto_group_by

    classic = _records([(50,), (100,), (50, 50), (100, 50)])
    assert _auto_group_by(classic, 20, 2, 667, 3) == ("depth",)  # the classic grid: one program per depth
    # wide layers: padding (50,) to (2000,) costs more training than three compilations
    assert _auto_group_by(_records([(50,), (2000,), (50, 50), (2000, 50)]), 20, 2, 667, 3) == ("hidden_layer_sizes",)
    # little training: one program
    assert _auto_group_by(_records([(50,), (50, 50)], max_iter=2), 20, 2, 667, 3) == ()
    # one architecture: nothing to group
    assert _auto_group_by(_records([(50,)]), 20, 2, 667, 3) == ()


def test_one_program_per_depth_gives_the_exact_programs_scores():
    X, y = make_classification(n_samples=120, n_features=6, random_state=0)
    grid = {"hidden_layer_sizes": [(4,), (6,), (4, 3)], "learning_rate_init": [0.01, 0.1]}
    est = MLPClassifier(max_iter=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        by_depth = hss.GridSearchCV(est, grid, cv=2, group_by=("depth",), refit=False).fit(X, y)
        exact = hss.GridSearchCV(est, grid, cv=2, group_by=("hidden_layer_sizes",), refit=False).fit(X, y)
    assert [d["group_by"] for d in by_depth._sweeps] == [("depth",)]
    np.testing.assert_allclose(by_depth.cv_results_["mean_test_score"], exact.cv_results_["mean_test_score"],
                               atol=1e-12)
    with pytest.raises(ValueError, match="group_by='depth'"):
        hss.GridSearchCV(est, grid, cv=2, group_by="depth").fit(X, y)


def test_candidates_train_in_length_order_with_unchanged_results(monkeypatch):
    X, y = make_classification(n_samples=90, n_features=5, random_state=1)
    grid = {"solver": ["adam", "sgd"], "learning_rate_init": [0.1, 0.01], "activation": ["relu", "tanh"]}
    est = MLPClassifier(hidden_layer_sizes=(4,), max_iter=6, random_state=0)
    seen = []
    real = hss._space_and_configs

    def spy(records):
        seen.append([(r["optimizer"], r["learning_rate"], r["activation"]) for r in records])
        return real(records)

    monkeypatch.setattr(hss, "_space_and_configs", spy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ordered = hss.GridSearchCV(est, grid, cv=2, refit=False).fit(X, y)
        monkeypatch.setattr(hss, "ORDER_BY_LENGTH", False)
        plain = hss.GridSearchCV(est, grid, cv=2, refit=False).fit(X, y)
    # same solver together, then ascending learning rate: runs likely to stop alike share a call
    assert [(o, lr) for o, lr, _ in seen[0]] == [("adam", 0.01)] * 2 + [("adam", 0.1)] * 2 + [
        ("nesterov", 0.01)] * 2 + [("nesterov", 0.1)] * 2
    assert seen[1] != seen[0]
    for key in ("mean_test_score", "split0_test_score", "split1_test_score", "rank_test_score"):
        np.testing.assert_array_equal(ordered.cv_results_[key], plain.cv_results_[key])
