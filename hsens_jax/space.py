"""Search spaces: the first stage of ``space -> design -> sweep``.

A :class:`Space` is an ordered list of hyperparameters (:class:`Float`, :class:`Int`,
:class:`Categorical`, :class:`Bool`), possibly *conditional*: ``momentum`` may exist only when
``optimizer == "momentum"``, and ``x3`` only where ``x2 > 0.5`` (a :class:`Threshold` on a numeric
parent).  The space describes, checks and converts; the designs drawn from it live in
:mod:`hsens_jax.design` and its encodings for analysis in :mod:`hsens_jax.encoding`.

The configs format (what everything downstream vmaps over)
----------------------------------------------------------
A batch of ``n`` configurations is a ``dict[str, np.ndarray]`` with one **float64 array of shape
(n,)** per hyperparameter, in space order:

==============  ===========================================================
``Float``       the value itself
``Int``         the integer value, stored as an integral float64 (``3.0``)
``Bool``        ``0.0`` (False) or ``1.0`` (True)
``Categorical`` the index of the choice, ``0.0 .. k-1`` as float64
==============  ===========================================================

**NaN means inactive.** A conditional hyperparameter whose condition fails holds NaN in that row,
never a made-up placeholder value; and an active hyperparameter never holds NaN. This is the pandas
convention for categoricals (integer codes, missing = NaN). :meth:`Space.validate` enforces it,
:meth:`Space.active` returns the boolean activity masks, and :meth:`Space.decode` turns rows back into
python dicts that simply omit inactive hyperparameters.

Conditions
----------
``condition`` maps parent names to what the parent must be; a hyperparameter is active in a row
iff every parent is active there and passes its test:

* equality on a discrete parent (Int, Bool, Categorical): a value or a list of values,
  ``{"optimizer": "momentum"}``, ``{"depth": [3, 4]}``;
* a comparison on a numeric parent (Float or Int), a :class:`Threshold`: in Python
  ``{"x2": {"gt": 0.5}}`` (also ``{"x2": {">": 0.5}}``, ``{"x2": (">", 0.5)}`` or
  ``{"x2": Threshold(gt=0.5)}``), a range with one lower and one upper bound
  ``{"x2": {"gt": 0.2, "le": 0.8}}``; in TOML ``condition = { x2 = { gt = 0.5 } }``.

Several parents combine with *and*: ``{"x2": {"gt": 0.5}, "optimizer": ["adam"]}``.

References
----------
P. Novello, G. Poette, D. Lugato, P. M. Congedo, "Goal-oriented sensitivity analysis of
hyperparameters in deep learning", Journal of Scientific Computing 94, 45 (2023): section 4.3
analyses a hyperparameter on the rows where another exceeds a threshold.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "Float",
    "Int",
    "Categorical",
    "Bool",
    "Threshold",
    "Space",
    "Hyperparameter",
    "UnknownHyperparameterError",
]

Configs = dict[str, np.ndarray]

# integers above this are not exact in the float64 configs
_MAX_EXACT_INT = 2**53


class UnknownHyperparameterError(KeyError, ValueError):
    """A hyperparameter name that is not in the space (both a ``KeyError`` and a ``ValueError``)."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


# ----------------------------------------------------------------------------- value helpers


def _is_bool(v: Any) -> bool:
    return isinstance(v, (bool, np.bool_))


def _is_number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not _is_bool(v)


def _to_python(v: Any) -> Any:
    """numpy scalars -> python scalars (np.str_ -> str, np.int64 -> int, np.bool_ -> bool)."""
    if isinstance(v, np.generic):
        return v.item()
    return v


def _same_value(a: Any, b: Any) -> bool:
    """Equality that keeps bools apart from numbers (``True != 1`` here), strings from numbers."""
    if _is_bool(a) or _is_bool(b):
        return _is_bool(a) and _is_bool(b) and bool(a) == bool(b)
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    if _is_number(a) and _is_number(b):
        return float(a) == float(b)
    return False


def _did_you_mean(word: Any, options: Sequence[str]) -> str:
    """`` (did you mean 'low'?)`` when ``word`` is close to one of ``options``, else ``""``."""
    if not isinstance(word, str):
        return ""
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


# ----------------------------------------------------------------------------- thresholds

_COMPARISONS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
_SYMBOLS = {symbol: key for key, symbol in _COMPARISONS.items()}
_COMMON_SPELLINGS = {"gte": "ge", "geq": "ge", "lte": "le", "leq": "le", "=>": "ge", "=<": "le"}


def _threshold_problem(bounds: Mapping[str, Any]) -> tuple[type, str] | None:
    """What is wrong with ``{"gt": ..., "le": ...}`` (exception type, message), or None."""
    for key, v in bounds.items():
        if not _is_number(v):
            return TypeError, f"{key}={v!r} must be a real number"
        if not math.isfinite(float(v)):
            return ValueError, f"{key}={v!r} is not finite"
    if not bounds:
        return ValueError, "give at least one of gt, ge, lt, le"
    if "gt" in bounds and "ge" in bounds:
        return ValueError, "give gt or ge, not both (one lower bound)"
    if "lt" in bounds and "le" in bounds:
        return ValueError, "give lt or le, not both (one upper bound)"
    lower = bounds.get("gt", bounds.get("ge"))
    upper = bounds.get("lt", bounds.get("le"))
    if lower is not None and upper is not None:
        strict = "gt" in bounds or "lt" in bounds
        if float(lower) > float(upper) or (float(lower) == float(upper) and strict):
            return ValueError, f"{_describe_bounds(bounds, 'x')} holds for no value"
    return None


