"""QA findings on the CLI's errors: each bad input is one line, exit status 2, naming what is
wrong (and, for an option, the command's --help); none is a traceback or silently accepted."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest
from test_evaluate_cli import grid_table
from typer.testing import CliRunner

from gengap.cli import app as cli
from gengap.errors import GengapError
from gengap.zoo import Store, load_zoo_spec

runner = CliRunner()
AXES = ["--hyperparameters", "width,lr,act"]
TOY = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "pgdl-toy"


def gengap(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """Run the installed entry point in-process: (exit status, stderr)."""
    monkeypatch.setattr(sys, "argv", ["gengap", *args])
    with pytest.raises(SystemExit) as done:
        cli.main()
        sys.exit(0)
    return done.value.code, capsys.readouterr().err


def one_line_error(monkeypatch, capsys, *args: str) -> str:
    code, err = gengap(monkeypatch, capsys, *args)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("gengap: error: "), err
    return err.strip()


@pytest.mark.parametrize("seed", ["-1", "4294967296"])
@pytest.mark.parametrize(("command", "extra"), [
    ("evaluate", ["--bootstrap", "10"]),
    ("predict cv", ["--folds", "2"]),
    ("predict fit", ["--folds", "2", "--save", "{p}"]),
])
def test_2_a_seed_outside_numpys_range_is_a_bad_option(tmp_path, monkeypatch, capsys,
                                                      command, extra, seed):
    table = grid_table(tmp_path / "t.csv")
    extra = [a.format(p=tmp_path / "p.json") for a in extra]
    err = one_line_error(monkeypatch, capsys, *command.split(), str(table), *AXES, *extra,
                         "--seed", seed)
    assert "Invalid value for '--seed'" in err and err.endswith(f"(see: gengap {command} --help)")
    assert not (tmp_path / "p.json").exists()


def test_6_a_malformed_csv_is_one_line(tmp_path, monkeypatch, capsys):
    ragged = tmp_path / "t_ragged.csv"
    ragged.write_text("w,lr,gap,m\n1,0.1,0.1\n2,0.1,0.2,4,5,6\n")
    for command in (["evaluate"], ["predict", "cv"]):
        err = one_line_error(monkeypatch, capsys, *command, str(ragged), "--hyperparameters",
                             "w,lr")
        assert err.endswith("unreadable table (Error tokenizing data. C error: Expected 4 "
                            "fields in line 3, saw 6)"), err


def test_7_an_unknown_feature_set_is_an_error_in_cv(tmp_path, monkeypatch, capsys):
    table = grid_table(tmp_path / "t.csv")
    err = one_line_error(monkeypatch, capsys, "predict", "cv", str(table), *AXES,
                         "--features", "weights,bogus")
    assert "'bogus' is neither a feature set (weights, measures, hyperparameters)" in err
    assert err.endswith("(see: gengap predict cv --help)")
    # column names still make one custom set
    named = runner.invoke(cli.app, ["predict", "cv", str(table), *AXES, "--folds", "2",
                                    "--features", "good,noise"])
    assert named.exit_code == 0, named.output
    assert "good,noise" in named.output


def test_7_fit_takes_one_feature_set(tmp_path, monkeypatch, capsys):
    table = grid_table(tmp_path / "t.csv")
    err = one_line_error(monkeypatch, capsys, "predict", "fit", str(table), *AXES,
                         "--features", "weights,measures", "--save", str(tmp_path / "p.json"))
    assert "fit takes one feature set (weights, measures, hyperparameters) or column names, " \
        "not 'weights,measures'" in err
    assert "no feature column" not in err and not (tmp_path / "p.json").exists()


@pytest.mark.skipif(not TOY.is_dir(), reason=f"shared fixtures not found at {TOY}")
@pytest.mark.parametrize("edit", ["string", "missing"])
def test_9_pgdl_score_blames_the_predict_file(tmp_path, edit):
    from gengap.interop.pgdl.scoring import score_predictions

    values = json.loads((TOY / "sample_submission.predict").read_text())
    if edit == "string":
        values["model_3"] = "abc"
    else:
        del values["model_3"]
    predictions = tmp_path / "toy.predict"
    predictions.write_text(json.dumps(values))
    scores = score_predictions(TOY, predictions)
    message = scores.tasks[0].message
    assert scores.tasks[0].status == "error" and message.startswith(f"{predictions}: "), message
    assert "not a number: 'abc'" in message if edit == "string" else "shape=" in message


def test_10_a_zoo_without_accuracies_says_so(tmp_path, tiny_zoo_toml, monkeypatch, capsys):
    store = Store.create(tmp_path / "zoo", load_zoo_spec(tiny_zoo_toml))
    for k, run in enumerate(store.runs()):  # as a PGDL import without reference metrics
        store.record(run.run_id, "done", {}, [])
        store.put_measures(run.run_id, {"params": (float(k), 0.0)})
    store.close()
    err = one_line_error(monkeypatch, capsys, "evaluate", str(tmp_path / "zoo"))
    assert err == f"gengap: error: {tmp_path / 'zoo'}: no gap: the models record no train_acc " \
        "or test_acc"
    table = tmp_path / "t.csv"
    pd.DataFrame({"lr": [1, 2], "test_acc": [0.5, 0.6], "m": [1, 2]}).to_csv(table, index=False)
    err = one_line_error(monkeypatch, capsys, "evaluate", str(table), "--hyperparameters", "lr")
    assert err.endswith(f"{table}: no gap: the models record no train_acc")


def test_11_too_few_models_names_the_fold_and_counts_the_data(tmp_path, monkeypatch, capsys):
    table = tmp_path / "t.csv"
    pd.DataFrame({"lr": [0.01, 1e6], "test_acc": [0.8, 0.1], "m": [1.0, 2.0]}).to_csv(
        table, index=False)
    err = one_line_error(monkeypatch, capsys, "predict", "cv", str(table), "--hyperparameters",
                         "lr", "--folds", "2", "--features", "m")
    assert "holding out fold 1 of 2 leaves 1 of the 2 models with a known 'test_acc' to fit " \
        "on; a predictor needs at least two" in err
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    pd.read_csv(table).iloc[:1].to_csv(first, index=False)
    pd.read_csv(table).iloc[1:].to_csv(second, index=False)
    err = one_line_error(monkeypatch, capsys, "predict", "cv", str(first), str(second),
                         "--hyperparameters", "lr", "--by-zoo", "--features", "m")
    assert "holding out zoo 'a' leaves 1 of the 2 models" in err, err


@pytest.mark.parametrize(("args", "option", "command"), [
    (["--executor", "foo"], "--executor", "zoo train"),
    (["--population", "maybe"], "--population", "zoo train"),
    (["--device", "gpu"], "--device", "zoo train"),
])
def test_12_bad_train_options_point_at_help(tmp_path, tiny_zoo_toml, monkeypatch, capsys,
                                            args, option, command):
    out = tmp_path / "z"
    err = one_line_error(monkeypatch, capsys, "zoo", "train", str(tiny_zoo_toml), "--out",
                         str(out), *args)
    assert err.startswith(f"gengap: error: Invalid value for '{option}': ")
    assert err.endswith(f"(see: gengap {command} --help)") and not out.exists()


@pytest.mark.parametrize(("args", "fragment"), [
    (["evaluate", "{t}", *AXES, "--grid", "bogus", "--metric", "cmi"],
     "Invalid value for '--grid': must be strict or largest, not 'bogus' "
     "(see: gengap evaluate --help)"),
    (["evaluate", "{t}", *AXES, "--metric", "taus"],
     "Invalid value for '--metric': unknown metric 'taus'"),
    (["study", "randomization", "--scale", "tiny", "--out", "{o}"],
     "Invalid value for '--scale': unknown scale 'tiny' (use smoke, default, full) "
     "(see: gengap study randomization --help)"),
    (["study", "randomization", "--population", "maybe", "--out", "{o}"],
     "(see: gengap study randomization --help)"),
])
def test_12_other_bad_option_values_point_at_help(tmp_path, monkeypatch, capsys, args,
                                                  fragment):
    table = grid_table(tmp_path / "t.csv")
    args = [a.format(t=table, o=tmp_path / "s") for a in args]
    assert fragment in one_line_error(monkeypatch, capsys, *args)
    assert not (tmp_path / "s").exists()


@pytest.fixture
def predictor(tmp_path) -> tuple[Path, Path]:
    table = grid_table(tmp_path / "t.csv")
    saved = tmp_path / "p.json"
    fit = runner.invoke(cli.app, ["predict", "fit", str(table), *AXES, "--features", "weights",
                                  "--save", str(saved), "--folds", "2"])
    assert fit.exit_code == 0, fit.output
    return saved, table


@pytest.mark.parametrize(("target", "message"), [
    ("nonsense", "unknown target 'nonsense' (a predictor predicts gap, test_error, test_acc"),
    ("train_acc", "target 'train_acc', but the predictions recorded at training time are of "
                  "'test_acc'; the file was changed or damaged"),
    ("gap", "are of 'test_acc'"),
])
def test_15_an_edited_predictor_target_is_refused(predictor, tmp_path, target, message):
    saved, table = predictor
    data = json.loads(saved.read_text())
    data["target"] = target
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(data))
    result = runner.invoke(cli.app, ["predict", "apply", str(edited), str(table), *AXES])
    assert isinstance(result.exception, GengapError), result.output
    assert str(result.exception).startswith(f"{edited}: ") and message in str(result.exception)
    kept = runner.invoke(cli.app, ["predict", "apply", str(saved), str(table), *AXES])
    assert kept.exit_code == 0, kept.output


def test_15_fit_refuses_a_target_a_predictor_cannot_have(tmp_path, monkeypatch, capsys):
    table = grid_table(tmp_path / "t.csv")
    err = one_line_error(monkeypatch, capsys, "predict", "fit", str(table), *AXES,
                         "--target", "good", "--save", str(tmp_path / "p.json"))
    assert "Invalid value for '--target': unknown target 'good'" in err
    assert err.endswith("(see: gengap predict fit --help)")


def measured_zoo(path: Path, spec_toml: Path) -> Path:
    """A zoo whose runs are done, with accuracies and one measure: nothing trained."""
    store = Store.create(path, load_zoo_spec(spec_toml))
    for k, run in enumerate(store.runs()):
        store.record(run.run_id, "done", {"train_acc": 1.0, "test_acc": 0.5 + 0.1 * k}, [])
        store.put_measures(run.run_id, {"params": (float(k), 0.0)})
    store.close()
    return path


@pytest.mark.parametrize(("command", "sources"), [
    ("evaluate", ["{t}", *AXES]),
    ("evaluate", ["{z}"]),
    ("predict cv", ["{t}", *AXES]),
    ("predict combine", ["{t}", "{u}", *AXES]),
    ("report", ["{z}", "--out", "{o}"]),
])
def test_an_unknown_target_is_a_bad_option(tmp_path, tiny_zoo_toml, monkeypatch, capsys,
                                           command, sources):
    table = grid_table(tmp_path / "t.csv")
    zoo = measured_zoo(tmp_path / "zoo", tiny_zoo_toml)
    places = dict(t=table, u=grid_table(tmp_path / "u.csv"), z=zoo, o=tmp_path / "r.html")
    err = one_line_error(monkeypatch, capsys, *command.split(),
                         *(a.format(**places) for a in sources), "--target", "bogus")
    assert "Invalid value for '--target': " in err and "unknown target 'bogus'" in err
    assert err.endswith(f"(see: gengap {command} --help)")


ONE_MODEL = ["--arch", "family=mlp,width=8,depth=1", "--data", "digits"]


@pytest.mark.parametrize("args", [
    ["measure", "{w}", *ONE_MODEL, "--measures", "bogus",
     "Invalid value for '--measures': unknown measure or group 'bogus'"],
    ["measure", "{d}", "--measures", ",",
     "Invalid value for '--measures': no measure named in ','"],
    ["measure", "{w}", *ONE_MODEL, "--measures", "frobenius_distance",
     "Invalid value for '--measures': cannot compute on a single model: frobenius_distance "
     "needs --init"],
    ["measure", "{w}", "--data", "digits", "measuring one model needs --arch and --data"],
    *(["measure", "{w}", *ONE_MODEL, *flag, "--recompute and --workers are for a zoo folder; "
       "one file is measured once, in this process"]  # were silently ignored
      for flag in (["--recompute"], ["--workers", "2"])),
    ["measure", "{d}", "--arch", "family=mlp",
     "--arch, --data, --init and --out are for a single .safetensors file"],
    ["spectra", "{w}", "--which", "init", "--which is for ZOO_DIR/RUN_ID, not a weight file"],
    ["spectra", "{d}/run", "--which", "../final",
     "Invalid value for '--which': must be final, init or epoch<N>, not '../final'"],
])
def test_measure_and_spectra_option_errors_point_at_help(tmp_path, monkeypatch, capsys, args):
    *args, message = args
    weights = tmp_path / "final.safetensors"
    weights.write_bytes(b"")  # each error comes before the file is read
    err = one_line_error(monkeypatch, capsys, *(a.format(w=weights, d=tmp_path) for a in args))
    assert message in err and err.endswith(f"(see: gengap {args[0]} --help)"), err


@pytest.mark.parametrize(("args", "message"), [
    (["evaluate", "{t}", *AXES, "--out", "{d}/r.txt"], "'--out': {d}/r.txt: write .csv or"),
    (["evaluate", "{t}", *AXES, "--out", "{t}"], "'--out': {t}: is an input of this command"),
    (["evaluate", "{t}", *AXES, "--out", "{d}/f.csv"], "'--out': {d}/f.csv: is a folder"),
    (["evaluate", "{t}", *AXES, "--out", "{t}/x.csv"],
     "'--out': {t}/x.csv: cannot make its folder ({t} is a file)"),
    (["evaluate", "{t}", *AXES, "--out", "{d}/plain"],
     "'--out': {d}/plain: is a folder; name a .csv or .parquet file"),
    (["predict", "cv", "{t}", *AXES, "--out", "{t}"], "'--out': {t}: is an input"),
    (["predict", "fit", "{t}", *AXES, "--save", "{d}/p.txt"], "'--save': {d}/p.txt: write .json"),
    (["predict", "apply", "{d}/p.json", "{t}", *AXES, "--out", "{d}/x.txt"],
     "'--out': {d}/x.txt: write"),
    (["predict", "combine", "{t}", *AXES, "--out", "{d}/x.txt"], "'--out': {d}/x.txt: write"),
    (["zoo", "export", "{z}", "--parquet", "{z}/gengap.sqlite"], "'--parquet': {z}/gengap.sqlite"),
    (["report", "{z}", "-o", "{d}/r.csv"], "'--out': {d}/r.csv: write .html or .htm"),
    (["spectra", "{w}", "--out", "{d}/s.txt"], "'--out': {d}/s.txt: write .csv"),
    (["measure", "{w}", *ONE_MODEL, "--out", "{w}"], "'--out': {w}: write .json or .csv"),
    (["pgdl", "score", "--reference", "{d}", "--predictions", "{d}", "--out", "{t}"],
     "'--out': {t}: write .txt"),
])
def test_a_bad_output_path_is_a_bad_option(tmp_path, tiny_zoo_toml, monkeypatch, capsys, args,
                                           message):
    """--out's wrong suffix, own input or folder named no option and no --help."""
    places = dict(t=grid_table(tmp_path / "t.csv"), d=tmp_path, w=tmp_path / "w.safetensors",
                  z=measured_zoo(tmp_path / "zoo", tiny_zoo_toml))
    places["w"].write_bytes(b"")
    (tmp_path / "f.csv").mkdir()
    (tmp_path / "plain").mkdir()
    command = " ".join(args[:2] if args[0] in ("predict", "zoo", "pgdl") else args[:1])
    err = one_line_error(monkeypatch, capsys, *(a.format(**places) for a in args))
    assert f"gengap: error: Invalid value for {message.format(**places)}" in err, err
    assert err.endswith(f"(see: gengap {command} --help)"), err


