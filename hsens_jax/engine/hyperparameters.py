"""Which hyperparameters a sweep sets, who reads them, and how each reaches a program.

A sweep's hyperparameters are the space's names, the ``fixed`` names and the defaults of
whoever reads them. Each belongs to one reader:

==============================  ==========================================================
reader                          names
==============================  ==========================================================
the training loop               ``batch_size``, ``epochs``, ``steps`` (always static)
the engine's optimizer          :data:`hsens_jax.engine.optimizers.DEFAULTS` (when the model
                                brings no optimizer; always traced, ``optimizer`` and
                                ``schedule`` as indices into the program's choices)
the built-in losses             ``label_smoothing`` (cross-entropy; traced)
the model                       a built-in model's own names, or any other name (a user's
                                model reads free-form names)
==============================  ==========================================================

Each hyperparameter is *static* (a Python value baked into the program: one program per
distinct combination, a *group*) or *traced* (a per-run array under ``vmap``); the rules
are in :mod:`hsens_jax.engine.model`. Fixed values and defaults of a user's model are
static: they are the same in every run, so they cost no extra program.

Values where a conditional hyperparameter is inactive: the ``fixed`` value if given, else
the reader's default; a user's hyperparameter with neither is an error (the model would
receive a made-up number).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from hsens_jax.engine import optimizers as opt
from hsens_jax.engine.model import Model, ModelError
from hsens_jax.space import Bool, Categorical, Float, Int, Space

LOOP = {"batch_size": 64, "epochs": None, "steps": None}
"""The training loop's hyperparameters and defaults (``epochs`` or ``steps`` must be set)."""

LOSS = {"label_smoothing": 0.0}
"""Hyperparameters of the built-in cross-entropy."""

LOSS_BOUNDS = {"label_smoothing": (0.0, 1.0, True)}


class HyperparameterWarning(UserWarning):
    """A hyperparameter has no effect on some of the configurations where it is set."""


@dataclass
class Resolved:
    """The hyperparameters of a sweep, resolved for a model.

    Attributes:
      values: ``{name: (K,) object array}`` of every hyperparameter, decoded (names for
        categoricals, Python numbers), inactive entries filled.
      static: names baked into programs (loop names included).
      traced: names passed as per-run arrays, with their encoding: ``"float"``, ``"int"``,
        ``"bool"``, ``"index"`` (a categorical's choice index), or ``"model"`` (encoded by the
        built-in model's ``encode`` hook).
      choices: the index tables of traced categoricals, from the space (so that every batch of
        a search shares them).
      reader: ``{name: "loop" | "optimizer" | "loss" | "model"}``.
      explicit: names set by the space or ``fixed`` (not only by a default).
    """

    values: dict[str, np.ndarray]
    static: list[str]
    traced: dict[str, str]
    choices: dict[str, tuple]
    reader: dict[str, str]
    explicit: set[str] = field(default_factory=set)


