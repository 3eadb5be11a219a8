"""The PGDL scoring driver: the real toy reference data with the kit's sample predictions,
an independent step-by-step reimplementation of the scorer, time-outs, missing files and
the incomplete-grid refusal, and the CLI."""

import json
import math
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gengap.cli.app import app
from gengap.errors import GengapError
from gengap.interop.pgdl.reference import read_reference
from gengap.interop.pgdl.scoring import MISSING_SCORE, score_predictions, score_task

SHARED = Path(__file__).resolve().parents[2] / "shared"
TOY = SHARED / "fixtures" / "pgdl-toy"


def scorer_by_the_letter(prediction: dict, specs: dict) -> float:
    """pgdl.md section 2.3 written out loop by loop, independently of gengap's code."""
    specs = {(k if "model" in k else f"model_{k}"): v for k, v in specs.items()}
    gap = {k: v["metrics"]["train_acc"] - v["metrics"]["test_acc"] for k, v in specs.items()}
    first = next(iter(specs.values()))["hparams"]
    names = list(first)
    best = math.inf
    for h1 in names:
        for h2 in names:
            if h1 == h2:
                continue
            values = {h: first[h]["possible_values"] for h in (h1, h2)}
            keys = [str(a) + str(b) + str(c) + str(d) for a in values[h1] for b in values[h1]
                    for c in values[h2] for d in values[h2]]
            tables = {k: [[0, 0], [0, 0]] for k in keys}
            for i in specs:
                for j in specs:
                    hi, hj = specs[i]["hparams"], specs[j]["hparams"]
                    key = (str(hi[h1]["current_value"]) + str(hj[h1]["current_value"])
                           + str(hi[h2]["current_value"]) + str(hj[h2]["current_value"]))
                    a = 0 if gap[i] > gap[j] else 1
                    b = 0 if prediction[i] > prediction[j] else 1
                    tables[key][a][b] += 1
            mis, hs = [], []
            for t in tables.values():
                total = sum(map(sum, t))
                pa = [sum(t[a]) / total for a in range(2)]
                pb = [(t[0][b] + t[1][b]) / total for b in range(2)]
                mi = sum(t[a][b] / total * math.log2(t[a][b] / total / (pa[a] * pb[b]))
                         for a in range(2) for b in range(2) if t[a][b])
                mis.append(mi)
                hs.append(-sum(p * math.log2(p + 1e-12) for p in pa))
            best = min(best, (sum(mis) / len(mis)) / (sum(hs) / len(hs)))
    return best


@pytest.fixture
def toy() -> Path:
    if not TOY.is_dir():
        pytest.skip(f"shared fixtures not found at {TOY}")
    return TOY


def reference_folder(tmp_path: Path, toy: Path, tasks=("toy",)) -> tuple[Path, Path]:
    ref, pred = tmp_path / "reference_data", tmp_path / "predictions"
    pred.mkdir()
    for task in tasks:
        (ref / task).mkdir(parents=True)
        shutil.copy(toy / "model_configs.json", ref / task / "model_configs.json")
        shutil.copy(toy / "sample_submission.predict", pred / f"{task}.predict")
    return ref, pred


def test_the_toy_task_scores_as_the_kits_scorer(toy):
    specs = json.loads((toy / "model_configs.json").read_text())
    prediction = json.loads((toy / "sample_submission.predict").read_text())
    expected = scorer_by_the_letter(prediction, specs)
    score, dropped = score_task(toy, prediction)
    assert score == pytest.approx(expected, abs=1e-12) and dropped == 0
    # the reference notes ran the kit's own code on these files: 0.085
    assert round(score, 3) == 0.085
    negated = {k: -v for k, v in prediction.items()}
    assert score_task(toy, negated)[0] == pytest.approx(
        scorer_by_the_letter(negated, specs), abs=1e-12)
    oracle = read_reference(toy).frame["gap"].to_dict()
    assert score_task(toy, oracle)[0] == pytest.approx(1.0, abs=1e-9)


