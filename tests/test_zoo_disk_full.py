"""A full disk while a zoo is made, trained or read: one line naming the file (exit status 2 at
the command line), and the zoo still resumable: runs recorded before stay, the interrupted run
stays pending and is trained when the command runs again. Also: weight files get the mode the
umask gives (safetensors' own writer makes them 0600), and an empty gengap.sqlite is refused
without being written.

The full disk is simulated: SQLite's own SQLITE_FULL (a page limit), a write that finds no
space (OSError 28), or SQLite's refusal of a new file on a full disk."""

from __future__ import annotations

import os
import sqlite3
import sys
from pathlib import Path

import pytest
import torch

from gengap.errors import GengapError
from gengap.specs import DataSpec, ZooSpec
from gengap.zoo import Store, parse_zoo_spec, train_zoo
from gengap.zoo import store as store_module

SPEC = {
    "name": "full",
    "seeds": [0, 1],
    "data": {"name": "digits", "train_fraction": 0.2},
    "arch": {"family": "mlp", "width": 4, "depth": 1},
    "train": {"lr": 0.05, "max_epochs": 1},
}


def one_line(err: pytest.ExceptionInfo[GengapError], path: Path, why: str) -> None:
    text = str(err.value)
    assert "\n" not in text and text.startswith(f"{path}: cannot write"), text
    assert why in text, text


def statuses(root: Path) -> list[str]:
    store = Store(root)
    try:
        return list(store.frame()["status"])
    finally:
        store.close()


@pytest.mark.parametrize("workers", [1, 2])
def test_a_full_database_while_training_is_one_line_and_the_zoo_resumes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread, workers: int):
    record = Store.record

    def second_finds_the_disk_full(self: Store, run_id: str, *args, **kwargs):
        if self._db.execute("SELECT COUNT(*) FROM runs WHERE status != 'pending'").fetchone()[0]:
            # no page more: the row with its history (made long here) does not fit
            self._db.execute("PRAGMA max_page_count = 1")
            args = (args[0], args[1], args[2] * 2000, *args[3:])
        return record(self, run_id, *args, **kwargs)

    monkeypatch.setattr(Store, "record", second_finds_the_disk_full)
    zoo, root = parse_zoo_spec(SPEC), tmp_path / "zoo"
    with pytest.raises(GengapError) as err:
        train_zoo(zoo, root, workers=workers, device="cpu")
    one_line(err, root / "gengap.sqlite", "the disk is full")
    assert sorted(statuses(root)) == ["done", "pending"]  # the first run kept, the second not lost
    monkeypatch.undo()
    assert statuses(train_zoo(zoo, root, device="cpu").root) == ["done", "done"]