def test_an_output_folder_at_fault_points_at_help(tmp_path, monkeypatch, capsys):
    task = tmp_path / "task"
    task.mkdir()
    err = one_line_error(monkeypatch, capsys, "pgdl", "import", str(task), "--out",
                         str(task / "zoo"))
    assert f"{task / 'zoo'}: is inside {task}, an input of this command" in err
    assert err.endswith("(see: gengap pgdl import --help)") and not (task / "zoo").exists()
    if TOY.is_dir():
        taken = tmp_path / "a_file"
        taken.write_text("kept")
        err = one_line_error(monkeypatch, capsys, "pgdl", "predict", str(TOY), "--measure",
                             "params", "--out", str(taken))
        assert f"Invalid value for '--out': {taken}: exists and is not a folder" in err
        assert err.endswith("(see: gengap pgdl predict --help)") and taken.read_text() == "kept"
    # an unknown measure read "unknown measure ..." without the option or the help
    err = one_line_error(monkeypatch, capsys, "pgdl", "predict", str(task), "--measure",
                         "nosuch", "--out", str(tmp_path / "o"))
    assert err.startswith("gengap: error: Invalid value for '--measure': unknown measure "
                          "'nosuch'") and err.endswith("(see: gengap pgdl predict --help)")


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_output_paths_not_given_or_refused_by_the_system_name_no_option(
        tmp_path, tiny_zoo_toml, monkeypatch, capsys):
    from gengap.cli.outputs import output_file

    table = grid_table(tmp_path / "t.csv")
    err = one_line_error(monkeypatch, capsys, "evaluate", str(table), *AXES, "--out",
                         "/proc/x.csv")  # the system's refusal, not a mistake of the option
    assert "/proc/x.csv: cannot write" in err and "Invalid value" not in err
    assert "--help" not in err
    zoo = measured_zoo(tmp_path / "zoo", tiny_zoo_toml)
    (zoo / "report.html").mkdir()  # the default place, which no option named
    err = one_line_error(monkeypatch, capsys, "report", str(zoo))
    assert f"{zoo / 'report.html'}: is a folder" in err and "Invalid value" not in err
    with pytest.raises(GengapError) as outside_a_command:  # from Python: no command to name
        output_file(tmp_path / "r.txt", (".csv",))
    assert outside_a_command.value.command_path is None


