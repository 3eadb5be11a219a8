"""Whether a zoo may be written is judged as the system judges an open: by the effective ids
(a setuid process, a capability held under another uid), and by the folder only where SQLite
must make a file there; ``Store.create`` refuses a read-only zoo before opening it.

The children run as root without capabilities, or as another uid, through setpriv (see
test_zoo_read_only); each first checks that the old judgement would have misjudged it."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from gengap.errors import GengapError
from gengap.zoo import Store, parse_zoo_spec

SPEC = {"name": "writable", "seeds": [0, 1], "data": {"name": "digits"},
        "arch": {"family": "mlp", "width": 4, "depth": 1},
        "train": {"lr": 0.1, "max_epochs": 1}}

NO_CAPABILITIES = ["setpriv", "--bounding-set", "-all", "--inh-caps", "-all",
                   "--ambient-caps", "-all", "--"]
SETUID = ["setpriv", "--ruid", "65534", "--bounding-set", "-all", "--inh-caps", "-all",
          "--ambient-caps", "-all", "--"]  # effective uid 0, real uid nobody, no capabilities
CAPABILITY = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups",
              "--inh-caps", "+dac_override", "--ambient-caps", "+dac_override", "--"]

CHILD = """
import json, os, sys
from gengap.errors import GengapError
from gengap.zoo import Store, parse_zoo_spec
globals().update(json.loads(sys.argv[1]))
"""

needs_setpriv = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="changes its ids and capabilities with setpriv, as root",
)


def run_as(prefix: list[str], home: Path, code: str, **names: object) -> dict:
    """``code`` run by a child under ``prefix``, ``names`` its variables; its ``result``."""
    script = f"{CHILD}\n{code}\nprint(json.dumps(result))"
    # no caches or bytecode of the child's left outside ``home``
    env = {**os.environ, "HOME": str(home), "PYTHONDONTWRITEBYTECODE": "1"}
    child = subprocess.run([*prefix, sys.executable, "-c", script, json.dumps(names)],
                           capture_output=True, text=True, timeout=300, env=env)
    assert child.returncode == 0, child.stderr
    return json.loads(child.stdout.splitlines()[-1])


def make_zoo(root: Path) -> Path:
    Store.create(root, parse_zoo_spec(SPEC)).close()
    return root


@pytest.fixture
def folder(tmp_path: Path):
    """A folder whose modes are given back for the clean-up."""
    made = tmp_path / "shared"
    made.mkdir()
    yield made
    for path in [made, *made.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


@needs_setpriv
@pytest.mark.parametrize("ids", [SETUID, CAPABILITY], ids=["setuid", "capability"])
def test_a_process_the_system_lets_write_writes(ids: list[str], tmp_path: Path):
    """Its real uid may not write the zoo (root's, 0755/0644); its effective ids may."""
    zoo = make_zoo(tmp_path / "zoo")
    found = run_as(ids, tmp_path, """
store = Store(zoo)
result = {"real uid may write": os.access(zoo, os.W_OK), "read_only": store.read_only}
store.put_measures(store.runs()[0].run_id, {"x": (1.0, 0.0)})
store.close()
""", zoo=str(zoo))
    assert found == {"real uid may write": False, "read_only": False}
    store = Store(zoo)
    assert store.measure_names() == {"x"}
    store.close()


@needs_setpriv
def test_a_writable_database_writes_where_its_folder_is_not_but_its_journal_files_are(
    folder: Path,
):
    """A writable database in a folder it may not write: with its -wal and -shm there (a
    connection open) and writable, SQLite makes nothing in the folder, and the zoo writes."""
    zoo = make_zoo(folder / "zoo")
    holder = Store(zoo)  # keeps gengap.sqlite-wal and -shm
    try:
        assert {p.name for p in zoo.glob("gengap.sqlite-*")} == {"gengap.sqlite-wal",
                                                                  "gengap.sqlite-shm"}
        zoo.chmod(0o555)
        found = run_as(NO_CAPABILITIES, folder, """
try:
    open(f"{zoo}/probe", "w").close()
    sys.exit("this process may write the folder")
except PermissionError:
    pass
store = Store(zoo)
result = {"read_only": store.read_only}
store.put_measures(store.runs()[0].run_id, {"x": (1.0, 0.0)})
store.close()
try:  # to train, though, the weights need a folder
    Store.create(zoo, parse_zoo_spec(spec)).close()
except GengapError as err:
    result["train"] = str(err)
""", zoo=str(zoo), spec=SPEC)
    finally:
        holder.close()
        zoo.chmod(0o755)
    assert found.pop("train").startswith(f"{zoo}: the zoo is read-only here ({zoo}, owned by "
                                         "uid 0, is not writable by this process, and the "
                                         "weights go there)")
    assert found == {"read_only": False}
    store = Store(zoo)
    assert store.measure_names() == {"x"}
    store.close()


@needs_setpriv
def test_a_folder_it_may_not_write_is_named_where_sqlite_must_make_a_file_there(
    folder: Path,
):
    """No connection open, so no -wal/-shm: the database is writable, its folder is the
    reason, and a folder with no zoo yet cannot take one."""
    zoo = make_zoo(folder / "zoo")
    empty = folder / "empty"
    empty.mkdir()
    zoo.chmod(0o555)
    empty.chmod(0o555)
    found = run_as(NO_CAPABILITIES, folder, """
result = {"database writable": os.access(f"{zoo}/gengap.sqlite", os.W_OK)}
store = Store(zoo)
result["read_only"] = store.read_only
zoo_spec = parse_zoo_spec(spec)
for name, write in (("check_writable", store.check_writable),
                    ("create", lambda: Store.create(zoo, zoo_spec)),
                    ("create in an empty folder", lambda: Store.create(empty, zoo_spec))):
    try:
        write()
    except GengapError as err:
        result[name] = str(err)
""", zoo=str(zoo), empty=str(empty), spec=SPEC)
    folder_is = "its folder, owned by uid 0, is not writable by this process"
    assert found["database writable"] and found["read_only"]
    for name in ("check_writable", "create"):
        assert found[name] == (
            f"{zoo}: the zoo is read-only here ({folder_is}, and SQLite must make "
            "gengap.sqlite-wal there); copy it to a folder you can write to train or measure it"
        )
    assert found["create in an empty folder"] == (
        f"{empty}: cannot make a zoo here ({folder_is}, and SQLite must make gengap.sqlite there)"
    )


@needs_setpriv
def test_create_refuses_a_read_only_zoo_without_opening_it(folder: Path):
    """A zoo copied while open (its last writes in the -wal, no -shm) in a read-only folder:
    reading it takes a private copy of the database, which a refusal has no need of."""
    live = make_zoo(folder.parent / "live")
    store = Store(live)
    store.put_measures(store.runs()[0].run_id, {"late": (7.0, 0.0)})
    zoo = shutil.copytree(live, folder / "zoo", ignore=shutil.ignore_patterns("*-shm"))
    store.close()
    for path in (*zoo.iterdir(), zoo):
        path.chmod(0o444 if path.is_file() else 0o555)
    before = sorted(p.name for p in zoo.iterdir())
    found = run_as(NO_CAPABILITIES, folder, """
import sqlite3
opened = []
connect = sqlite3.connect
sqlite3.connect = lambda *args, **kwargs: opened.append(args[0]) or connect(*args, **kwargs)
try:
    Store.create(zoo, parse_zoo_spec(spec))
    result = {"error": None}
except GengapError as err:
    result = {"error": str(err)}
result["opened"] = [str(path) for path in opened]
""", zoo=str(zoo), spec=SPEC)
    assert found["error"].startswith(f"{zoo}: the zoo is read-only here ("), found
    assert found["opened"] == []
    assert sorted(p.name for p in zoo.iterdir()) == before == ["gengap.sqlite",
                                                              "gengap.sqlite-wal"]


def test_a_file_that_is_no_store_is_one_line_naming_it(tmp_path: Path):
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "gengap.sqlite").write_bytes(b"not a database" * 100)
    plain = tmp_path / "plain"
    plain.mkdir()
    sqlite3.connect(plain / "gengap.sqlite").execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(GengapError) as opened:
        Store(garbage)
    with pytest.raises(GengapError) as created:
        Store.create(garbage, parse_zoo_spec(SPEC))
    with pytest.raises(GengapError) as tableless:
        Store(plain)
    message = f"{garbage / 'gengap.sqlite'}: not a gengap store (file is not a database)"
    assert str(opened.value) == str(created.value) == message
    assert str(tableless.value) == (
        f"{plain / 'gengap.sqlite'}: not a gengap store (no such table: meta)"
    )
