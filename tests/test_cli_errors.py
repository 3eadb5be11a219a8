"""Bad input ends in one line on stderr, exit status 2, and leaves the store as it was."""

from __future__ import annotations

import contextlib
import hashlib
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import save_file

from gengap.errors import GengapError
from gengap.zoo import Store, load_zoo_spec, train_zoo


def gengap(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gengap.cli", *args], capture_output=True, text=True, timeout=300
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def digest(folder: Path) -> str:
    """The store's logical content: every SQL row and every weight file."""
    h = hashlib.sha256()
    with sqlite3.connect(folder / "gengap.sqlite") as con:
        for line in con.iterdump():
            h.update(line.encode())
    for path in sorted((folder / "weights").rglob("*")):
        if path.is_file():
            h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()


def test_bad_toml_exits_2_with_one_line(tmp_path: Path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[arch]\nwidth = [8, -1]\n')
    assert_one_line_error(gengap("zoo", "train", str(bad), "--out", str(tmp_path / "z")),
                          "bad.toml", "[arch] width = -1", "greater than or equal to 1")
    bad.write_text('[train]\nlearning_rate = 0.1\n')
    assert_one_line_error(gengap("zoo", "train", str(bad), "--out", str(tmp_path / "z")),
                          "bad.toml", "[train] learning_rate", "unknown key")
    bad.write_text('[train]\nlr = "fast"\n')
    assert_one_line_error(gengap("zoo", "train", str(bad), "--out", str(tmp_path / "z")),
                          "[train] lr", "expected a number, got text 'fast'")
    bad.write_text('[data]\nname = "digitz"\n')  # checked before the zoo folder is made
    assert_one_line_error(gengap("zoo", "train", str(bad), "--out", str(tmp_path / "z")),
                          "bad.toml: [data] name: unknown data source 'digitz'")
    assert not (tmp_path / "z").exists()


def test_missing_files_and_folders(tmp_path: Path):
    assert_one_line_error(gengap("zoo", "train", str(tmp_path / "none.toml"), "--out",
                                 str(tmp_path / "z")), "none.toml", "no such file")
    assert_one_line_error(gengap("zoo", "status", str(tmp_path / "nowhere")), "nowhere",
                          "no such zoo folder")
    (tmp_path / "empty").mkdir()
    assert_one_line_error(gengap("measure", str(tmp_path / "empty")), "not a gengap zoo")
    (tmp_path / "ranked.csv").write_text("measure,tau\n")
    assert_one_line_error(gengap("zoo", "status", str(tmp_path / "ranked.csv")),
                          "ranked.csv: a file, not a zoo folder")
    # a file for a study's folder: refused before the study's banner, the one line printed
    refused = gengap("study", "randomization", "--scale", "smoke", "--out",
                     str(tmp_path / "ranked.csv"))
    assert_one_line_error(refused, "ranked.csv: exists and is not a folder")
    assert not refused.stdout.strip()
    # a study's folder that cannot be made (a file on its way): a traceback before
    assert_one_line_error(gengap("study", "randomization", "--scale", "smoke", "--out",
                                 str(tmp_path / "ranked.csv" / "sub")),
                          "sub: cannot make the folder (")


def test_a_different_spec_does_not_touch_an_existing_store(tiny_zoo_toml: Path, tmp_path: Path):
    out = tmp_path / "zoo"
    train_zoo(load_zoo_spec(tiny_zoo_toml), out)
    before = digest(out)
    other = tmp_path / "other.toml"
    other.write_text(tiny_zoo_toml.read_text().replace("max_epochs = 3", "max_epochs = 4"))
    assert_one_line_error(gengap("zoo", "train", str(other), "--out", str(out)),
                          "holds zoo 'tiny' with a different spec")
    assert digest(out) == before


def test_bad_weight_files_are_named(tiny_zoo_toml: Path, tmp_path: Path):
    out = tmp_path / "zoo"
    store = train_zoo(load_zoo_spec(tiny_zoo_toml), out)
    run_id = store.runs()[0].run_id
    final = store.weights_path(run_id, "final")

    final.write_bytes(final.read_bytes()[:50])  # truncated
    # the other runs are measured and stored all the same; the bad one stays unmeasured
    assert_one_line_error(gengap("measure", str(out), "--measures", "log_sum_of_fro"), str(final),
                          "unreadable weight file",
                          "(the measures that read it were not computed; 3 runs measured")
    measured = Store(out).measured()
    assert run_id not in measured and len(measured) == 3

    save_file({"0.weight": torch.zeros(2, 2)}, str(final))  # wrong shapes
    assert_one_line_error(gengap("measure", str(out), "--measures", "log_sum_of_fro"),
                          str(final), "do not fit")

    # a second bad run: named on stdout, the error line counts it
    second = store.weights_path(store.runs()[1].run_id, "final")
    kept = second.read_bytes()
    second.write_bytes(b"")
    both = gengap("measure", str(out), "--measures", "log_sum_of_fro", "--recompute")
    assert_one_line_error(both, str(final), "not computed, nor those of 1 other bad file; 2 runs")
    assert [line for line in both.stdout.splitlines() if line.startswith("skipped: ")] == [
        f"skipped: {second}: unreadable weight file (Error while deserializing header: header "
        "too small)"]  # one line, however long
    second.write_bytes(kept)

    good = Store(out).load_weights(store.runs()[1].run_id, "final")
    save_file({k: torch.full_like(v, float("nan")) for k, v in good.items()}, str(final))
    assert_one_line_error(gengap("measure", str(out), "--measures", "log_sum_of_fro"),
                          str(final), "NaN")


def test_unknown_measure_is_named(tiny_zoo_toml: Path, tmp_path: Path):
    out = tmp_path / "zoo"
    train_zoo(load_zoo_spec(tiny_zoo_toml), out)
    assert_one_line_error(gengap("measure", str(out), "--measures", "sharpnes"),
                          "unknown measure or group 'sharpnes'")


@pytest.mark.parametrize("signal", ["returns 130", "abort", "exit 130"])
def test_ctrl_c_says_that_finished_runs_are_kept(monkeypatch, capsys, signal):
    import typer

    import gengap.cli.app as cli

    def interrupted(**_: object) -> int:  # what typer and click make of a KeyboardInterrupt
        if signal == "returns 130":  # typer, called with standalone_mode=False
            return 130
        raise typer.Abort() if signal == "abort" else SystemExit(130)

    monkeypatch.setattr(cli, "app", interrupted)
    with pytest.raises(SystemExit) as done:
        cli.main()
    assert done.value.code == 130
    assert "interrupted; finished runs are kept" in capsys.readouterr().err


def test_an_address_without_ray_is_refused_before_the_folder_is_made(tiny_zoo_toml: Path,
                                                                     tmp_path: Path):
    out = tmp_path / "z"
    assert_one_line_error(gengap("zoo", "train", str(tiny_zoo_toml), "--out", str(out),
                                 "--address", "auto"), "--address is for --executor ray",
                          "(see: gengap zoo train --help)")
    assert not out.exists()


def test_a_ray_address_nobody_answers_at_is_refused_at_once(tiny_zoo_toml: Path,
                                                             tmp_path: Path):
    """ray.init would retry a dead HOST:PORT for minutes; a closed local port is refused."""
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = tmp_path / "z"
    result = gengap("zoo", "train", str(tiny_zoo_toml), "--out", str(out),
                    "--executor", "ray", "--address", f"127.0.0.1:{port}")
    assert_one_line_error(result, f"ray: nothing answers at '127.0.0.1:{port}'")
    assert not out.exists()
    assert_one_line_error(gengap("zoo", "train", str(tiny_zoo_toml), "--out", str(out),
                                 "--executor", "ray", "--address", "headnode"),
                          "is not HOST:PORT")


def test_no_ray_cluster_at_auto_leaves_no_folder(tiny_zoo_toml: Path, tmp_path: Path,
                                                 monkeypatch):
    """`auto` is Ray's to resolve: with no cluster running, the connection fails before the
    zoo's folder is made (it used to leave a folder of pending runs), from the command and
    from Python alike."""
    pytest.importorskip("ray")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path / "no-ray"))  # no cluster's address file
    out = tmp_path / "z"
    result = gengap("zoo", "train", str(tiny_zoo_toml), "--out", str(out), "--executor", "ray",
                    "--address", "auto")
    assert_one_line_error(result, "ray: cannot reach a cluster at 'auto'")
    assert not out.exists()
    with pytest.raises(GengapError, match="cannot reach a cluster"):
        train_zoo(load_zoo_spec(tiny_zoo_toml), out, device="cpu", executor="ray",
                  address="auto")
    assert not out.exists()