@dataclasses.dataclass(frozen=True)
class Threshold:
    """A condition on a numeric (Float or Int) parent: passes where the parent's value satisfies
    every comparison given.

    ``Threshold(gt=0.5)`` is ``parent > 0.5``; ``Threshold(gt=0.2, le=0.8)`` is
    ``0.2 < parent <= 0.8``.  In a condition, ``{"x2": Threshold(gt=0.5)}``,
    ``{"x2": {"gt": 0.5}}``, ``{"x2": {">": 0.5}}`` and ``{"x2": (">", 0.5)}`` are the same;
    TOML: ``condition = { x2 = { gt = 0.5 } }``.

    Args (keyword-only, at least one; at most one of ``gt``/``ge`` and one of ``lt``/``le``):
      gt, ge: lower bound, strict (``>``) or not (``>=``).
      lt, le: upper bound, strict (``<``) or not (``<=``).
    Values are finite reals in the parent's own units (a log-scale Float is compared by value,
    not by its logarithm).  A space also checks that each value lies within the parent's bounds
    and that some value of the parent passes.
    """

    gt: float | None = dataclasses.field(default=None, kw_only=True)
    ge: float | None = dataclasses.field(default=None, kw_only=True)
    lt: float | None = dataclasses.field(default=None, kw_only=True)
    le: float | None = dataclasses.field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        bounds = {}
        for key in _COMPARISONS:
            v = _to_python(getattr(self, key))
            object.__setattr__(self, key, v)
            if v is not None:
                bounds[key] = v
        problem = _threshold_problem(bounds)
        if problem is not None:
            raise problem[0](f"Threshold: {problem[1]}")

    @classmethod
    def from_mapping(cls, bounds: Mapping[Any, Any]) -> "Threshold":
        """From ``{"gt": 0.5}`` or ``{">": 0.5}`` (keys ``gt ge lt le`` or ``> >= < <=``)."""
        kwargs: dict[str, Any] = {}
        for op, v in bounds.items():
            key = _SYMBOLS.get(op, op) if isinstance(op, str) else op
            if key not in _COMPARISONS:
                hint = _did_you_mean(_COMMON_SPELLINGS.get(op, op), list(_COMPARISONS))
                if op in ("eq", "==", "in"):
                    hint = " (for equality, list the allowed values instead of a table)"
                raise ValueError(
                    f"unknown comparison {op!r}{hint}; use gt, ge, lt, le (or >, >=, <, <=)"
                )
            if key in kwargs:
                raise ValueError(f"comparison {key!r} given twice")
            kwargs[key] = v
        return cls(**kwargs)

    @property
    def lower(self) -> float | None:
        """The lower bound (``gt`` or ``ge``), or None."""
        return self.gt if self.gt is not None else self.ge

    @property
    def upper(self) -> float | None:
        """The upper bound (``lt`` or ``le``), or None."""
        return self.lt if self.lt is not None else self.le

    def holds(self, values: Any) -> np.ndarray:
        """Boolean mask of the values passing every comparison (False for NaN)."""
        v = np.asarray(values, dtype=np.float64)
        mask = np.ones(v.shape, dtype=bool)
        if self.gt is not None:
            mask &= v > self.gt
        if self.ge is not None:
            mask &= v >= self.ge
        if self.lt is not None:
            mask &= v < self.lt
        if self.le is not None:
            mask &= v <= self.le
        return mask

    def to_dict(self) -> dict[str, float]:
        """``{"gt": 0.5}``-style mapping, the form :meth:`from_mapping` and TOML files take."""
        return {k: getattr(self, k) for k in _COMPARISONS if getattr(self, k) is not None}

    def describe(self, parent: str) -> str:
        """``"x2 > 0.5"``, ``"0.2 < x2 <= 0.8"``."""
        return _describe_bounds(self.to_dict(), parent)

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items())
        return f"Threshold({inner})"


def _describe_bounds(bounds: Mapping[str, Any], parent: str) -> str:
    lo = "gt" if "gt" in bounds else "ge" if "ge" in bounds else None
    hi = "lt" if "lt" in bounds else "le" if "le" in bounds else None
    if lo and hi:
        lo_symbol = "<" if lo == "gt" else "<="
        return f"{bounds[lo]} {lo_symbol} {parent} {_COMPARISONS[hi]} {bounds[hi]}"
    key = lo or hi
    return f"{parent} {_COMPARISONS[key]} {bounds[key]}"


def _is_comparison_tuple(spec: Any) -> bool:
    return (
        isinstance(spec, tuple)
        and len(spec) == 2
        and isinstance(spec[0], str)
        and spec[0] in _SYMBOLS
        and _is_number(_to_python(spec[1]))
    )


def _normalize_condition(name: str, condition: Any) -> dict[str, tuple | Threshold] | None:
    if condition is None:
        return None
    if not isinstance(condition, Mapping):
        raise TypeError(
            f"hyperparameter {name!r}: condition must be None or a mapping "
            f"{{parent_name: value_or_list_of_values_or_comparison}}, got {type(condition).__name__}"
        )
    if len(condition) == 0:
        raise ValueError(f"hyperparameter {name!r}: condition is an empty mapping; use None")
    out: dict[str, tuple | Threshold] = {}
    for parent, spec in condition.items():
        if not isinstance(parent, str):
            raise TypeError(
                f"hyperparameter {name!r}: condition keys must be parent names (str), got {parent!r}"
            )
        if isinstance(spec, (Threshold, Mapping)) or _is_comparison_tuple(spec):
            try:
                if isinstance(spec, Threshold):
                    out[parent] = spec
                elif isinstance(spec, Mapping):
                    out[parent] = Threshold.from_mapping(spec)
                else:
                    out[parent] = Threshold(**{_SYMBOLS[spec[0]]: spec[1]})
            except (TypeError, ValueError) as e:
                msg = str(e).removeprefix("Threshold: ")
                raise type(e)(f"hyperparameter {name!r}: condition on {parent!r}: {msg}") from None
            continue
        if isinstance(spec, (list, tuple, set, frozenset, np.ndarray)):
            vals = tuple(_to_python(v) for v in spec)
        else:
            vals = (_to_python(spec),)
        if len(vals) == 0:
            raise ValueError(
                f"hyperparameter {name!r}: condition on {parent!r} lists no values"
            )
        out[parent] = vals
    return out


