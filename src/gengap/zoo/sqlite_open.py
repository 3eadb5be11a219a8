"""Opening a zoo's SQLite file: read-write where this process may write it, read-only where
it may not (a read-only file system, a folder of someone else's).

The store keeps its journal in WAL mode, and reading a WAL database needs its ``-shm`` index
beside it, which a read-only folder may not let SQLite create. Then a database with no pending
``-wal`` content opens ``immutable`` (it is all in the file); one with content (a zoo copied
while open) is read from a private copy, since ``immutable`` would ignore that content.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

TIMEOUT_S = 60  # a writer in another process holds the lock for one transaction at most


def connect(path: Path) -> tuple[sqlite3.Connection, bool]:
    """``(connection, writable)`` for the database at ``path``; read-only when this process
    may not write the file, its ``-wal``/``-shm`` companions or their folder, or when SQLite
    refuses to open it for writing. Errors are sqlite3's (the caller names the file)."""
    if _may_write(path):
        try:
            return _read_write(path), True
        except sqlite3.OperationalError as err:  # the system said no where os.access said yes
            if not refused(err):
                raise
    return _read_only(path), False


def refused(err: sqlite3.Error) -> bool:
    """Whether SQLite failed because it may not write (or create) a file."""
    name = getattr(err, "sqlite_errorname", "")
    return name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN"))


def _may_write(path: Path) -> bool:
    present = [p for p in (path, *_companions(path)) if p.exists()]
    return os.access(path.parent, os.W_OK) and all(os.access(p, os.W_OK) for p in present)


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
    db = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=TIMEOUT_S)
    try:
        db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()  # SQLite opens lazily
        return db
    except sqlite3.OperationalError as err:
        db.close()
        if not refused(err):
            raise
    wal, _ = _companions(path)
    if wal.is_file() and wal.stat().st_size > 0:
        return _private_copy(path, wal)
    return sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True)


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
