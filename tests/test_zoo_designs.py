"""Zoo spec designs: grid and random (choices and continuous ranges), and their errors."""

from __future__ import annotations

import math

import pytest

from gengap.errors import GengapError
from gengap.specs import ZooSpec
from gengap.zoo import parse_zoo_spec
from gengap.zoo.spec_file import load_zoo_spec

RANDOM = {
    "name": "r",
    "design": "random",
    "samples": 40,
    "sample_seed": 7,
    "seeds": [0, 1],
    "arch": {"family": "mlp", "width": {"int_log_uniform": [4, 64]}, "depth": [1, 2]},
    "train": {"lr": {"log_uniform": [1e-3, 1e-1]}, "momentum": {"uniform": [0.5, 0.9]}},
}


def test_random_design_draws_inside_the_ranges_deterministically():
    zoo = parse_zoo_spec(RANDOM)
    runs = zoo.runs()
    assert len(runs) == 80  # 40 points x 2 seeds
    assert zoo.hyperparameters == ["arch.depth", "arch.width", "train.lr", "train.momentum"]
    assert all(4 <= r.arch.width <= 64 and r.arch.depth in (1, 2) for r in runs)
    assert all(1e-3 <= r.train.lr <= 1e-1 and 0.5 <= r.train.momentum <= 0.9 for r in runs)
    assert [r.run_id for r in parse_zoo_spec(RANDOM).runs()] == [r.run_id for r in runs]
    other = parse_zoo_spec({**RANDOM, "sample_seed": 8}).runs()
    assert [r.run_id for r in other] != [r.run_id for r in runs]
    # log-uniform: about half the draws fall below the geometric mean of the bounds
    below = sum(r.train.lr < math.sqrt(1e-3 * 1e-1) for r in runs[::2])
    assert 10 <= below <= 30
    assert {r.arch.depth for r in runs} == {1, 2}


def test_grid_design_is_the_full_product():
    zoo = parse_zoo_spec({"seeds": [0, 1, 2], "arch": {"width": [4, 8]},
                          "train": {"lr": [0.1, 0.2], "checkpoints": [1, 2]}})
    runs = zoo.runs()
    assert len(runs) == 12 and len({r.run_id for r in runs}) == 12
    assert all(r.train.checkpoints == (1, 2) for r in runs)  # a list-valued field, not an axis


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"design": "grid"}, ": a range needs design = \"random\""),
        ({"arch": {"width": {"uniform": [8, 64]}}},
         "a valid integer, got a number with a fractional part (a range of integers is "
         "int_uniform"),
        ({"arch": {"width": True}}, "[arch] width: expected a number, got true"),
        ({"arch": {"family": ["mlp", "mlpp"]}}, "[arch] family: unknown architecture family"),
        ({"data": {"name": "digitz"}}, "[data] name: unknown data source 'digitz'"),
        ({"data": {"name": "mnist1d", "options": {"noise": 1}}},
         "[data.options] data source 'mnist1d': option noise: unknown key"),
        ({"data": {"train_size": [50, 60], "train_fraction": [0.5, 1.0]}},
         "data.train_size = 50, data.train_fraction = 0.5"),
        ({"samples": None}, "samples: the random design needs samples = N"),
        ({"train": {"lr": {"log_uniform": [0, 1]}}}, "[train] lr: log_uniform range needs low > 0"),
        ({"train": {"lr": {"uniform": [0.1, 0.01]}}}, "[train] lr: uniform range needs low < high"),
        ({"train": {"lr": {"log_uniform": [0.1]}}}, "[train] lr: log_uniform needs [low, high]"),
        ({"arch": {"width": {"uniform": [-5, 10]}}}, "[arch] width = -5.0: Input should be"),
        # ranges draw numbers: they were converted to true/false, or drawn and then refused
        ({"train": {"flip": {"int_uniform": [0, 1]}}}, "[train] flip: a range draws numbers, "
         "which flip does not take: list its values instead"),
        ({"arch": {"batch_norm": {"int_uniform": [0, 1]}}}, "[arch] batch_norm: a range draws "
         "numbers"),
        ({"arch": {"activation": {"uniform": [0, 1]}}}, "[arch] activation: a range draws "
         "numbers"),
        ({"data": {"name": "mnist1d", "options": {"num_samples": "500"}}},
         "[data.options] num_samples: expected a number, got text '500'"),
        ({"data": {"name": "mnist1d", "options": {"num_samples": ["500", 600]}}},
         "[data.options] num_samples: expected a number, got text '500'"),
        ({"data": {"name": "mnist1d", "options": {"shuffle_seq": 1}}},
         "[data.options] shuffle_seq: expected true or false, got 1"),
        ({"data": {"name": "mnist1d", "options": {"shuffle_seq": {"int_uniform": [0, 1]}}}},
         "[data.options] shuffle_seq: a range draws numbers, which shuffle_seq does not take"),
        ({"data": {"name": "mnist1d", "options": {"uniform": [0, 1]}}},
         "[data] options: a range draws numbers, and options is a table: give the range to "
         "one of its keys"),
    ],
)
def test_bad_designs_are_one_line_errors(change, problem):
    raw = {**RANDOM, **change}
    if raw.get("samples") is None:
        raw.pop("samples")
    with pytest.raises(GengapError) as err:
        parse_zoo_spec(raw, source="z.toml")
    assert str(err.value).startswith("z.toml: ") and problem in str(err.value)
    assert "\n" not in str(err.value)


def test_a_grid_with_a_draws_seed_is_refused_and_a_stored_one_still_reads(tmp_path):
    grid = {"sample_seed": 3, "arch": {"width": [4, 8]}}
    with pytest.raises(GengapError) as err:
        parse_zoo_spec(grid, source="z.toml")
    assert str(err.value) == ('z.toml: sample_seed: a seed for the random design\'s draws; this '
                              'zoo\'s design is "grid" (set design = "random" and samples = N)')
    assert parse_zoo_spec({**grid, "sample_seed": 0}).design == "grid"  # the default, said
    # a zoo stored before the rule keeps reading
    written = parse_zoo_spec({**grid, "sample_seed": 0}).model_dump_json().replace(
        '"sample_seed":0', '"sample_seed":3')
    held = ZooSpec.model_validate_json(written, context={"stored": True})
    assert held.sample_seed == 3
    # and resumes from its spec file, which may no longer give the seed
    from gengap.zoo import Store

    Store.create(tmp_path / "zoo", held).close()
    resumed = Store.create(tmp_path / "zoo", parse_zoo_spec({**grid, "sample_seed": 0}))
    assert resumed.zoo.sample_seed == 3 and len(resumed.runs()) == 2
    resumed.close()


def test_random_design_from_toml(tmp_path):
    path = tmp_path / "z.toml"
    path.write_text(
        'name = "r"\ndesign = "random"\nsamples = 3\n[train]\n'
        'lr = { log_uniform = [1e-4, 1e-2] }\nweight_decay = { uniform = [0, 1e-3] }\n'
    )
    zoo = load_zoo_spec(path)
    assert len(zoo.runs()) == 3 and set(zoo.ranges) == {"train.lr", "train.weight_decay"}


def test_status_columns_are_short_unless_two_would_share_a_name():
    from gengap.cli.steps import short_names

    assert short_names(["run_id", "data.seed", "train.lr", "seed"]) == {
        "run_id": "run_id", "data.seed": "data.seed", "train.lr": "lr", "seed": "seed"}
