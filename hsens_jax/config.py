"""Sweep configuration files (TOML) for ``hsens sweep``.

A configuration names the data, the model, the search space, the design, the budget,
the seeds and the output directory::

    [data]
    name = "digits"          # digits | mnist | fashion_mnist | cifar10 | runge | bateman
    # data_dir = "~/data"    # for mnist / fashion_mnist / cifar10 (default $HSENS_DATA)
    val_fraction = 0.2
    # n_train = 1000         # subsample the training set

    # or, instead of `name`, data of one's own (hsens_jax.data.load_file):
    # path = "data.npz"      # .npz (keys x, y, optional x_val, y_val, x_test, y_test), a directory
    #                        # of x.npy / y.npy (...), or a .csv / .tsv with a header row;
    #                        # relative to this file's directory
    # task = "classification"   # or "regression"; default: inferred from y (integers or strings:
    #                           # classification, non-integral numbers: regression)
    # target = "label"       # CSV: the target column (default: the last one)
    # stratify = true        # stratified validation split (default: true for classification)
    # seed = 0               # seed of the validation split

    [model]
    kind = "mlp"             # mlp | cnn: the built-in models
    # or, instead of `kind`, a Flax module of one's own (see hsens_jax.engine.model):
    # module = "mypkg.models:make_model"    # hp -> flax.linen.Module (importable: on PYTHONPATH,
    #                                       # or a module next to this file)
    # loss = "mypkg.models:loss"            # (outputs, batch, hp) -> scalar; default by task
    # metrics = "mypkg.models:metrics"      # (outputs, batch, hp) -> {name: scalar}
    # directions = { f1 = "maximize" }      # the direction of every metric of `metrics`
    # optimizer = "mypkg.models:optimizer"  # hp -> optax.GradientTransformation; default: the
    #                                       # engine's (`optimizer`, `learning_rate`... hyperparameters)
    # static = ["blocks", "channels"]       # shape-changing hyperparameters (Int/Bool: found
    #                                       # automatically; Categorical: static unless `traced`)
    # traced = ["activation"]               # categoricals read as traced indices
    # defaults = { dropout = 0.0 }          # values where a conditional hyperparameter is inactive

    [budget]
    epochs = 10              # or: steps = 2000

    [design]
    kind = "sobol"           # random | sobol | halton | lhs | grid
    n = 256                  # configurations (grid: `levels` per hyperparameter instead)
    seed = 0

    # or a search that learns (Optuna, `hsens optimize`): `n` trials, `batch` per training call
    # kind = "tpe"           # tpe | gp | cmaes
    # n = 128
    # batch = 16
    # objective = "final_val_loss"   # default; direction: the objective's own unless given
    # study_name = "hsens"           # the study, in OUTPUT/study.db unless `storage` names another

    [sweep]
    seeds = [0]              # or: n_seeds = 3
    # cv = 3                 # k-fold cross-validation (stratified for classification), vectorized
    chunk_size = 256
    n_evals = 20
    group_by = []
    output = "runs/my-sweep"

    [fixed]                  # engine hyperparameters held constant
    optimizer = "adam"

    [space.learning_rate]    # one table per hyperparameter of the space
    type = "float"
    low = 1e-4
    high = 1e-1
    log = true

    [space.momentum]
    type = "float"
    low = 0.5
    high = 0.99
    condition = { optimizer = ["momentum"] }

Every key is checked: an unknown section or key is an error naming it, so a typo
never silently falls back to a default.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hsens_jax.space import Space

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

SEARCH_KINDS = ("tpe", "gp", "cmaes")
"""[design] kinds that are searches (:func:`hsens_jax.search.optuna.optimize`), not designs."""
_SEARCH_KEYS = ("batch", "objective", "direction", "study_name", "storage")

_SECTIONS = {
    "data": {"name", "data_dir", "val_fraction", "n_train", "seed", "noise", "n", "n_nuclides",
             "path", "task", "target", "stratify", "classes"},
    "model": {"kind", "module", "loss", "metrics", "directions", "optimizer", "static", "traced", "defaults",
              "name"},
    "budget": {"epochs", "steps"},
    "design": {"kind", "n", "seed", "levels", "batch", "objective", "direction", "study_name", "storage"},
    "sweep": {"seeds", "n_seeds", "chunk_size", "n_evals", "group_by", "output", "eval_batch_size", "cv"},
    "fixed": None,
    "space": None,
}


@dataclass
class SweepConfig:
    """A parsed sweep configuration (see the module docstring for the file format)."""

    data: dict[str, Any]
    model: Any
    space: Space
    design: dict[str, Any]
    fixed: dict[str, Any]
    seeds: list[int]
    chunk_size: int = 256
    n_evals: int = 20
    group_by: list[str] = field(default_factory=list)
    output: str = "runs/sweep"
    eval_batch_size: int = 512
    source: str = "<dict>"
    cv: int | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "<dict>") -> "SweepConfig":
        def err(msg):
            return ValueError(f"{source}: {msg}")

        for section, value in d.items():
            if section not in _SECTIONS:
                raise err(f"unknown section [{section}]; expected {sorted(_SECTIONS)}")
            allowed = _SECTIONS[section]
            if allowed is not None:
                if not isinstance(value, dict):
                    raise err(f"[{section}] must be a table")
                extra = set(value) - allowed
                if extra:
                    raise err(f"unknown key(s) {sorted(extra)} in [{section}]; allowed: {sorted(allowed)}")
        data = dict(d.get("data", {}))
        _check_data_section(data, err)
        if "space" not in d or not d["space"]:
            raise err("[space] is empty: add at least one [space.NAME] table")
        try:
            space = Space.from_dict(d["space"])
        except ValueError as e:
            raise err(f"[space]: {e}") from None
        budget = dict(d.get("budget", {}))
        fixed = dict(d.get("fixed", {}))
        for key in ("epochs", "steps"):
            if key in budget:
                if key in fixed:
                    raise err(f"`{key}` is given both in [budget] and [fixed]")
                fixed[key] = budget[key]
        if not any(k in fixed or k in space.names for k in ("epochs", "steps")):
            raise err("no training budget: set `epochs` or `steps` in [budget]")
        given = dict(d.get("design", {}))
        kind = given.get("kind", "sobol")
        if kind in SEARCH_KINDS:
            design = _search_section(given, err)
        else:
            misplaced = sorted(k for k in _SEARCH_KEYS if k in given)
            if misplaced:
                raise err(f"[design] {misplaced} apply to a search (kind = {' | '.join(SEARCH_KINDS)}), not to "
                          f"kind = {kind!r}")
            design = {"kind": kind, "seed": 0, **({} if kind == "grid" else {"n": 64}), **given}
            try:
                from hsens_jax import design as design_mod

                design_mod.check(space, kind, n=design.get("n"), levels=design.get("levels"), seed=design["seed"])
            except (ValueError, TypeError) as e:
                raise err(f"[design]: {e}") from None
        sweep = dict(d.get("sweep", {}))
        if "seeds" in sweep and "n_seeds" in sweep:
            raise err("give [sweep] `seeds` or `n_seeds`, not both")
        seeds = sweep.get("seeds", list(range(int(sweep.get("n_seeds", 1)))))
        if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
            raise err(f"[sweep] seeds must be a non-empty list of integers, got {seeds!r}")
        model = _model_section(dict(d.get("model", {})), err)
        ints = {}
        for key, default, low in (("chunk_size", 256, 1), ("n_evals", 20, 1), ("eval_batch_size", 512, 1),
                                  ("cv", None, 2)):
            v = sweep.get(key, default)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < low):
                raise err(f"[sweep] {key} must be an integer >= {low}, got {v!r}")
            ints[key] = v
        return cls(
            data=data, model=model, space=space, design=design, fixed=fixed, seeds=seeds,
            chunk_size=ints["chunk_size"], n_evals=ints["n_evals"],
            group_by=list(sweep.get("group_by", [])), output=str(sweep.get("output", "runs/sweep")),
            eval_batch_size=ints["eval_batch_size"], source=source, cv=ints["cv"],
        )

    @property
    def is_search(self) -> bool:
        """Whether [design] asks for a search (kind in :data:`SEARCH_KINDS`) rather than a design."""
        return self.design["kind"] in SEARCH_KINDS

    @classmethod
    def load(cls, path: str | Path) -> "SweepConfig":
        """Read and validate a TOML file."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"configuration file {path} not found")
        if path.is_dir():
            raise ValueError(f"configuration file {path} is a directory; give the path of a .toml file")
        try:
            d = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"{path}: not valid TOML: {e}") from None
        return cls.from_dict(d, source=str(path))

    def make_model(self):
        """The :class:`hsens_jax.Model` of the [model] section (user code imported now; a module
        path that is not importable is looked up next to the configuration file too)."""
        from hsens_jax.engine import Model, as_model

        if isinstance(self.model, str):
            return as_model(self.model)
        spec = dict(self.model)
        base = Path(self.source).parent if Path(self.source).is_file() else None
        if base is not None and str(base.resolve()) not in sys.path:
            sys.path.insert(0, str(base.resolve()))
        try:
            return Model(**spec)
        except (ValueError, TypeError) as e:
            raise type(e)(f"{self.source}: [model]: {e}") from None

    def make_design(self):
        """The configurations the design section asks for (a search has none up front: see
        :attr:`is_search`)."""
        if self.is_search:
            raise ValueError(f"{self.source}: [design] kind = {self.design['kind']!r} is a search: run it with "
                             f"`hsens optimize`")
        from hsens_jax import design

        return design.make(self.space, self.design["kind"], n=self.design.get("n"), levels=self.design.get("levels"),
                           seed=self.design.get("seed", 0))

    def load_data(self):
        """The [data] section's Dataset: ``load_dataset(name, ...)`` or ``load_file(path, ...)``
        (a relative ``path`` is relative to the configuration file's directory)."""
        from hsens_jax.data import load_dataset, load_file

        kwargs = {k: v for k, v in self.data.items() if k not in ("name", "path")}
        try:
            if "path" in self.data:
                config_file = Path(self.source)
                base = config_file.parent if config_file.is_file() else Path.cwd()
                return load_file(base / Path(self.data["path"]).expanduser(), **kwargs)
            return load_dataset(self.data["name"], **kwargs)
        except (ValueError, TypeError) as e:
            raise type(e)(f"{self.source}: [data]: {e}") from None


