from pathlib import Path

import pytest

from gengap.errors import GengapError
from gengap.specs import ArchSpec, RunSpec, TrainSpec
from gengap.zoo import load_zoo_spec, parse_zoo_spec


def test_run_id_is_a_hash_of_the_canonical_spec():
    a = RunSpec(arch=ArchSpec(width=8), train=TrainSpec(lr=0.1))
    b = RunSpec.model_validate_json(a.canonical_json())
    assert a.run_id == b.run_id and len(a.run_id) == 16
    assert RunSpec(arch=ArchSpec(width=9), train=TrainSpec(lr=0.1)).run_id != a.run_id
    assert RunSpec(seed=1).run_id != RunSpec(seed=0).run_id


def test_lists_in_sections_are_grid_axes(tiny_zoo_toml: Path):
    zoo = load_zoo_spec(tiny_zoo_toml)
    assert zoo.hyperparameters == ["arch.width", "train.lr"]
    runs = zoo.runs()
    assert len(runs) == 4
    pairs = {(r.arch.width, r.train.lr) for r in runs}
    assert pairs == {(4, 0.02), (4, 0.05), (8, 0.02), (8, 0.05)}
    assert all(r.arch.depth == 2 and r.data.train_fraction == 0.3 for r in runs)
    assert len({r.run_id for r in runs}) == 4


def test_seeds_multiply_the_grid():
    zoo = parse_zoo_spec({"seeds": [0, 1, 2], "arch": {"width": [4, 8]}})
    assert len(zoo.runs()) == 6
    assert sorted({r.seed for r in zoo.runs()}) == [0, 1, 2]


def test_runs_are_expanded_once_per_spec_and_not_shared_with_an_edited_copy(monkeypatch):
    zoo = parse_zoo_spec({"seeds": [0, 1], "arch": {"width": [4, 8]}})
    first = zoo.runs()
    expansions = []
    expand = type(zoo)._expand
    monkeypatch.setattr(type(zoo), "_expand", lambda self: expansions.append(1) or expand(self))
    again = zoo.runs()
    again.pop()  # the caller's list, not the cache
    assert zoo.runs() == first and len(first) == 4 and not expansions
    other = zoo.model_copy(update={"seeds": (7,)})
    assert sorted({r.seed for r in other.runs()}) == [7] and len(other.runs()) == 2
    assert expansions == [1]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"arch": {"widht": 3}}, "z.toml: [arch] widht: unknown key"),
        ({"arch": {"width": "wide"}}, "z.toml: [arch] width: expected a number, got text 'wide'"),
        ({"train": {"lr": -1.0}}, "z.toml: [train] lr: Input should be greater than 0"),
        ({"arch": {"width": [8, 0]}}, "z.toml: [arch] width = 0: Input should be greater than"),
        ({"arch": {"width": []}}, "z.toml: [arch] width: empty list of values"),
        ({"colour": "red"}, "z.toml: colour: unknown key"),
        ({"seeds": [1, 1]}, "z.toml: seeds: a seed is listed twice"),
        # an infinity passed gt=0 and was stored as null, which no later command could read
        ({"train": {"lr": float("inf")}}, "z.toml: [train] lr: Input should be a finite number"),
        # torch.manual_seed takes [-2**63, 2**64 - 1]: beyond, training crashed after the
        # zoo folder was made
        ({"seeds": [2**64]}, "z.toml: seeds.0: Input should be less than or equal to"),
        ({"data": {"seed": -(2**63) - 1}}, "z.toml: [data] seed: Input should be greater"),
        ({"train": {"weight_decay": [0.0, float("nan")]}},
         "z.toml: [train] weight_decay = nan: Input should be a finite number"),
    ],
)
def test_bad_specs_name_the_file_the_key_and_the_problem(raw, expected):
    with pytest.raises(GengapError) as err:
        parse_zoo_spec(raw, source="z.toml")
    assert str(err.value).startswith(expected)
    assert "\n" not in str(err.value)


def test_invalid_toml_and_missing_file(tmp_path: Path):
    bad = tmp_path / "bad.toml"
    bad.write_text("name = \n")
    with pytest.raises(GengapError, match=r"bad.toml: invalid TOML"):
        load_zoo_spec(bad)
    with pytest.raises(GengapError, match=r"nope.toml: no such file"):
        load_zoo_spec(tmp_path / "nope.toml")
