"""scikit-learn's ``GridSearchCV`` and ``RandomizedSearchCV`` for ``MLPClassifier`` /
``MLPRegressor``, trained by the vectorized engine.

The classic example runs with its import line changed::

    from sklearn.datasets import make_classification
    from sklearn.neural_network import MLPClassifier
    from hsens_jax.search.sklearn import GridSearchCV      # was: from sklearn.model_selection

    X, y = make_classification(n_samples=1000, random_state=42)
    grid = GridSearchCV(MLPClassifier(max_iter=300, random_state=42),
                        {"hidden_layer_sizes": [(50,), (100,), (50, 50), (100, 50)],
                         "activation": ["relu", "tanh"], "solver": ["adam", "sgd"],
                         "learning_rate_init": [1e-3, 1e-2, 1e-1]}, cv=3, n_jobs=-1)
    grid.fit(X, y)
    grid.best_params_, grid.best_score_, grid.cv_results_, grid.best_estimator_.predict(X)

The candidates are scikit-learn's own (``ParameterGrid``, ``ParameterSampler`` with the same
``random_state``), the folds too (``StratifiedKFold(k)`` for a classifier, ``KFold(k)`` for a
regressor, without shuffling: the engine's folds over the data in ``X``'s order), and every
candidate x fold is one run of one :func:`hsens_jax.run_sweep` call (``cv=k``). The results
have scikit-learn's keys and meanings: ``cv_results_`` (``mean_fit_time``, ``std_fit_time``,
``mean_score_time``, ``std_score_time``, ``param_<name>``, ``params``, ``split<i>_test_score``,
``mean_test_score``, ``std_test_score``, ``rank_test_score``), ``best_index_``,
``best_params_``, ``best_score_``, ``best_estimator_`` (refit on all of ``X``: an estimator
with ``predict``, ``predict_proba`` (classifier) and ``score``), ``refit_time_``,
``n_splits_``, ``scorer_``; ``predict``/``predict_proba``/``score`` of the search delegate to
``best_estimator_``.

How the parameters of ``MLPClassifier`` / ``MLPRegressor`` map onto the built-in MLP and the
engine's optimizer:

======================  ====================================================================
``hidden_layer_sizes``  the MLP's ``hidden_layer_sizes``
``activation``          ``identity``, ``logistic`` (the engine's ``sigmoid``), ``tanh``,
                        ``relu``
``solver``              ``adam`` -> ``adam`` with ``beta_1``, ``beta_2``, ``epsilon``;
                        ``sgd`` -> ``nesterov`` (``nesterovs_momentum=True``), ``momentum``,
                        or plain ``sgd`` (``momentum=0``), with ``momentum``; ``lbfgs``:
                        refused (a full-batch quasi-Newton method)
``learning_rate_init``  the learning rate
``learning_rate``       ``constant`` (ignored with ``adam``, as scikit-learn does);
                        ``invscaling`` and ``adaptive`` with ``sgd``: refused (the engine's
                        schedules are constant, cosine, linear, exponential)
``alpha``               L2 penalty as the engine's ``weight_decay = alpha / batch_size`` added
                        to the gradient, which is scikit-learn's ``alpha * W / n_batch``;
                        the engine decays the biases too (scikit-learn does not)
``batch_size``          ``"auto"`` = ``min(200, n_samples)``, clipped to the training fold
``max_iter``            epochs
``shuffle``             ``True`` (the engine draws a fresh order every epoch); ``False``
                        refused
``random_state``        the engine's seed (None: seed 0); a ``RandomState`` refused
``tol``,                early stopping of each run with scikit-learn's rule
``n_iter_no_change``    (:class:`hsens_jax.engine.train.Patience`): on the epoch's mean
                        training loss, or with ``early_stopping=True`` on the validation
                        score of a ``validation_fraction`` split of each training fold
                        (stratified for a classifier), checked every epoch
``verbose``,            no effect (as in a grid search, where ``warm_start`` changes
``warm_start``,         nothing; ``max_fun`` is ``lbfgs``'s, ``power_t`` ``invscaling``'s)
``max_fun``,
``power_t``
``loss`` (regressor)    ``squared_error``; ``poisson`` refused
======================  ====================================================================

For a regressor, scikit-learn minimizes half the squared error; the engine the mean squared
error over the ``k`` targets, whose gradient is ``c = 2 / k`` times larger. The mapping
divides ``sgd``'s learning rate by ``c`` and multiplies ``adam``'s ``epsilon`` and the weight
decay by ``c``, which makes the updates those of scikit-learn's objective.

What differs from scikit-learn, stated: the initial weights (``N(0, 1/fan_in)``, biases 0,
against Glorot-uniform weights and biases), a binary classifier's output (two softmax logits
against one logistic unit), the incomplete last batch of an epoch (dropped, each epoch
``n // batch_size`` steps, against ``ceil(n / batch_size)``), the stopping rule's training
loss (without the L2 term scikit-learn adds), and with ``early_stopping=True`` the final
state (the stopped one, where scikit-learn restores the best validation score's weights) and
the rows of the validation split (same size and stratification, drawn with
``random_state``). Scores: ``accuracy`` (a classifier's default), ``neg_log_loss``, ``r2``
(a regressor's default, one target), ``neg_mean_squared_error``. ``fit_time`` of a candidate
is the wall time of its vectorized program shared equally among the program's runs; its
scores are computed inside training, so ``score_time`` is 0.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections import defaultdict
from typing import Any

import numpy as np

try:  # scikit-learn is a dependency; the classes below extend its search classes
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, clone
    from sklearn.model_selection import GridSearchCV as _SkGridSearchCV
    from sklearn.model_selection import KFold, ParameterGrid, ParameterSampler, StratifiedKFold
    from sklearn.model_selection import RandomizedSearchCV as _SkRandomizedSearchCV
except ImportError as e:  # pragma: no cover - scikit-learn is a core dependency
    raise ImportError("hsens_jax.search.sklearn needs scikit-learn: pip install scikit-learn") from e

__all__ = ["GridSearchCV", "RandomizedSearchCV", "FittedMLPClassifier", "FittedMLPRegressor", "engine_values"]

ACTIVATION_NAMES = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}
_IGNORED = ("verbose", "warm_start", "max_fun", "power_t")
_SWEEP_LEVEL = ("early_stopping", "validation_fraction", "n_iter_no_change", "tol", "random_state")
SCORINGS = {"classification": (None, "accuracy", "neg_log_loss"),
            "regression": (None, "r2", "neg_mean_squared_error")}


def _mlp_classes():
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    return MLPClassifier, MLPRegressor


# ----------------------------------------------------------------------------- parameters


def _sizes(value) -> str:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        sizes = (int(value),)
    else:
        try:
            sizes = tuple(int(v) for v in value)
        except (TypeError, ValueError):
            raise ValueError(f"hidden_layer_sizes={value!r} must be a tuple of positive integers") from None
    if not sizes or min(sizes) < 1:
        raise ValueError(f"hidden_layer_sizes={value!r} must be a tuple of positive integers")
    return ",".join(str(s) for s in sizes)


def engine_values(params: dict, n_train: int, task: str, n_outputs: int = 1) -> dict[str, Any]:
    """The built-in MLP's and engine optimizer's values for ``MLPClassifier``/``MLPRegressor``
    parameters ``params`` (a full ``get_params()`` dict), a training set of ``n_train``
    examples and ``n_outputs`` regression targets (see the module docstring's table).

    Names an optimizer does not read are left out (``momentum`` with ``adam``; ``b1``, ``b2``,
    ``eps`` with ``sgd``). Raises ValueError naming a parameter value that does not map.
    """
    solver = params["solver"]
    if solver == "lbfgs":
        raise ValueError("solver='lbfgs' is not supported: it is a full-batch quasi-Newton method, and the engine "
                         "trains by minibatch steps; use solver='adam' or 'sgd'")
    if solver not in ("adam", "sgd"):
        raise ValueError(f"solver={solver!r} is not one of 'adam', 'sgd'")
    activation = params["activation"]
    if activation not in ACTIVATION_NAMES:
        raise ValueError(f"activation={activation!r} is not one of {sorted(ACTIVATION_NAMES)}")
    if params.get("shuffle", True) is not True:
        raise ValueError("shuffle=False is not supported: the engine draws a fresh order of the training examples "
                         "every epoch")
    if task == "regression" and params.get("loss", "squared_error") != "squared_error":
        raise ValueError(f"loss={params['loss']!r} is not supported: the engine's regression loss is the squared "
                         f"error (loss='squared_error')")
    if solver == "sgd" and params["learning_rate"] != "constant":
        raise ValueError(f"learning_rate={params['learning_rate']!r} with solver='sgd' is not supported: the engine's "
                         f"schedules are constant, cosine, linear and exponential; use learning_rate='constant'")
    batch = params["batch_size"]
    if batch == "auto":
        batch = min(200, n_train)
    elif isinstance(batch, (int, np.integer)) and not isinstance(batch, bool) and batch >= 1:
        batch = int(min(batch, n_train))  # scikit-learn clips it too
    else:
        raise ValueError(f"batch_size={batch!r} must be 'auto' or a positive integer")
    max_iter = params["max_iter"]
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 1:
        raise ValueError(f"max_iter={max_iter!r} must be a positive integer")
    alpha, lr = float(params["alpha"]), float(params["learning_rate_init"])
    if not alpha >= 0:
        raise ValueError(f"alpha={params['alpha']!r} must be >= 0")
    if not lr > 0:
        raise ValueError(f"learning_rate_init={params['learning_rate_init']!r} must be > 0")
    scale = 1.0 if task == "classification" else 2.0 / n_outputs  # engine gradient / scikit-learn's
    out = {"hidden_layer_sizes": _sizes(params["hidden_layer_sizes"]), "activation": ACTIVATION_NAMES[activation],
           "batch_size": int(batch), "epochs": int(max_iter), "weight_decay": scale * alpha / batch}
    if solver == "adam":
        out.update(optimizer="adam", learning_rate=lr, b1=float(params["beta_1"]), b2=float(params["beta_2"]),
                   eps=scale * float(params["epsilon"]))
    else:
        momentum = float(params["momentum"])
        if not 0 <= momentum <= 1:
            raise ValueError(f"momentum={params['momentum']!r} must be in [0, 1]")
        out["learning_rate"] = lr / scale
        if momentum == 0:
            out["optimizer"] = "sgd"
        else:
            out.update(optimizer="nesterov" if params["nesterovs_momentum"] else "momentum", momentum=momentum)
    return out


ORDER_BY_LENGTH = True
"""Whether the search trains its candidates in the order of :func:`_length_key` (default) or
in the grid's order. A compiled call trains a few candidates together (their folds with them)
until the slowest has stopped; in the grid's order (scikit-learn's ``ParameterGrid``: the last
parameter name, often ``solver``, varies fastest) an ``adam`` run that stops after 30 epochs
shares its call with an ``sgd`` run that goes on to 300. Measured on the classic grid (48
candidates x 3 folds, 2 candidates per call, the steps each call lasts): 14498 steps in the
grid's order, 12211 in this order, 11323 with every run's own stopping step known in advance;
the useful steps (each run's own), 10201. Scores and ``cv_results_`` do not depend on it."""


def _length_key(params: dict) -> tuple:
    """What orders the candidates, so that those likely to train for as many epochs share a
    call: the solver and its settings, the epochs and batch size, then the learning rate
    (ascending), the penalty, the activation, the architecture."""
    def num(v):
        return float(v) if isinstance(v, (int, float, np.number)) and not isinstance(v, bool) else float("inf")

    return (str(params.get("solver")), str(params.get("learning_rate")), num(params.get("momentum")),
            str(params.get("nesterovs_momentum")), num(params.get("max_iter")), str(params.get("batch_size")),
            num(params.get("learning_rate_init")), num(params.get("alpha")), str(params.get("activation")),
            str(params.get("hidden_layer_sizes")))


@dataclasses.dataclass(frozen=True)
class _Stopping:
    """The settings every run of one sweep shares."""

    early_stopping: bool
    validation_fraction: float
    n_iter_no_change: int
    tol: float
    seed: int
    max_iter: int | None  # with early stopping: the epochs (one validation per epoch)

    def patience(self, task: str):
        from hsens_jax.engine.train import Patience

        monitor = "train_loss" if not self.early_stopping else (
            "val_accuracy" if task == "classification" else "val_loss")
        return Patience(self.n_iter_no_change, self.tol, monitor)


def _stopping(params: dict) -> _Stopping:
    seed = params["random_state"]
    if seed is None:
        seed = 0
    elif isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"random_state={params['random_state']!r} is not supported: give an integer (the engine "
                         f"seeds every run with it) or None (seed 0)")
    n_iter, tol = params["n_iter_no_change"], params["tol"]
    if isinstance(n_iter, bool) or not isinstance(n_iter, (int, np.integer)) or n_iter < 1:
        raise ValueError(f"n_iter_no_change={n_iter!r} must be a positive integer")
    if not (isinstance(tol, (int, float, np.number)) and tol >= 0):
        raise ValueError(f"tol={tol!r} must be a number >= 0")
    early = bool(params["early_stopping"])
    fraction = float(params["validation_fraction"])
    if early and not 0 < fraction < 1:
        raise ValueError(f"validation_fraction={params['validation_fraction']!r} must be in (0, 1)")
    return _Stopping(early, fraction if early else 0.0, int(n_iter), float(tol), int(seed),
                     int(params["max_iter"]) if early else None)


