"""Scoring a zoo's stored measures: the glue between the store and :mod:`gengap.evaluate`."""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from gengap.errors import GengapError
from gengap.evaluate import ranking_table
from gengap.evaluate.columns import check_columns, listed
from gengap.evaluate.robust import PAPER_TEST_SIZE
from gengap.evaluate.targets import UnknownTarget, with_target
from gengap.zoo.store import Store, opened

# Columns of Store.frame() that describe a run rather than measure it.
RUN_COLUMNS = {
    "run_id", "status", "reason", "seed", "zoo", "train_loss", "train_acc", "test_loss",
    "test_acc", "gap", "test_error", "epochs", "steps", "seconds", "converged", "stopped_by",
    "train_size", "test_size", "population", "pgdl_model", "monte_carlo_arithmetic",
}
# columns of an exported zoo that describe a run rather than measure it: its spec fields
# (`gengap zoo export`), imported hyperparameters and training milestones
RUN_PREFIXES = ("data.", "arch.", "train.", "hp.", "steps_to_ce_")


def measure_columns(table: pd.DataFrame, skip: set[str]) -> list[str]:
    """The numeric columns of ``table`` that may be measures: not in ``skip``, not a run's
    record (:data:`RUN_COLUMNS`, :data:`RUN_PREFIXES`), not a row index pandas wrote without
    a name (``Unnamed: 0``, from ``to_csv`` with its index)."""
    return [c for c in table.columns
            if c not in skip and c not in RUN_COLUMNS and not str(c).startswith(RUN_PREFIXES)
            and not re.fullmatch(r"Unnamed: \d+", str(c))
            and pd.api.types.is_numeric_dtype(table[c])]


def evaluate_zoo(
    store: Store | str | Path,
    target: str = "gap",
    metrics: str | Sequence[str] = ("tau", "psi"),
    data_dir: str | Path | None = None,
    **options: Any,
) -> pd.DataFrame:
    """The ranking table of every stored measure over the zoo's finished runs (``store``: a
    :class:`Store` or the zoo's folder).

    ``metrics`` and ``options`` are those of :func:`gengap.evaluate.ranking_table`. When the
    zoo has several seeds, CMI checks the grid with ``seed`` as the replicate column. The
    robust sign-error weights pairs by the test-set size, which is read from the runs'
    ``test_size`` when recorded and otherwise counted by loading each data spec once
    (``data_dir`` for local files); pass ``test_size=`` to set it.
    """
    metrics = listed(metrics)
    with opened(store) as store:
        frame = store.frame()
        names = scalar_measures(store.measure_names())
        if frame.empty or not names:
            raise GengapError(
                f"{store.root}: no measured runs yet (run `gengap measure` first)")
        try:
            done = with_target(frame[frame["status"] == "done"], target)
        except UnknownTarget as err:  # still a misspelt name (the CLI blames --target)
            raise UnknownTarget(f"{store.root}: {err}") from None
        except GengapError as err:
            raise GengapError(f"{store.root}: {err}") from None
        hyperparameters = store.zoo.hyperparameters
        if "seed" in done.columns and done["seed"].nunique() > 1:
            options.setdefault("replicates", "seed")
        if "robust" in metrics and "test_size" not in options:
            done = with_test_sizes(store, done, data_dir)
            options["test_size"] = "test_size"
    return ranking_table(done, names, hyperparameters, target=target, metrics=metrics, **options)


