"""The crash-safe zoo store: a SQLite registry of runs plus safetensors weight files.

Layout of a zoo folder::

    gengap.sqlite                  runs, measures, and the zoo spec (table meta)
    weights/<run_id>/init.safetensors
    weights/<run_id>/final.safetensors
    weights/<run_id>/epoch<N>.safetensors   checkpoints at the epochs TrainSpec.checkpoints names

Weights are written to a temporary file and renamed into place; a run's row turns ``done`` in
the same transaction that records its metrics. A run killed mid-way stays ``pending`` and is
trained again; nothing is half-written and no run appears twice (the run id is the key).

A zoo this process may not write (a read-only file system, someone else's folder) opens
read-only: everything reads, and a write is a one-line error naming the zoo.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
import torch
from pydantic import BaseModel, ValidationError
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from gengap.atomic_write import write_atomically
from gengap.errors import GengapError
from gengap.specs import RunSpec, ZooSpec, first_problem, hyperparameter_values
from gengap.train.tracking import CE_MILESTONES, FINAL_METRICS
from gengap.zoo.sqlite_open import (
    WriteFailed,
    cannot_make_files_in,
    cannot_write,
    connect,
    refused,
    write_failed,
)

DB_NAME = "gengap.sqlite"
STATUSES = ("pending", "done", "failed")

# The arithmetic of a Monte Carlo measure's passes (bfloat16, float32...), kept beside the
# value it computed: it holds while `measures` holds that same value. A table of its own, which a
# store made before it gains on its first write that has one, so that a store stays one that
# earlier gengaps read and write (their values, written without it, then match no record and
# read as of unknown arithmetic).
ARITHMETIC_TABLE = """
CREATE TABLE IF NOT EXISTS measure_arithmetic (
    run_id     TEXT NOT NULL,
    name       TEXT NOT NULL,
    value      REAL,
    arithmetic TEXT NOT NULL,
    PRIMARY KEY (run_id, name)
)"""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id   TEXT PRIMARY KEY,
    position INTEGER NOT NULL,
    spec     TEXT NOT NULL,
    hparams  TEXT NOT NULL,
    status   TEXT NOT NULL DEFAULT 'pending',
    reason   TEXT,
    metrics  TEXT,
    history  TEXT,
    finished REAL
);
CREATE TABLE IF NOT EXISTS measures (
    run_id  TEXT NOT NULL REFERENCES runs(run_id),
    name    TEXT NOT NULL,
    value   REAL,
    seconds REAL,
    PRIMARY KEY (run_id, name)
);
""" + ARITHMETIC_TABLE + ";\n"


SpecT = TypeVar("SpecT", bound=BaseModel)