def test_weights_on_a_full_disk_are_one_line_and_the_run_stays_pending(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread):
    write_bytes = Path.write_bytes

    def full_at_final(self: Path, data: bytes) -> int:
        if "final" in self.name:
            write_bytes(self, data[: len(data) // 2])
            raise OSError(28, "No space left on device")
        return write_bytes(self, data)

    monkeypatch.setattr(Path, "write_bytes", full_at_final)
    zoo, root = parse_zoo_spec(SPEC), tmp_path / "zoo"
    with pytest.raises(GengapError) as err:
        train_zoo(zoo, root, device="cpu")
    run = zoo.runs()[0].run_id
    one_line(err, root / "weights" / run / "final.safetensors", "No space left on device")
    assert sorted(p.name for p in (root / "weights" / run).iterdir()) == ["init.safetensors"]
    assert statuses(root) == ["pending", "pending"]
    monkeypatch.undo()
    assert statuses(train_zoo(zoo, root, device="cpu").root) == ["done", "done"]


def test_a_new_zoo_on_a_full_disk_says_so_and_leaves_no_empty_database(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    def full(path: Path):  # what SQLite does there: makes the file, cannot write its header
        path.touch()
        err = sqlite3.OperationalError("database or disk is full")
        err.sqlite_errorname = "SQLITE_FULL"
        raise err

    monkeypatch.setattr(store_module, "connect", full)
    root = tmp_path / "zoo"
    with pytest.raises(GengapError) as err:
        Store.create(root, ZooSpec(name="w", seeds=(0,), data=DataSpec()))
    one_line(err, root / "gengap.sqlite", "the disk is full")
    assert not (root / "gengap.sqlite").exists()


def test_a_new_zoo_whose_tables_do_not_fit_leaves_no_database(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """SQLite writes its 4 KB header, then the disk fills before the tables: that file read
    as "not a gengap store" afterwards; nothing is left now, and a later train starts clean."""
    real = store_module.connect

    def one_page(path: Path):
        conn, why = real(path)
        conn.execute("PRAGMA max_page_count = 1")  # room for the header page only
        return conn, why

    monkeypatch.setattr(store_module, "connect", one_page)
    root = tmp_path / "zoo"
    spec = ZooSpec(name="w", seeds=(0,), data=DataSpec())
    with pytest.raises(GengapError) as err:
        Store.create(root, spec)
    one_line(err, root / "gengap.sqlite", "the disk is full")
    assert list(root.iterdir()) == []
    monkeypatch.setattr(store_module, "connect", real)
    assert len(Store.create(root, spec).runs()) == 1


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_weight_files_follow_the_umask(tmp_path: Path, umask: int):
    store = Store.create(tmp_path / "zoo", ZooSpec(name="w", seeds=(0,), data=DataSpec()))
    run = store.runs()[0].run_id
    old = os.umask(umask)
    try:
        path = store.save_weights(run, "final", {"w": torch.ones(2, 3).t()})  # not contiguous
        copy = store.save_weight_bytes(run, "init", path.read_bytes())
    finally:
        os.umask(old)
    for p in (path, copy):
        assert p.stat().st_mode & 0o777 == 0o666 & ~umask
    assert torch.equal(store.load_weights(run, "final")["w"], torch.ones(3, 2))
    store.close()


def test_an_empty_database_is_refused_and_left_empty(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    root = tmp_path / "zoo"
    root.mkdir()
    (root / "gengap.sqlite").touch()
    with pytest.raises(GengapError, match="gengap.sqlite is empty"):
        Store(root)
    from gengap.cli.app import main

    monkeypatch.setattr(sys, "argv", ["gengap", "zoo", "status", str(root)])
    with pytest.raises(SystemExit) as done:
        main()
    assert done.value.code == 2
    assert capsys.readouterr().err == (
        f"gengap: error: {root}: not a gengap zoo (gengap.sqlite is empty)\n")
    assert [(p.name, p.stat().st_size) for p in root.iterdir()] == [("gengap.sqlite", 0)]


@pytest.mark.parametrize("error", ["SQLITE_FULL", "SQLITE_IOERR_SHMSIZE"])
def test_a_zoo_on_a_full_disk_still_reads_and_writers_say_why(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread, error: str):
    """Opening read-write makes the -wal and -shm files, which a full disk refuses: every
    command, readers too, said "not a gengap store (disk I/O error)" of an intact zoo."""
    from gengap.zoo import sqlite_open

    zoo, root = parse_zoo_spec(SPEC), tmp_path / "zoo"
    train_zoo(zoo, root, device="cpu").close()

    def full(path: Path) -> sqlite3.Connection:
        err = sqlite3.OperationalError("disk I/O error")
        err.sqlite_errorname = error
        raise err

    monkeypatch.setattr(sqlite_open, "_read_write", full)
    store = Store(root)
    assert store.read_only and list(store.frame()["status"]) == ["done", "done"]
    with pytest.raises(GengapError) as err:
        store.check_writable()
    one_line(err, root / "gengap.sqlite", "disk")
    store.close()
    with pytest.raises(GengapError) as err:
        train_zoo(zoo, root, device="cpu")
    one_line(err, root / "gengap.sqlite", "disk")
