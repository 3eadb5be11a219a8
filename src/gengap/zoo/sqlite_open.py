"""Opening a zoo's SQLite file: read-write where this process may write it, read-only where
it may not (a read-only file system, a folder of someone else's).

The store keeps its journal in WAL mode, and reading a WAL database needs its ``-shm`` index
beside it, which a read-only folder may not let SQLite create. A database with neither
companion (no connection open) opens ``immutable``: it is all in the file, and no companion is
left behind owned by this reader. Where companions exist it opens ``mode=ro``, beside any
writer; where SQLite cannot make the ``-shm``, a database with no pending ``-wal`` content
opens ``immutable``, and one with content (a zoo copied while open) is read from a private
copy, since ``immutable`` would ignore that content. A read-only connection is a snapshot for
an ``immutable`` open: writes made later by others are seen by the next open.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

TIMEOUT_S = 60  # a writer in another process holds the lock for one transaction at most


class WriteFailed(str):
    """Why a database this process may write was opened read-only all the same: SQLite could
    not write beside it (a full disk, an I/O error), in words for a one-line error."""


def connect(path: Path) -> tuple[sqlite3.Connection, str | None]:
    """``(connection, why_read_only)`` for the database at ``path``: ``why_read_only`` is None
    for a read-write connection, else what this process may not write (the file, its
    ``-wal``/``-shm`` companions or their folder), that SQLite refused to open it for
    writing, or, a :class:`WriteFailed`, that it could not write there (an existing database
    on a full disk stays readable). Errors are sqlite3's (the caller names the file)."""
    why = cannot_write(path)
    if why is None:
        try:
            return _read_write(path), None
        except sqlite3.OperationalError as err:  # the system said no where os.access said yes
            failed = write_failed(err)
            if failed is not None and _size(path) > 0:
                why = WriteFailed(failed)
            elif refused(err):
                why = f"SQLite may not write it ({err})"
            else:
                raise
    return _read_only(path), why


def refused(err: sqlite3.Error) -> bool:
    """Whether SQLite failed because it may not write (or create) a file."""
    name = getattr(err, "sqlite_errorname", "")
    return name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN"))


def write_failed(err: sqlite3.Error) -> str | None:
    """Why SQLite could not write a file it may write (the disk is full, an I/O error), in
    words for a one-line error; None for any other error."""
    name = getattr(err, "sqlite_errorname", "")
    if name.startswith("SQLITE_FULL"):
        return f"the disk is full: {err}"
    return str(err) if name.startswith("SQLITE_IOERR") else None


def cannot_write(path: Path) -> str | None:
    """Why this process may not write the database at ``path``, or None: the folder, where
    SQLite must make a file missing there (the database, its ``-wal`` or ``-shm``), else the
    first of those present that it may not write; one line naming it and its owner."""
    files = (path, *_companions(path))
    missing = [p.name for p in files if not p.exists()]
    if missing and not _writable(path.parent):
        return f"{_unwritable('its folder', path.parent)}, and SQLite must make {missing[0]} there"
    for p in files:
        try:
            if p.exists() and not _writable(p):
                return _unwritable(p.name, p)
        except FileNotFoundError:  # a companion that the last connection closing removed
            continue
    return None


def cannot_make_files_in(folder: Path) -> str | None:
    """Why this process may not make files in ``folder`` (one line naming it and its owner),
    or None; judged as :func:`cannot_write` judges the database's folder."""
    return None if _writable(folder) else _unwritable(str(folder), folder)


def _writable(path: Path) -> bool:
    # by the real or the effective ids (setuid, capabilities): the effective check is
    # faccessat2, which old container seccomp profiles refuse outright; a yes SQLite then
    # overrules is caught by connect. Not by opening the file: its close would drop this
    # process's SQLite locks on the database
    return os.access(path, os.W_OK) or (
        os.access in os.supports_effective_ids and os.access(path, os.W_OK, effective_ids=True))


def _unwritable(what: str, path: Path) -> str:
    return f"{what}, owned by uid {path.stat().st_uid}, is not writable by this process"


def _companions(path: Path) -> tuple[Path, Path]:
    return path.with_name(f"{path.name}-wal"), path.with_name(f"{path.name}-shm")


def _read_write(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=TIMEOUT_S)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
    except sqlite3.Error:
        db.close()
        raise
    return db


def _read_only(path: Path) -> sqlite3.Connection:
    uri = path.absolute().as_uri()  # percent-encodes what SQLite's URIs would misread
    wal, shm = _companions(path)
    if not wal.exists() and not shm.exists():
        # no connection is open (the last one removes both) and nothing waits in a WAL: read
        # the file as it is, creating no -wal/-shm that its owner could not write later
        return sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True)
    db = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=TIMEOUT_S)
    try:
        db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()  # SQLite opens lazily
        return db
    except sqlite3.OperationalError as err:
        db.close()
        if not refused(err):
            raise
    if _size(wal) > 0:
        return _private_copy(path, wal)
    return sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True)


def _size(path: Path) -> int:
    """The size of the file at ``path``; 0 where there is none (a WAL removed meanwhile by the
    last connection closing)."""
    try:
        return path.stat().st_size if path.is_file() else 0
    except FileNotFoundError:
        return 0


def _private_copy(path: Path, wal: Path) -> sqlite3.Connection:
    """The database with its WAL content, in memory: SQLite replays the WAL into a copy in a
    folder it may write, and the copy goes once read (a zoo's database is small; the weights
    stay in their files)."""
    memory = sqlite3.connect(":memory:")
    with tempfile.TemporaryDirectory(prefix="gengap-zoo-") as folder:
        copy = Path(folder) / path.name
        shutil.copyfile(path, copy)
        shutil.copyfile(wal, _companions(copy)[0])
        disk = sqlite3.connect(copy)
        try:
            disk.backup(memory)
        finally:
            disk.close()
    return memory