class Store:
    """One zoo folder. Open an existing one with ``Store(root)``; make one with
    :meth:`Store.create`. ``read_only`` is true where this process may not write the zoo:
    reading works, writing raises a one-line :class:`GengapError`."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        db = self.root / DB_NAME
        if self.root.is_file():
            raise GengapError(f"{self.root}: a file, not a zoo folder")
        if not self.root.is_dir():
            raise GengapError(f"{self.root}: no such zoo folder")
        if not db.is_file():
            raise GengapError(f"{self.root}: not a gengap zoo (no {DB_NAME} in it)")
        if db.stat().st_size == 0:  # SQLite would write its header into it on opening
            raise GengapError(f"{self.root}: not a gengap zoo ({DB_NAME} is empty)")
        self._db, why = _open(db, "SELECT value FROM meta WHERE key = 'zoo_spec'")
        self._why_read_only = why  # None: writable

    @classmethod
    def create(cls, root: str | Path, zoo: ZooSpec, grow: bool = False) -> Store:
        """Open ``root`` for ``zoo``, creating it if needed and adding the zoo's runs.

        Refuses a folder that holds a different zoo, so that one folder is one population,
        and a zoo this process may not write. With ``grow`` (a larger import of the same
        source), a held zoo of the same name whose runs are all runs of ``zoo`` takes ``zoo``'s
        spec and its new runs, the runs it holds keeping their ids, positions and results;
        one that already holds every run of ``zoo`` is kept as it is.
        """
        root = Path(root)
        if root.exists() and not root.is_dir():
            raise GengapError(f"{root}: exists and is not a folder")
        if root.is_dir() and any(root.iterdir()) and not (root / DB_NAME).is_file():
            raise GengapError(f"{root}: folder is not empty and holds no gengap zoo")
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise GengapError(f"{root}: cannot make the zoo folder ({err.strerror})") from None
        with _one_creator(root):
            cls._create_database(root, zoo, grow)
        return cls(root)

    @staticmethod
    def _create_database(root: Path, zoo: ZooSpec, grow: bool) -> None:
        """:meth:`create`'s work on the database, the folder made and locked."""
        # refused before opening: a read-only open may copy the database only to be refused
        why = cannot_write(root / DB_NAME)
        if why is not None:
            if not (root / DB_NAME).exists():
                raise GengapError(f"{root}: cannot make a zoo here ({why})")
            raise _read_only_error(root, why)
        # SQLite may write where the folder takes no new file (its journal files exist): the
        # weights then have nowhere to go, which training would learn only after its work
        weights = root / "weights"
        why = cannot_make_files_in(weights if weights.is_dir() else root)
        if why is not None:
            raise _read_only_error(root, f"{why}, and the weights go there")
        new = not (root / DB_NAME).exists()
        try:
            db, why = _open(root / DB_NAME)
        except GengapError:
            if new:  # SQLite made the file but could not write it (a full disk): none left behind
                _remove_empty(root / DB_NAME)
            raise
        try:
            if why is not None:
                raise _not_writable(root, why)
            with db:
                db.executescript(_SCHEMA)
                row = db.execute("SELECT value FROM meta WHERE key = 'zoo_spec'").fetchone()
                if row and row[0] != zoo.canonical_json():
                    held = ZooSpec.model_validate_json(row[0], context={"stored": True})
                    change = "holds it" if _drawless_twin(held, zoo) else \
                        _growth(held, zoo) if grow else None
                    if change is None:
                        raise GengapError(f"{root}: holds zoo {held.name!r} with a different "
                                          "spec; use another --out")
                    zoo = held if change == "holds it" else zoo
                if row is None or row[0] != zoo.canonical_json():  # new, grown, or re-encoded
                    db.execute("INSERT OR REPLACE INTO meta VALUES ('zoo_spec', ?)",
                               (zoo.canonical_json(),))
                names = zoo.hyperparameters
                db.executemany(
                    "INSERT OR IGNORE INTO runs (run_id, position, spec, hparams) "
                    "VALUES (?, ?, ?, ?)",
                    [
                        (r.run_id, i, r.canonical_json(),
                         json.dumps({**hyperparameter_values(r, names), "seed": r.seed}))
                        for i, r in enumerate(zoo.runs())
                    ],
                )
        except sqlite3.DatabaseError as err:
            if refused(err):
                raise _read_only_error(root, f"SQLite may not write it ({err})") from None
            failed = write_failed(err)
            if failed:
                db.close()
                if new:  # SQLite wrote its header but not the tables: a zoo of nothing
                    _remove_database(root / DB_NAME)
                raise _write_error(root / DB_NAME, failed) from None
            raise GengapError(f"{root / DB_NAME}: not a gengap store ({err})") from None
        finally:
            db.close()

    # -- the zoo ---------------------------------------------------------------------------

    @property
    def zoo(self) -> ZooSpec:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'zoo_spec'").fetchone()
        if row is None:
            raise GengapError(f"{self.root / DB_NAME}: holds no zoo spec")
        return self._spec(ZooSpec, row[0], "zoo spec")

    def runs(self, status: str | None = None) -> list[RunSpec]:
        """Run specs in zoo order, optionally only those with ``status``."""
        query = "SELECT spec FROM runs"
        args: tuple[Any, ...] = ()
        if status:
            query, args = query + " WHERE status = ?", (status,)
        rows = self._db.execute(query + " ORDER BY position", args).fetchall()
        return [self._spec(RunSpec, spec, "run spec") for (spec,) in rows]

    def _spec(self, kind: type[SpecT], text: str, what: str) -> SpecT:
        """``text`` read as a ``kind``, or a one-line error: a store written by another version
        of gengap, or edited by hand."""
        try:
            return kind.model_validate_json(text, context={"stored": True})
        except ValidationError as err:
            raise GengapError(
                f"{self.root / DB_NAME}: holds a {what} this gengap cannot read "
                f"({first_problem(err)})"
            ) from None

    def counts(self) -> dict[str, int]:
        """Number of runs per status (every status present, zero included)."""
        rows = self._db.execute("SELECT status, COUNT(*) FROM runs GROUP BY status").fetchall()
        return {status: 0 for status in STATUSES} | dict(rows)

    # -- weights ---------------------------------------------------------------------------

    def weights_path(self, run_id: str, which: str) -> Path:
        return self.root / "weights" / run_id / f"{which}.safetensors"

    def save_weights(self, run_id: str, which: str, state: Mapping[str, torch.Tensor]) -> Path:
        """Write a state dict atomically (:meth:`save_weight_bytes` of :func:`weight_bytes`)."""
        return self.save_weight_bytes(run_id, which, weight_bytes(state))

    def save_weight_bytes(self, run_id: str, which: str, data: bytes) -> Path:
        """Write a safetensors file given as bytes: a temporary file renamed into place, with
        the mode the umask gives (safetensors' own ``save_file`` makes it 0600). A refused
        write (a full disk) is a one-line :class:`GengapError` naming the file."""
        self.check_writable()
        path = self.weights_path(run_id, which)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise GengapError(f"{path.parent}: cannot make the weights folder "
                              f"({err.strerror or err})") from None
        write_atomically(path, lambda tmp: tmp.write_bytes(data), "the weights")
        return path

    def weight_names(self, run_id: str) -> list[str]:
        """The weight files a run has: ``init``, ``final`` and ``epoch<N>`` checkpoints."""
        folder = self.root / "weights" / run_id
        return sorted(p.stem for p in folder.glob("*.safetensors")) if folder.is_dir() else []

    def load_weights(self, run_id: str, which: str) -> dict[str, torch.Tensor]:
        path = self.weights_path(run_id, which)
        if not path.exists():
            raise GengapError(f"{path}: missing weight file")
        if not path.is_file():
            raise GengapError(f"{path}: not a file, where a weight file should be")
        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as err:
            # safetensors says "No such file or directory" for a file it may not read
            why = err if os.access(path, os.R_OK) else "not readable by this process"
            raise GengapError(f"{path}: unreadable weight file ({why})") from None

    # -- recording results -----------------------------------------------------------------

    @property
    def read_only(self) -> bool:
        """Whether this process may not write the zoo (:func:`.sqlite_open.connect`)."""
        return self._why_read_only is not None

    def check_writable(self) -> None:
        """A one-line :class:`GengapError` naming the zoo when it is read-only here: a command
        that writes calls this before its work, not after."""
        if self._why_read_only is not None:
            raise _not_writable(self.root, self._why_read_only)

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """A write transaction; a read-only zoo is a one-line error (SQLite may find it so
        only now, where the system refuses what os.access allowed)."""
        self.check_writable()
        try:
            with self._db:
                yield
        except sqlite3.OperationalError as err:
            if refused(err):
                raise _read_only_error(self.root, f"SQLite may not write it ({err})") from None
            failed = write_failed(err)
            if failed:  # the transaction rolled back: what was recorded before stays
                raise _write_error(self.root / DB_NAME, failed) from None
            raise

    def record(
        self,
        run_id: str,
        status: str,
        metrics: Mapping[str, Any],
        history: list[dict[str, float]],
        reason: str | None = None,
    ) -> None:
        """Mark a run finished (``done`` or ``failed``) with its metrics, in one transaction."""
        if status not in ("done", "failed"):
            raise ValueError(f"cannot record status {status!r}")
        with self._writing():
            updated = self._db.execute(
                "UPDATE runs SET status = ?, reason = ?, metrics = ?, history = ?, finished = ? "
                "WHERE run_id = ?",
                (status, reason, json.dumps(metrics), json.dumps(history), time.time(), run_id),
            ).rowcount
        if updated != 1:
            raise ValueError(f"{self.root}: no run {run_id!r} to record")

    def put_measures(self, run_id: str, values: Mapping[str, tuple[float, float]],
                     arithmetic: Mapping[str, str] | None = None) -> None:
        """Store ``name -> (value, seconds)`` for one run, replacing earlier values;
        ``arithmetic``: ``name -> `` the arithmetic of its Monte Carlo passes (the one they
        would have run in, where the measure ran none: a search skipped at chance accuracy),
        for the measures that have them (see ARITHMETIC_TABLE)."""
        recorded = [(run_id, name, values[name][0], kind)
                    for name, kind in (arithmetic or {}).items() if name in values]
        with self._writing():
            self._db.executemany(
                "INSERT OR REPLACE INTO measures VALUES (?, ?, ?, ?)",
                [(run_id, name, value, sec) for name, (value, sec) in values.items()],
            )
            if recorded:
                self._db.execute(ARITHMETIC_TABLE)  # a store made before it: see there
                self._db.executemany(
                    "INSERT OR REPLACE INTO measure_arithmetic VALUES (?, ?, ?, ?)", recorded)

    def measure_names(self) -> set[str]:
        """Names of all measures stored for at least one run."""
        return {name for (name,) in self._db.execute("SELECT DISTINCT name FROM measures")}

    def measured(self) -> dict[str, dict[str, str | None]]:
        """For each run id, the measures already stored: name -> the arithmetic of its Monte
        Carlo passes (None for a measure without them, or stored before gengap kept it)."""
        out: dict[str, dict[str, str | None]] = {}
        for run_id, name, arithmetic in self._db.execute(
                f"SELECT m.run_id, m.name, {self._arithmetic_of('m')} FROM measures m"):
            out.setdefault(run_id, {})[name] = arithmetic
        return out

    def _has_arithmetic(self) -> bool:
        """Whether the store has its ``measure_arithmetic`` table (see ARITHMETIC_TABLE)."""
        return self._db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                                "name = 'measure_arithmetic'").fetchone() is not None

    def _arithmetic_of(self, alias: str) -> str:
        """SQL for the recorded arithmetic of the ``measures`` row ``alias``: NULL where none
        is recorded, or where the value stored now is not the one it was recorded with (``IS``:
        NaN is stored as NULL)."""
        if not self._has_arithmetic():
            return "NULL"
        return (f"(SELECT a.arithmetic FROM measure_arithmetic a WHERE a.run_id = {alias}.run_id"
                f" AND a.name = {alias}.name AND a.value IS {alias}.value)")

    # -- tables ----------------------------------------------------------------------------

    def frame(self) -> pd.DataFrame:
        """One row per run: ``run_id``, ``status``, ``reason``, the hyperparameters (the zoo's
        axes and ``seed``), the final metrics, ``gap`` (train minus test accuracy), one
        column per stored measure, and, where Monte Carlo measures are stored,
        ``monte_carlo_arithmetic``: the arithmetic of their passes (see put_measures;
        ``unknown`` for a value stored without it)."""
        rows = []
        for run_id, status, reason, hparams, metrics in self._db.execute(
            "SELECT run_id, status, reason, hparams, metrics FROM runs ORDER BY position"
        ):
            row = {"run_id": run_id, "status": status, "reason": reason, **json.loads(hparams)}
            row.update(json.loads(metrics) if metrics else {})
            rows.append(row)
        frame = pd.DataFrame(rows)
        if frame.empty:
            return frame
        if (frame["status"] == "pending").all():  # the same columns as once runs are trained
            frame = frame.assign(**{k: float("nan") for k in FINAL_METRICS if k not in frame})
        if {"train_acc", "test_acc"} <= set(frame.columns):
            frame["gap"] = frame["train_acc"] - frame["test_acc"]
        for level in CE_MILESTONES:  # a column even when no run reached the level
            if f"steps_to_ce_{level}" not in frame and "steps" in frame:
                frame[f"steps_to_ce_{level}"] = float("nan")
        # one read of the measures: their values and, beside them, the recorded arithmetic
        measures = pd.read_sql_query(
            f"SELECT m.run_id, m.name, m.value, {self._arithmetic_of('m')} AS arithmetic "
            "FROM measures m", self._db)
        if not measures.empty:
            wide = measures.pivot(index="run_id", columns="name", values="value")
            frame = frame.join(wide, on="run_id")
        arithmetic = _monte_carlo_arithmetic(measures)
        if arithmetic:
            frame["monte_carlo_arithmetic"] = frame["run_id"].map(arithmetic)
        return frame

    def history(self, run_id: str) -> list[dict[str, float]]:
        row = self._db.execute("SELECT history FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return json.loads(row[0]) if row and row[0] else []

    def close(self) -> None:
        self._db.close()


@contextmanager
def opened(store: Store | str | Path) -> Iterator[Store]:
    """``store`` itself, or the zoo at that folder, opened for the block and closed after it
    (the functions that take either)."""
    if isinstance(store, Store):
        yield store
        return
    own = Store(store)
    try:
        yield own
    finally:
        own.close()


def _open(db: Path, probe: str | None = None) -> tuple[sqlite3.Connection, str | None]:
    """:func:`.sqlite_open.connect`, then ``probe`` run (SQLite reads the file only when asked),
    their errors one line naming ``db``."""
    try:
        conn, why = connect(db)
        try:
            if probe:
                conn.execute(probe).fetchone()
        except BaseException:
            conn.close()
            raise
    except sqlite3.DatabaseError as err:
        # opening read-write writes the header: a full disk (an I/O error may be a read's)
        if getattr(err, "sqlite_errorname", "").startswith("SQLITE_FULL"):
            raise _write_error(db, write_failed(err) or str(err)) from None
        raise GengapError(f"{db}: not a gengap store ({err})") from None
    except OSError as err:  # copying a WAL to read it (see sqlite_open)
        raise GengapError(f"{db}: cannot read ({err.strerror or err})") from None
    return conn, why


def weight_bytes(state: Mapping[str, torch.Tensor]) -> bytes:
    """A state dict as the bytes of a safetensors file (what every weight file holds)."""
    return save({k: v.contiguous() for k, v in state.items()})


def _write_error(db: Path, why: str) -> GengapError:
    return GengapError(f"{db}: cannot write ({why})")


@contextmanager
def _one_creator(root: Path) -> Iterator[None]:
    """An exclusive lock on the zoo's folder (``flock``, released when its descriptor closes)
    while one process creates or opens the database for a zoo: two processes starting on a new
    folder at once both turned the new database to WAL, and the one SQLite refused ("database
    is locked") removed the file the other had just opened. The lock is of one machine (on NFS
    too); without ``fcntl`` (not POSIX), or where the folder takes no lock, there is none."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    descriptor = os.open(root, os.O_RDONLY)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
        except OSError:  # no locks here (ENOLCK): as before the lock
            pass
        yield
    finally:
        os.close(descriptor)


def _remove_empty(path: Path) -> None:
    with suppress(OSError):
        if path.stat().st_size == 0:
            path.unlink()


def _remove_database(path: Path) -> None:
    """Remove a database this process has just made, with its ``-wal``/``-shm`` companions."""
    for name in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with suppress(OSError):
            name.unlink(missing_ok=True)


def _not_writable(root: Path, why: str) -> GengapError:
    """The error of a zoo opened read-only, for a command that writes: a full disk is
    :func:`_write_error`'s, anything else :func:`_read_only_error`'s."""
    if isinstance(why, WriteFailed):
        return _write_error(root / DB_NAME, why)
    return _read_only_error(root, why)


def _read_only_error(root: Path, why: str) -> GengapError:
    return GengapError(
        f"{root}: the zoo is read-only here ({why}); "
        "copy it to a folder you can write to train or measure it"
    )


def _drawless_twin(held: ZooSpec, zoo: ZooSpec) -> bool:
    """Whether ``held`` is a grid stored with a ``sample_seed`` (which a grid never read, and
    a spec file may no longer give it) and otherwise ``zoo``: the same zoo, resumed."""
    return (held.design == "grid" and held.sample_seed != 0
            and held.model_copy(update={"sample_seed": 0}).canonical_json()
            == zoo.canonical_json())


def _growth(held: ZooSpec, zoo: ZooSpec) -> str | None:
    """How ``zoo`` relates to the ``held`` one of the same name: "grows it" (every held run is
    one of its runs), "holds it" (every run of it is held), else None."""
    if held.name != zoo.name:
        return None
    held_ids = {run.run_id for run in held.runs()}
    new_ids = {run.run_id for run in zoo.runs()}
    if held_ids <= new_ids:
        return "grows it"
    return "holds it" if new_ids <= held_ids else None


def _monte_carlo_arithmetic(measures: pd.DataFrame) -> dict[str, str]:
    """For each run with stored Monte Carlo measures (rows of ``measures``: ``run_id``,
    ``name``, ``arithmetic``), the arithmetic of their passes: several, comma-separated, where
    they were computed at different times in different ones, and ``unknown`` for a value
    without its record (see ARITHMETIC_TABLE)."""
    from gengap.measures.registry import is_monte_carlo

    if measures.empty:
        return {}
    rows = measures[measures["name"].map(is_monte_carlo)]
    kinds = rows["arithmetic"].astype(object).where(rows["arithmetic"].notna(), "unknown")
    return {run_id: ",".join(sorted(set(group))) for run_id, group in kinds.groupby(rows["run_id"])}
