"""A zoo this process may not write (a read-only file system, someone else's folder) reads like
any other, also when it was copied while open; a command that writes says in one line that the
zoo is read-only.

chmod binds no one running as root: then the reading runs as root without its capabilities
(setpriv), for whom the modes 0444/0555 refuse writes as they refuse any other user's."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from gengap.zoo import Store, Zoo, load_zoo_spec

SPEC = """
name = "shared"
seeds = [0, 1]

[data]
name = "digits"
train_fraction = 0.2

[arch]
family = "mlp"
width = [4, 8]
depth = 1

[train]
lr = [0.01, 0.1]
max_epochs = 1
"""

NO_CAPABILITIES = ["setpriv", "--bounding-set", "-all", "--inh-caps", "-all",
                   "--ambient-caps", "-all", "--"]

# The reader's code runs in one child process (each would spend seconds importing torch), with
# gengap(*args): a command's exit status, stdout and stderr, as `gengap ARGS` gives them. It
# first makes sure that it may not write the read-only folder, or the test would prove nothing.
READER = """
import contextlib, io, json, sys

globals().update(json.loads(sys.argv[1]))
try:
    open(f"{read_only}/probe", "w").close()
    sys.exit(f"this process may write {read_only}: it is no reader")
except PermissionError:
    pass

from gengap.cli.app import main

def gengap(*args):
    out, err, status = io.StringIO(), io.StringIO(), 0
    sys.argv = ["gengap", *args]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main()
        except SystemExit as done:
            status = done.code
    return status, out.getvalue(), err.getvalue()
"""


def as_reader(read_only: Path, code: str, **names: str) -> dict:
    """``code`` run by a process that the file modes bind (the folder ``read_only`` made so by
    :func:`make_read_only`), ``names`` its variables; what it left in ``result``."""
    prefix = NO_CAPABILITIES if os.geteuid() == 0 else []
    script = f"{READER}\n{code}\nprint(json.dumps(result))"
    names = {**names, "read_only": str(read_only)}
    child = subprocess.run([*prefix, sys.executable, "-c", script, json.dumps(names)],
                           capture_output=True, text=True, timeout=300)
    assert child.returncode == 0, child.stderr
    return json.loads(child.stdout.splitlines()[-1])


def assert_one_line_error(result: list, *fragments: str) -> None:
    status, _, err = result
    assert status == 2, result
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def written_zoo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished, measured zoo written straight into a store (no training: only the store's
    rows matter here), and its spec beside it."""
    root = tmp_path_factory.mktemp("written")
    (root / "spec.toml").write_text(SPEC)
    store = Store.create(root / "zoo", load_zoo_spec(root / "spec.toml"))
    for i, run in enumerate(store.runs()):
        gap = 0.01 * i
        store.record(run.run_id, "done", {"train_acc": 0.9 + gap, "test_acc": 0.9,
                                          "train_loss": 0.3, "test_loss": 0.4, "epochs": 1},
                     history=[])
        store.put_measures(run.run_id, {"good": (gap, 0.0), "noise": ((-1.0) ** i, 0.0)})
    store.close()
    return root


@pytest.fixture
def shared(tmp_path: Path) -> Iterator[Path]:
    """An empty folder that becomes read-only, with all it holds, when handed to
    :func:`make_read_only`; its modes are given back for the clean-up."""
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        pytest.skip("running as root, whom chmod does not stop, and setpriv is missing")
    folder = tmp_path / "shared"
    folder.mkdir()
    yield folder
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


def make_read_only(folder: Path) -> None:
    for path in sorted(folder.rglob("*"), reverse=True):  # files before their folders
        path.chmod(0o555 if path.is_dir() else 0o444)
    folder.chmod(0o555)