# ----------------------------------------------------------------------------- the search


def _check_estimator(estimator) -> str:
    classifier, regressor = _mlp_classes()
    if isinstance(estimator, classifier):
        return "classification"
    if isinstance(estimator, regressor):
        return "regression"
    raise TypeError(f"the estimator must be scikit-learn's MLPClassifier or MLPRegressor, got "
                    f"{type(estimator).__name__}")


def _n_splits(cv, task: str) -> int:
    if cv is None:
        return 5
    if isinstance(cv, (int, np.integer)) and not isinstance(cv, bool):
        if cv < 2:
            raise ValueError(f"cv={cv!r}: cross-validation needs at least 2 folds")
        return int(cv)
    wanted = StratifiedKFold if task == "classification" else KFold
    if type(cv) is wanted and not cv.shuffle:
        return int(cv.n_splits)
    raise ValueError(f"cv={cv!r} is not supported: give the number of folds (the folds are scikit-learn's "
                     f"{wanted.__name__}(k) without shuffling, vectorized in one sweep)")


def _space_and_configs(records: list[dict]):
    """A space over the engine names that vary among ``records``, their configs, and the fixed
    values. A name only some optimizers read (``momentum``; ``b1``, ``b2``, ``eps``) is
    conditional on the optimizer when it varies."""
    from hsens_jax.space import Categorical, Float, Space

    names = list(dict.fromkeys(n for r in records for n in r))
    fixed, params = {}, []
    for name in names:
        present = [r for r in records if name in r]
        distinct = list(dict.fromkeys(r[name] for r in present))
        if len(distinct) == 1:
            fixed[name] = distinct[0]
            continue
        condition = None if len(present) == len(records) else {"optimizer": sorted({r["optimizer"] for r in present})}
        if isinstance(distinct[0], str) or name in ("batch_size", "epochs"):
            params.append(Categorical(name, sorted(distinct, key=lambda v: (isinstance(v, str), v)),
                                      condition=condition))
        else:
            low, high = float(min(distinct)), float(max(distinct))
            params.append(Float(name, low, high, log=low > 0 and high / low >= 10, condition=condition))
    if not params:  # one configuration: a space of one choice
        params.append(Categorical("learning_rate", [fixed.pop("learning_rate")]))
    space = Space(params)
    configs = space.encode([{n: r[n] for n in space.names if n in r} for r in records])
    return space, configs, fixed


