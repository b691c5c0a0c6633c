"""Search spaces, designs and encodings: the first stage of ``space -> design -> sweep``.

A :class:`Space` is an ordered list of hyperparameters (:class:`Float`, :class:`Int`,
:class:`Categorical`, :class:`Bool`), possibly *conditional*: ``momentum`` may exist only when
``optimizer == "momentum"``.

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

Designs (:meth:`Space.sample`, :meth:`Space.grid`) and encodings (:meth:`Space.to_unit`,
:meth:`Space.from_unit`, :meth:`Space.one_hot`, :meth:`Space.normalize`) all go through this format.

Unit-cube convention
--------------------
Each hyperparameter owns one coordinate ``u`` in [0, 1] (conditional ones too; their coordinate is
ignored where inactive).  ``Float``: ``low + u (high - low)`` (log: the same on the log scale).
``Int`` with ``k = high - low + 1`` values: ``u`` falls into one of ``k`` bins, equal on the linear
scale, or (log) equal on the log scale of ``[low, high + 1)`` so that ``floor`` of the log-uniform
value is the integer.  ``Categorical``/``Bool`` with ``k`` choices: ``floor(u k)`` clipped to ``k-1``.

References
----------
P. Novello, G. Poette, D. Lugato, P. M. Congedo, "Goal-oriented sensitivity analysis of
hyperparameters in deep learning", Journal of Scientific Computing 94, 45 (2023) -- the
normalization of mixed discrete/continuous hyperparameters for kernel (HSIC) methods.
"""

from __future__ import annotations

import dataclasses
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
    "Space",
    "Hyperparameter",
    "UnknownHyperparameterError",
]

Configs = dict[str, np.ndarray]

_DESIGNS = ("random", "sobol", "halton", "lhs")


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


