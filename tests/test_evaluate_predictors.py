"""Learned predictors recover a planted relation; their files round-trip without pickle and
refuse tampering; monotone combinations transfer across zoos."""

import json

import numpy as np
import pandas as pd
import pytest

from gengap.errors import GengapError
from gengap.evaluate.combination import fit_combination, transfer_table
from gengap.evaluate.features import feature_columns
from gengap.evaluate.predictor_file import load_predictor
from gengap.evaluate.predictors import (
    compare_feature_sets,
    cross_validate,
    fit_predictor,
    run_configuration,
)


def planted(n: int = 240, seed: int = 0) -> pd.DataFrame:
    """Test accuracy is a smooth function of two weight statistics; the measure column and
    the hyperparameters carry nothing; three zoos share the relation."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "wstat.l0.weight.var": rng.uniform(0.1, 2.0, n),
        "wstat.l1.weight.mean": rng.normal(size=n),
        "wstat.l1.bias.q50": rng.normal(size=n),  # noise
        "noise_measure": rng.normal(size=n),
        "act": rng.choice(["relu", "tanh"], n),
        "lr": rng.choice([0.01, 0.1], n),
        "zoo": rng.choice(["z1", "z2", "z3"], n),
    })
    frame["test_acc"] = (0.9 - 0.2 * np.log(frame["wstat.l0.weight.var"])
                         + 0.05 * np.tanh(frame["wstat.l1.weight.mean"])
                         + rng.normal(scale=0.005, size=n))
    return frame


def test_weights_recover_the_planted_relation_and_the_baselines_do_not():
    frame = planted()
    table = compare_feature_sets(frame, ["noise_measure"], ["act", "lr"], "test_acc",
                                 folds=4).set_index("features")
    assert table.loc["weights", "r2"] > 0.9 and table.loc["weights", "tau"] > 0.8
    assert table.loc["measures", "r2"] < 0.2 and table.loc["hyperparameters", "r2"] < 0.2
    by_zoo = cross_validate(frame, feature_columns(frame, "weights"), "test_acc",
                            groups="zoo")
    assert sorted(by_zoo.folds["fold"]) == ["z1", "z2", "z3"]
    assert (by_zoo.folds["r2"] > 0.9).all()
    assert len(by_zoo.predictions) == len(frame)


def test_a_comparison_with_every_feature_set_empty_is_an_error():
    """It printed a table of notes and exited 0: nothing had been compared."""
    frame = planted()[["act", "lr", "test_acc"]]
    with pytest.raises(GengapError, match=r"^every feature set is empty \(weights: compute the "
                       r"weight_stats.*; measures: compute some.*; hyperparameters: no "
                       r"hyperparameter columns") as err:
        compare_feature_sets(frame, [], [], "test_acc", folds=4)
    assert len(str(err.value).splitlines()) == 1
    with pytest.raises(GengapError, match="every feature set is empty"):
        compare_feature_sets(frame, [], [], "test_acc", ["measures", "measures"], folds=4)
    with pytest.raises(GengapError, match="no feature sets to compare"):
        compare_feature_sets(frame, [], [], "test_acc", [], folds=4)
    one = compare_feature_sets(frame, [], ["act", "lr"], "test_acc", folds=4)
    assert one.set_index("features").loc["measures", "note"].startswith("feature set")


def test_a_saved_predictor_reloads_and_predicts_the_same(tmp_path):
    frame = planted()
    columns = [*feature_columns(frame, "weights"), "act"]  # a categorical column too
    predictor = fit_predictor(frame.iloc[:200], columns, "test_acc", meta={"zoos": ["z"]})
    path = predictor.save(tmp_path / "p.json")
    assert b"pickle" not in path.read_bytes()
    again = load_predictor(path)
    fresh = frame.iloc[200:]
    assert np.array_equal(again.predict(fresh), predictor.predict(fresh))
    truth = fresh["test_acc"].to_numpy()
    assert np.corrcoef(again.predict(fresh), truth)[0, 1] > 0.95
    # a model far outside the training range is flagged, a missing value is imputed
    odd = fresh.iloc[:2].copy()
    odd.loc[odd.index[0], "wstat.l0.weight.var"] = 50.0
    odd.loc[odd.index[1], "wstat.l1.weight.mean"] = np.nan
    trust = again.trust(odd)
    assert list(trust["out_of_range"]) == [1, 0] and list(trust["imputed"]) == [0, 1]
    with pytest.raises(GengapError, match="lacks the predictor's feature column"):
        again.predict(fresh.drop(columns=["act"]))
    # a category never seen in training, or a missing one, is imputed and says so
    odd = fresh.iloc[:2].copy()
    odd.loc[odd.index[0], "act"] = "gelu"
    odd.loc[odd.index[1], "act"] = None
    assert list(again.trust(odd)["imputed"]) == [1, 1]
    assert np.isfinite(again.predict(odd)).all()


def test_infinite_measures_keep_their_order_and_break_nothing():
    frame = planted(120)
    frame["inverse_margin"] = np.exp(frame["wstat.l0.weight.var"] * 3)
    frame.loc[frame.index[:5], "inverse_margin"] = np.inf
    frame.loc[frame.index[5:8], "inverse_margin"] = 1e92  # beyond float32
    result = cross_validate(frame, ["inverse_margin"], "test_acc", folds=3)
    assert np.isfinite(result.predictions["prediction"]).all()
    predictor = fit_predictor(frame, ["inverse_margin"], "test_acc")
    assert np.isfinite(predictor.predict(frame)).all()


def test_k_fold_keeps_the_seeds_of_a_configuration_together():
    rng = np.random.default_rng(2)
    frame = pd.DataFrame({"lr": np.repeat([0.01, 0.02, 0.05, 0.1, 0.2, 0.5], 4),
                          "seed": np.tile(range(4), 6)})
    frame["test_acc"] = np.log(frame["lr"]) + rng.normal(scale=0.01, size=len(frame))
    frame["noise"] = rng.normal(size=len(frame))
    result = cross_validate(frame, ["lr"], "test_acc", folds=3, together=["lr"])
    folds = result.predictions.assign(lr=frame["lr"]).groupby("lr")["fold"].nunique()
    assert (folds == 1).all()  # each learning rate's four seeds held out together
    with pytest.raises(GengapError, match="6 configurations"):
        cross_validate(frame, ["lr"], "test_acc", folds=7, together=["lr"])
    # without hyperparameters every run stands alone (a table given no --hyperparameters)
    assert run_configuration([]) == []
    alone = cross_validate(frame, ["noise"], "test_acc", folds=5, together=run_configuration([]))
    assert len(alone.folds) == 5


def test_a_version_1_file_keeps_encoding_unseen_categories_as_zeros(tmp_path):
    frame = planted(120)
    columns = [*feature_columns(frame, "weights"), "act"]
    path = fit_predictor(frame, columns, "test_acc").save(tmp_path / "p.json")
    data = json.loads(path.read_text())
    data["version"] = 1  # written before unseen categories were imputed (and digests)
    del data["check"]["digest"]
    old = tmp_path / "old.json"
    old.write_text(json.dumps(data))
    odd = frame.iloc[:1].assign(act="gelu")
    assert load_predictor(path).trust(odd)["imputed"].tolist() == [1]
    assert load_predictor(old).trust(odd)["imputed"].tolist() == [0]
    assert np.isnan(load_predictor(old).encoding.transform(odd)).sum() == 0


def test_an_edited_predictor_file_is_refused(tmp_path):
    frame = planted(80)
    path = fit_predictor(frame, feature_columns(frame, "weights"), "test_acc").save(
        tmp_path / "p.json")
    written = json.loads(path.read_text())
    # any edit of the content shows in its digest, also those the trees' output does not
    # (features swapped or categories added changed the predictions unnoticed)
    features = written["features"]
    for tamper in (lambda d: d.__setitem__("features", [features[1], features[0], *features[2:]]),
                   lambda d: d["categories"].__setitem__("act", ["relu"]),
                   lambda d: d["meta"].__setitem__("zoos", ["another"])):
        data = json.loads(json.dumps(written))
        tamper(data)
        path.write_text(json.dumps(data))
        with pytest.raises(GengapError, match="does not match the digest written with it"):
            load_predictor(path)
    # the same content written otherwise (indented, keys reordered) is the same file
    path.write_text(json.dumps(dict(reversed(list(written.items()))), indent=4))
    assert load_predictor(path).predict(frame).tolist() == \
        fit_predictor(frame, feature_columns(frame, "weights"), "test_acc").predict(frame).tolist()
    # a file from before the digest is checked by its recorded predictions and its structure
    del written["check"]["digest"]
    data = json.loads(json.dumps(written))
    data["trees"][0]["value"] = [v + 1.0 for v in data["trees"][0]["value"]]
    path.write_text(json.dumps(data))
    with pytest.raises(GengapError, match="do not reproduce"):
        load_predictor(path)
    original = written
    for tamper, problem in [
        (lambda d: d["check"].update(rows=[], values=[]), "recorded predictions"),
        (lambda d: d["trees"].__setitem__(0, {k: [] for k in d["trees"][0]}), "empty"),
        (lambda d: d["trees"][0]["feature"].__setitem__(0, -5), "disagree with the features"),
        (lambda d: d.__setitem__("high", []), "ranges disagree"),
        # these passed the checks and failed later in numpy or in `predict apply`
        (lambda d: d["trees"][0]["threshold"].__setitem__(0, "abc"), "threshold holds"),
        (lambda d: d["trees"][0]["feature"].__setitem__(0, 0.5), "feature holds"),
        (lambda d: d.__setitem__("meta", {"cv": [1, 2]}), "meta.cv is not a table"),
        (lambda d: d.__setitem__("meta", {"zoos": [1]}), "meta.zoos is not a list"),
    ]:
        data = json.loads(json.dumps(original))
        tamper(data)
        path.write_text(json.dumps(data))
        with pytest.raises(GengapError, match=problem):
            load_predictor(path)
    # a NaN score is saved as null, and the file is still read
    meta = {"zoos": ["a"], "cv": {"scheme": "5-fold", "r2": float("nan"), "tau": 0.5}}
    fit_predictor(frame, feature_columns(frame, "weights"), "test_acc", meta=meta).save(path)
    assert load_predictor(path).meta["cv"]["r2"] is None
    path.write_text('{"format": "something else"}')
    with pytest.raises(GengapError, match="not a gengap predictor"):
        load_predictor(path)
    path.write_text("\x80\x04 not json")
    with pytest.raises(GengapError, match="not a predictor file"):
        load_predictor(path)
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(GengapError, match="nested too deeply"):
        load_predictor(path)


def test_monotone_combination_chosen_on_some_zoos_scores_on_others():
    rng = np.random.default_rng(4)
    parts = []
    for zoo in ("a", "b", "c"):
        gap = rng.uniform(0, 0.3, 60)
        parts.append(pd.DataFrame({
            "zoo": zoo, "h": rng.integers(0, 3, 60), "gap": gap,
            # each measure sees the gap through its own noise; their sum sees it best
            "m1": np.exp(gap + rng.normal(scale=0.08, size=60)),
            "m2": -(gap + rng.normal(scale=0.08, size=60)),  # decreasing with the gap
            "junk": rng.normal(size=60),
        }))
    frame = pd.concat(parts, ignore_index=True)
    combo = fit_combination(frame[frame.zoo != "c"], ["m1", "m2", "junk"], "gap")
    assert dict(zip(combo.measures, combo.signs, strict=True))["m2"] == -1
    assert "m1" in combo.measures and combo.logs[combo.measures.index("m1")]
    table = transfer_table(frame, ["m1", "m2", "junk"], ["h"], "gap")
    assert list(table["test_zoo"]) == ["a", "b", "c"]
    assert (table["combination_tau"] > table["single_tau"]).all()
    assert (table["combination_tau"] > 0.5).all()
    # monotone in m1 beyond the training range too: +inf on top, 0 (no log) at the bottom
    probe = pd.DataFrame({"m1": [0.0, 0.5, 1.0, 1e6, np.inf], "m2": 0.0, "junk": 0.0})
    sign = combo.signs[combo.measures.index("m1")]
    assert (np.diff(sign * combo.score(probe)) > 0).all()
    # a measure perfect on 3 training networks, NaN on the rest, was chosen as best_single
    few = frame.assign(few=np.where(np.arange(len(frame)) % 60 < 3, frame["gap"], np.nan))
    table = transfer_table(few, ["m1", "m2", "few"], ["h"], "gap", max_measures=2)
    assert "few" not in set(table["best_single"])
    # a zoo never measured was scored Ψ = 0 (every value imputed, all ties); now refused
    unmeasured = frame.assign(**{m: np.where(frame["zoo"] == "c", np.nan, frame[m])
                                 for m in ("m1", "m2", "junk")})
    with pytest.raises(GengapError, match="zoo 'c' has no value of any measure"):
        transfer_table(unmeasured, ["m1", "m2", "junk"], ["h"], "gap")


def test_an_exported_table_offers_no_spec_field_as_a_measure(tmp_path):
    from gengap.zoo.evaluation import load_population

    table = pd.DataFrame({"run_id": ["a", "b"], "status": ["done", "done"],
                          "arch.width": [8, 16], "data.train_fraction": [0.5, 1.0],
                          "train.lr": [0.1, 0.1], "steps_to_ce_0.1": [10, 20],
                          "hp.depth": [2, 3], "population": [2, 2], "test_acc": [0.8, 0.9],
                          "path_norm": [1.0, 2.0], "wstat.l0.weight.var": [0.1, 0.2]})
    table.to_csv(tmp_path / "zoo.csv", index=False)
    population = load_population([tmp_path / "zoo.csv"], ["arch.width"])
    assert population.measures == ["path_norm"]


def test_hyperparameters_that_no_table_has_are_refused_not_ignored(tmp_path):
    from gengap.zoo.evaluation import load_population

    pd.DataFrame({"run_id": ["a", "b"], "width": [8, 16], "test_acc": [0.8, 0.9],
                  "train_acc": [1.0, 1.0], "path_norm": [1.0, 2.0]}).to_csv(
        tmp_path / "t.csv", index=False)
    (tmp_path / "zoo").mkdir()  # never opened: the names are refused first
    with pytest.raises(GengapError, match="only zoos given"):
        load_population([tmp_path / "zoo"], ["width"])
    with pytest.raises(GengapError, match=r"'depth': no such column in .*t\.csv"):
        load_population([tmp_path / "t.csv"], ["width", "depth"])
    assert load_population([tmp_path / "t.csv"], ["width"]).hyperparameters == ["width"]


def test_a_fold_count_the_configurations_cannot_fill_names_the_option():
    """It said "5-fold cross-validation needs between 2 and 4 folds", and with one
    configuration "between 2 and 1 folds"."""
    frame = planted(8).assign(zoo="z1", width=[1, 1, 2, 2, 3, 3, 4, 4])
    together = run_configuration(["width"])
    with pytest.raises(GengapError, match=r"^--folds 5: the models with a known test_acc form "
                                          r"4 configurations .* choose 2 to 4 folds$"):
        cross_validate(frame, ["noise_measure"], "test_acc", folds=5, together=together)
    with pytest.raises(GengapError, match="at least two configurations .* there is one"):
        cross_validate(frame.assign(width=1), ["noise_measure"], "test_acc", folds=2,
                       together=together)
