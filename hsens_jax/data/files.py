"""A :class:`Dataset` from a user's data file: ``.npz``, a directory of ``.npy`` files, or CSV.

Formats (the array names are those of :meth:`Dataset.from_arrays`):

* ``.npz`` (``np.savez("data.npz", x=x, y=y)``): keys ``x`` and ``y``, optionally ``x_val`` and
  ``y_val`` (then no validation split is drawn) and ``x_test`` and ``y_test``. Any other key is
  an error (a misspelt ``x_valid`` must not be ignored).
* a directory holding ``x.npy`` and ``y.npy``, optionally ``x_val.npy``, ``y_val.npy``,
  ``x_test.npy``, ``y_test.npy``: the same keys, one file each. Any other ``.npy`` file in the
  directory is an error; other files are ignored.
* ``.csv`` (comma-separated) or ``.tsv`` (tab-separated): a header row naming the columns, then
  one example per row. The target is the column named ``target`` (default: the last column);
  every other column is a numeric feature. A target column of integers or strings gives
  classification labels, one of non-integral numbers regression targets (see
  :func:`hsens_jax.data.arrays.infer_task`; ``task`` overrides).

Arrays are loaded with ``allow_pickle=False``: store string labels as a NumPy string array
(``np.asarray(labels, dtype=str)``), not as Python objects.
"""

from __future__ import annotations

import csv
import os
import re
import zipfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from hsens_jax.data.arrays import dataset_from_arrays
from hsens_jax.data.dataset import Dataset

ARRAY_KEYS = ("x", "y", "x_val", "y_val", "x_test", "y_test")
_DELIMITERS = {".csv": ",", ".tsv": "\t"}
_INTEGER = re.compile(r"[+-]?\d+")