def evaluate_table(
    table: pd.DataFrame,
    hyperparameters: str | Sequence[str],
    measures: str | Sequence[str] | None = None,
    target: str = "gap",
    metrics: str | Sequence[str] = ("tau", "psi"),
    **options: Any,
) -> pd.DataFrame:
    """The ranking table of a plain table (one row per network; read from CSV or Parquet):
    ``measures`` default to every numeric column that is neither a hyperparameter nor a
    run's metric. A ``seed`` column with several values is the replicate column of CMI, a
    ``test_size`` column the robust sign error's n (without one or ``test_size=``, 10,000 with
    a note)."""
    hyperparameters, metrics = listed(hyperparameters), listed(metrics)
    if target in hyperparameters:
        raise GengapError(f"{target!r} is the target, not a hyperparameter")
    check_columns(table, hyperparameters, "hyperparameter")
    measures = listed(measures) if measures is not None else None
    if "status" in table.columns:
        table = table[table["status"] == "done"]
    _check_numeric(table, [target, "train_acc", "test_acc", *(measures or [])])
    table = with_target(table, target)
    if "seed" in table.columns and table["seed"].nunique() > 1:
        options.setdefault("replicates", "seed")
    if measures is None:
        measures = scalar_measures(measure_columns(table, {*hyperparameters, target}))
    if not measures:
        raise GengapError("the table has no measure columns")
    # the robust sign error's n: each run's own test-set size where the table has it (an
    # export does), as for a zoo; else the paper's, said in a note
    assumed = "robust" in metrics and "test_size" not in options and (
        "test_size" not in table.columns)
    ranked = ranking_table(table, list(measures), hyperparameters, target=target,
                           metrics=metrics, **options)
    if assumed:
        ranked.attrs.setdefault("notes", []).append(
            f"robust: the table has no test_size column, so every run's gaps are taken as "
            f"measured on {PAPER_TEST_SIZE:,} test examples (the paper's); --test-size N sets it")
    return ranked


def _check_numeric(table: pd.DataFrame, columns: Sequence[str]) -> None:
    """A one-line error for the first of ``columns`` (those the table has) that holds text."""
    for column in dict.fromkeys(columns):
        if column in table.columns and not pd.api.types.is_numeric_dtype(table[column]):
            values = table[column].dropna()
            text = values[pd.to_numeric(values, errors="coerce").isna()]
            if len(text):
                raise GengapError(f"column {column!r} holds {text.iloc[0]!r}, not a number")


def is_table(path: Path) -> bool:
    """Whether ``path`` names a table (a file, or a .csv/.parquet name) rather than a zoo."""
    return path.is_file() or path.suffix.lower() in (".csv", ".parquet")


def read_table(path: str | Path) -> pd.DataFrame:
    """A CSV or Parquet table of networks, as a DataFrame (a clear error otherwise)."""
    path = Path(path)
    if not path.is_file():
        raise GengapError(f"{path}: no such file")
    try:
        if path.suffix.lower() == ".parquet":
            return pd.read_parquet(path)
        if path.suffix.lower() == ".csv":
            table = pd.read_csv(path)
            _no_repeated_columns(path)
            # read_csv gives a block per column: one block per dtype, so that adding a column
            # (the zoo's) does not warn that the frame is fragmented (an export: 151 columns)
            return table.copy()
    except GengapError:
        raise
    except Exception as err:  # pyarrow and the csv parser raise many kinds
        # pandas' messages may end in a newline or span lines: the error is one line
        reason = " ".join(str(err).split())
        raise GengapError(f"{path}: unreadable table ({reason})") from None
    raise GengapError(f"{path}: expected a .csv or .parquet table or a zoo folder")


def _no_repeated_columns(path: Path) -> None:
    """Refuse a CSV whose header names a column twice: pandas would rename the second ``m``
    to ``m.1`` and rank it as a measure of its own."""
    with path.open(newline="", encoding="utf-8", errors="replace") as f:
        header = next(csv.reader(f), [])
    repeated = sorted({n for n in header if header.count(n) > 1})
    if repeated:
        raise GengapError(f"{path}: column {repeated[0]!r} appears more than once")


def scalar_measures(names: set[str] | Sequence[str]) -> list[str]:
    """Measure columns to rank, sorted: the features of vector-valued measures (the weight
    statistics ``wstat.*``) are inputs of learned predictors, not measures to rank."""
    from gengap.measures.registry import measures

    vectors = {n for n in measures if measures.get(n).vector}
    return sorted(n for n in names if str(n).split(".", 1)[0] not in vectors)


@dataclass(frozen=True)
class Population:
    """Networks from one or more sources, for predictors: ``frame`` (one row per finished
    run, with a ``zoo`` column), the union of their ``hyperparameters`` and of their scalar
    ``measures``."""

    frame: pd.DataFrame
    hyperparameters: list[str]
    measures: list[str]


class HyperparametersOfZoos(GengapError):
    """Hyperparameter names given with zoos only (the CLI reports a bad --hyperparameters)."""