def _describe_condition(condition: Mapping[str, tuple | Threshold]) -> str:
    """``"optimizer == 'momentum' and x2 > 0.5"``, ``"depth in [3, 4]"``."""
    parts = []
    for parent, spec in condition.items():
        if isinstance(spec, Threshold):
            parts.append(spec.describe(parent))
        elif len(spec) == 1:
            parts.append(f"{parent} == {spec[0]!r}")
        else:
            parts.append(f"{parent} in {list(spec)}")
    return " and ".join(parts)


def _check_name(name: Any) -> None:
    if not isinstance(name, str) or not name:
        raise TypeError(f"hyperparameter name must be a non-empty str, got {name!r}")


def _finite_bound(name: str, which: str, v: Any) -> float:
    if not _is_number(v):
        raise TypeError(f"hyperparameter {name!r}: {which} must be a real number, got {v!r}")
    f = float(v)
    if not math.isfinite(f):
        raise ValueError(f"hyperparameter {name!r}: {which}={v!r} is not finite")
    return f


# ----------------------------------------------------------------------------- hyperparameters


@dataclasses.dataclass(frozen=True)
class Float:
    """A continuous hyperparameter on ``[low, high]``.

    Args:
      name: unique name within the space.
      low, high: finite bounds, ``low < high`` (both ``> 0`` when ``log``).
      log: if True the natural scale is logarithmic: designs are uniform in ``log(value)``.
      condition: None, or ``{parent: test}``; active iff every parent is active and passes its
        test: a value or list of values of a discrete (Int, Bool, Categorical) parent, or a
        comparison on a numeric (Float, Int) parent such as ``{"gt": 0.5}`` (see
        :class:`Threshold` and the module docstring).
    """

    name: str
    low: float
    high: float
    log: bool = dataclasses.field(default=False, kw_only=True)
    condition: dict[str, tuple | Threshold] | None = dataclasses.field(default=None, kw_only=True, hash=False)

    kind = "float"

    def __post_init__(self) -> None:
        _check_name(self.name)
        low = _finite_bound(self.name, "low", self.low)
        high = _finite_bound(self.name, "high", self.high)
        if low >= high:
            raise ValueError(f"hyperparameter {self.name!r}: low={low} must be < high={high}")
        if not math.isfinite(high - low):
            raise ValueError(
                f"hyperparameter {self.name!r}: the range high - low = {high} - ({low}) overflows "
                "float64"
            )
        if not _is_bool(self.log):
            raise TypeError(f"hyperparameter {self.name!r}: log must be a bool, got {self.log!r}")
        if self.log and low <= 0:
            raise ValueError(
                f"hyperparameter {self.name!r}: log=True needs positive bounds, got low={low}"
            )
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)
        object.__setattr__(self, "log", bool(self.log))
        object.__setattr__(self, "condition", _normalize_condition(self.name, self.condition))

    @property
    def n_values(self) -> None:
        return None


@dataclasses.dataclass(frozen=True)
class Int:
    """An integer hyperparameter on ``{low, ..., high}`` (bounds inclusive).

    Args:
      name: unique name within the space.
      low, high: integers (integral floats accepted), ``low < high`` (``low >= 1`` when ``log``).
      log: if True designs are log-uniform: integer ``v`` gets probability proportional to
        ``log((v + 1) / v)``.
      condition: see :class:`Float`.
    """

    name: str
    low: int
    high: int
    log: bool = dataclasses.field(default=False, kw_only=True)
    condition: dict[str, tuple | Threshold] | None = dataclasses.field(default=None, kw_only=True, hash=False)

    kind = "int"

    def __post_init__(self) -> None:
        _check_name(self.name)
        low = _finite_bound(self.name, "low", self.low)
        high = _finite_bound(self.name, "high", self.high)
        for which, v in (("low", low), ("high", high)):
            if v != math.floor(v):
                raise ValueError(
                    f"hyperparameter {self.name!r}: {which}={v} must be an integer for Int"
                )
            if abs(v) > _MAX_EXACT_INT:
                raise ValueError(
                    f"hyperparameter {self.name!r}: {which}={self.low if which == 'low' else self.high!r} "
                    "is beyond 2**53, where configs (float64) no longer hold every integer exactly"
                )
        if low >= high:
            raise ValueError(
                f"hyperparameter {self.name!r}: low={int(low)} must be < high={int(high)}"
            )
        if not _is_bool(self.log):
            raise TypeError(f"hyperparameter {self.name!r}: log must be a bool, got {self.log!r}")
        if self.log and low <= 0:
            raise ValueError(
                f"hyperparameter {self.name!r}: log=True needs positive bounds, got low={int(low)}"
            )
        object.__setattr__(self, "low", int(low))
        object.__setattr__(self, "high", int(high))
        object.__setattr__(self, "log", bool(self.log))
        object.__setattr__(self, "condition", _normalize_condition(self.name, self.condition))

    @property
    def n_values(self) -> int:
        return self.high - self.low + 1