def test_a_read_only_zoo_reads_like_any_other(written_zoo: Path, shared: Path,
                                              tmp_path: Path):
    zoo = shared / "zoo"
    shutil.copytree(written_zoo / "zoo", zoo)
    make_read_only(shared)
    found = as_reader(shared, """
from gengap.zoo import Zoo
result = {
    "status": gengap("zoo", "status", zoo),
    "export": gengap("zoo", "export", zoo, "--parquet", f"{out}/cli.parquet"),
    "evaluate": gengap("evaluate", zoo, "--bootstrap", "0", "--out", f"{out}/ranked.csv"),
    "report": gengap("report", zoo, "-o", f"{out}/report.html", "--bootstrap", "0"),
    "report in the zoo": gengap("report", zoo, "--bootstrap", "0"),
}
opened = Zoo(zoo)
opened.to_parquet(f"{out}/api.parquet")
result["read_only"] = opened.store.read_only

import os
os.access = lambda *args, **kwargs: True  # a system that answers access() wrongly: SQLite's
result["told it may write"] = Zoo(zoo).store.read_only  # refusal is heard instead
""", zoo=str(zoo), out=str(tmp_path))

    for command in ("status", "export", "evaluate", "report"):
        assert found[command][0] == 0, found[command]
    assert "8 runs, 8 done" in found["status"][1]
    expected = Zoo(written_zoo / "zoo").frame()
    for table in ("cli.parquet", "api.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / table), expected,
                                      check_dtype=False)
    assert set(pd.read_csv(tmp_path / "ranked.csv")["measure"]) == {"good", "noise"}
    assert (tmp_path / "report.html").stat().st_size > 0
    assert_one_line_error(found["report in the zoo"], str(zoo), "read-only", "-o FILE.html")
    assert found["read_only"] is True and found["told it may write"] is True


def test_a_reader_leaves_no_journal_files_that_would_lock_out_the_owner(
    written_zoo: Path, shared: Path
):
    """A reader who may write the zoo's folder but not its database (a group-writable folder
    and a database only its owner may write) makes no -wal/-shm of its own: owned by the
    reader, they would leave the owner's next open unable to write its own zoo."""
    zoo = shared / "zoo"
    # as a zoo that no process has open: no -wal/-shm (other tests may hold the original open;
    # their reads leave nothing in its WAL)
    shutil.copytree(written_zoo / "zoo", zoo, ignore=shutil.ignore_patterns("gengap.sqlite-*"))
    make_read_only(shared)
    zoo.chmod(0o755)  # the folder may be written, gengap.sqlite may not
    found = as_reader(shared, """
from gengap.zoo import Zoo
opened = Zoo(zoo)
result = {"runs": len(opened.frame()), "read_only": opened.store.read_only}
""", zoo=str(zoo))
    assert found == {"runs": 8, "read_only": True}
    assert not list(zoo.glob("gengap.sqlite-*"))


def test_writing_a_read_only_zoo_is_one_line_naming_it(written_zoo: Path, shared: Path):
    zoo = shared / "zoo"
    shutil.copytree(written_zoo / "zoo", zoo)
    make_read_only(shared)
    found = as_reader(shared, """
from gengap.errors import GengapError
from gengap.zoo import Store

result = {"train": gengap("zoo", "train", spec, "--out", zoo),
          "measure": gengap("measure", zoo, "--measures", "params")}
store = Store(zoo)
run = store.runs()[0].run_id
for name, write in (("put_measures", lambda: store.put_measures(run, {"x": (1.0, 0.0)})),
                    ("record", lambda: store.record(run, "failed", {}, [], "no")),
                    ("save_weights", lambda: store.save_weights(run, "final", {}))):
    try:
        write()
    except GengapError as err:
        result[name] = str(err)
""", zoo=str(zoo), spec=str(written_zoo / "spec.toml"))

    assert_one_line_error(found["train"], f"{zoo}: the zoo is read-only")
    assert_one_line_error(found["measure"], f"{zoo}: the zoo is read-only")
    for write in ("put_measures", "record", "save_weights"):
        assert found.get(write, "").startswith(f"{zoo}: the zoo is read-only"), write


def test_a_zoo_copied_while_open_reads_its_last_writes(written_zoo: Path, shared: Path):
    """Its last transactions are in gengap.sqlite-wal, which an immutable open ignores; the
    index gengap.sqlite-shm beside it may have been left behind by the copy."""
    live = shutil.copytree(written_zoo / "zoo", shared.parent / "live")
    store = Store(live)
    run = store.runs()[0].run_id
    store.put_measures(run, {"late": (7.0, 0.0)})  # in the WAL until the store is closed
    shutil.copytree(live, shared / "with_shm")
    shutil.copytree(live, shared / "without_shm", ignore=shutil.ignore_patterns("*-shm"))
    store.close()
    assert (shared / "with_shm" / "gengap.sqlite-wal").stat().st_size > 0
    assert not (shared / "without_shm" / "gengap.sqlite-shm").exists()
    make_read_only(shared)
    found = as_reader(shared, """
from gengap.zoo import Zoo
frames = {copy: Zoo(f"{read_only}/{copy}").frame().set_index("run_id")
          for copy in ("with_shm", "without_shm")}
result = {copy: frame.reindex(columns=["late"]).loc[run, "late"]  # NaN where it is lost
          for copy, frame in frames.items()}
""", run=run)
    assert found == {"with_shm": 7.0, "without_shm": 7.0}