@pytest.mark.parametrize(("args", "message"), [
    (["{t}", *AXES, "--data-dir", "{d}"], "{t}: --data-dir is for zoos (to count their test"),
    (["{t}"], "{t}: a table needs --hyperparameters a,b,..."),
    (["{z}", "--hyperparameters", "lr"], "{z}: --hyperparameters is for tables"),
    (["{z}", "--measures", "params"], "{z}: --measures is for tables"),
])
def test_evaluate_table_and_zoo_options_point_at_help(tmp_path, tiny_zoo_toml, monkeypatch,
                                                      capsys, args, message):
    places = dict(t=grid_table(tmp_path / "t.csv"), d=tmp_path,
                  z=measured_zoo(tmp_path / "zoo", tiny_zoo_toml))
    err = one_line_error(monkeypatch, capsys, "evaluate", *(a.format(**places) for a in args))
    assert message.format(**places) in err and err.endswith("(see: gengap evaluate --help)")


def test_a_malformed_ray_address_is_a_bad_option(tmp_path, tiny_zoo_toml, monkeypatch, capsys):
    out = tmp_path / "z"
    err = one_line_error(monkeypatch, capsys, "zoo", "train", str(tiny_zoo_toml), "--out",
                         str(out), "--executor", "ray", "--address", "headnode")
    assert "Invalid value for '--address': ray: address 'headnode' is not HOST:PORT" in err
    assert err.endswith("(see: gengap zoo train --help)") and not out.exists()