def _search_section(given: dict[str, Any], err) -> dict[str, Any]:
    """[design] of a search: ``n`` trials (default 64) in batches of ``batch`` (default 16)."""
    design = {"kind": given["kind"], "seed": 0, "n": 64, "batch": 16, **given}
    if "levels" in design:
        raise err(f"[design] levels applies to kind = 'grid', not to a search (kind = {design['kind']!r})")
    for key, low in (("n", 1), ("batch", 1), ("seed", 0)):
        v = design[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise err(f"[design] {key} must be an integer >= {low}, got {v!r}")
    if design["n"] < design["batch"]:
        raise err(f"[design] the budget n = {design['n']} trials is smaller than one batch (batch = "
                  f"{design['batch']}): lower batch or raise n")
    for key in ("objective", "study_name", "storage"):
        if key in design and (not isinstance(design[key], str) or not design[key]):
            raise err(f"[design] {key} must be a non-empty string, got {design[key]!r}")
    if "direction" in design and design["direction"] not in ("minimize", "maximize"):
        raise err(f"[design] direction must be 'minimize' or 'maximize', got {design['direction']!r}")
    return design


def _model_section(section: dict[str, Any], err):
    """``"mlp"``/``"cnn"``, or the keyword arguments of a user's :class:`hsens_jax.Model`."""
    if "kind" in section:
        other = sorted(set(section) - {"kind"})
        if other:
            raise err(f"[model] kind={section['kind']!r} is a built-in model: {other} apply to a model of one's "
                      f"own (`module = ...`) only")
        if section["kind"] not in ("mlp", "cnn"):
            raise err(f"[model] kind={section['kind']!r}; choose 'mlp' or 'cnn', or give `module`")
        return section["kind"]
    if not section:
        return "mlp"
    if "module" not in section:
        raise err(f"[model] needs `kind` (mlp, cnn) or `module` (an import path 'package.module:make_model'); "
                  f"got {sorted(section)}")
    for key in ("static", "traced"):
        if key in section and (not isinstance(section[key], list) or not all(isinstance(v, str) for v in section[key])):
            raise err(f"[model] {key} must be a list of hyperparameter names, got {section[key]!r}")
    for key in ("directions", "defaults"):
        if key in section and not isinstance(section[key], dict):
            raise err(f"[model] {key} must be a table, got {section[key]!r}")
    return section


_DATA_ONLY_WITH = {
    "path": ("task", "target", "stratify", "classes"),
    "name": ("data_dir", "noise", "n", "n_nuclides"),
}


def _check_data_section(data: dict[str, Any], err) -> None:
    """[data] names a data set (`name`) or a file of one's own (`path`), with the keys that apply."""
    if ("name" in data) == ("path" in data):
        raise err("[data] needs `name` (digits, mnist, fashion_mnist, cifar10, runge or bateman) or `path` "
                  "(a .npz, .csv, .tsv or a directory of .npy files of your own)" if "name" not in data else
                  "[data] has both `name` and `path`: give one")
    if "path" in data and (not isinstance(data["path"], str) or not data["path"]):
        raise err(f"[data] path must be a non-empty string, got {data['path']!r}")
    kind = "path" if "path" in data else "name"
    other = "name" if kind == "path" else "path"
    misplaced = sorted(k for k in _DATA_ONLY_WITH[other] if k in data)
    if misplaced:
        raise err(f"[data] {misplaced} apply only with `{other}`, not with `{kind}`")