@dataclasses.dataclass(frozen=True)
class Categorical:
    """A categorical hyperparameter; encoded in configs as the choice index ``0..k-1``.

    Args:
      name: unique name within the space.
      choices: non-empty sequence of unique str / int / float / bool values (floats finite).
      condition: see :class:`Float`.
    """

    name: str
    choices: tuple
    condition: dict[str, tuple | Threshold] | None = dataclasses.field(default=None, kw_only=True, hash=False)

    kind = "categorical"

    def __post_init__(self) -> None:
        _check_name(self.name)
        if isinstance(self.choices, (str, bytes)) or not isinstance(
            self.choices, (Sequence, np.ndarray)
        ):
            raise TypeError(
                f"hyperparameter {self.name!r}: choices must be a sequence (list/tuple), "
                f"got {type(self.choices).__name__}"
            )
        choices = tuple(_to_python(c) for c in self.choices)
        if len(choices) == 0:
            raise ValueError(f"hyperparameter {self.name!r}: choices is empty")
        for c in choices:
            if not isinstance(c, (str, bool, int, float)):
                raise TypeError(
                    f"hyperparameter {self.name!r}: choice {c!r} must be str, int, float or bool"
                )
            if isinstance(c, float) and not math.isfinite(c):
                raise ValueError(f"hyperparameter {self.name!r}: choice {c!r} is not finite")
        for i, c in enumerate(choices):
            for c2 in choices[:i]:
                if _same_value(c, c2):
                    raise ValueError(
                        f"hyperparameter {self.name!r}: duplicated choice {c!r} in {list(choices)}"
                    )
        object.__setattr__(self, "choices", choices)
        object.__setattr__(self, "condition", _normalize_condition(self.name, self.condition))

    @property
    def n_values(self) -> int:
        return len(self.choices)

    def index_of(self, value: Any) -> int:
        """Index of ``value`` among the choices; ValueError naming the hyperparameter otherwise."""
        value = _to_python(value)
        for i, c in enumerate(self.choices):
            if _same_value(value, c):
                return i
        raise ValueError(
            f"hyperparameter {self.name!r}: {value!r} is not among the choices {list(self.choices)}"
        )


@dataclasses.dataclass(frozen=True)
class Bool:
    """A boolean hyperparameter; behaves as ``Categorical(name, [False, True])`` (codes 0.0 / 1.0).

    Args:
      name: unique name within the space.
      condition: see :class:`Float`.
    """

    name: str
    condition: dict[str, tuple | Threshold] | None = dataclasses.field(default=None, kw_only=True, hash=False)

    kind = "bool"

    def __post_init__(self) -> None:
        _check_name(self.name)
        object.__setattr__(self, "condition", _normalize_condition(self.name, self.condition))

    @property
    def choices(self) -> tuple:
        return (False, True)

    @property
    def n_values(self) -> int:
        return 2

    def index_of(self, value: Any) -> int:
        """0 for False, 1 for True (ints 0 / 1 accepted); ValueError naming the hyperparameter."""
        value = _to_python(value)
        if _is_bool(value):
            return int(bool(value))
        if _is_number(value) and float(value) in (0.0, 1.0):
            return int(value)
        raise ValueError(f"hyperparameter {self.name!r}: {value!r} is not a bool")


Hyperparameter = Float | Int | Categorical | Bool
_HP_TYPES = (Float, Int, Categorical, Bool)

# keys of each hyperparameter's table in Space.from_dict / to_dict
_SPEC_KEYS = {
    "float": ("type", "low", "high", "log", "condition"),
    "int": ("type", "low", "high", "log", "condition"),
    "categorical": ("type", "choices", "condition"),
    "bool": ("type", "condition"),
}


def _passes(test: np.ndarray | Threshold, values: np.ndarray) -> np.ndarray:
    """A parent's test on its column: membership of the allowed codes, or a comparison."""
    if isinstance(test, Threshold):
        return test.holds(values)
    return np.isin(values, test)


def _passes_value(test: np.ndarray | Threshold, value: float) -> bool:
    """:func:`_passes` for one value."""
    if isinstance(test, Threshold):
        return bool(test.holds(value))
    return bool(np.any(test == value))


# ----------------------------------------------------------------------------- the space


