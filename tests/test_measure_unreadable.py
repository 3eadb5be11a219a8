"""One run whose weights cannot be read does not stop a zoo's measuring: the others are measured
and stored, and the bad runs are named."""

from __future__ import annotations

from pathlib import Path

import pytest

from gengap.errors import GengapError
from gengap.zoo import Store, load_zoo_spec, measure_zoo, train_zoo
from gengap.zoo.measure import UnreadableWeights


@pytest.fixture
def zoo_with_two_bad_runs(tiny_zoo_toml: Path, tmp_path: Path
                          ) -> tuple[Store, list[str], dict[Path, bytes]]:
    """A zoo of 4 runs, run 1's final weights and run 3's initial ones spoilt; their bytes."""
    store = train_zoo(load_zoo_spec(tiny_zoo_toml), tmp_path / "zoo")
    runs = [run.run_id for run in store.runs()]
    spoilt = {store.weights_path(runs[1], "final"): b"not safetensors",
              store.weights_path(runs[3], "init"): b""}
    originals = {path: path.read_bytes() for path in spoilt}
    for path, content in spoilt.items():
        path.write_bytes(content)
    return store, runs, originals


@pytest.mark.parametrize("workers", [1, 2])
def test_unreadable_runs_are_named_and_the_rest_measured(zoo_with_two_bad_runs, workers):
    store, runs, _ = zoo_with_two_bad_runs
    unreadable: dict[str, str] = {}
    count = measure_zoo(store, "log_sum_of_fro,frobenius_distance", device="cpu", workers=workers,
                        unreadable=unreadable)
    assert count == 3
    assert list(unreadable) == [runs[1], runs[3]]  # the zoo's order, not the workers'
    assert str(store.weights_path(runs[1], "final")) in unreadable[runs[1]]
    assert unreadable[runs[3]].startswith(str(store.weights_path(runs[3], "init")))
    assert "unreadable weight file" in unreadable[runs[3]]
    measured = store.measured()
    assert sorted(measured) == sorted([runs[0], runs[2], runs[3]])
    assert set(measured[runs[0]]) == {"log_sum_of_fro", "frobenius_distance"}
    assert set(measured[runs[3]]) == {"log_sum_of_fro"}  # held back: what reads the init file


def test_without_a_dict_the_first_problem_is_raised_after_the_rest(zoo_with_two_bad_runs):
    store, runs, originals = zoo_with_two_bad_runs
    with pytest.raises(UnreadableWeights) as raised:
        measure_zoo(store, "log_sum_of_fro", device="cpu")
    message = str(raised.value)
    assert message.startswith(str(store.weights_path(runs[1], "final")))
    assert message.endswith("(the measures that read it were not computed; 3 runs measured "
                            "and stored)")
    # run 3's spoilt initial weights are not read for a measure of the final ones
    assert sorted(store.measured()) == sorted([runs[0], runs[2], runs[3]])
    for path, content in originals.items():  # mended, the next call measures just run 1
        path.write_bytes(content)
    assert measure_zoo(store, "log_sum_of_fro", device="cpu") == 1


def test_a_twin_with_unreadable_weights_holds_back_only_the_agreement_measures(
        tiny_zoo_toml: Path, tmp_path: Path):
    spec = tiny_zoo_toml.read_text().replace("seeds = [0]", "seeds = [0, 1]")
    spec = spec.replace("width = [4, 8]", "width = 4").replace("lr = [0.02, 0.05]", "lr = 0.05")
    tiny_zoo_toml.write_text(spec)
    store = train_zoo(load_zoo_spec(tiny_zoo_toml), tmp_path / "zoo")
    first, second = (run.run_id for run in store.runs())
    bad = store.weights_path(second, "final")
    kept = bad.read_bytes()
    bad.write_bytes(b"")
    unreadable: dict[str, str] = {}
    assert measure_zoo(store, "disagreement,log_sum_of_fro", device="cpu",
                       unreadable=unreadable) == 1
    assert list(unreadable) == [second]  # the bad file's run, not its twin
    assert unreadable[second].startswith(str(bad))
    assert set(store.measured()[first]) == {"log_sum_of_fro"}
    # a run whose only missing measure reads the bad twin: nothing to do for it, no error
    unreadable.clear()
    assert measure_zoo(store, "disagreement", device="cpu", unreadable=unreadable) == 0
    assert list(unreadable) == [second]
    bad.write_bytes(kept)
    assert measure_zoo(store, "disagreement,log_sum_of_fro", device="cpu") == 2
    assert set(store.measured()[first]) == {"log_sum_of_fro", "disagreement"}