def load_file(
    path: str | os.PathLike,
    *,
    task: str | None = None,
    target: str | None = None,
    val_fraction: float | None = None,
    stratify: bool | None = None,
    seed: int = 0,
    classes: Sequence[Any] | None = None,
    n_train: int | None = None,
    name: str | None = None,
) -> Dataset:
    """Read a data file (see the module docstring for the formats) into a :class:`Dataset`.

    Args:
      path: a ``.npz`` file, a directory of ``.npy`` files, or a ``.csv`` / ``.tsv`` file.
      task: ``"classification"``, ``"regression"`` or None (inferred from y's dtype, see
        :meth:`Dataset.from_arrays`).
      target: CSV only: the name of the target column (default: the last column).
      val_fraction, stratify, seed, classes, n_train: as in :meth:`Dataset.from_arrays`.
      name: the data set's name (default: the file name without its suffix).
    Returns:
      a :class:`Dataset` whose ``source`` is ``str(path)``.
    Raises:
      FileNotFoundError naming the path; ValueError / TypeError naming the file and the problem
      (unreadable file, missing or unknown key, mismatched lengths, non-numeric column, ...).
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"data file not found: {path}")
    suffix = path.suffix.lower()
    if target is not None and (path.is_dir() or suffix not in _DELIMITERS):
        raise ValueError(f"{path}: target={target!r} applies to CSV files only (a .npz or .npy data set has y)")
    if path.is_dir():
        arrays = _read_npy_dir(path)
    elif suffix == ".npz":
        arrays = _read_npz(path)
    elif suffix in _DELIMITERS:
        arrays = _read_csv(path, target, _DELIMITERS[suffix])
    elif suffix == ".npy":
        raise ValueError(
            f"{path}: a single .npy file holds one array; put x.npy and y.npy (optionally x_val.npy, "
            f"y_val.npy, x_test.npy, y_test.npy) in a directory and give the directory"
        )
    else:
        raise ValueError(f"{path}: unknown data file type {suffix!r}; use .npz, .csv, .tsv or a directory of .npy files")
    try:
        return dataset_from_arrays(
            **arrays, task=task, val_fraction=val_fraction, stratify=stratify, seed=seed,
            classes=classes, n_train=n_train, name=name or path.stem, source=str(path),
        )
    except (ValueError, TypeError) as e:
        raise type(e)(f"{path}: {e}") from None


def _unpickle_refused(where: str) -> ValueError:
    return ValueError(
        f"{where} holds Python objects, which are not unpickled for safety; save labels as a "
        f"NumPy string array (np.asarray(labels, dtype=str))"
    )


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path}: not a readable .npz file ({type(e).__name__}: {e})") from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise ValueError(f"{path}: not a .npz archive (it holds a single array; save with np.savez(path, x=x, y=y))")
    with npz:
        unknown = sorted(set(npz.files) - set(ARRAY_KEYS))
        if unknown:
            raise ValueError(f"{path}: unknown keys {unknown}; allowed: {list(ARRAY_KEYS)} (x and y required)")
        for key in ("x", "y"):
            if key not in npz.files:
                raise ValueError(f"{path}: missing key {key!r} (found {sorted(npz.files)}); x and y are required")
        arrays = {}
        for key in npz.files:
            try:
                arrays[key] = npz[key]
            except ValueError as e:
                if "allow_pickle" in str(e):
                    raise _unpickle_refused(f"{path}: key {key!r}") from None
                raise ValueError(f"{path}: key {key!r} is not readable ({e})") from None
            except (OSError, EOFError, zipfile.BadZipFile) as e:
                raise ValueError(f"{path}: key {key!r} is not readable ({type(e).__name__}: {e})") from None
    return arrays


def _read_npy_dir(path: Path) -> dict[str, np.ndarray]:
    found = sorted(p.stem for p in path.glob("*.npy"))
    unknown = [f"{k}.npy" for k in found if k not in ARRAY_KEYS]
    if unknown:
        raise ValueError(
            f"{path}: unexpected .npy files {unknown}; a data directory holds "
            f"{[k + '.npy' for k in ARRAY_KEYS]} (x and y required)"
        )
    for key in ("x", "y"):
        if key not in found:
            raise FileNotFoundError(
                f"{path}: missing {key}.npy (a data directory holds x.npy and y.npy, optionally "
                f"x_val.npy, y_val.npy, x_test.npy, y_test.npy)"
            )
    arrays = {}
    for key in found:
        file = path / f"{key}.npy"
        try:
            arrays[key] = np.load(file, allow_pickle=False)
        except ValueError as e:
            if "allow_pickle" in str(e):
                raise _unpickle_refused(str(file)) from None
            raise ValueError(f"{file}: not a readable .npy array ({e})") from None
        except (OSError, EOFError) as e:
            raise ValueError(f"{file}: not a readable .npy array ({type(e).__name__}: {e})") from None
        if not isinstance(arrays[key], np.ndarray):
            raise ValueError(f"{file}: not a .npy array")
    return arrays


def _read_csv(path: Path, target: str | None, delimiter: str) -> dict[str, np.ndarray]:
    """Stream the rows once: features parsed row by row (float64), the target column kept as text."""
    features, targets = [], []
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f, delimiter=delimiter)
            header = next(reader, None)
            if header is None:
                raise ValueError(f"{path}: empty file (expected a header row naming the columns)")
            header = [h.strip() for h in header]
            t = _target_index(path, header, target)
            names = header[:t] + header[t + 1:]
            for row in reader:
                if not any(cell.strip() for cell in row):
                    continue
                if len(row) != len(header):
                    raise ValueError(
                        f"{path}: line {reader.line_num} has {len(row)} fields, the header has {len(header)}"
                    )
                targets.append(row.pop(t))
                try:
                    features.append(np.array(row, dtype=np.float64))
                except ValueError:
                    bad = next(i for i, cell in enumerate(row) if not _is_number(cell))
                    what = "is empty (a missing value)" if not row[bad].strip() else f"holds {row[bad]!r}"
                    raise ValueError(
                        f"{path}: column {names[bad]!r} is not numeric: data row {len(targets)} {what}"
                    ) from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not a UTF-8 text file ({e})") from None
    except csv.Error as e:
        raise ValueError(f"{path}: malformed CSV ({e})") from None
    if not targets:
        raise ValueError(f"{path}: no data rows after the header")
    return {"x": np.stack(features), "y": _target_column(path, header[t], np.array(targets, dtype=str))}


def _target_index(path: Path, header: list[str], target: str | None) -> int:
    """The target's column index, after checking the header is one (named, distinct columns)."""
    if all(_is_number(h) for h in header):
        raise ValueError(f"{path}: the first line {header} looks like data; the file needs a header row naming the columns")
    if len(header) < 2:
        raise ValueError(f"{path}: needs at least two columns (features and a target), the header has {header}")
    for i, h in enumerate(header):
        if not h:
            raise ValueError(f"{path}: column {i + 1} of the header has no name")
    duplicated = sorted({h for h in header if header.count(h) > 1})
    if duplicated:
        raise ValueError(f"{path}: the header repeats column names {duplicated}")
    if target is None:
        return len(header) - 1
    if target not in header:
        raise ValueError(f"{path}: no column named {target!r} for the target; columns: {header}")
    return header.index(target)


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _target_column(path: Path, name: str, cells: np.ndarray) -> np.ndarray:
    """The target column as int64 (all integers), float64 (all numbers) or str (labels)."""
    cells = np.char.strip(cells)
    empty = np.flatnonzero(cells == "")
    if empty.size:
        raise ValueError(f"{path}: target column {name!r} is empty (a missing value) in data row {empty[0] + 1}")
    if all(_INTEGER.fullmatch(c) for c in cells):
        try:
            return cells.astype(np.int64)
        except OverflowError:
            pass
    if all(_is_number(c) for c in cells):
        return cells.astype(np.float64)
    return cells
