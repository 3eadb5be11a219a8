"""`gengap evaluate` and `gengap predict` on tables the tests write (no training needed)."""

import itertools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from gengap.cli.app import app
from gengap.errors import GengapError
from gengap.evaluate.predictors import configurations
from gengap.zoo import Store, load_zoo_spec

runner = CliRunner()


def grid_table(path: Path, seed: int = 0, holes: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(list(itertools.product([8, 16], [0.01, 0.1], ["relu", "tanh"])),
                         columns=["width", "lr", "act"])
    frame = pd.concat([frame.assign(seed=s) for s in range(3)], ignore_index=True)
    frame["train_acc"] = 1.0
    frame["test_acc"] = 0.9 - 0.1 * (frame["lr"] > 0.05) + rng.normal(scale=0.02,
                                                                       size=len(frame))
    gap = frame["train_acc"] - frame["test_acc"]
    frame["good"] = gap + rng.normal(scale=0.01, size=len(frame))
    frame["noise"] = rng.normal(size=len(frame))
    frame["wstat.l0.weight.var"] = gap * 3 + rng.normal(scale=0.01, size=len(frame))
    frame = frame.iloc[holes:]
    frame.to_csv(path, index=False)
    return path


def test_evaluate_a_table_with_every_metric(tmp_path):
    table = grid_table(tmp_path / "zoo.csv")
    out = tmp_path / "ranked.parquet"
    result = runner.invoke(app, [
        "evaluate", str(table), "--hyperparameters", "width,lr,act", "--metric",
        "tau,psi,cmi,robust", "--target", "test_error", "--bootstrap", "100", "--min-ess", "1",
        "--test-size", "1000", "--out", str(out)])
    assert result.exit_code == 0, result.output
    ranked = pd.read_parquet(out)
    assert list(ranked["measure"]) == ["good", "noise"]  # wstat.* is predictor input only
    assert list(ranked.columns[:3]) == ["measure", "tau", "psi"]
    for column in ("tau_low", "psi_high", "cmi", "cmi[0]", "cmi[2]", "robust_mean",
                   "robust_max", "robust_envs", "psi[lr]"):
        assert column in ranked.columns
    assert ranked.loc[0, "tau"] > 0.5 and ranked.loc[0, "cmi"] > ranked.loc[1, "cmi"]


def test_output_files_are_checked_before_the_work_and_their_folder_made(tmp_path):
    table = grid_table(tmp_path / "zoo.csv")
    args = ["evaluate", str(table), "--hyperparameters", "width,lr,act", "--bootstrap", "0"]
    wrong = runner.invoke(app, [*args, "--out", str(tmp_path / "ranked.txt")])
    assert isinstance(wrong.exception, GengapError) and "write .csv or .parquet" in str(
        wrong.exception)
    assert "measures against" not in wrong.output  # refused before ranking anything
    deep = tmp_path / "new" / "folder" / "ranked.csv"
    made = runner.invoke(app, [*args, "--out", str(deep)])
    assert made.exit_code == 0, made.output
    assert list(pd.read_csv(deep)["measure"]) == ["good", "noise"]


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_a_refused_table_write_is_one_line():
    from gengap.table_file import write_table

    with pytest.raises(GengapError, match=r"/proc/gengap-refused.csv: cannot write"):
        write_table(pd.DataFrame({"a": [1]}), Path("/proc/gengap-refused.csv"))


def test_an_output_folder_that_is_not_writable_is_refused_before_the_work(tmp_path,
                                                                        monkeypatch):
    from gengap.cli import outputs

    # the test may run as root, who writes anywhere: the system's refusal of the trial file
    # (the writers' own temporary file) is simulated
    write_text = Path.write_text

    def refused(self: Path, *args, **kwargs):
        if self.parent == tmp_path:
            raise PermissionError(13, "Permission denied")
        return write_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", refused)
    with pytest.raises(GengapError, match=r"ranked.csv: cannot write \(Permission denied\)"):
        outputs.output_file(tmp_path / "ranked.csv", (".csv",))
    assert outputs.output_file(tmp_path / "sub" / "ranked.csv", (".csv",))


@pytest.mark.slow  # a fresh interpreter imports all of gengap
def test_an_incomplete_grid_is_one_line_and_exit_2(tmp_path):
    table = grid_table(tmp_path / "zoo.csv", holes=1)
    args = ["evaluate", str(table), "--hyperparameters", "width,lr,act", "--metric", "cmi"]
    done = subprocess.run([sys.executable, "-m", "gengap.cli", *args], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "The data are not complete!" in done.stderr
    result = runner.invoke(app, [*args, "--grid", "largest"])
    assert result.exit_code == 0, result.output
    assert "largest complete sub-grid" in result.output


def test_predict_fit_apply_cv_and_combine(tmp_path):
    first, second = grid_table(tmp_path / "a.csv", 0), grid_table(tmp_path / "b.csv", 1)
    model = tmp_path / "p.json"
    axes = ["--hyperparameters", "width,lr,act"]
    fit = runner.invoke(app, ["predict", "fit", str(first), "--features", "weights",
                              "--target", "gap", "--save", str(model), "--folds", "3", *axes])
    assert fit.exit_code == 0, fit.output
    assert model.is_file() and "cross-validated R^2" in fit.output
    out = tmp_path / "predicted.csv"
    applied = runner.invoke(app, ["predict", "apply", str(model), str(second), "--out",
                                  str(out), *axes])
    assert applied.exit_code == 0, applied.output
    predicted = pd.read_csv(out)
    truth = 1.0 - pd.read_csv(second)["test_acc"]
    assert np.corrcoef(predicted["predicted_gap"], truth)[0, 1] > 0.8
    cv = runner.invoke(app, ["predict", "cv", str(first), str(second), "--by-zoo",
                             "--target", "gap", *axes])
    assert cv.exit_code == 0, cv.output
    assert "weights" in cv.output and "hyperparameters" in cv.output
    combined = runner.invoke(app, ["predict", "combine", str(first), str(second), *axes])
    assert combined.exit_code == 0, combined.output
    assert "good" in combined.output


def test_apply_says_why_tau_has_no_value(tmp_path):
    first = grid_table(tmp_path / "a.csv", 0)
    same = pd.read_csv(grid_table(tmp_path / "b.csv", 1)).assign(**{"wstat.l0.weight.var": 0.3})
    same.to_csv(tmp_path / "same.csv", index=False)
    model, axes = tmp_path / "p.json", ["--hyperparameters", "width,lr,act"]
    fit = runner.invoke(app, ["predict", "fit", str(first), "--features", "weights",
                              "--target", "gap", "--save", str(model), "--folds", "3", *axes])
    assert fit.exit_code == 0, fit.output
    applied = runner.invoke(app, ["predict", "apply", str(model), str(tmp_path / "same.csv"),
                                  *axes], env={"COLUMNS": "300"})
    assert applied.exit_code == 0, applied.output
    assert ("Kendall tau nan (every prediction is the same: no order to compare)"
            in applied.output)


def test_no_command_writes_over_its_own_input_or_a_foreign_file(tmp_path, tiny_zoo_toml):
    table = grid_table(tmp_path / "t.csv")
    kept = table.read_bytes()
    axes = ["--hyperparameters", "width,lr,act"]
    cases = {
        "is an input of this command too": [
            ["evaluate", str(table), *axes, "--bootstrap", "0", "--out", str(table)],
            ["predict", "cv", str(table), *axes, "--out", str(table)],
            ["predict", "combine", str(table), *axes, "--out", str(table)],
        ],
        "write .json": [["predict", "fit", str(table), *axes, "--save", str(tmp_path / "p.txt")]],
        "write .txt": [["pgdl", "score", "--reference", str(tmp_path), "--predictions",
                        str(tmp_path), "--out", str(table)]],
    }
    for message, commands in cases.items():
        for command in commands:
            result = runner.invoke(app, command)
            assert isinstance(result.exception, GengapError), (command, result.output)
            assert message in str(result.exception), (command, str(result.exception))
    assert table.read_bytes() == kept
    # a zoo's own database was overwritten by an export (and by predict fit --save)
    zoo = tmp_path / "zoo"
    store = Store.create(zoo, load_zoo_spec(tiny_zoo_toml))
    store.close()
    database = (zoo / "gengap.sqlite").read_bytes()
    for command in (["zoo", "export", str(zoo), "--parquet", str(zoo / "gengap.sqlite")],
                    ["predict", "fit", str(zoo), "--save", str(zoo / "gengap.sqlite")]):
        result = runner.invoke(app, command)
        assert isinstance(result.exception, GengapError), (command, result.output)
    # nor through a link of the right suffix that points at the database
    for name, command in (("out.csv", ["evaluate", str(table), *axes, "--bootstrap", "0",
                                       "--out"]),
                          ("out.parquet", ["zoo", "export", str(zoo), "--parquet"]),
                          ("out.html", ["report", str(zoo), "-o"])):
        link = tmp_path / name
        link.symlink_to(zoo / "gengap.sqlite")
        result = runner.invoke(app, [*command, str(link)])
        assert isinstance(result.exception, GengapError), (command, result.output)
        assert f"{link}: a link to {(zoo / 'gengap.sqlite').resolve()}, not a" in str(
            result.exception)
    assert (zoo / "gengap.sqlite").read_bytes() == database
    assert Store(zoo).counts()["pending"] == 4 and len(database) > 0


def test_a_source_given_twice_or_a_run_in_two_sources_is_refused(tmp_path):
    """`predict cv zoo zoo --by-zoo` scored a zoo against its own copy: R^2 and tau of 1."""
    table = grid_table(tmp_path / "t.csv")
    axes = ["--hyperparameters", "width,lr,act"]
    twice = runner.invoke(app, ["predict", "cv", str(table), str(table), "--by-zoo", *axes])
    assert "t.csv: given twice" in str(twice.exception)
    frame = pd.read_csv(table).assign(run_id=lambda f: [f"r{i}" for i in range(len(f))])
    frame.to_csv(tmp_path / "a.csv", index=False)
    frame.to_parquet(tmp_path / "a_export.parquet", index=False)
    copied = runner.invoke(app, ["predict", "cv", str(tmp_path / "a.csv"),
                                 str(tmp_path / "a_export.parquet"), "--by-zoo", *axes])
    assert "a_export.parquet: run r0 is in" in str(copied.exception)


def test_a_table_with_text_for_numbers_or_a_missing_table_is_one_line(tmp_path):
    table = grid_table(tmp_path / "t.csv")
    args = ["evaluate", str(table), "--hyperparameters", "width,lr,act", "--bootstrap", "0"]
    named = runner.invoke(app, [*args, "--measures", "act"])  # a text column as a measure
    assert str(named.exception) == f"{table}: column 'act' holds 'relu', not a number"
    frame = pd.read_csv(table).astype({"test_acc": object})
    frame.loc[3, "test_acc"] = "high"
    frame.to_csv(table, index=False)
    text = runner.invoke(app, args)  # was a ValueError from the bootstrap
    assert str(text.exception) == f"{table}: column 'test_acc' holds 'high', not a number"
    predicted = runner.invoke(app, ["predict", "cv", str(table), "--hyperparameters", "width"])
    assert str(predicted.exception) == str(text.exception)
    missing = runner.invoke(app, ["evaluate", str(tmp_path / "none.csv")])
    assert str(missing.exception) == f"{tmp_path / 'none.csv'}: no such file"
    missing = runner.invoke(app, ["predict", "cv", str(tmp_path / "none.csv")])
    assert str(missing.exception) == f"{tmp_path / 'none.csv'}: no such file"


def test_predict_apply_refuses_a_bad_file(tmp_path):
    table = grid_table(tmp_path / "a.csv")
    for path, message in ((tmp_path / "nope.json", "no such predictor file"),
                          (tmp_path / "garbage.json", "not a predictor file")):
        if path.name == "garbage.json":
            path.write_text("garbage")
        result = runner.invoke(app, ["predict", "apply", str(path), str(table)])
        assert isinstance(result.exception, GengapError), result.output
        assert message in str(result.exception) and "\n" not in str(result.exception)


def test_evaluate_a_zoo_store_with_seeds_and_counted_test_sizes(tmp_path, tiny_zoo_toml):
    from gengap.zoo import Store, evaluate_zoo, load_zoo_spec

    text = tiny_zoo_toml.read_text().replace("seeds = [0]", "seeds = [0, 1]")
    tiny_zoo_toml.write_text(text)
    store = Store.create(tmp_path / "zoo", load_zoo_spec(tiny_zoo_toml))
    rng = np.random.default_rng(0)
    for run in store.runs():
        test_acc = 0.9 - 0.3 * run.train.lr + 0.01 * run.seed
        store.record(run.run_id, "done", {"train_acc": 1.0, "test_acc": test_acc}, [])
        store.put_measures(run.run_id, {"lr_only": (run.train.lr, 0.0),
                                        "oracle": (1.0 - test_acc, 0.0),
                                        "noise": (float(rng.normal()), 0.0),
                                        "wstat.l0.weight.mean": (0.5, 0.0)})
    table = evaluate_zoo(store, "gap", ("tau", "psi", "cmi", "robust"), min_ess=1)
    assert table["measure"].tolist()[0] == "oracle"
    assert "wstat.l0.weight.mean" not in table["measure"].tolist()  # predictor input only
    cmi = table.set_index("measure")["cmi"]
    assert cmi["oracle"] == pytest.approx(100.0)  # seeds are replicates, not axes
    assert cmi["lr_only"] == 0.0  # all it knows is the learning rate: nothing once given it
    # digits keeps 450 test examples: gaps 0.009 apart are within its noise (weight 0)...
    assert (table["robust_envs"] == 0).all()
    # ...with 100,000 test examples they count, and the oracle makes no sign error
    table = evaluate_zoo(store, "gap", ("robust",), min_ess=1, test_size=100_000)
    robust = table.set_index("measure")
    assert robust.loc["oracle", "robust_mean"] == 0.0 and robust.loc["oracle", "robust_envs"] > 0


def test_table_options_on_a_zoo_are_refused_not_ignored(tmp_path, tiny_zoo_toml):
    """`evaluate ZOO --hyperparameters lr` ran over the spec's axes as if it were not given."""
    store = Store.create(tmp_path / "zoo", load_zoo_spec(tiny_zoo_toml))
    store.close()
    named = runner.invoke(app, ["evaluate", str(tmp_path / "zoo"), "--hyperparameters", "lr"])
    assert isinstance(named.exception, GengapError)
    assert str(named.exception) == (
        f"{tmp_path / 'zoo'}: --hyperparameters is for tables; a zoo's hyperparameters are "
        "the axes of its spec (arch.width, train.lr)")
    measures = runner.invoke(app, ["evaluate", str(tmp_path / "zoo"), "--measures", "a,b"])
    assert "--measures is for tables; a zoo ranks every measure it stores" in str(
        measures.exception)


def test_data_dir_is_for_zoos(tmp_path):
    """A table's test-set sizes are its column or --test-size: --data-dir is refused, not
    ignored."""
    table = grid_table(tmp_path / "zoo.csv")
    result = runner.invoke(app, ["evaluate", str(table), "--hyperparameters", "width,lr,act",
                                 "--data-dir", str(tmp_path)])
    assert isinstance(result.exception, GengapError)
    assert str(result.exception) == f"{table}: --data-dir is for zoos (to count their test sets)"


def test_predict_takes_a_missing_hyperparameter_value_and_sources_of_other_axes(tmp_path):
    """A NaN in a hyperparameter column (or a source without that column) crashed predict cv
    and fit with a TypeError from the configuration labels."""
    table = grid_table(tmp_path / "t.csv")
    frame = pd.read_csv(table)
    frame.loc[frame["lr"] == 0.1, "lr"] = np.nan  # one setting unrecorded, in every seed
    frame.to_csv(tmp_path / "nan.csv", index=False)
    frame.drop(columns=["act"]).to_csv(tmp_path / "no_act.csv", index=False)
    axes = ["--hyperparameters", "width,lr,act", "--folds", "2", "--target", "gap"]
    for sources in ([tmp_path / "nan.csv"], [table, tmp_path / "no_act.csv"]):
        result = runner.invoke(app, ["predict", "cv", *map(str, sources), *axes])
        assert result.exit_code == 0, (sources, result.output, result.exception)
        assert "RuntimeWarning" not in result.output
    fit = runner.invoke(app, ["predict", "fit", str(tmp_path / "nan.csv"), *axes, "--save",
                              str(tmp_path / "p.json")])
    assert fit.exit_code == 0, (fit.output, fit.exception)
    # the unrecorded setting is one configuration: its seeds are never split across folds
    labels = configurations(frame, ["width", "lr", "act"])
    assert len(set(labels)) == 8 and len(set(labels[frame["lr"].isna().to_numpy()])) == 4


def test_a_tables_test_size_column_weighs_the_robust_error(tmp_path):
    """A table's own test_size column (a zoo export has one) was ignored for 10,000."""
    table = grid_table(tmp_path / "t.csv")
    pd.read_csv(table).assign(test_size=60).to_csv(tmp_path / "sized.csv", index=False)
    args = ["--hyperparameters", "width,lr,act", "--metric", "robust", "--bootstrap", "0",
            "--min-ess", "1"]

    def robust(*extra: str) -> tuple[pd.DataFrame, str]:
        out = tmp_path / "r.csv"
        result = runner.invoke(app, ["evaluate", *extra, *args, "--out", str(out)])
        assert result.exit_code == 0, (result.output, result.exception)
        return pd.read_csv(out).set_index("measure"), " ".join(result.output.split())

    own, said = robust(str(tmp_path / "sized.csv"))
    given, _ = robust(str(table), "--test-size", "60")
    assumed, noted = robust(str(table))
    pd.testing.assert_frame_equal(own, given)
    assert not own.equals(assumed)  # 60 test examples leave fewer gaps above the noise
    assert "no test_size column" not in said
    assert "robust: the table has no test_size column, so every run's gaps are taken as " \
           "measured on 10,000 test examples (the paper's)" in noted


def test_predict_apply_tells_training_runs_by_run_id_not_by_zoo_name(tmp_path):
    """apply named "part of its training" by zoo name: a copy of the training table under
    another name scored R^2 1 as if held out, and another zoo of the same name was flagged."""
    frame = pd.read_csv(grid_table(tmp_path / "t.csv"))
    frame.assign(run_id=[f"r{i}" for i in range(len(frame))]).to_csv(tmp_path / "train.csv",
                                                                      index=False)
    axes = ["--hyperparameters", "width,lr,act"]
    model = tmp_path / "p.json"
    fit = runner.invoke(app, ["predict", "fit", str(tmp_path / "train.csv"), *axes, "--folds",
                              "2", "--target", "gap", "--save", str(model)])
    assert fit.exit_code == 0, (fit.output, fit.exception)
    copy = tmp_path / "renamed.csv"
    copy.write_bytes((tmp_path / "train.csv").read_bytes())
    (tmp_path / "other").mkdir()
    other = tmp_path / "other" / "train.csv"  # the same name, other runs
    frame.assign(run_id=[f"s{i}" for i in range(len(frame))]).to_csv(other, index=False)
    said = {}
    for source in (copy, other):
        result = runner.invoke(app, ["predict", "apply", str(model), str(source), *axes])
        assert result.exit_code == 0, (result.output, result.exception)
        said[source] = " ".join(result.output.split())
    assert "(24 of 24 models were part of its training: not a held-out score)" in said[copy]
    assert "part of its training" not in said[other]


def test_a_reader_that_goes_away_does_not_lose_the_output_file(tmp_path):
    """`gengap evaluate ... --out t.csv | head` ended with exit 1 and no t.csv when the pipe
    closed before the table was printed."""
    table = grid_table(tmp_path / "t.csv")
    out = tmp_path / "ranked.csv"
    command = [sys.executable, "-m", "gengap.cli", "evaluate", str(table), "--hyperparameters",
               "width,lr,act", "--bootstrap", "0", "--out", str(out)]
    reader = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    reader.stdout.close()  # gone before the first line
    _, err = reader.communicate(timeout=300)
    assert reader.returncode == 0, err.decode()
    assert b"BrokenPipe" not in err and b"Traceback" not in err, err.decode()
    assert pd.read_csv(out)["measure"].tolist()[0] == "good"


def test_a_tables_index_column_a_repeated_measure_and_the_target_as_an_axis(tmp_path):
    table = grid_table(tmp_path / "t.csv")
    pd.read_csv(table).to_csv(tmp_path / "indexed.csv")  # pandas' index: "Unnamed: 0"
    out = tmp_path / "r.csv"
    args = ["--hyperparameters", "width,lr,act", "--bootstrap", "0", "--out", str(out)]
    result = runner.invoke(app, ["evaluate", str(tmp_path / "indexed.csv"), *args])
    assert result.exit_code == 0, (result.output, result.exception)
    assert "Unnamed: 0" not in pd.read_csv(out)["measure"].tolist()
    result = runner.invoke(app, ["evaluate", str(table), *args, "--measures", "good,noise,good"])
    assert pd.read_csv(out)["measure"].tolist() == ["good", "noise"]
    result = runner.invoke(app, ["evaluate", str(table), "--hyperparameters", "width,gap"])
    assert "'gap' is the target, not a hyperparameter" in str(result.exception)


def test_a_csv_that_names_a_column_twice_is_refused(tmp_path):
    # pandas renamed the second "good" to "good.1", which was ranked as a measure of its own
    table = pd.read_csv(grid_table(tmp_path / "t.csv"))
    doubled = tmp_path / "doubled.csv"
    doubled.write_text(table.to_csv(index=False).replace("noise", "good", 1))
    result = runner.invoke(app, ["evaluate", str(doubled), "--hyperparameters", "width,lr,act",
                                 "--bootstrap", "0"])
    assert isinstance(result.exception, GengapError)  # the entry point: one line, exit 2
    assert str(result.exception) == f"{doubled}: column 'good' appears more than once"


def test_predict_apply_refuses_a_source_without_any_feature_and_imputes_a_partial_one(
        tmp_path):
    """Beside another source, a table without any of the features was predicted from the
    imputation alone, silently; alone it was refused without naming the file."""
    table = grid_table(tmp_path / "t.csv")
    model = tmp_path / "p.json"
    axes = ["--hyperparameters", "width,lr,act"]
    fit = runner.invoke(app, ["predict", "fit", str(table), *axes, "--features", "good,noise",
                              "--folds", "2", "--target", "gap", "--save", str(model)])
    assert fit.exit_code == 0, (fit.output, fit.exception)
    frame = pd.read_csv(table)
    frame.drop(columns=["good", "noise"]).to_csv(tmp_path / "bare.csv", index=False)
    frame.drop(columns=["noise"]).to_csv(tmp_path / "half.csv", index=False)
    for sources in ([tmp_path / "bare.csv"], [tmp_path / "half.csv", tmp_path / "bare.csv"]):
        result = runner.invoke(app, ["predict", "apply", str(model), *map(str, sources), *axes])
        assert str(result.exception) == (f"{tmp_path / 'bare.csv'}: has none of the "
                                         "predictor's features (good, noise); it was fit on "
                                         "other inputs")
    out = tmp_path / "applied.csv"
    result = runner.invoke(app, ["predict", "apply", str(model), str(tmp_path / "half.csv"),
                                 *axes, "--out", str(out)])
    assert result.exit_code == 0, (result.output, result.exception)
    assert (pd.read_csv(out)["imputed"] == 1).all()  # noise, on every row


def test_an_ascii_terminal_gets_the_tables_with_question_marks(tmp_path):
    """Under PYTHONIOENCODING=ascii the catalogue (Σ, ‖ in its formulas) was a traceback."""
    env = {**os.environ, "PYTHONIOENCODING": "ascii"}
    done = subprocess.run([sys.executable, "-m", "gengap.cli", "measures", "list"],
                          capture_output=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr.decode()
    assert b"sharpness_mag_flatness" in done.stdout and b"+----" in done.stdout


def test_a_measure_with_values_on_few_networks_is_ranked_after_the_others():
    # pacbayes with a value on 3 of 16 runs headed the ranking at tau 1.000
    from gengap.evaluate import ranking_table

    gap = np.linspace(0.0, 0.7, 8)
    frame = pd.DataFrame({"h": list(range(8)), "gap": gap,
                          "few": [0.0, 1.0, 2.0] + [np.nan] * 5,  # perfect, on 3 of 8
                          "good": gap + np.array([0, 0.3, -0.1, 0, 0.2, 0, 0, 0.1])})
    table = ranking_table(frame, ["few", "good"], ["h"], metrics=("tau",))
    assert table["measure"].tolist() == ["good", "few"]
    assert table.set_index("measure").loc["few", "tau"] == pytest.approx(1.0)
    assert "ranked after the others: few (a value on fewer than 4 of the 8 networks)" in \
        table.attrs["notes"]


def test_a_mean_over_few_folds_says_how_few():
    """Folds of one configuration rank nothing: tau's mean came from 1 of 5 folds, sd 0."""
    from gengap.evaluate.predictors import CVResult

    folds = pd.DataFrame({"fold": ["0", "1", "2"], "n": [2, 2, 1],
                          "r2": [0.5, -3.0, np.nan], "tau": [1.0, np.nan, np.nan]})
    predictions = pd.DataFrame({"target": [0.1, 0.2, 0.3, 0.3, 0.5],
                                "prediction": [0.1, 0.3, 0.2, 0.2, 0.4]})
    summary = CVResult(folds, predictions).summary()
    assert (summary["r2_folds"], summary["tau_folds"], summary["folds"]) == (2, 1, 3)
    assert summary["tau"] == 1.0 and summary["tau_sd"] == 0.0

    from gengap.cli.predict_cmds import _few_folds
    assert _few_folds(summary) == " (r2 in 2 and tau in 1 of them had a value)"