def test_the_driver_averages_tasks_times_100(tmp_path, toy):
    ref, pred = reference_folder(tmp_path, toy, ("task_a", "task_b"))
    scores = score_predictions(tmp_path, pred)  # finds reference_data/ inside
    assert [t.status for t in scores.tasks] == ["scored", "scored"]
    assert scores.average == pytest.approx(100 * scores.tasks[0].score)
    assert "task_task_a_score: 0.0846" in scores.scores_txt()
    assert scores.notes == []
    # a misnamed file is not scored, and says so
    shutil.copy(pred / "task_b.predict", pred / "task-c.predict")
    scores = score_predictions(tmp_path, pred)
    assert scores.notes == [f"{pred / 'task-c.predict'}: no task 'task-c' in the reference; "
                            "not scored"]


def test_missing_and_timed_out_predictions_score_as_in_the_competition(tmp_path, toy):
    ref, pred = reference_folder(tmp_path, toy, ("task_a", "task_b"))
    (pred / "task_b.predict").unlink()
    scores = score_predictions(ref, pred)
    assert scores.tasks[1].status == "error" and scores.tasks[1].written == MISSING_SCORE
    assert scores.average == pytest.approx(100 * scores.tasks[0].score)  # left out, not 0
    values = json.loads((pred / "task_a.predict").read_text())
    values["model_3"] = "EXCEEDED"
    (pred / "task_a.predict").write_text(json.dumps(values))
    shutil.copy(toy / "sample_submission.predict", pred / "task_b.predict")
    scores = score_predictions(ref, pred)
    assert scores.time_exceeded and scores.average == 0.0
    assert [t.status for t in scores.tasks] == ["exceeded", "exceeded"]
    # score.py skips a timed-out task without writing its line
    assert scores.scores_txt() == "task_average_score: 0.000000000000\nDuration: 0\n"


def test_an_incomplete_reference_grid_is_refused(tmp_path, toy):
    ref, pred = reference_folder(tmp_path, toy)
    configs = json.loads((ref / "toy" / "model_configs.json").read_text())
    del configs["5"]
    (ref / "toy" / "model_configs.json").write_text(json.dumps(configs))
    with pytest.raises(GengapError, match="The data are not complete!") as err:
        score_task(ref / "toy", json.loads((pred / "toy.predict").read_text()))
    assert str(err.value).endswith("with --subgrid")  # the option score has, not evaluate's
    scores = score_predictions(ref, pred)
    assert scores.tasks[0].status == "error"
    assert "The data are not complete!" in scores.tasks[0].message
    assert math.isnan(scores.average)
    # the option scores the largest complete sub-grid instead
    prediction = json.loads((pred / "toy.predict").read_text())
    score, dropped = score_task(ref / "toy", prediction, subgrid=True)
    assert dropped > 0 and 0 <= score <= 1


def test_cli_score(tmp_path, toy):
    runner = CliRunner()
    result = runner.invoke(app, ["pgdl", "score", "--reference", str(toy), "--predictions",
                                 str(toy / "sample_submission.predict"), "--out",
                                 str(tmp_path / "scores.txt")])
    assert result.exit_code == 0, result.output
    assert "task_average_score: 8.47" in result.output
    # the task's model_configs.json itself names the task as well as its folder
    again = runner.invoke(app, ["pgdl", "score", "--reference", str(toy / "model_configs.json"),
                                "--predictions", str(toy / "sample_submission.predict")])
    assert again.exit_code == 0 and "task_average_score: 8.47" in again.output, again.output
    assert (tmp_path / "scores.txt").read_text().endswith("task_average_score: "
                                                          "8.468866079751\nDuration: 0\n")
    # nothing scored (the predictions are not a JSON object): scores.txt written, exit 2;
    # an --out folder that does not exist yet is made
    bad = tmp_path / "list.predict"
    bad.write_text("[1, 2]")
    out = tmp_path / "new" / "scores.txt"
    failed = runner.invoke(app, ["pgdl", "score", "--reference", str(toy), "--predictions",
                                 str(bad), "--out", str(out)])
    # (the entry point turns a GengapError into one line and exit status 2)
    assert isinstance(failed.exception, GengapError)
    assert "no task could be scored" in str(failed.exception)
    assert out.read_text().startswith(f"task_{toy.name}_score: -0.999999")