def load_population(
    sources: Sequence[str | Path], hyperparameters: Sequence[str] | None = None
) -> Population:
    """Zoo folders and/or .csv/.parquet tables as one table. A zoo is named by its spec's
    name (its folder's name when two share one); a table by its file's stem. Tables take
    their hyperparameter columns from ``hyperparameters`` (a name that no table has, or names
    given with zoos only, is refused: they would be ignored). A source given twice, or a run in
    two sources (a zoo and its export), is refused: held-out scores would meet their own
    models."""
    if hyperparameters and not any(is_table(Path(source)) for source in sources):
        raise HyperparametersOfZoos(f"{', '.join(hyperparameters)}: only zoos given; "
                                    "hyperparameters name table columns, a zoo's are its "
                                    "spec's axes")
    frames, axes, names, labels = [], [], set(), []
    seen: set[Path] = set()
    owner: dict[str, str] = {}  # run id -> the source it came from
    table_columns: dict[str, set[str]] = {}  # table file -> its columns
    for source in sources:
        path = Path(source)
        if path.resolve() in seen:
            raise GengapError(f"{path}: given twice")
        seen.add(path.resolve())
        if is_table(path):
            frame = read_table(path)
            table_columns[str(path)] = set(frame.columns)
            if "status" in frame.columns:
                frame = frame[frame["status"] == "done"]
            label = path.stem
            table_axes = [h for h in (hyperparameters or []) if h in frame.columns]
            names |= set(measure_columns(frame, set(table_axes)))
            try:
                _check_numeric(frame, ["train_acc", "test_acc", "gap", "test_error"])
            except GengapError as err:
                raise GengapError(f"{path}: {err}") from None
        else:
            store = Store(path)
            frame = store.frame()
            if frame.empty:
                raise GengapError(f"{path}: the zoo has no runs")
            frame = frame[frame["status"] == "done"]
            label = store.zoo.name
            table_axes = list(store.zoo.hyperparameters)
            names |= set(store.measure_names())
        for run_id in frame["run_id"].astype(str) if "run_id" in frame.columns else ():
            first = owner.setdefault(run_id, str(path))
            if first != str(path):
                raise GengapError(f"{path}: run {run_id} is in {first} too")
        if label in labels:
            label = f"{label}@{path.resolve().name}"
        labels.append(label)
        axes += [h for h in table_axes if h not in axes]
        frames.append(frame.assign(zoo=label))
    if not frames:
        raise GengapError("no zoo folders or tables given")
    _check_table_axes(hyperparameters or [], table_columns)
    frame = pd.concat(frames, ignore_index=True, sort=False)
    measures = [n for n in scalar_measures(names) if n in frame.columns]
    return Population(frame, axes, measures)


def _check_table_axes(hyperparameters: Sequence[str], tables: dict[str, set[str]]) -> None:
    """Refuse a hyperparameter name that no table has rather than ignore it."""
    for name in hyperparameters:
        if not any(name in columns for columns in tables.values()):
            raise GengapError(f"hyperparameter {name!r}: no such column in "
                              f"{', '.join(tables)}")


def with_test_sizes(store: Store, done: pd.DataFrame,
                    data_dir: str | Path | None = None) -> pd.DataFrame:
    """``done`` (finished runs of ``store``) with a complete ``test_size`` column: the sizes
    the runs recorded, and for runs that recorded none (trained by an older version) counted
    by loading each distinct data spec once (``data_dir`` for local files); a
    :class:`GengapError` when such a spec cannot be loaded."""
    recorded = done["test_size"] if "test_size" in done.columns else pd.Series(
        float("nan"), index=done.index)
    missing = recorded.isna()
    if not missing.any():
        return done
    counted = pd.Series(_test_sizes(store, done[missing], data_dir), index=done.index[missing])
    return done.assign(test_size=recorded.where(~missing, counted))


def _test_sizes(store: Store, done: pd.DataFrame, data_dir: str | Path | None) -> list[int]:
    from gengap.data import load

    specs = {run.run_id: run.data for run in store.runs("done")}
    sizes: dict[str, int] = {}
    out = []
    for run_id in done["run_id"]:
        data = specs[run_id]
        key = data.canonical_json()
        if key not in sizes:
            try:
                sizes[key] = int(len(load(data, data_dir).y_test))
            except GengapError as err:
                raise GengapError(f"robust sign-error needs the test-set size: {err} (or give "
                                  f"it with --test-size N)") from None
        out.append(sizes[key])
    return out