def test_a_network_that_cannot_be_built_stops_measuring_at_once(zoo_with_two_bad_runs,
                                                                 monkeypatch):
    """Not a run's weight file: the zoo's own problem, raised as it is, once."""
    import gengap.zoo.measure as measure

    store, _, _ = zoo_with_two_bad_runs
    calls = []

    def unbuildable(*args: object) -> None:
        calls.append(args)
        raise GengapError("/data/smallcnnzoo/weights.npy: not found")

    monkeypatch.setattr(measure, "build_for", unbuildable)
    unreadable: dict[str, str] = {}
    with pytest.raises(GengapError) as raised:
        measure_zoo(store, "log_sum_of_fro", device="cpu", unreadable=unreadable)
    assert type(raised.value) is GengapError and len(calls) == 1
    assert unreadable == {}


def test_a_zoo_opened_from_its_folder_is_closed_after(tiny_zoo_toml: Path, tmp_path: Path,
                                                      monkeypatch):
    from gengap.zoo import evaluate_zoo

    train_zoo(load_zoo_spec(tiny_zoo_toml), tmp_path / "zoo").close()
    closed = []
    close = Store.close
    monkeypatch.setattr(Store, "close", lambda self: (closed.append(self.root), close(self)))
    assert measure_zoo(tmp_path / "zoo", "log_sum_of_fro", device="cpu") == 4
    assert closed == [tmp_path / "zoo"]
    evaluate_zoo(tmp_path / "zoo")
    assert closed == [tmp_path / "zoo"] * 2
    store = Store(tmp_path / "zoo")  # a Store given is the caller's to close
    evaluate_zoo(store)
    assert len(closed) == 2


def test_a_folder_in_place_of_a_weight_file_is_named_as_such(zoo_with_two_bad_runs):
    store, runs, originals = zoo_with_two_bad_runs
    for path, content in originals.items():
        path.write_bytes(content)
    init = store.weights_path(runs[2], "init")
    init.unlink()
    init.mkdir()
    unreadable: dict[str, str] = {}
    assert measure_zoo(store, "frobenius_distance", device="cpu", unreadable=unreadable) == 3
    assert unreadable == {runs[2]: f"{init}: not a file, where a weight file should be"}


def test_measure_run_without_a_dict_raises_for_a_bad_initial_file(zoo_with_two_bad_runs):
    from gengap.data import load
    from gengap.zoo.measure import measure_run

    store, runs, _ = zoo_with_two_bad_runs
    run = next(r for r in store.runs() if r.run_id == runs[3])
    splits = load(run.data)
    with pytest.raises(UnreadableWeights, match="init.safetensors: unreadable weight file"):
        measure_run(store, run, ["frobenius_distance"], splits, {}, "cpu")
    into: dict[str, str] = {}
    assert measure_run(store, run, ["frobenius_distance", "log_sum_of_fro"], splits, {}, "cpu",
                       unreadable_into=into).keys() == {"log_sum_of_fro"}
    assert list(into) == [runs[3]]


def test_a_deleted_initial_weight_file_of_a_trained_run_is_named_not_left_out(
        tiny_zoo_toml: Path, tmp_path: Path):
    """gengap's own training always writes a run's initial weights: their file gone is a
    problem to name, not an import without a step-0 checkpoint whose measures wait."""
    store = train_zoo(load_zoo_spec(tiny_zoo_toml), tmp_path / "zoo")
    runs = [run.run_id for run in store.runs()]
    store.weights_path(runs[2], "init").unlink()
    unreadable: dict[str, str] = {}
    left_out: dict[str, int] = {}
    assert measure_zoo(store, "frobenius_distance,log_sum_of_fro", device="cpu",
                       unreadable=unreadable, left_out=left_out) == 4
    assert left_out == {}
    assert unreadable == {runs[2]: f"{store.weights_path(runs[2], 'init')}: missing weight file"}
    assert set(store.measured()[runs[2]]) == {"log_sum_of_fro"}
    assert set(store.measured()[runs[0]]) == {"frobenius_distance", "log_sum_of_fro"}