class _VectorizedSearch:
    """The ``fit`` shared by :class:`GridSearchCV` and :class:`RandomizedSearchCV`."""

    def _candidates(self) -> list[dict]:  # pragma: no cover - defined by each class
        raise NotImplementedError

    def fit(self, X, y=None, **params):
        """Run the search: every candidate on every fold, vectorized; then refit the best.

        Args:
          X: (n_samples, n_features) array-like.
          y: (n_samples,) labels (classifier) or (n_samples,) / (n_samples, n_targets) targets.
        """
        from hsens_jax.data import Dataset

        if params:
            raise ValueError(f"fit parameters {sorted(params)} are not supported by the vectorized search")
        if y is None:
            raise ValueError("y is required: the search fits a supervised MLP")
        task = _check_estimator(self.estimator)
        if self.scoring not in SCORINGS[task]:
            raise ValueError(f"scoring={self.scoring!r} is not supported for {type(self.estimator).__name__}; "
                             f"choose one of {list(SCORINGS[task])}")
        if not isinstance(self.refit, bool):
            raise ValueError(f"refit={self.refit!r}: only True or False (one metric) are supported")
        if self.return_train_score:
            raise ValueError("return_train_score=True is not supported: the runs' final parameters stay inside the "
                             "vectorized training, so their training-fold scores are not computed")
        if not (self.error_score == "raise" or isinstance(self.error_score, (int, float, np.number))):
            raise ValueError(f"error_score={self.error_score!r} must be 'raise' or a number")
        X = np.asarray(X)
        y_arr = np.asarray(y)
        if X.ndim != 2:
            raise ValueError(f"X must be a 2-D array (n_samples, n_features), got shape {X.shape}")
        if len(y_arr) != len(X):
            raise ValueError(f"X has {len(X)} samples but y has {len(y_arr)}")
        n_outputs = 1 if y_arr.ndim == 1 else y_arr.shape[1]
        if task == "regression" and n_outputs > 1 and self.scoring in (None, "r2"):
            raise ValueError("the R2 score of several targets is not supported (its uniform average needs each "
                             "target's error): use scoring='neg_mean_squared_error'")
        k = _n_splits(self.cv, task)
        base = self.estimator.get_params()
        candidates = self._candidates()
        if not candidates:
            raise ValueError("the parameter grid is empty")
        for cand in candidates:
            unknown = [p for p in cand if p not in base]
            if unknown:
                raise ValueError(f"parameter(s) {unknown} are not parameters of {type(self.estimator).__name__}")
        full = [{**base, **cand} for cand in candidates]
        for p in full:
            for name in _IGNORED:
                p.pop(name, None)
        classes = np.unique(y_arr) if task == "classification" else None
        self._task, self._classes, self._n_outputs = task, classes, n_outputs
        folds = self._folds(X, y_arr, task, k)
        n_fold_train = min(len(tr) for tr, _ in folds)
        stops = [_stopping(p) for p in full]
        refits = {}
        if self.refit and len(set(stops)) == 1:  # its program is known now: compiled while the folds train
            refits[stops[0]] = _Refit(X, y_arr, task, classes, n_outputs, [{**self.estimator.get_params(), **c}
                                                                             for c in candidates])
        scores = np.full((len(full), k), np.nan)
        fit_time = np.zeros((len(full), k))
        groups = defaultdict(list)
        for i in sorted(range(len(full)), key=lambda i: _length_key(full[i])) if ORDER_BY_LENGTH else range(len(full)):
            groups[stops[i]].append(i)
        t0 = time.perf_counter()
        self._sweeps = []  # what each sweep trained: candidates, group_by, chunk_size
        with warnings.catch_warnings():
            from hsens_jax.engine.hyperparameters import HyperparameterWarning

            warnings.simplefilter("ignore", HyperparameterWarning)
            for stop, members in groups.items():
                n_train = n_fold_train if not stop.early_stopping else n_fold_train - math.ceil(
                    stop.validation_fraction * n_fold_train)
                records = [engine_values(full[i], n_train, task, n_outputs) for i in members]
                if stop.early_stopping:
                    s, t = self._run_early_stopping(X, y_arr, task, classes, folds, records, stop)
                else:
                    ds = Dataset.from_arrays(X[:-1], y_arr[:-1], x_val=X[-1:], y_val=y_arr[-1:], task=task,
                                             classes=classes, name="search")
                    s, t = self._run(ds, task, records, stop, k, folds, y_arr)
                scores[members], fit_time[members] = s, t
        self._search_time = time.perf_counter() - t0
        if np.isnan(scores).any() and self.error_score == "raise":
            i, f = np.argwhere(np.isnan(scores))[0]
            raise ValueError(f"candidate {candidates[i]} has no score on fold {f} (its runs diverged): "
                             f"error_score='raise'")
        scores = np.where(np.isnan(scores), float(self.error_score) if self.error_score != "raise" else np.nan, scores)
        self.cv_results_ = _cv_results(candidates, scores, fit_time)
        self.n_splits_ = k
        self.multimetric_ = False
        self.best_index_ = int(np.argmin(self.cv_results_["rank_test_score"]))
        self.best_score_ = float(self.cv_results_["mean_test_score"][self.best_index_])
        self.best_params_ = candidates[self.best_index_]
        from sklearn.metrics import check_scoring

        self.scorer_ = check_scoring(self.estimator, self.scoring)
        if self.refit:
            t0 = time.perf_counter()
            best = self.best_index_
            members = [i for i, s in enumerate(stops) if s == stops[best]]
            refit = refits.get(stops[best]) or _Refit(X, y_arr, task, classes, n_outputs,
                                                      [{**self.estimator.get_params(), **candidates[i]} for i in members])
            cls = FittedMLPClassifier if task == "classification" else FittedMLPRegressor
            fitted = cls(clone(self.estimator).set_params(**self.best_params_))
            self.best_estimator_ = refit.fit(fitted, members.index(best))
            self.refit_time_ = time.perf_counter() - t0
        return self

    def _folds(self, X, y, task, k):
        splitter = StratifiedKFold(k) if task == "classification" else KFold(k)
        try:
            return list(splitter.split(X, y if task == "classification" else None))
        except ValueError as e:
            raise ValueError(f"cv={k}: {e}") from None

    def _chunk_for(self, ds, space, configs, fixed, group_by, k) -> int:
        """``chunk_size``, or by default: on a CPU, :data:`~hsens_jax.engine.devices.CPU_CONFIGS_PER_CHUNK`
        candidates x ``k`` folds per call (a call lasts as long as its slowest run; smaller calls
        stop sooner); elsewhere the runs of the largest program, one call each, unpadded when the
        programs hold as many runs (the engine pads a smaller one to a power of two)."""
        if self.chunk_size is not None:
            return self.chunk_size
        from hsens_jax.engine.devices import CPU_CONFIGS_PER_CHUNK, on_cpu

        if on_cpu():
            return CPU_CONFIGS_PER_CHUNK * k
        from hsens_jax.engine.sweep import plan_sweep

        plan = plan_sweep(ds, space, configs, fixed=fixed, group_by=group_by)
        return max(len(g.configs) for g in plan.groups) * k

    def _group_by(self, records, n_features, n_out, n_train, k) -> tuple:
        """The sweep's ``group_by``: the user's, or by default :func:`_auto_group_by`'s."""
        if isinstance(self.group_by, str):
            if self.group_by != "auto":
                raise ValueError(f"group_by={self.group_by!r}: give 'auto' or a tuple of hyperparameter names "
                                 f"(e.g. ('depth',))")
            return _auto_group_by(records, n_features, n_out, n_train, k)
        return tuple(self.group_by or ())

    def _run(self, ds, task, records, stop: _Stopping, k, folds, y):
        """One sweep with ``cv=k`` (the engine's folds are ``folds``): scores (M, k), fit times (M, k)."""
        from hsens_jax.engine.sweep import dataset_folds, run_sweep

        engine_folds = dataset_folds(ds, k)
        if any(not np.array_equal(a[1], b[1]) for a, b in zip(engine_folds, folds)):  # pragma: no cover
            raise RuntimeError("the engine's folds differ from scikit-learn's")
        shape = (ds.input_shape[0], ds.output_dim, min(len(tr) for tr, _ in folds), k)
        val = [y[va] for _, va in folds]
        space, configs, fixed = _space_and_configs(records)
        group_by = self._group_by(records, *shape)
        chunk = self._chunk_for(ds, space, configs, fixed, group_by, k)
        self._sweeps.append({"candidates": len(records), "group_by": group_by, "chunk_size": chunk})
        result = run_sweep(ds, space, configs, fixed=fixed, seeds=(stop.seed,), cv=k, n_evals=1,
                           patience=stop.patience(task), chunk_size=chunk, progress=self.progress, group_by=group_by)
        return self._scores(result, "final_val", val), _fit_times(result, k)

    def _run_early_stopping(self, X, y, task, classes, folds, records, stop: _Stopping):
        """One sweep per fold: its training rows split into training and a validation split for
        the stopping rule, its validation rows as the test split that scores."""
        from sklearn.model_selection import train_test_split

        from hsens_jax.data import Dataset
        from hsens_jax.engine.sweep import run_sweep

        scores, times = [], []
        space, configs, fixed = _space_and_configs(records)
        group_by = chunk = None
        for tr, va in folds:
            fit_rows, es_rows = train_test_split(tr, test_size=stop.validation_fraction, random_state=stop.seed,
                                                 stratify=y[tr] if task == "classification" else None)
            ds = Dataset.from_arrays(X[fit_rows], y[fit_rows], x_val=X[es_rows], y_val=y[es_rows], x_test=X[va],
                                     y_test=y[va], task=task, classes=classes, name="search")
            shape = (ds.input_shape[0], ds.output_dim, ds.n_train, 1)
            if group_by is None:  # the first fold's: every fold's sweep then has the same programs
                group_by = self._group_by(records, *shape)
                chunk = self._chunk_for(ds, space, configs, fixed, group_by, 1)
            self._sweeps.append({"candidates": len(records), "group_by": group_by, "chunk_size": chunk})
            result = run_sweep(ds, space, configs, fixed=fixed, seeds=(stop.seed,), n_evals=stop.max_iter,
                               patience=stop.patience(task), chunk_size=chunk, progress=self.progress,
                               group_by=group_by)
            scores.append(self._scores(result, "test", [y[va]])[:, 0])
            times.append(_fit_times(result, 1)[:, 0])
        return np.stack(scores, 1), np.stack(times, 1)

    def _scores(self, result, prefix: str, val_targets) -> np.ndarray:
        """(M, F) scores of the runs (one seed) from the ``prefix`` metrics (``final_val`` or ``test``)."""
        loss_name = "final_val_loss" if prefix == "final_val" else "test_loss"
        lead = lambda a: np.asarray(a, float).reshape(result.n_configs, -1)  # noqa: E731
        if self._task == "classification":
            if self.scoring == "neg_log_loss":
                return -lead(result.metrics[loss_name])
            # an accuracy is a count of right answers over the fold's size: exact in float64, as scikit-learn's
            sizes = np.array([len(t) for t in val_targets], float)[None, :]
            return np.round(lead(result.metrics[f"{prefix}_accuracy"]) * sizes) / sizes
        mse = lead(result.metrics[loss_name])
        if self.scoring == "neg_mean_squared_error":
            return -mse
        variance = np.array([np.var(np.asarray(t, float)) for t in val_targets])
        return 1.0 - mse / variance[None, :]

    # BaseSearchCV's predict, predict_proba, score... delegate to best_estimator_