def test_the_options_are_checked_once_by_the_command_and_once_by_the_python_api(
        tmp_path: Path, monkeypatch):
    """`zoo train` checked them in the command and again in train_zoo: with a Ray address,
    two connections to the cluster's head before the work."""
    from typer.testing import CliRunner

    from gengap.cli.app import app
    from gengap.zoo import run

    probed: list[str | None] = []
    monkeypatch.setattr(run, "check_reachable", probed.append)  # each check probes once
    spec = tmp_path / "one.toml"
    spec.write_text('[data]\ntrain_fraction = 0.1\n[arch]\nfamily = "mlp"\nwidth = 4\n'
                    'depth = 1\n[train]\nmax_epochs = 1\n')
    trained = CliRunner().invoke(app, ["zoo", "train", str(spec), "--out", str(tmp_path / "z"),
                                       "--device", "cpu"])
    assert trained.exit_code == 0, trained.output
    assert probed == [None]
    probed.clear()
    train_zoo(load_zoo_spec(spec), tmp_path / "z", device="cpu")  # finished: trains nothing
    assert probed == [None]


def test_ray_addresses_split_into_host_and_port():
    from gengap.errors import GengapError
    from gengap.zoo.ray_address import check_reachable, split_host_port

    assert split_host_port("10.0.0.2:6379") == ("10.0.0.2", 6379)
    assert split_host_port("[::1]:6379") == ("::1", 6379)
    for bad in ("6379", ":6379", "host:", "host:port", "host:70000", "host:0"):
        with pytest.raises(GengapError, match="is not HOST:PORT"):
            split_host_port(bad)
    for left_to_ray in (None, "auto", "local", "ray://head:10001"):
        check_reachable(left_to_ray)  # no probe, no error
    with socket_listening() as port:
        check_reachable(f"127.0.0.1:{port}")



