"""The PVR study at smoke scale: accuracy above the majority-class baseline growing with data,
and the holdout accuracies beside the in-distribution ones."""

from __future__ import annotations

import pytest

from gengap.studies import run_study
from gengap.studies.pvr import AGGREGATIONS, FAMILIES, pvr_zoos

pytestmark = pytest.mark.slow  # ~15 s: six small transformers


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("study") / "pvr"
    return run_study("pvr", out, scale="smoke", device="cpu", population="off")


def test_default_grid_covers_windows_aggregations_and_families() -> None:
    zoos = {z.name: z for z in pvr_zoos("default", ("transformer", "mlp"))}
    grid = zoos["pvr_transformer"].axes
    assert grid["data.options.window"] == (2, 3, 4)
    assert set(grid["data.options.aggregation"]) == set(AGGREGATIONS)
    assert len(grid["data.options.n_train"]) >= 3
    # window 1 is the same task under every aggregation: trained once per size
    retrieval = zoos["retrieval_transformer"]
    assert retrieval.data.options["window"] == 1 and list(retrieval.axes) == [
        "data.options.n_train"]
    assert {"pvr_mlp", "retrieval_mlp", "holdout_mlp", "holdout_transformer"} <= set(zoos)
    assert zoos["holdout_transformer"].data.options["holdout"] == 1


def test_accuracy_against_size_and_chance(result) -> None:
    table = result.table
    assert set(table["family"]) == {"mlp", "transformer"}
    assert len(table) == len(FAMILIES) * 2 * 2  # windows (1, 2) x sizes (200, 1000), min
    # majority-class baselines of min: 0.1 for one value, 0.19 for two (exact enumeration).
    chance = table.groupby("window")["chance"].first()
    assert chance[1] == pytest.approx(0.10, abs=0.01)
    assert chance[2] == pytest.approx(0.19, abs=0.01)
    for _, part in table.groupby(["family", "window"]):
        part = part.sort_values("n_train")
        assert part["test_acc"].iloc[-1] > part["test_acc"].iloc[0]
        assert part["above_chance"].iloc[-1] > 0.05


def test_holdout_beside_in_distribution(result) -> None:
    held = result.extra_tables["holdout"]
    assert list(held.columns) == ["family", "n_train", "train_acc", "in_distribution_acc",
                                  "shifted_acc"]
    assert len(held) == 2 * len(FAMILIES)
    values = held[["in_distribution_acc", "shifted_acc"]].to_numpy()
    assert ((values >= 0) & (values <= 1)).all()
    curves, shift = result.figures
    assert curves.layout.xaxis.type == "log" and len(shift.data) == 2 * len(FAMILIES)
