"""Files written whole or not at all (:mod:`gengap.atomic_write`): a write that fails midway
(a full disk, the writer's own error) keeps the older file, leaves no temporary file and, when
the system refused it, is one line naming the file. Tables, a study's page, a zoo's weights, and
the check of an output file before the work."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd
import pytest
import torch

from gengap.atomic_write import write_atomically, write_text_atomically
from gengap.errors import GengapError
from gengap.specs import DataSpec, ZooSpec
from gengap.table_file import write_table
from gengap.zoo import Store

DISK_FULL = "No space left on device"


def disk_full() -> OSError:
    return OSError(28, DISK_FULL)


def half_then_full_for(monkeypatch: pytest.MonkeyPatch, method: str, name: str) -> None:
    """``Path.<method>`` (write_text or write_bytes) writes half of a file whose name holds
    ``name`` (the target or its temporary file), then finds the disk full; an empty write (the
    trial before the work) still succeeds."""
    original = getattr(Path, method)

    def half_then_full(self: Path, data, *args, **kwargs):
        if name not in self.name or not data:
            return original(self, data, *args, **kwargs)
        original(self, data[: len(data) // 2], *args, **kwargs)
        raise disk_full()

    monkeypatch.setattr(Path, method, half_then_full)


def only(folder: Path) -> list[str]:
    """The names in ``folder``: a leftover temporary file shows here."""
    return sorted(p.name for p in folder.iterdir())


def assert_refused(err: pytest.ExceptionInfo[GengapError], path: Path) -> None:
    text = str(err.value)
    assert "\n" not in text and text.startswith(f"{path}: cannot write"), text
    assert DISK_FULL in text


@pytest.mark.parametrize("suffix, method", [(".csv", "to_csv"), (".parquet", "to_parquet")])
def test_a_table_write_that_fails_midway_keeps_the_old_table(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str, method: str):
    out = tmp_path / f"ranked{suffix}"
    write_table(pd.DataFrame({"measure": ["old"], "tau": [0.5]}), out)
    before = out.read_bytes()

    def half_then_full(self, path, *args, **kwargs):
        Path(path).write_bytes(before[: len(before) // 2])
        raise disk_full()

    monkeypatch.setattr(pd.DataFrame, method, half_then_full)
    with pytest.raises(GengapError) as err:
        write_table(pd.DataFrame({"measure": ["new"], "tau": [0.9]}), out)
    assert_refused(err, out)
    assert out.read_bytes() == before
    assert only(tmp_path) == [out.name]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_table_is_written_whole(tmp_path: Path, suffix: str):
    out = tmp_path / f"t{suffix}"
    out.write_text("an older file")
    table = pd.DataFrame({"measure": ["a", "b"], "tau": [0.25, -1.0]})
    write_table(table, out)
    read = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
    pd.testing.assert_frame_equal(read, table)
    assert only(tmp_path) == [out.name]


@pytest.mark.parametrize("error", [ValueError("the writer's own"), KeyboardInterrupt()])
def test_any_failure_of_the_writer_removes_its_temporary_file(tmp_path: Path, error):
    out = tmp_path / "x.txt"
    out.write_text("old")

    def fail(tmp: Path) -> None:
        tmp.write_text("ha")
        raise error

    with pytest.raises(type(error)):  # not the system's refusal: passed on as it is
        write_atomically(out, fail)
    assert out.read_text() == "old" and only(tmp_path) == ["x.txt"]


def test_the_study_page_is_written_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from gengap.studies.report import write_study_report
    from gengap.studies.runner import REPORT_NAME, StudyResult

    result = StudyResult(name="toy", scale="smoke", title="A toy study",
                         table=pd.DataFrame({"a": [1]}), figures=[], published="p",
                         found=["f"], seconds=1.0, train_seconds=1.0, runs=1, folder=tmp_path)
    page = tmp_path / REPORT_NAME
    page.write_text("the old page")
    half_then_full_for(monkeypatch, "write_text", page.name)
    with pytest.raises(GengapError) as err:
        write_study_report(result)
    assert_refused(err, page)
    assert page.read_text() == "the old page" and only(tmp_path) == [REPORT_NAME]
    monkeypatch.undo()
    assert write_study_report(result) == page and "A toy study" in page.read_text()


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.create(tmp_path / "zoo", ZooSpec(name="w", seeds=(0,), data=DataSpec()))


def test_weights_that_fail_midway_keep_the_old_file(store: Store,
                                                   monkeypatch: pytest.MonkeyPatch):
    run = store.runs()[0].run_id
    path = store.save_weights(run, "final", {"w": torch.ones(3)})
    half_then_full_for(monkeypatch, "write_bytes", path.name)
    with pytest.raises(GengapError) as err:  # serialized, then written as bytes: one line
        store.save_weights(run, "final", {"w": torch.zeros(3)})
    assert_refused(err, path)
    assert torch.equal(store.load_weights(run, "final")["w"], torch.ones(3))
    assert only(path.parent) == [path.name]


def test_weight_bytes_refused_midway_are_one_line(store: Store,
                                                  monkeypatch: pytest.MonkeyPatch):
    run = store.runs()[0].run_id
    path = store.save_weights(run, "final", {"w": torch.ones(3)})
    blob = path.read_bytes()
    half_then_full_for(monkeypatch, "write_bytes", path.name)
    with pytest.raises(GengapError) as err:
        store.save_weight_bytes(run, "final", blob[::-1])
    assert_refused(err, path)
    assert path.read_bytes() == blob and only(path.parent) == [path.name]
    monkeypatch.undo()
    assert store.save_weight_bytes(run, "init", blob).read_bytes() == blob


def test_text_is_written_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    out = tmp_path / "scores.txt"
    out.write_text("old")
    half_then_full_for(monkeypatch, "write_text", out.name)
    with pytest.raises(GengapError, match=re.escape(f"{out}: cannot write the scores (No")):
        write_text_atomically(out, "new and longer", "the scores")
    assert out.read_text() == "old" and only(tmp_path) == ["scores.txt"]


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_an_output_file_is_tried_before_the_work_even_as_root():
    """os.access lets root write in /proc, whose folders take no file: the refusal came only
    at the end, after the work. The trial write answers the same for every user."""
    from gengap.cli.outputs import output_file

    out = Path("/proc/gengap-refused.csv")
    with pytest.raises(GengapError, match=re.escape(f"{out}: cannot write (")):
        output_file(out, (".csv",))
    assert not any(p.name.startswith(f".{out.name}.tmp") for p in out.parent.iterdir())


def test_an_output_file_leaves_no_trial_file(tmp_path: Path):
    from gengap.cli.outputs import output_file

    out = tmp_path / "new" / "ranked.csv"
    assert output_file(out, (".csv",)) == out
    assert only(out.parent) == [] and os.access(out.parent, os.W_OK)


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_write_report_in_python_is_refused_before_the_work(
        store: Store, monkeypatch: pytest.MonkeyPatch):
    """Python callers skip the command's check of -o: the report checks its file itself."""
    from gengap.report import build, write_report

    def work(*args, **kwargs):
        raise AssertionError("gathered before the file was checked")

    monkeypatch.setattr(build, "gather", work)
    with pytest.raises(GengapError, match=re.escape("/proc/r.html: cannot write the report (")):
        write_report(store, "/proc/r.html", bootstrap=0)