class Space:
    """An ordered, possibly conditional, search space: what the hyperparameters are, when each is
    active, which configurations are valid, and conversions between records and configs.

    Args:
      params: sequence of :class:`Float`, :class:`Int`, :class:`Categorical`, :class:`Bool`, with
        unique names. A condition names parents in the space: a list of values for an Int, Bool or
        Categorical parent (values among the parent's values), a :class:`Threshold` for a Float or
        Int parent (values within the parent's bounds, passed by some value of the parent).
        Conditions must not form a cycle.

    ``space.names``, ``len(space)``, ``space[name]``, ``iter(space)``, ``name in space`` and
    ``space.index(name)`` behave as for an ordered mapping of names to hyperparameters.

    Designs and encodings are functions of the space in :mod:`hsens_jax.design` and
    :mod:`hsens_jax.encoding`; the methods :meth:`sample`, :meth:`grid`, :meth:`to_unit`,
    :meth:`from_unit`, :meth:`one_hot` and :meth:`normalize` are conveniences that call them.
    """

    def __init__(self, params: Sequence[Hyperparameter]):
        if isinstance(params, (Mapping, str)) or not isinstance(params, Sequence):
            raise TypeError(
                "Space(params): params must be a sequence of Float/Int/Categorical/Bool, "
                f"got {type(params).__name__}"
            )
        params = tuple(params)
        if len(params) == 0:
            raise ValueError("Space(params): params is empty; a space needs a hyperparameter")
        for p in params:
            if not isinstance(p, _HP_TYPES):
                raise TypeError(
                    f"Space(params): {p!r} is not a Float, Int, Categorical or Bool"
                )
        seen: set[str] = set()
        for p in params:
            if p.name in seen:
                raise ValueError(f"Space(params): duplicated hyperparameter name {p.name!r}")
            seen.add(p.name)
        self._params = params
        self._index = {p.name: i for i, p in enumerate(params)}
        # each child's parents with their test: the allowed codes (np.ndarray) or a Threshold
        self._tests: dict[str, tuple[tuple[str, np.ndarray | Threshold], ...]] = {}
        for p in params:
            if p.condition is None:
                continue
            tests = []
            for parent_name, spec in p.condition.items():
                if parent_name not in self._index:
                    raise ValueError(
                        f"hyperparameter {p.name!r}: condition on unknown parent {parent_name!r} "
                        f"(known: {list(self._index)})"
                    )
                parent = params[self._index[parent_name]]
                if isinstance(spec, Threshold):
                    self._check_threshold(p.name, parent, spec)
                    tests.append((parent_name, spec))
                else:
                    codes = [self._condition_code(p.name, parent, v) for v in spec]
                    tests.append((parent_name, np.array(codes, dtype=np.float64)))
            self._tests[p.name] = tuple(tests)
        self._order = self._topological_order()

    # ---- construction helpers

    @staticmethod
    def _condition_code(child: str, parent: Hyperparameter, value: Any) -> float:
        if isinstance(parent, Float):
            raise ValueError(
                f"hyperparameter {child!r}: condition on Float parent {parent.name!r} lists values; "
                f"a Float parent takes a comparison, e.g. {{{parent.name!r}: {{'gt': "
                f"{(parent.low + parent.high) / 2:g}}}}} (see Threshold)"
            )
        if isinstance(parent, Int):
            if not _is_number(value) or float(value) != math.floor(float(value)) or not (
                parent.low <= float(value) <= parent.high
            ):
                raise ValueError(
                    f"hyperparameter {child!r}: condition value {value!r} is not an integer of "
                    f"parent {parent.name!r} in [{parent.low}, {parent.high}]"
                )
            return float(value)
        if isinstance(parent, Bool) and not _is_bool(value):
            raise ValueError(
                f"hyperparameter {child!r}: condition value {value!r} is not among the choices "
                f"[False, True] of parent {parent.name!r}"
            )
        try:
            return float(parent.index_of(value))
        except ValueError:
            raise ValueError(
                f"hyperparameter {child!r}: condition value {value!r} is not among the choices "
                f"{list(parent.choices)} of parent {parent.name!r}"
            ) from None

    @staticmethod
    def _check_threshold(child: str, parent: Hyperparameter, test: Threshold) -> None:
        """A comparison needs a numeric parent, values within its bounds, and room to pass."""
        where = f"hyperparameter {child!r}: condition {test.describe(parent.name)}"
        if not isinstance(parent, (Float, Int)):
            kind = type(parent).__name__
            example = list(parent.choices[:1])
            raise ValueError(
                f"{where} compares a {kind} parent; comparisons need a Float or Int parent. "
                f"For {kind} {parent.name!r}, list the allowed values instead, e.g. "
                f"{{{parent.name!r}: {example!r}}}"
            )
        for key, v in test.to_dict().items():
            if not parent.low <= float(v) <= parent.high:
                raise ValueError(
                    f"{where}: threshold {key}={v!r} is outside the bounds "
                    f"[{parent.low}, {parent.high}] of parent {parent.name!r}"
                )
        if isinstance(parent, Float):
            lower = parent.low if test.lower is None else float(test.lower)
            upper = parent.high if test.upper is None else float(test.upper)
            passes = lower < upper  # a single point would (almost) never be drawn
        else:
            first = parent.low if test.lower is None else (
                math.floor(test.lower) + 1 if test.gt is not None else math.ceil(test.lower)
            )
            last = parent.high if test.upper is None else (
                math.ceil(test.upper) - 1 if test.lt is not None else math.floor(test.upper)
            )
            passes = max(first, parent.low) <= min(last, parent.high)
        if not passes:
            raise ValueError(
                f"{where} leaves no room in [{parent.low}, {parent.high}], the range of parent "
                f"{parent.name!r}: {child!r} would never be active"
            )

    def _topological_order(self) -> tuple[str, ...]:
        """Parents before children (ties in space order); ValueError on a cycle."""
        order: list[str] = []
        state: dict[str, int] = {}  # 1 visiting, 2 done

        def visit(name: str, path: list[str]) -> None:
            if state.get(name) == 2:
                return
            if state.get(name) == 1:
                cycle = path[path.index(name):] + [name]
                raise ValueError(
                    f"hyperparameter {name!r}: cyclic conditions {' -> '.join(cycle)}"
                )
            state[name] = 1
            for parent, _ in self._tests.get(name, ()):
                visit(parent, path + [name])
            state[name] = 2
            order.append(name)

        for p in self._params:
            visit(p.name, [])
        return tuple(order)

    # ---- mapping-like interface

    @property
    def names(self) -> tuple[str, ...]:
        """Hyperparameter names in space order."""
        return tuple(p.name for p in self._params)

    @property
    def params(self) -> tuple[Hyperparameter, ...]:
        """The hyperparameters in space order."""
        return self._params

    def __len__(self) -> int:
        return len(self._params)

    def __iter__(self):
        return iter(self._params)

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def __getitem__(self, name: str) -> Hyperparameter:
        return self._params[self.index(name)]

    def index(self, name: str) -> int:
        """Position of ``name`` in the space (column of the unit-cube arrays)."""
        try:
            return self._index[name]
        except (KeyError, TypeError):
            raise UnknownHyperparameterError(
                f"unknown hyperparameter {name!r}; the space has {list(self._index)}"
            ) from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Space) and self._params == other._params

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        inner = ",\n  ".join(repr(p) for p in self._params)
        return f"Space([\n  {inner},\n])"

    @property
    def topological_order(self) -> tuple[str, ...]:
        """Names with every parent before its children (ties in space order)."""
        return self._order

    def choices(self, name: str) -> tuple:
        """The possible values of a discrete hyperparameter, in code order.

        Categorical: its choices; Bool: ``(False, True)``; Int: ``(low, ..., high)``.
        Raises ValueError for a Float.
        """
        p = self[name]
        if isinstance(p, Float):
            raise ValueError(f"hyperparameter {name!r} is a Float and has no finite choices")
        if isinstance(p, Int):
            return tuple(range(p.low, p.high + 1))
        return tuple(p.choices)

    # ---- dict round trip

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """JSON/TOML-friendly description, inverse of :meth:`from_dict`.

        Returns ``{name: {"type": "float"|"int"|"categorical"|"bool", ...}}`` where float/int carry
        ``"low"``, ``"high"``, ``"log"``, categorical carries ``"choices"`` (list), and a
        conditional hyperparameter carries ``"condition": {parent: [values...]}`` for an equality
        and ``{parent: {"gt": 0.5}}`` for a comparison (:meth:`Threshold.to_dict`).
        """
        out: dict[str, dict[str, Any]] = {}
        for p in self._params:
            d: dict[str, Any] = {"type": p.kind}
            if isinstance(p, (Float, Int)):
                d.update(low=p.low, high=p.high, log=p.log)
            elif isinstance(p, Categorical):
                d["choices"] = list(p.choices)
            if p.condition is not None:
                d["condition"] = {
                    k: v.to_dict() if isinstance(v, Threshold) else list(v)
                    for k, v in p.condition.items()
                }
            out[p.name] = d
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Mapping[str, Any]]) -> "Space":
        """Build a space from ``{name: {"type": ..., ...}}`` (see :meth:`to_dict`), in dict order.

        The keys of each table: ``type`` (``"float"``, ``"int"``, ``"categorical"``, ``"bool"``),
        ``low``/``high``/``log`` (float, int), ``choices`` (categorical), ``condition`` (all).
        Raises ValueError naming the hyperparameter and the key for anything malformed (an unknown
        or misspelt key is named with the allowed keys).
        """
        if not isinstance(d, Mapping):
            raise TypeError(f"Space.from_dict: expected a mapping, got {type(d).__name__}")
        if len(d) == 0:
            raise ValueError("Space.from_dict: no hyperparameters (the mapping is empty)")
        params = []
        for name, spec in d.items():
            if not isinstance(name, str) or not name:
                raise ValueError(
                    f"Space.from_dict: hyperparameter names must be non-empty strings, got {name!r}"
                )
            if not isinstance(spec, Mapping):
                raise ValueError(
                    f"hyperparameter {name!r}: expected a table of settings such as "
                    f"{{type = \"float\", low = ..., high = ...}}, got {type(spec).__name__} {spec!r}"
                )
            every_key = sorted({k for keys in _SPEC_KEYS.values() for k in keys})
            if "type" not in spec:
                unknown = [k for k in spec if k not in every_key]
                hint = "".join(
                    f"; unknown key {k!r}{_did_you_mean(k, every_key)}" for k in unknown
                )
                raise ValueError(
                    f"hyperparameter {name!r}: missing key 'type' (one of {list(_SPEC_KEYS)}){hint}"
                )
            kind = spec["type"]
            if not isinstance(kind, str) or kind not in _SPEC_KEYS:
                raise ValueError(
                    f"hyperparameter {name!r}: type {kind!r} is not one of {sorted(_SPEC_KEYS)}"
                    f"{_did_you_mean(kind, list(_SPEC_KEYS))}"
                )
            allowed = _SPEC_KEYS[kind]
            extra = [k for k in spec if k not in allowed]
            if extra:
                described = ", ".join(f"{k!r}{_did_you_mean(k, allowed)}" for k in extra)
                raise ValueError(
                    f"hyperparameter {name!r}: unknown key{'s' if len(extra) > 1 else ''} "
                    f"{described} for type {kind!r}; allowed keys: {sorted(allowed)}"
                )
            missing = [k for k in allowed if k not in spec and k in ("low", "high", "choices")]
            if missing:
                raise ValueError(
                    f"hyperparameter {name!r}: missing key {missing[0]!r} for type {kind!r}"
                )
            cond = spec.get("condition")
            try:
                if kind in ("float", "int"):
                    klass = Float if kind == "float" else Int
                    params.append(
                        klass(name, spec["low"], spec["high"], log=spec.get("log", False),
                              condition=cond)
                    )
                elif kind == "categorical":
                    params.append(Categorical(name, spec["choices"], condition=cond))
                else:
                    params.append(Bool(name, condition=cond))
            except TypeError as e:  # a malformed description is a bad value, whatever its type
                raise ValueError(str(e)) from None
        return cls(params)

    # ---- configs: checking and activity

    def _columns(self, configs: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], int]:
        """Check the column set and lengths; return float64 columns in space order and n."""
        if not hasattr(configs, "keys") or not hasattr(configs, "__getitem__"):
            raise TypeError(
                f"configs must be a dict {{name: array of shape (n,)}}, got {type(configs).__name__}"
            )
        keys = list(configs.keys())
        missing = [k for k in self.names if k not in keys]
        extra = [k for k in keys if k not in self._index]
        if missing:
            raise ValueError(f"configs: missing column(s) {missing}")
        if extra:
            raise ValueError(f"configs: unknown column(s) {extra}; the space has {list(self.names)}")
        cols: dict[str, np.ndarray] = {}
        n = None
        for name in self.names:
            try:
                col = np.asarray(configs[name], dtype=np.float64)
            except (TypeError, ValueError) as e:
                raise TypeError(f"configs: column {name!r} is not numeric ({e})") from None
            if col.ndim != 1:
                raise ValueError(
                    f"configs: column {name!r} must have shape (n,), got shape {col.shape}"
                )
            if n is None:
                n = col.shape[0]
            elif col.shape[0] != n:
                raise ValueError(
                    f"configs: column {name!r} has length {col.shape[0]}, expected {n} "
                    f"(the length of column {self.names[0]!r})"
                )
            cols[name] = col
        assert n is not None
        return cols, n

    def active_given_parents(
        self, name: str, columns: Mapping[str, np.ndarray], active: Mapping[str, np.ndarray]
    ) -> np.ndarray:
        """Activity of ``name`` from its parents alone.

        Args:
          name: a hyperparameter.
          columns: ``{parent: (n,) float64}`` configs columns of (at least) the parents of ``name``.
          active: ``{parent: (n,) bool}`` activity of (at least) those parents.
        Returns:
          (n,) bool: every parent active and passing its test (membership or comparison). For an
          unconditional ``name``, all True (n taken from ``columns``).
        """
        tests = self._tests.get(name, ())
        if not tests:
            n = len(next(iter(columns.values()))) if columns else 0
            return np.ones(n, dtype=bool)
        mask = None
        for parent, test in tests:
            passes = active[parent] & _passes(test, columns[parent])
            mask = passes if mask is None else mask & passes
        return mask

    def _active_from(self, cols: Mapping[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
        active: dict[str, np.ndarray] = {}
        for name in self._order:
            if name in self._tests:
                active[name] = self.active_given_parents(name, cols, active)
            else:
                active[name] = np.ones(n, dtype=bool)
        return {name: active[name] for name in self.names}

    def active(self, configs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Which hyperparameters are active in each row.

        Args:
          configs: ``{name: (n,) array}`` in the configs format.
        Returns:
          ``{name: (n,) bool array}``, True where every condition of ``name`` holds (parents
          active and passing their tests), computed from the parents' values only.
        """
        cols, n = self._columns(configs)
        return self._active_from(cols, n)

    def _check_values(self, name: str, col: np.ndarray, where: np.ndarray) -> None:
        """Range / integrality of the non-NaN values of ``col`` at ``where``; ValueError names it."""
        p = self[name]
        v = col[where]
        if v.size == 0:
            return
        if not np.all(np.isfinite(v)):
            bad = v[~np.isfinite(v)][0]
            raise ValueError(f"configs: column {name!r} holds non-finite value {float(bad)}")
        if isinstance(p, (Float, Int)):
            lo, hi = p.low, p.high
        else:
            lo, hi = 0, p.n_values - 1
        out = (v < lo) | (v > hi)
        if np.any(out):
            what = "value" if isinstance(p, (Float, Int)) else "code"
            raise ValueError(
                f"configs: column {name!r} has {what} {float(v[out][0])} outside [{lo}, {hi}]"
            )
        if not isinstance(p, Float):
            frac = v != np.floor(v)
            if np.any(frac):
                what = "integer" if isinstance(p, Int) else "choice code"
                raise ValueError(
                    f"configs: column {name!r} has non-integral {what} {float(v[frac][0])}"
                )

    def validated_columns(self, configs: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], int]:
        """:meth:`validate` ``configs``, then return its float64 columns (space order) and n."""
        cols, n = self._columns(configs)
        active = self._active_from(cols, n)
        for name in self._order:  # parents first, so a bad parent is reported before its child
            col, act = cols[name], active[name]
            nan = np.isnan(col)
            if np.any(act & nan):
                i = int(np.flatnonzero(act & nan)[0])
                raise ValueError(f"configs: column {name!r} is NaN in row {i} where it is active")
            if np.any(~act & ~nan):
                i = int(np.flatnonzero(~act & ~nan)[0])
                raise ValueError(
                    f"configs: column {name!r} holds {float(col[i])} in row {i} where it is inactive "
                    f"(inactive must be NaN; it is active where {self._condition_text(name)})"
                )
            self._check_values(name, col, act)
        return cols, n

    def validate(self, configs: Mapping[str, Any]) -> None:
        """Check that ``configs`` is a valid batch of this space; ValueError naming the column.

        Checks: exactly the space's columns, each of shape (n,) with a common n; in active rows a
        finite value in range (Int integral, codes integral in ``0..k-1``); NaN exactly in the
        inactive rows.
        """
        self.validated_columns(configs)

    def _condition_text(self, name: str) -> str:
        """Human-readable condition of ``name``: ``"optimizer == 'momentum' and x2 > 0.5"``."""
        condition = self[name].condition
        return "always" if condition is None else _describe_condition(condition)

    # ---- decode / encode

    def decode_column(self, name: str, column: Any) -> np.ndarray:
        """Python values of one configs column.

        Args:
          name: the hyperparameter.
          column: (n,) codes/values in the configs format.
        Returns:
          (n,) object array: the choice (Categorical), bool (Bool), int (Int), float (Float), and
          None where the column is NaN (inactive).
        """
        p = self[name]
        col = np.asarray(column, dtype=np.float64)
        if col.ndim != 1:
            raise ValueError(f"decode_column: column {name!r} must have shape (n,), got {col.shape}")
        nan = np.isnan(col)
        self._check_values(name, col, ~nan)
        out = np.empty(col.shape[0], dtype=object)
        for i, v in enumerate(col):
            if nan[i]:
                out[i] = None
            elif isinstance(p, Float):
                out[i] = float(v)
            elif isinstance(p, Int):
                out[i] = int(v)
            else:
                out[i] = p.choices[int(v)]
        return out

    def decode(self, configs: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Rows of ``configs`` as python dicts, in space order, inactive hyperparameters omitted.

        Values are the choice for Categorical, ``bool`` for Bool, ``int`` for Int, ``float`` for
        Float. Inverse of :meth:`encode`.
        """
        cols, n = self.validated_columns(configs)
        decoded = {name: self.decode_column(name, cols[name]) for name in self.names}
        return [
            {name: decoded[name][i] for name in self.names if decoded[name][i] is not None}
            for i in range(n)
        ]

    def _encode_value(self, name: str, value: Any) -> float:
        p = self[name]
        value = _to_python(value)
        if isinstance(p, (Categorical, Bool)):
            return float(p.index_of(value))
        if not _is_number(value):
            raise ValueError(f"hyperparameter {name!r}: {value!r} is not a number")
        v = float(value)
        if not math.isfinite(v) or not (p.low <= v <= p.high):
            raise ValueError(f"hyperparameter {name!r}: {value!r} is outside [{p.low}, {p.high}]")
        if isinstance(p, Int) and v != math.floor(v):
            raise ValueError(f"hyperparameter {name!r}: {value!r} is not an integer")
        return v

    def encode(self, records: Sequence[Mapping[str, Any]]) -> Configs:
        """Configs from python dicts (inverse of :meth:`decode`).

        Args:
          records: sequence of ``{name: value}``. An inactive hyperparameter may be omitted (or
            None); an active one must be present; unknown names are an error.
        Returns:
          configs ``{name: (n,) float64}`` in space order, NaN where inactive.
        """
        if isinstance(records, Mapping) or not isinstance(records, Sequence):
            raise TypeError(f"encode: records must be a list of dicts, got {type(records).__name__}")
        n = len(records)
        cols = {name: np.full(n, np.nan) for name in self.names}
        for i, rec in enumerate(records):
            if not isinstance(rec, Mapping):
                raise TypeError(f"encode: record {i} is a {type(rec).__name__}, not a dict")
            unknown = [k for k in rec if k not in self._index]
            if unknown:
                raise ValueError(f"encode: record {i} has unknown hyperparameter(s) {unknown}")
            act: dict[str, bool] = {}
            for name in self._order:
                act[name] = all(
                    act[parent] and _passes_value(test, cols[parent][i])
                    for parent, test in self._tests.get(name, ())
                )
                value = rec.get(name)
                if act[name]:
                    if value is None:
                        raise ValueError(
                            f"encode: record {i} lacks hyperparameter {name!r}, which is active"
                        )
                    cols[name][i] = self._encode_value(name, value)
                elif value is not None:
                    raise ValueError(
                        f"encode: record {i} gives {name!r}={value!r} but {name!r} is inactive "
                        f"(its condition {self._condition_text(name)} fails)"
                    )
        return cols

    # ---- conveniences: designs (hsens_jax.design) and encodings (hsens_jax.encoding)

    def sample(self, n: int, design: str = "random", seed: int = 0) -> Configs:
        """Convenience for :func:`hsens_jax.design.sample` ``(space, n, kind=design, seed=seed)``."""
        from hsens_jax import design as design_module

        return design_module.sample(self, n, kind=design, seed=seed)

    def grid(self, levels: int | Mapping[str, int] = 5) -> Configs:
        """Convenience for :func:`hsens_jax.design.grid` ``(space, levels)``."""
        from hsens_jax import design as design_module

        return design_module.grid(self, levels)

    def from_unit(self, U: Any) -> Configs:
        """Convenience for :func:`hsens_jax.encoding.from_unit` ``(space, U)``."""
        from hsens_jax import encoding

        return encoding.from_unit(self, U)

    def to_unit(self, configs: Mapping[str, Any]) -> np.ndarray:
        """Convenience for :func:`hsens_jax.encoding.to_unit` ``(space, configs)``."""
        from hsens_jax import encoding

        return encoding.to_unit(self, configs)

    def one_hot(self, configs: Mapping[str, Any]) -> tuple[np.ndarray, list[str]]:
        """Convenience for :func:`hsens_jax.encoding.one_hot` ``(space, configs)``."""
        from hsens_jax import encoding

        return encoding.one_hot(self, configs)

    def normalize(
        self, configs: Mapping[str, Any], *, method: str = "novello", seed: int = 0
    ) -> np.ndarray:
        """Convenience for :func:`hsens_jax.encoding.normalize` ``(space, configs, method=, seed=)``."""
        from hsens_jax import encoding

        return encoding.normalize(self, configs, method=method, seed=seed)