def test_subgrid_names_what_it_left_out_and_scores_the_sub_grids_as_large(tmp_path, toy):
    """Without model 5 (64 units, 3 layers, tanh) two complete sub-grids of 12 models remain:
    without 3 layers (the one scored) and without 64 units; each scores as the letter-by-letter
    scorer does on that sub-grid alone."""
    ref, pred = reference_folder(tmp_path, toy)
    configs = json.loads((ref / "toy" / "model_configs.json").read_text())
    del configs["5"]
    (ref / "toy" / "model_configs.json").write_text(json.dumps(configs))
    prediction = json.loads((pred / "toy.predict").read_text())

    def by_the_letter(without: str, value) -> float:
        kept = {k: json.loads(json.dumps(v)) for k, v in configs.items()
                if v["hparams"][without]["current_value"] != value}
        for spec in kept.values():
            spec["hparams"][without]["possible_values"].remove(value)
        return scorer_by_the_letter({f"model_{k}": prediction[f"model_{k}"] for k in kept},
                                    kept)

    first, second = by_the_letter("num_layers", 3), by_the_letter("num_units", 64)
    assert abs(first - second) > 1e-3  # the choice matters here
    score, dropped = score_task(ref / "toy", prediction, subgrid=True)
    assert dropped == 5 and score == pytest.approx(first, abs=1e-12)
    scores = score_predictions(ref, pred, subgrid=True)
    assert scores.tasks[0].score == pytest.approx(first, abs=1e-12)
    assert scores.notes[0].startswith(
        "toy: --subgrid scored 12 of 17 models, leaving out num_layers 3; as large: leaving "
        f"out num_units 64 scores {100 * second:.2f} (the one scored is the first found")
    result = CliRunner().invoke(app, ["pgdl", "score", "--reference", str(ref),
                                      "--predictions", str(pred), "--subgrid"])
    assert result.exit_code == 0, result.output
    assert f"num_units 64 scores {100 * second:.2f}" in " ".join(result.output.split())
    # predictions of exactly the scored sub-grid: the other one cannot be scored
    scored = {f"model_{k}": prediction[f"model_{k}"] for k, v in configs.items()
              if v["hparams"]["num_layers"]["current_value"] != 3}
    (pred / "toy.predict").write_text(json.dumps(scored))
    note = score_predictions(ref, pred, subgrid=True).notes[0]
    assert "leaving out num_units 64 cannot be scored: the predictions lack some of its " \
           "models" in note
    # a possible value no model has is left out too, and said so, though no model is dropped
    full = json.loads((toy / "model_configs.json").read_text())
    for spec in full.values():
        spec["hparams"]["num_units"]["possible_values"].append(512)
    (ref / "toy" / "model_configs.json").write_text(json.dumps(full))
    shutil.copy(toy / "sample_submission.predict", pred / "toy.predict")
    scores = score_predictions(ref, pred, subgrid=True)
    assert scores.tasks[0].dropped == 0
    assert scores.notes == ["toy: --subgrid scored 18 of 18 models, leaving out num_units 512"]


def test_values_written_otherwise_than_their_possible_values_are_read_as_listed(tmp_path, toy):
    # 1.0 for 1: the bins are keyed by text, every pair with it was skipped, the task scored
    # NaN and the average of every task became NaN, with exit status 0
    ref, pred = reference_folder(tmp_path, toy, ("good", "retyped"))
    specs = json.loads((toy / "model_configs.json").read_text())
    for name in next(iter(specs.values()))["hparams"]:
        for entry in specs.values():
            value = entry["hparams"][name]["current_value"]
            if isinstance(value, int) and not isinstance(value, bool):
                entry["hparams"][name]["current_value"] = float(value)
    (ref / "retyped" / "model_configs.json").write_text(json.dumps(specs))
    scores = score_predictions(ref, pred)
    good, retyped = scores.tasks
    assert (good.status, retyped.status) == ("scored", "scored")
    assert retyped.score == good.score and scores.average == pytest.approx(100 * good.score)


def test_predictions_under_none_of_the_references_names_are_an_error(tmp_path, toy):
    # keys "0", "1", ... as in model_configs.json: "no model has both 'prediction' and 'gap'"
    values = json.loads((toy / "sample_submission.predict").read_text())
    bare = tmp_path / "bare.predict"
    bare.write_text(json.dumps({k.removeprefix("model_"): v for k, v in values.items()}))
    (task,) = score_predictions(toy, bare).tasks
    assert task.status == "error"
    assert task.message == (f"{bare}: no prediction names a model of the reference (keys like "
                            "'0'; the reference's are like 'model_0')")