@contextlib.contextmanager
def socket_listening() -> Iterator[int]:
    """A local port that accepts connections while the block runs."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


def test_brackets_in_names_and_paths_are_printed_as_they_are(tmp_path: Path):
    """Rich read "[/bold]" in a zoo name or a path as a closing tag and raised, after the work
    (and at every later `zoo status`)."""
    from typer.testing import CliRunner

    from gengap.cli.app import app

    spec = tmp_path / "odd.toml"
    spec.write_text('name = "odd[/bold] [x]"\n[data]\ntrain_fraction = 0.1\n'
                    '[arch]\nfamily = "mlp"\nwidth = 4\ndepth = 1\n[train]\nmax_epochs = 1\n')
    out = tmp_path / "runs[/i]" / "z"
    runner = CliRunner()
    trained = runner.invoke(app, ["zoo", "train", str(spec), "--out", str(out)])
    assert trained.exit_code == 0, trained.output
    status = runner.invoke(app, ["zoo", "status", str(out)])
    assert status.exit_code == 0, status.output
    assert f"zoo odd[/bold] [x] at {out}" in status.output
    table = out.parent / "e.parquet"
    exported = runner.invoke(app, ["zoo", "export", str(out), "--parquet", str(table)])
    assert exported.exit_code == 0 and "[/i]" in exported.output
    # a suffix in capitals passed the command's check, then the export refused it
    capitals = out.parent / "E.PARQUET"
    exported = runner.invoke(app, ["zoo", "export", str(out), "--parquet", str(capitals)])
    assert exported.exit_code == 0, exported.output
    assert len(pd.read_parquet(capitals)) == 1


def test_a_store_whose_spec_cannot_be_read_is_one_line(tiny_zoo_toml: Path, tmp_path: Path):
    store = Store.create(tmp_path / "z", load_zoo_spec(tiny_zoo_toml))
    store.close()
    with sqlite3.connect(tmp_path / "z" / "gengap.sqlite") as con:  # as an edit by hand
        con.execute("UPDATE meta SET value = '{\"train\": {\"lr\": null}}' "
                    "WHERE key = 'zoo_spec'")
    assert_one_line_error(gengap("zoo", "status", str(tmp_path / "z")),
                          "gengap.sqlite: holds a zoo spec this gengap cannot read")
    with sqlite3.connect(tmp_path / "z" / "gengap.sqlite") as con:
        con.execute("UPDATE runs SET spec = '{\"colour\": 1}'")
    reopened = Store(tmp_path / "z")
    with pytest.raises(GengapError, match="holds a run spec this gengap cannot read"):
        reopened.runs()
    reopened.close()


def test_data_and_networks_are_tried_before_the_folder_is_made(tmp_path: Path):
    """These stopped the zoo at its first run, leaving a folder of pending runs."""
    cases = {
        "classes.toml": ('[data]\nclasses = [0, 55]\n', "classes: digits has classes 0..9"),
        "heads.toml": ('[data]\nname = "modular"\n[arch]\nfamily = "transformer"\n'
                       'width = 10\nheads = 3\n', "width 10 is not divisible by heads 3"),
        "huge.toml": ('[arch]\nfamily = "mlp"\nwidth = 1000000\n', "GiB to train"),
    }
    for name, (text, problem) in cases.items():
        spec = tmp_path / name
        spec.write_text(text)
        out = tmp_path / f"zoo-{name}"
        assert_one_line_error(gengap("zoo", "train", str(spec), "--out", str(out)),
                              f"{name}: ", problem)
        assert not out.exists()


def test_a_bad_option_or_command_is_one_line_too(tmp_path: Path):
    """Click printed these as a boxed paragraph."""
    assert_one_line_error(gengap("zoo", "train", "x.toml", "--out", str(tmp_path / "z"),
                                 "--workers", "0"),
                          "Invalid value for '--workers'", "zoo train --help)")
    assert_one_line_error(gengap("nosuch"), "No such command 'nosuch'")
    helped = gengap("zoo", "train", "--help")
    assert helped.returncode == 0 and "--workers" in helped.stdout


def test_out_of_range_options_and_empty_selections_are_refused():
    """These were accepted: a billion resamples filled memory, a huge worker count overflowed
    a semaphore, an empty selection measured or ranked nothing with exit status 0."""
    from typer.testing import CliRunner

    from gengap.cli.app import app
    from gengap.measures import select

    runner = CliRunner()
    for args in (["evaluate", "x", "--bootstrap", "1000000000"],
                 ["evaluate", "x", "--min-ess", "-5"],
                 ["zoo", "train", "x.toml", "--out", "y", "--workers", "100000"],
                 ["predict", "combine", "x", "--max-measures", "0"],
                 ["pgdl", "predict", "t", "--measure", "params", "--out", "o",
                  "--time-per-model", "-5"]):
        assert runner.invoke(app, args).exit_code == 2, args
    empty = runner.invoke(app, ["evaluate", "x", "--metric", ""])
    assert "name one or more of tau, psi, cmi, robust" in str(empty.exception)
    for spec in ("", ",", " , "):
        with pytest.raises(GengapError, match="no measure named"):
            select(spec)


class OutOfMemoryError(RuntimeError):  # as torch names CUDA's, without needing a GPU
    pass


@pytest.mark.parametrize("failure", [
    MemoryError("Unable to allocate 745. GiB for an array"),
    OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"),
    RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate "
                 "memory: you tried to allocate 400000000000 bytes."),
])
def test_running_out_of_memory_is_one_line(monkeypatch, capsys, failure):
    import gengap.cli.app as cli

    def asks_too_much(**_: object) -> None:
        raise failure

    monkeypatch.setattr(cli, "app", asks_too_much)
    with pytest.raises(SystemExit) as done:
        cli.main()
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("gengap: error: not enough memory (") and err.count("\n") == 1


def test_other_runtime_errors_keep_their_traceback(monkeypatch):
    import gengap.cli.app as cli

    def bug(**_: object) -> None:
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    monkeypatch.setattr(cli, "app", bug)
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        cli.main()