@pytest.mark.parametrize(("args", "expected"), [
    (["predict", "cv", "{zoo}", "--hyperparameters", "width"],
     "Invalid value for '--hyperparameters': width: only zoos given; hyperparameters name table "
     "columns, a zoo's are its spec's axes (see: gengap predict cv --help)"),
    (["measure", "{zoo}", "--profile", "--workers", "2"],
     "--profile times one process: use it with --workers 1 (see: gengap measure --help)"),
])
def test_options_that_do_not_fit_a_zoo_name_the_help(tmp_path, tiny_zoo_toml, monkeypatch,
                                                     capsys, args, expected):
    Store.create(tmp_path / "zoo", load_zoo_spec(tiny_zoo_toml)).close()
    err = one_line_error(monkeypatch, capsys, *(a.format(zoo=tmp_path / "zoo") for a in args))
    assert err == f"gengap: error: {expected}"


def test_zoo_status_shows_whole_epochs_beside_pending_runs(tmp_path: Path):
    from gengap.zoo.spec_file import parse_zoo_spec

    store = Store.create(tmp_path / "z", parse_zoo_spec({"seeds": [0, 1]}))
    first = store.runs()[0].run_id
    store.record(first, "done", {"train_acc": 0.5, "test_acc": 0.25, "gap": 0.25,
                                 "epochs": 60}, [])
    store.close()
    shown = runner.invoke(cli.app, ["zoo", "status", str(tmp_path / "z")], terminal_width=200)
    assert shown.exit_code == 0, shown.output
    done_row = next(line for line in shown.output.splitlines() if first in line)
    # the pending run's NaN made the column float: 60.000
    assert done_row.rstrip(" │").endswith(" 60") and "60.000" not in shown.output
    pending_row = next(line for line in shown.output.splitlines() if "pending" in line
                       and "│" in line)
    assert pending_row.rstrip(" │").endswith("–")


def test_a_blank_zoo_name_is_refused():
    from gengap.zoo.spec_file import parse_zoo_spec

    for name in ("", "  "):
        with pytest.raises(GengapError, match="b.toml: name: a zoo needs a name that is not "
                           "blank"):
            parse_zoo_spec({"name": name}, "b.toml")


@pytest.mark.parametrize("group", [[], ["zoo"], ["predict"], ["study"]])
def test_a_groups_command_list_reads_each_summary_as_one_paragraph(group):
    """Typer's rich help kept the docstrings' line breaks in a group's list of commands."""
    shown = runner.invoke(cli.app, [*group, "--help"], env={"COLUMNS": "400"})
    assert shown.exit_code == 0
    listed = [line for line in shown.output.splitlines() if line.startswith("│ ")]
    names = [line.split()[1] for line in listed if line[2] != " "]
    assert len(names) >= 3
    # with room enough, every command's summary is on its name's line
    assert all(line[2] != " " for line in listed), shown.output