def test_a_task_that_scores_nan_is_an_error_and_leaves_the_average_alone(tmp_path, toy,
                                                                         monkeypatch):
    import gengap.interop.pgdl.scoring as scoring

    ref, pred = reference_folder(tmp_path, toy, ("a", "b"))
    real = scoring.pgdl_cmi
    calls = iter([True, False])  # task a scores NaN (as empty bins can make it), b as usual
    monkeypatch.setattr(scoring, "pgdl_cmi",
                        lambda *a, **k: math.nan if next(calls) else real(*a, **k))
    scores = score_predictions(ref, pred)
    assert [t.status for t in scores.tasks] == ["error", "scored"]
    assert scores.tasks[0].message == "no pair of models could be compared (the score is NaN)"
    assert scores.average == pytest.approx(100 * scores.tasks[1].score)


def test_a_task_of_one_hyperparameter_says_it_has_no_pair(tmp_path):
    """The scorer's minimum over pairs of hyperparameters is over no pair: say so, not NaN."""
    (tmp_path / "ref" / "one").mkdir(parents=True)
    (tmp_path / "pred").mkdir()
    configs = tmp_path / "ref" / "one" / "model_configs.json"
    configs.write_text(json.dumps({
        str(i): {"hparams": {"lr": {"current_value": lr, "possible_values": [0.1, 0.2, 0.3]}},
                 "metrics": {"train_acc": 1.0, "test_acc": 0.9 - i / 10}}
        for i, lr in enumerate([0.1, 0.2, 0.3])}))
    (tmp_path / "pred" / "one.predict").write_text(
        json.dumps({f"model_{i}": float(i) for i in range(3)}))
    (task,) = score_predictions(tmp_path / "ref", tmp_path / "pred").tasks
    assert task.status == "error"
    assert task.message == (f"{configs}: 1 hyperparameter(s); the score is the least over "
                            "pairs of hyperparameters, and there is no pair")


def test_a_possible_value_named_twice_is_named(tmp_path, toy):
    """It left one grid cell of the two empty: "6 of 24 grid cells have no model"."""
    specs = json.loads((toy / "model_configs.json").read_text())
    first = next(iter(specs.values()))["hparams"]
    name = next(iter(first))
    first[name]["possible_values"].insert(0, first[name]["possible_values"][0])
    (tmp_path / "model_configs.json").write_text(json.dumps(specs))
    with pytest.raises(GengapError, match=rf"model_configs.json: first model: possible_values "
                                          rf"of {name} names .* twice$"):
        read_reference(tmp_path)


def test_hyperparameter_values_compare_as_values_but_true_is_not_one():
    from gengap.interop.pgdl.reference import same_value

    assert same_value(256, 256.0) and same_value([128, 128], [128, 128])
    assert not same_value(True, 1) and not same_value(1, True)  # JSON's true is no number
    assert not same_value(2, "2")


def test_repeated_keys_stray_folders_and_a_missing_model_are_named(tmp_path, toy):
    """A repeated key scored with its last value unseen (8.47 became 9.77); a reference
    folder without model_configs.json was blamed on the predictions."""
    ref, pred = reference_folder(tmp_path, toy, ("task_a", "task_b"))
    text = (pred / "task_a.predict").read_text().rstrip().removesuffix("}")
    (pred / "task_a.predict").write_text(text + ', "model_1": 9.0}')
    (ref / "junk").mkdir()
    values = json.loads((pred / "task_b.predict").read_text())
    del values["model_5"]
    (pred / "task_b.predict").write_text(json.dumps(values))
    tasks = {t.task: t for t in score_predictions(ref, pred).tasks}
    assert tasks["task_a"].status == tasks["junk"].status == tasks["task_b"].status == "error"
    assert tasks["task_a"].message == (f"{pred / 'task_a.predict'}: key 'model_1' appears "
                                      "twice in one object")
    assert tasks["junk"].message == (f"{ref / 'junk'}: not a task folder of the reference (no "
                                    "model_configs.json)")
    assert tasks["task_b"].message.endswith("(no prediction for model_5)")
    configs = ref / "task_b" / "model_configs.json"
    configs.write_text(configs.read_text().rstrip().removesuffix("}") + ', "1": {}}')
    with pytest.raises(GengapError, match="key '1' appears twice"):
        read_reference(configs)