def _normalize_condition(name: str, condition: Any) -> dict[str, tuple] | None:
    if condition is None:
        return None
    if not isinstance(condition, Mapping):
        raise TypeError(
            f"hyperparameter {name!r}: condition must be None or a mapping "
            f"{{parent_name: value_or_list_of_values}}, got {type(condition).__name__}"
        )
    if len(condition) == 0:
        raise ValueError(f"hyperparameter {name!r}: condition is an empty mapping; use None")
    out: dict[str, tuple] = {}
    for parent, values in condition.items():
        if not isinstance(parent, str):
            raise TypeError(
                f"hyperparameter {name!r}: condition keys must be parent names (str), got {parent!r}"
            )
        if isinstance(values, (list, tuple, set, frozenset, np.ndarray)):
            vals = tuple(_to_python(v) for v in values)
        else:
            vals = (_to_python(values),)
        if len(vals) == 0:
            raise ValueError(
                f"hyperparameter {name!r}: condition on {parent!r} lists no values"
            )
        out[parent] = vals
    return out


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
      condition: None, or ``{parent: value_or_values}``; active iff every parent is active and
        takes one of the listed values (parents must be Int, Bool or Categorical).
    """

    name: str
    low: float
    high: float
    log: bool = dataclasses.field(default=False, kw_only=True)
    condition: dict[str, tuple] | None = dataclasses.field(default=None, kw_only=True, hash=False)

    kind = "float"

    def __post_init__(self) -> None:
        _check_name(self.name)
        low = _finite_bound(self.name, "low", self.low)
        high = _finite_bound(self.name, "high", self.high)
        if low >= high:
            raise ValueError(f"hyperparameter {self.name!r}: low={low} must be < high={high}")
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
    condition: dict[str, tuple] | None = dataclasses.field(default=None, kw_only=True, hash=False)

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
    condition: dict[str, tuple] | None = dataclasses.field(default=None, kw_only=True, hash=False)

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
    condition: dict[str, tuple] | None = dataclasses.field(default=None, kw_only=True, hash=False)

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


# ----------------------------------------------------------------------------- the space


class Space:
    """An ordered, possibly conditional, search space.

    Args:
      params: sequence of :class:`Float`, :class:`Int`, :class:`Categorical`, :class:`Bool`, with
        unique names. Conditions may only name parents in the space that are Int, Bool or
        Categorical, with values among the parent's values, and must not form a cycle.

    ``space.names``, ``len(space)``, ``space[name]``, ``iter(space)``, ``name in space`` and
    ``space.index(name)`` behave as for an ordered mapping of names to hyperparameters.
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
        # condition values, encoded as configs codes: {child: {parent: np.array(codes)}}
        self._cond_codes: dict[str, dict[str, np.ndarray]] = {}
        for p in params:
            if p.condition is None:
                continue
            codes = {}
            for parent_name, values in p.condition.items():
                if parent_name not in self._index:
                    raise ValueError(
                        f"hyperparameter {p.name!r}: condition on unknown parent {parent_name!r} "
                        f"(known: {list(self._index)})"
                    )
                parent = params[self._index[parent_name]]
                codes[parent_name] = np.array(
                    [self._condition_code(p.name, parent, v) for v in values], dtype=np.float64
                )
            self._cond_codes[p.name] = codes
        self._order = self._topological_order()

    # ---- construction helpers

    @staticmethod
    def _condition_code(child: str, parent: Hyperparameter, value: Any) -> float:
        if isinstance(parent, Float):
            raise ValueError(
                f"hyperparameter {child!r}: condition on Float parent {parent.name!r}; conditions "
                "may only name Int, Bool or Categorical parents"
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
            for parent in self._cond_codes.get(name, {}):
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
        conditional hyperparameter carries ``"condition": {parent: [values...]}``.
        """
        out: dict[str, dict[str, Any]] = {}
        for p in self._params:
            d: dict[str, Any] = {"type": p.kind}
            if isinstance(p, (Float, Int)):
                d.update(low=p.low, high=p.high, log=p.log)
            elif isinstance(p, Categorical):
                d["choices"] = list(p.choices)
            if p.condition is not None:
                d["condition"] = {k: list(v) for k, v in p.condition.items()}
            out[p.name] = d
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Mapping[str, Any]]) -> "Space":
        """Build a space from ``{name: {"type": ..., ...}}`` (see :meth:`to_dict`), in dict order."""
        if not isinstance(d, Mapping):
            raise TypeError(f"Space.from_dict: expected a mapping, got {type(d).__name__}")
        allowed = {
            "float": {"type", "low", "high", "log", "condition"},
            "int": {"type", "low", "high", "log", "condition"},
            "categorical": {"type", "choices", "condition"},
            "bool": {"type", "condition"},
        }
        params = []
        for name, spec in d.items():
            if not isinstance(spec, Mapping):
                raise TypeError(
                    f"hyperparameter {name!r}: spec must be a mapping, got {type(spec).__name__}"
                )
            kind = spec.get("type")
            if kind not in allowed:
                raise ValueError(
                    f"hyperparameter {name!r}: type {kind!r} is not one of {sorted(allowed)}"
                )
            extra = set(spec) - allowed[kind]
            if extra:
                raise ValueError(
                    f"hyperparameter {name!r}: unknown keys {sorted(extra)} for type {kind!r}"
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
            except KeyError as e:
                raise ValueError(
                    f"hyperparameter {name!r}: missing key {e.args[0]!r} for type {kind!r}"
                ) from None
        return cls(params)

    # ---- configs: checking and activity

    def _columns(self, configs: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], int]:
        """Check the column set and lengths; return float64 copies in space order and n."""
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

    def _active_from(self, cols: Mapping[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
        active: dict[str, np.ndarray] = {}
        for name in self._order:
            mask = np.ones(n, dtype=bool)
            for parent, codes in self._cond_codes.get(name, {}).items():
                mask &= active[parent] & np.isin(cols[parent], codes)
            active[name] = mask
        return {name: active[name] for name in self.names}

    def active(self, configs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Which hyperparameters are active in each row.

        Args:
          configs: ``{name: (n,) array}`` in the configs format.
        Returns:
          ``{name: (n,) bool array}``, True where every condition of ``name`` holds (parents
          active with an allowed value), computed from the parents' values only.
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

    def validate(self, configs: Mapping[str, Any]) -> None:
        """Check that ``configs`` is a valid batch of this space; ValueError naming the column.

        Checks: exactly the space's columns, each of shape (n,) with a common n; in active rows a
        finite value in range (Int integral, codes integral in ``0..k-1``); NaN exactly in the
        inactive rows.
        """
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
                    "(inactive must be NaN)"
                )
            self._check_values(name, col, act)

    def _valid_columns(self, configs) -> tuple[dict[str, np.ndarray], int]:
        self.validate(configs)
        return self._columns(configs)

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
        cols, n = self._valid_columns(configs)
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
                ok = True
                for parent, codes in self._cond_codes.get(name, {}).items():
                    ok = ok and act[parent] and bool(np.isin(cols[parent][i], codes))
                act[name] = ok
                value = rec.get(name)
                if ok:
                    if value is None:
                        raise ValueError(
                            f"encode: record {i} lacks hyperparameter {name!r}, which is active"
                        )
                    cols[name][i] = self._encode_value(name, value)
                elif value is not None:
                    raise ValueError(
                        f"encode: record {i} gives {name!r}={value!r} but {name!r} is inactive "
                        f"(its condition {self[name].condition} fails)"
                    )
        return cols

    # ---- unit cube

    @staticmethod
    def _log_int_edges(p: Int) -> tuple[float, float]:
        return math.log(p.low), math.log(p.high + 1)

    def from_unit(self, U: Any) -> Configs:
        """Map points of the unit cube to configs.

        Args:
          U: (n, d) array in [0, 1], d = ``len(space)``, column j for ``space.names[j]``.
        Returns:
          configs; see the module docstring for the per-type maps. Inactive -> NaN.
        """
        U = np.asarray(U, dtype=np.float64)
        if U.ndim != 2 or U.shape[1] != len(self):
            raise ValueError(f"from_unit: U must have shape (n, {len(self)}), got {U.shape}")
        cols: dict[str, np.ndarray] = {}
        for j, p in enumerate(self._params):
            u = U[:, j]
            bad = ~((u >= 0) & (u <= 1))
            if np.any(bad):
                raise ValueError(
                    f"from_unit: column {j} ({p.name!r}) has {float(u[bad][0])} outside [0, 1]"
                )
            if isinstance(p, Float):
                if p.log:
                    lo, hi = math.log(p.low), math.log(p.high)
                    x = np.exp(lo + u * (hi - lo))
                else:
                    x = p.low + u * (p.high - p.low)
                x = np.clip(x, p.low, p.high)
            elif isinstance(p, Int):
                if p.log:
                    lo, hi = self._log_int_edges(p)
                    x = np.floor(np.exp(lo + u * (hi - lo)))
                else:
                    x = p.low + np.floor(u * p.n_values)
                x = np.clip(x, p.low, p.high)
            else:
                x = np.minimum(np.floor(u * p.n_values), p.n_values - 1)
            cols[p.name] = x
        active = self._active_from(cols, U.shape[0])
        for name in self.names:
            cols[name][~active[name]] = np.nan
        return cols

    def _unit_bins(self, p: Hyperparameter, col: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For a discrete hyperparameter: lower edge and width of each value's bin in [0, 1]."""
        if isinstance(p, Int) and p.log:
            lo, hi = self._log_int_edges(p)
            left = (np.log(col) - lo) / (hi - lo)
            right = (np.log(col + 1) - lo) / (hi - lo)
            return left, right - left
        j = col - p.low if isinstance(p, Int) else col
        k = p.n_values
        return j / k, np.full_like(col, 1.0 / k)

    def to_unit(self, configs: Mapping[str, Any]) -> np.ndarray:
        """Inverse of :meth:`from_unit`: configs -> (n, d) float64 array in [0, 1].

        Float: ``(x - low) / (high - low)`` (log: on the log scale). Discrete: the centre of the
        value's bin, ``(j + 0.5) / k`` (log Int: the centre on the log scale of ``[v, v + 1)``).
        NaN (inactive) stays NaN. ``from_unit(to_unit(c)) == c`` exactly for discrete columns.
        """
        cols, n = self._valid_columns(configs)
        U = np.empty((n, len(self)))
        for j, p in enumerate(self._params):
            col = cols[p.name]
            if isinstance(p, Float):
                if p.log:
                    U[:, j] = (np.log(col) - math.log(p.low)) / (math.log(p.high) - math.log(p.low))
                else:
                    U[:, j] = (col - p.low) / (p.high - p.low)
            else:
                left, width = self._unit_bins(p, col)
                U[:, j] = left + 0.5 * width
        return np.clip(U, 0.0, 1.0)  # NaN passes through np.clip

    # ---- designs

    def sample(self, n: int, design: str = "random", seed: int = 0) -> Configs:
        """Draw ``n`` configurations.

        Args:
          n: number of configurations (> 0).
          design: ``"random"`` (i.i.d. uniform), ``"sobol"`` (scrambled Sobol', best with n a
            power of two; scipy warns otherwise), ``"halton"`` (scrambled Halton) or ``"lhs"``
            (Latin hypercube), all from ``scipy.stats.qmc`` on the unit cube, then :meth:`from_unit`.
          seed: integer seed (scrambling / sampling).
        Returns:
          configs with n rows.
        """
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n <= 0:
            raise ValueError(f"sample: n must be a positive integer, got {n!r}")
        if design not in _DESIGNS:
            raise ValueError(f"sample: design {design!r} is not one of {list(_DESIGNS)}")
        n, d = int(n), len(self)
        if design == "random":
            U = np.random.default_rng(seed).random((n, d))
        else:
            from scipy.stats import qmc

            klass = {"sobol": qmc.Sobol, "halton": qmc.Halton, "lhs": qmc.LatinHypercube}[design]
            try:
                engine = klass(d, scramble=True, rng=seed)
            except TypeError:  # scipy < 1.15
                engine = klass(d, scramble=True, seed=seed)
            U = engine.random(n)
        return self.from_unit(U)

    def _grid_values(self, p: Hyperparameter, levels: int) -> np.ndarray:
        """Codes/values of ``p`` on the grid."""
        if isinstance(p, (Categorical, Bool)):
            return np.arange(p.n_values, dtype=np.float64)
        if isinstance(p, Float):
            v = np.geomspace(p.low, p.high, levels) if p.log else np.linspace(p.low, p.high, levels)
            v[0], v[-1] = p.low, p.high
            return v
        if p.n_values <= levels:
            return np.arange(p.low, p.high + 1, dtype=np.float64)
        raw = np.geomspace(p.low, p.high, levels) if p.log else np.linspace(p.low, p.high, levels)
        v = np.round(raw)
        v[0], v[-1] = p.low, p.high
        for i in range(1, levels):  # rounding may merge neighbours on the log scale: push apart
            v[i] = max(v[i], v[i - 1] + 1)
        for i in range(levels - 2, -1, -1):
            v[i] = min(v[i], v[i + 1] - 1)
        return v

    def grid(self, levels: int | Mapping[str, int] = 5) -> Configs:
        """Full factorial grid, respecting conditions.

        Args:
          levels: int >= 2, or ``{name: int}`` (names not given get 5). Categorical/Bool take all
            choices. Int takes all its integers if there are at most ``levels``, else ``levels``
            distinct integers evenly spaced (log scale if log; rounded, nudged apart if rounding
            merges neighbours). Float takes ``levels`` points evenly spaced (log scale if log),
            endpoints included.
        Returns:
          configs; a conditional hyperparameter only varies in the rows where it is active (NaN
          elsewhere), so no configuration appears twice.
        """
        if isinstance(levels, Mapping):
            unknown = [k for k in levels if k not in self._index]
            if unknown:
                raise ValueError(f"grid: levels names unknown hyperparameter(s) {unknown}")
            lv = {name: levels.get(name, 5) for name in self.names}
        else:
            lv = {name: levels for name in self.names}
        for name, L in lv.items():
            if isinstance(L, bool) or not isinstance(L, numbers.Integral) or L < 2:
                raise ValueError(f"grid: levels for {name!r} must be an integer >= 2, got {L!r}")
        cols: dict[str, np.ndarray] = {}
        n = 1
        active: dict[str, np.ndarray] = {}
        for name in self._order:  # parents first: children vary only where active
            p = self[name]
            vals = self._grid_values(p, int(lv[name]))
            act = np.ones(n, dtype=bool)
            for parent, codes in self._cond_codes.get(name, {}).items():
                act &= active[parent] & np.isin(cols[parent], codes)
            reps = np.where(act, len(vals), 1)
            for k in cols:
                cols[k] = np.repeat(cols[k], reps)
            for k in active:
                active[k] = np.repeat(active[k], reps)
            new = np.full(int(reps.sum()), np.nan)
            new_act = np.repeat(act, reps)
            new[new_act] = np.tile(vals, int(act.sum()))
            cols[name] = new
            active[name] = new_act
            n = new.shape[0]
        return {name: cols[name] for name in self.names}

    # ---- encodings for analysis

    def one_hot(self, configs: Mapping[str, Any]) -> tuple[np.ndarray, list[str]]:
        """Design matrix for regression-type analyses.

        Args:
          configs: a valid configs batch.
        Returns:
          ``(X, column_names)``: X (n, D) float64. Float/Int: one column min-max scaled to [0, 1]
          by the space bounds (on the log scale if log), NaN where inactive. Categorical with k
          choices: k indicator columns named ``"name=choice"``, all 0 where inactive. Bool: one
          0/1 column named ``name`` (0 where inactive).
        """
        cols, n = self._valid_columns(configs)
        blocks, names = [], []
        for p in self._params:
            col = cols[p.name]
            if isinstance(p, (Float, Int)):
                if p.log:
                    x = (np.log(col) - math.log(p.low)) / (math.log(p.high) - math.log(p.low))
                else:
                    x = (col - p.low) / (p.high - p.low)
                blocks.append(x[:, None])
                names.append(p.name)
            elif isinstance(p, Bool):
                blocks.append(np.nan_to_num(col, nan=0.0)[:, None])
                names.append(p.name)
            else:
                ind = (col[:, None] == np.arange(p.n_values)[None, :]).astype(np.float64)
                blocks.append(ind)
                names.extend(f"{p.name}={c}" for c in p.choices)
        return np.concatenate(blocks, axis=1), names

    def normalize(
        self, configs: Mapping[str, Any], *, method: str = "novello", seed: int = 0
    ) -> np.ndarray:
        """Normalize mixed hyperparameters to [0, 1] for kernel methods (HSIC).

        Args:
          configs: a valid configs batch.
          method: ``"novello"`` (Novello et al. 2023): Float min-max scaled by the space bounds (on
            the log scale if log); each discrete value (Int, Categorical, Bool) is replaced by a
            uniform draw inside its bin: value index j of k -> U[j/k, (j+1)/k] (Int: j = value -
            low; log Int: the bin of the value on the log scale, as in :meth:`from_unit`), so a
            discrete variable becomes a continuous uniform one with the same information.
            ``"unit"``: :meth:`to_unit` (bin centres, no randomness).
          seed: seed of the jitter (numpy Generator).
        Returns:
          (n, d) float64 in [0, 1], NaN where inactive.
        """
        if method == "unit":
            return self.to_unit(configs)
        if method != "novello":
            raise ValueError(f"normalize: method {method!r} is not one of ['novello', 'unit']")
        cols, n = self._valid_columns(configs)
        jitter = np.random.default_rng(seed).random((n, len(self)))
        X = self.to_unit(configs)
        for j, p in enumerate(self._params):
            if isinstance(p, Float):
                continue
            left, width = self._unit_bins(p, cols[p.name])
            X[:, j] = left + jitter[:, j] * width
        return X