COMPILE_SECONDS = 3.0
"""What :func:`_auto_group_by` assumes a program's compilation costs (2-core CPU, measured 1-4 s)."""
FLOPS_PER_SECOND = 3e10
"""What :func:`_auto_group_by` assumes training computes per second (2-core CPU: 30-65 GFLOP/s)."""
EPOCH_FRACTION = 0.4
"""The share of ``max_iter`` epochs :func:`_auto_group_by` assumes a run trains under
scikit-learn's stopping rule (``n_iter_no_change``): on the classic grid (48 candidates x 3
folds, ``max_iter=300``) the runs stopped at 0.41 of it on average (median 0.31)."""


def _architectures(records) -> list[tuple]:
    return [tuple(int(w) for w in r["hidden_layer_sizes"].split(",")) for r in records]


def _auto_group_by(records, n_features, n_out, n_train, k) -> tuple:
    """How to compile the candidates' networks, by the estimated compile plus training time
    (:data:`COMPILE_SECONDS` per program; forward and backward flops at
    :data:`FLOPS_PER_SECOND` over :data:`EPOCH_FRACTION` of the epochs) of three layouts:

    * ``("hidden_layer_sizes",)``: one exactly sized program per architecture;
    * ``("depth",)``: one program per number of hidden layers, each network built at its
      depth's largest width of every layer, its own units masked;
    * ``()``: one masked program for all (every network at the largest width and depth).

    The cheapest wins (ties: fewer programs). The classic grid ((50,), (100,), (50, 50),
    (100, 50)): one program per depth, 2 instead of 4. Measured through ``GridSearchCV`` (2
    cores, no refit, one fit each): warm 4.73 s against 4.61 s for one program per
    architecture, with an empty compilation cache 11.0 s against 14.7 s; with the refit,
    ``benchmarks/results/search_sklearn_cpu_run6.md``."""
    archs = _architectures(records)  # engine_values always gives hidden_layer_sizes
    if len(set(archs)) <= 1:
        return ()

    def macs(layers):  # multiply-adds of one example's forward pass
        widths = (n_features, *layers, n_out)
        return sum(a * b for a, b in zip(widths[:-1], widths[1:]))

    def built(group):  # the network a masked program over ``group`` builds (hsens_jax.engine.builtin)
        depth = max(len(a) for a in group)
        if len({len(a) for a in group}) == 1:
            return tuple(max(a[i] for a in group) for i in range(depth))
        return (max(max(a) for a in group),) * depth

    examples = np.array([r["epochs"] * (n_train // r["batch_size"]) * r["batch_size"] * k for r in records], float)

    def seconds(per_run_macs):  # training estimate of the runs with these networks' sizes
        return 6.0 * EPOCH_FRACTION * float(np.dot(per_run_macs, examples)) / FLOPS_PER_SECOND

    depths = {len(a) for a in archs}
    at_depth = {d: macs(built([a for a in archs if len(a) == d])) for d in depths}
    layouts = [  # (programs, estimated seconds, group_by)
        (1, COMPILE_SECONDS + seconds(np.full(len(archs), macs(built(archs)), float)), ()),
        (len(depths), COMPILE_SECONDS * len(depths) + seconds(np.array([at_depth[len(a)] for a in archs], float)),
         ("depth",)),
        (len(set(archs)), COMPILE_SECONDS * len(set(archs)) + seconds(np.array([macs(a) for a in archs], float)),
         ("hidden_layer_sizes",)),
    ]
    return min(layouts, key=lambda t: (t[1], t[0]))[2]


def _fit_times(result, k) -> np.ndarray:
    """Each run's share of its program's wall time, (M, k)."""
    group = np.asarray(result.metrics["group"])
    wall = np.asarray(result.metrics["group_wall_time"], float)
    sizes = np.array([np.sum(group == g) for g in group])
    return np.repeat((wall / (sizes * k))[:, None], k, axis=1)


def _cv_results(candidates: list[dict], scores: np.ndarray, fit_time: np.ndarray) -> dict:
    """``cv_results_`` with scikit-learn's keys, dtypes and ranking (ties share the lowest rank;
    NaN means rank with the worst)."""
    from scipy.stats import rankdata

    n, k = scores.shape
    results: dict[str, Any] = {}
    results["mean_fit_time"] = fit_time.mean(1)
    results["std_fit_time"] = fit_time.std(1)
    results["mean_score_time"] = np.zeros(n)
    results["std_score_time"] = np.zeros(n)
    for name, masked in _param_arrays(candidates):
        results[name] = masked
    results["params"] = candidates
    for f in range(k):
        results[f"split{f}_test_score"] = scores[:, f]
    means = scores.mean(1)
    results["mean_test_score"] = means
    results["std_test_score"] = np.sqrt(np.mean((scores - means[:, None]) ** 2, axis=1))
    if np.isnan(means).all():
        ranks = np.ones(n, np.int32)
    else:
        filled = np.where(np.isnan(means), np.nanmin(means) - 1, means)
        ranks = rankdata(-filled, method="min").astype(np.int32)
    results["rank_test_score"] = ranks
    return results


def _param_arrays(candidates: list[dict]):
    """``param_<name>`` masked arrays as scikit-learn builds them (numeric dtype where the values
    allow, object otherwise; masked where a candidate lacks the parameter)."""
    n = len(candidates)
    values: dict[str, dict[int, Any]] = defaultdict(dict)
    for i, params in enumerate(candidates):
        for name, v in params.items():
            values[f"param_{name}"][i] = v
    for name, by_index in values.items():
        listed = list(by_index.values())
        try:
            arr = np.array(listed)
        except ValueError:
            dtype = np.dtype(object)
        else:
            dtype = arr.dtype if arr.dtype.kind != "U" and arr.ndim == 1 else np.dtype(object)
        data = np.empty(n, dtype=dtype)
        mask = np.ones(n, bool)
        for i, v in by_index.items():
            data[i] = v
            mask[i] = False
        yield name, np.ma.MaskedArray(data, mask=mask)


# ----------------------------------------------------------------------------- the refit estimator


class _FittedMLP(BaseEstimator):
    """The built-in MLP trained by the engine with an ``MLPClassifier``/``MLPRegressor``'s
    parameters (``estimator``). Fitted attributes: ``params_`` (the network's Flax
    parameters), ``engine_values_`` (the engine hyperparameters it was trained with),
    ``n_iter_`` (epochs trained), ``stopped_`` (whether the stopping rule ended training),
    ``n_features_in_``."""

    def __init__(self, estimator=None):
        self.estimator = estimator

    def fit(self, X, y):
        """Train on all of ``X`` with the estimator's parameters (as the search's refit does)."""
        task = "classification" if isinstance(self, ClassifierMixin) else "regression"
        X, y = np.asarray(X), np.asarray(y)
        classes = np.unique(y) if task == "classification" else None
        n_outputs = 1 if y.ndim == 1 else y.shape[1]
        return _Refit(X, y, task, classes, n_outputs, [self.estimator.get_params()]).fit(self, 0)

    def _outputs(self, X) -> np.ndarray:
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "params_")
        X = np.asarray(X, np.float32)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has shape {X.shape}; this model takes (n_samples, {self.n_features_in_})")
        return np.asarray(self._forward(X))


class FittedMLPClassifier(ClassifierMixin, _FittedMLP):
    """A classifier refit by :class:`GridSearchCV` / :class:`RandomizedSearchCV` (its
    ``best_estimator_``): ``predict``, ``predict_proba``, ``score`` (accuracy), ``classes_``."""

    def predict_proba(self, X) -> np.ndarray:
        logits = self._outputs(X).astype(np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, X) -> np.ndarray:
        return self.classes_[np.argmax(self._outputs(X), axis=1)]


class FittedMLPRegressor(RegressorMixin, _FittedMLP):
    """A regressor refit by :class:`GridSearchCV` / :class:`RandomizedSearchCV`: ``predict``,
    ``score`` (R2)."""

    def predict(self, X) -> np.ndarray:
        out = self._outputs(X)
        return out[:, 0] if self._one_target else out


def _train_state(spec, data, hp, seed):
    """Train one run until its stopping rule or the budget (the loop of
    :func:`hsens_jax.engine.train.train`), returning its final state, step count and flag."""
    import jax
    import jax.numpy as jnp

    from hsens_jax.engine.train import init_carry, step

    carry = init_carry(spec, data, hp, jax.random.key(seed))

    def body(ct):
        c, t = ct
        return step(spec, data, hp, c, t), t + 1

    carry, t_end = jax.lax.while_loop(lambda ct: (ct[1] < spec.n_steps) & ~ct[0].stop.stopped, body,
                                      (carry, jnp.zeros((), jnp.int32)))
    return carry.state, t_end, carry.stop.stopped


class _Refit:
    """The training on all of ``X`` of any one of ``candidates`` (full parameter dicts sharing
    their stopping settings): one program sized from all of them (the built-in MLP masks the
    smaller networks exactly), compiled on a background thread as soon as it is known, so that
    the compilation overlaps the cross-validation."""

    def __init__(self, X, y, task, classes, n_outputs, candidates: list[dict]):
        from concurrent.futures import ThreadPoolExecutor

        from hsens_jax.data import Dataset
        from hsens_jax.engine.sweep import plan_sweep
        from hsens_jax.engine.train import prepare_data

        self.stop = _stopping(candidates[0])
        self.task, self.classes, self.n_features = task, classes, X.shape[1]
        self.one_target = task == "regression" and np.asarray(y).ndim == 1
        if self.stop.early_stopping:
            from sklearn.model_selection import train_test_split

            fit_rows, es_rows = train_test_split(np.arange(len(X)), test_size=self.stop.validation_fraction,
                                                 random_state=self.stop.seed,
                                                 stratify=y if task == "classification" else None)
            ds = Dataset.from_arrays(X[fit_rows], y[fit_rows], x_val=X[es_rows], y_val=y[es_rows], task=task,
                                     classes=classes, name="refit")
        else:  # every row trains; the one validation row only fills the engine's curves
            ds = Dataset.from_arrays(X, y, x_val=X[-1:], y_val=y[-1:], task=task, classes=classes, name="refit")
        self.records = [engine_values(p, ds.n_train, task, n_outputs) for p in candidates]
        space, configs, fixed = _space_and_configs(self.records)
        n_evals = max(r["epochs"] for r in self.records) if self.stop.early_stopping else 1
        with warnings.catch_warnings():
            from hsens_jax.engine.hyperparameters import HyperparameterWarning

            warnings.simplefilter("ignore", HyperparameterWarning)
            self.plan = plan_sweep(ds, space, configs, fixed=fixed, n_evals=n_evals, patience=self.stop.patience(task))
        self.data = prepare_data(ds, 512, self.plan.dtype)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hsens-refit")
        self._programs: dict[int, Any] = {}
        if len(self.plan.groups) == 1:
            self._program(0)

    def _hp(self, row: int):
        import jax

        from hsens_jax.engine import hyperparameters as hpm

        plan = self.plan
        spec = plan.groups[plan.group_of[row]].spec
        hp = hpm.encode(plan.resolved, np.array([row]), spec.model, plan.resolved.choices, plan.dtype)
        return {n: jax.numpy.asarray(a[0]) for n, a in hp.items()}

    def _program(self, group: int):
        if group not in self._programs:
            import functools

            import jax

            spec = self.plan.groups[group].spec
            row = int(self.plan.groups[group].configs[0])
            fn = jax.jit(functools.partial(_train_state, spec))
            hp = jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), np.asarray(a).dtype), self._hp(row))
            x64 = self.plan.dtype == jax.numpy.float64  # jax.enable_x64 is thread-local: carry it to the thread

            def compile_program():
                from hsens_jax import executables

                with jax.enable_x64(x64):  # kept across processes (hsens_jax.executables)
                    return executables.compiled(fn, "sklearn._train_state", (self.data, hp, self.stop.seed),
                                                key=executables.stable_repr(spec))

            self._programs[group] = self._pool.submit(compile_program)
        return self._programs[group]

    def fit(self, fitted: "_FittedMLP", row: int) -> "_FittedMLP":
        """Train candidate ``row`` into ``fitted`` (its ``params_``, ``n_iter_``... and predictions)."""
        import jax

        from hsens_jax.engine.train import full_hp

        group = int(self.plan.group_of[row])
        spec = self.plan.groups[group].spec
        hp = self._hp(row)
        try:
            state, t_end, stopped = self._program(group).result()(self.data, hp, self.stop.seed)
        finally:
            self._pool.shutdown(wait=False)

        def forward(x):
            out, _ = spec.model.apply({"params": state.params, **state.batch_stats}, x, full_hp(spec, hp), train=False)
            return out

        fitted._forward = jax.jit(forward)
        fitted.params_ = state.params
        fitted.engine_values_ = self.records[row]
        fitted.n_iter_ = int(math.ceil(int(t_end) / spec.steps_per_epoch))
        fitted.stopped_ = bool(stopped)
        fitted.n_features_in_ = self.n_features
        if self.task == "classification":
            fitted.classes_ = self.classes
        else:
            fitted._one_target = self.one_target
        return fitted