def test_a_symbolic_link_stays_a_link_to_the_new_file(tmp_path: Path):
    (tmp_path / "results").mkdir()
    real = tmp_path / "results" / "ranked.csv"
    real.write_text("old\n")
    link = tmp_path / "ranked.csv"
    link.symlink_to(Path("results") / "ranked.csv")  # relative, as users make them
    write_text_atomically(link, "new\n")
    assert link.is_symlink() and real.read_text() == "new\n"
    assert only(tmp_path / "results") == ["ranked.csv"] and only(tmp_path) == ["ranked.csv",
                                                                                "results"]
    dangling = tmp_path / "later.csv"  # a link to a file not made yet: the file is made
    dangling.symlink_to(tmp_path / "results" / "later.csv")
    write_table(pd.DataFrame({"tau": [0.5]}), dangling)
    assert dangling.is_symlink() and (tmp_path / "results" / "later.csv").is_file()


def test_a_replaced_file_keeps_its_permission_bits(tmp_path: Path):
    out = tmp_path / "scores.csv"
    out.write_text("old\n")
    out.chmod(0o640)
    write_text_atomically(out, "new\n")
    assert out.read_text() == "new\n" and out.stat().st_mode & 0o777 == 0o640


def test_the_new_file_reaches_the_disk_before_the_rename(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch):
    events: list[str] = []
    fsync, replace, chmod = os.fsync, os.replace, os.chmod
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append("fsync"), fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append("replace"), replace(a, b))[1])
    monkeypatch.setattr(os, "chmod", lambda p, m: (events.append("chmod"), chmod(p, m))[1])
    page = tmp_path / "page.html"
    write_text_atomically(page, "<p>hi</p>")
    assert events == ["fsync", "replace"]
    events.clear()
    # read back for the fsync before the old mode is set: a mode of 0200 would refuse that
    write_text_atomically(page, "<p>again</p>")
    assert events == ["fsync", "chmod", "replace"]


def test_a_loop_of_symbolic_links_is_one_line(tmp_path: Path):
    one, two = tmp_path / "one.csv", tmp_path / "two.csv"
    one.symlink_to(two)
    two.symlink_to(one)
    with pytest.raises(GengapError) as err:
        write_text_atomically(one, "x\n")
    assert str(err.value).startswith(f"{one}: cannot write (a loop of symbolic links")


def test_temporary_files_of_killed_writers_are_removed_by_the_next_write(tmp_path: Path):
    """A writer killed outright (kill -9) left its temporary file beside the target for good."""
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    target = tmp_path / "final.safetensors"
    stale = tmp_path / f".final.safetensors.tmp{int(dead.stdout)}"
    stale.write_bytes(b"half")
    alive = tmp_path / f".final.safetensors.tmp{os.getppid()}"  # a running writer's: kept
    alive.write_bytes(b"in progress")
    other = tmp_path / f".other.safetensors.tmp{int(dead.stdout)}"  # another target's: kept
    other.write_bytes(b"half")
    odd = tmp_path / f".final.safetensors.tmp{'9' * 40}"  # no PID at all: kept, no error
    odd.write_bytes(b"?")
    write_text_atomically(target, "whole")
    assert target.read_text() == "whole"
    assert not stale.exists() and alive.exists() and other.exists() and odd.exists()
    bracketed = tmp_path / "r[1].html"  # glob's own characters in the name
    stale_bracketed = tmp_path / f".r[1].html.tmp{int(dead.stdout)}"
    stale_bracketed.write_bytes(b"half")
    write_text_atomically(bracketed, "page")
    assert not stale_bracketed.exists()