def _space_values(space: Space | None, configs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    if space is None:
        return {}
    space.validate(dict(configs))
    return {n: space.decode_column(n, configs[n]) for n in space.names}


def readers(model: Model, task: str) -> dict[str, tuple[str, Any]]:
    """``{name: (reader, default)}`` of the hyperparameters the engine itself knows for ``model``."""
    out = {n: ("loop", d) for n, d in LOOP.items()}
    if model.builtin_optimizer:
        out.update({n: ("optimizer", d) for n, d in opt.DEFAULTS.items()})
    if task == "classification" and model.uses_builtin_loss(task):
        out.update({n: ("loss", d) for n, d in LOSS.items()})
    known = model.known_hyperparameters()
    if known is not None:
        out.update({n: ("model", d) for n, d in known.items()})
    for n, d in model.defaults.items():
        out.setdefault(n, ("model", d))
    return out


def resolve(model: Model, task: str, space: Space | None, configs: Mapping[str, np.ndarray] | None,
            fixed: Mapping[str, Any] | None = None, traced: tuple[str, ...] = ()) -> Resolved:
    """Decode, complete and classify every hyperparameter of a sweep (see the module docs).

    ``space`` None: a single configuration given entirely by ``fixed``. ``traced``: names of
    a user's model that stay traced although they are fixed (for hypergradients).

    Raises:
      ValueError: unknown names (for a built-in model), a name both in the space and fixed,
        an inactive user hyperparameter without a default, values outside their valid range.
    """
    fixed = dict(fixed or {})
    names = tuple(space.names) if space is not None else ()
    configs = dict(configs or {})
    both = set(names) & set(fixed)
    if both:
        raise ValueError(f"hyperparameter(s) {sorted(both)} are both in the space and fixed")
    known = readers(model, task)
    free_form = model.known_hyperparameters() is None
    if not free_form:
        unknown = [n for n in list(names) + list(fixed) if n not in known]
        if unknown:
            raise ValueError(
                f"unknown hyperparameter(s) {unknown}: the {model.name} model and the engine understand "
                f"{sorted(known)}"
            )
    values = _space_values(space, configs)
    k = len(next(iter(configs.values()))) if configs else 1
    for name, col in values.items():
        if any(v is None for v in col):
            if name in fixed:
                fill = fixed[name]
            elif name in known:
                fill = known[name][1]
            else:
                raise ValueError(
                    f"hyperparameter {name!r} is conditional, but the model has no value for the configurations "
                    f"where it is inactive: give it a default (Model(defaults={{{name!r}: ...}})) or a fixed value"
                )
            values[name] = np.array([fill if v is None else v for v in col], dtype=object)
    for name, value in fixed.items():
        values[name] = np.array([value] * k, dtype=object)
    for name, (who, default) in known.items():
        if name not in values and default is not None:
            values[name] = np.array([default] * k, dtype=object)
    explicit = set(names) | set(fixed)

    reader = {n: known[n][0] if n in known else "model" for n in values}
    builtin_model_names = set(model.known_hyperparameters() or ())
    static: list[str] = []
    traced_names = tuple(traced)
    traced: dict[str, str] = {}
    choices: dict[str, tuple] = {}
    for name, col in values.items():
        who = reader[name]
        if who == "loop":
            static.append(name)
        elif who in ("optimizer", "loss"):
            if name in opt.CHOICES:
                traced[name] = "index"
                choices[name] = _choices(name, space, col, opt.CHOICES[name])
            else:
                traced[name] = "float"
        elif name in builtin_model_names and name not in model.static:
            traced[name] = "model"
        elif name in model.static:
            static.append(name)
        elif name in names:
            p = space[name]
            if isinstance(p, Categorical):
                if name in model.traced:
                    traced[name] = "index"
                    choices[name] = tuple(p.choices)
                else:
                    static.append(name)
            else:
                traced[name] = {Float: "float", Int: "int", Bool: "bool"}[type(p)]
        elif name in model.traced or name in traced_names:
            traced[name] = _kind_of(name, col)
            if traced[name] == "index":
                choices[name] = tuple(dict.fromkeys(col.tolist()))
        else:  # fixed values and defaults of a user's model: the same in every run
            static.append(name)
    _convert_numbers(values, traced)
    _check_bounds(values, space, reader)
    return Resolved(values, static, traced, choices, reader, explicit)


def _kind_of(name, col) -> str:
    v = col[0]
    if isinstance(v, (bool, np.bool_)):
        return "bool"
    if isinstance(v, (int, np.integer)):
        return "int"
    if isinstance(v, (float, np.floating)):
        return "float"
    return "index"


def _choices(name, space: Space, col, allowed) -> tuple:
    """The index table of a built-in categorical: the space's choices (stable across batches) or the values."""
    present = (list(space[name].choices) if space is not None and name in space.names
               and isinstance(space[name], Categorical) else [])
    present += [v for v in col.tolist() if v not in present]
    bad = sorted({str(v) for v in present if v not in allowed})
    if bad:
        raise ValueError(f"{name} value(s) {bad} unknown; choose from {allowed}")
    return tuple(n for n in allowed if n in present)


def _convert_numbers(values, traced):
    """Check that traced numeric hyperparameters hold numbers (their values stay Python objects)."""
    for name, kind in traced.items():
        if kind in ("float", "int", "bool"):
            try:
                values[name].astype(float)
            except (TypeError, ValueError):
                raise ValueError(f"hyperparameter {name!r} must be numeric, got values like {values[name][0]!r}") \
                    from None


def _check_bounds(values, space: Space, reader):
    """Valid ranges of the engine's numeric settings: the space's bounds first (a random design
    may miss the bad corner), then the values."""
    bounds = {**opt.BOUNDS, **LOSS_BOUNDS}
    for name, (lo, hi, open_hi) in bounds.items():
        if name not in values or reader.get(name) not in ("optimizer", "loss"):
            continue
        candidates = []
        if space is not None and name in space.names and isinstance(space[name], (Float, Int)):
            candidates += [(space[name].low, "the space's low bound "), (space[name].high, "the space's high bound ")]
        candidates += [(float(v), "") for v in values[name] if v is not None]
        for v, what in candidates:
            bad = not math.isfinite(v) or v < lo or (hi is not None and (v >= hi if open_hi else v > hi))
            if bad:
                rng = f"[{lo:g}, {hi:g}{')' if open_hi else ']'}" if hi is not None else f">= {lo:g}"
                raise ValueError(f"hyperparameter {name!r}: {what}{v:g} is outside its valid range {rng}")


def check_relevance(resolved: Resolved, model: Model, space: Space, configs) -> None:
    """Refuse a setting of the engine's optimizer that no configuration reads; warn when only some do.

    ``momentum`` set (in the space or fixed) while the optimizer is plain ``sgd`` has no
    effect: an analysis would score it as if it mattered. A conditional hyperparameter whose
    condition matches exactly the optimizers that read it never triggers this. When the
    space offers an optimizer that reads it, configurations that happen not to use one (a
    search's batch) are only warned about.
    """
    if not model.builtin_optimizer or "optimizer" not in resolved.values:
        return
    optim = resolved.values["optimizer"]
    active = space.active(dict(configs)) if len(space.names) else {}
    for name, users in opt.USED_BY.items():
        if name not in resolved.explicit:
            continue
        on = active.get(name, np.ones(len(optim), bool)) if name in space.names else np.ones(len(optim), bool)
        useless = on & np.array([o not in users for o in optim])
        if not useless.any():
            continue
        where = sorted({str(o) for o in optim[useless]})
        # a batch of a search may hold none of the space's optimizers that read it: that is no error
        space_reads = set(users) & set(resolved.choices.get("optimizer", ()))
        if useless.sum() == on.sum() and not space_reads:
            raise ValueError(
                f"hyperparameter {name!r} has no effect: it is read only by the optimizer(s) {list(users)}, and "
                f"the sweep uses {where}; remove it or make it conditional on the optimizer"
            )
        warnings.warn(
            f"hyperparameter {name!r} has no effect in {int(useless.sum())} of {int(on.sum())} configurations "
            f"(optimizer {where} does not read it): make it conditional, e.g. condition={{'optimizer': "
            f"{list(users)}}}, so that analyses score it only where it matters",
            HyperparameterWarning, stacklevel=3)


def encode(resolved: Resolved, rows: np.ndarray, static_model: Model, choices: Mapping[str, tuple],
           dtype) -> dict[str, np.ndarray]:
    """Per-run NumPy arrays of the traced hyperparameters for configurations ``rows``.

    ``choices``: the program's index tables (``optimizer``, ``schedule`` and traced
    categoricals). Built-in model names are encoded by ``static_model.encode``.
    """
    out: dict[str, np.ndarray] = {}
    model_names = {}
    for name, kind in resolved.traced.items():
        col = resolved.values[name][rows]
        if kind == "float":
            out[name] = np.asarray(col.astype(float), dtype)
        elif kind == "int":
            out[name] = col.astype(float).astype(np.int32)
        elif kind == "bool":
            out[name] = col.astype(float).astype(bool)
        elif kind == "index":
            table = list(choices[name])
            out[name] = np.array([table.index(v) for v in col], np.int32)
        else:
            model_names[name] = col
    if model_names:
        out.update(static_model.encode(model_names, {}, dtype))
    return out


def static_values(resolved: Resolved, row: int) -> dict[str, Any]:
    """The static hyperparameters of configuration ``row`` as hashable Python values."""
    return {n: _hashable(resolved.values[n][row]) for n in resolved.static}


def _hashable(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, list):
        return tuple(_hashable(x) for x in v)
    if isinstance(v, dict):
        return tuple(sorted((k, _hashable(x)) for k, x in v.items()))
    return v


__all__ = ["LOOP", "LOSS", "HyperparameterWarning", "Resolved", "resolve", "readers", "check_relevance",
           "encode", "static_values", "ModelError"]