class GridSearchCV(_VectorizedSearch, _SkGridSearchCV):
    """scikit-learn's ``GridSearchCV`` for ``MLPClassifier``/``MLPRegressor``, every candidate x
    fold trained in one vectorized sweep (see the module docstring).

    Arguments as scikit-learn's, plus: ``group_by`` (engine hyperparameters compiled as
    separate programs, e.g. ``("hidden_layer_sizes",)`` for exactly sized networks, ``()``
    for one masked program, ``("depth",)`` for one program per number of hidden layers;
    default ``"auto"``: the layout of these three with the least estimated compilation plus
    training, see ``_auto_group_by``), ``chunk_size`` (runs per compiled call; default: on a CPU 2 candidates x
    the folds, elsewhere all the runs of a program), ``progress`` (a progress bar on stderr). ``n_jobs`` and ``pre_dispatch`` have no effect (the runs are vectorized;
    :func:`hsens_jax.use_cpu_cores` shards them over the CPU's cores).
    """

    def __init__(self, estimator, param_grid, *, scoring=None, n_jobs=None, refit=True, cv=None, verbose=0,
                 pre_dispatch="2*n_jobs", error_score=np.nan, return_train_score=False, group_by="auto",
                 chunk_size=None, progress=False):
        super().__init__(estimator, param_grid, scoring=scoring, n_jobs=n_jobs, refit=refit, cv=cv,
                         verbose=verbose, pre_dispatch=pre_dispatch, error_score=error_score,
                         return_train_score=return_train_score)
        self.group_by, self.chunk_size, self.progress = group_by, chunk_size, progress

    def _candidates(self) -> list[dict]:
        return list(ParameterGrid(self.param_grid))


class RandomizedSearchCV(_VectorizedSearch, _SkRandomizedSearchCV):
    """scikit-learn's ``RandomizedSearchCV`` for ``MLPClassifier``/``MLPRegressor``: the same
    ``n_iter`` candidates as scikit-learn (``ParameterSampler`` with ``random_state``), trained in
    one vectorized sweep. Extra arguments as :class:`GridSearchCV`."""

    def __init__(self, estimator, param_distributions, *, n_iter=10, scoring=None, n_jobs=None, refit=True, cv=None,
                 verbose=0, pre_dispatch="2*n_jobs", random_state=None, error_score=np.nan,
                 return_train_score=False, group_by="auto", chunk_size=None, progress=False):
        super().__init__(estimator, param_distributions, n_iter=n_iter, scoring=scoring, n_jobs=n_jobs, refit=refit,
                         cv=cv, verbose=verbose, pre_dispatch=pre_dispatch, random_state=random_state,
                         error_score=error_score, return_train_score=return_train_score)
        self.group_by, self.chunk_size, self.progress = group_by, chunk_size, progress

    def _candidates(self) -> list[dict]:
        return list(ParameterSampler(self.param_distributions, self.n_iter, random_state=self.random_state))
