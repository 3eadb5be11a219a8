"""QA findings 4, 13 and 14: spec problems refused before the zoo folder exists, naming the spec
file; options that were silently ignored; errors that misled or reported an invented value."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from gengap.data import load
from gengap.errors import GengapError
from gengap.models import build_for
from gengap.specs import ArchSpec, DataSpec
from gengap.zoo import load_zoo_spec, train_zoo
from gengap.zoo.spec_file import parse_zoo_spec


def gengap(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gengap.cli", *args], capture_output=True, text=True, timeout=300
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


VECTORS = 'name = "x"\n[data]\nname = "teacher-student"\n[arch]\nfamily = "mlp"\n[train]\n'


def test_flip_and_crop_of_vectors_are_refused_before_the_zoo_folder(tmp_path: Path):
    spec = tmp_path / "c4.toml"
    spec.write_text(VECTORS + "crop = 2\nflip = true\nmax_epochs = 1\n")
    out = tmp_path / "zc_4"
    line = one_line_error(gengap("zoo", "train", str(spec), "--out", str(out)))
    assert "c4.toml: [train] flip and crop: flips and crops need image inputs" in line
    assert not out.exists()
    spec.write_text(VECTORS + "crop = 2\nmax_epochs = 1\n")  # the Python API too
    with pytest.raises(GengapError, match=r"zoo 'x': \[train\] crop: flips and crops need"):
        train_zoo(load_zoo_spec(spec), out)
    assert not out.exists()


@pytest.fixture
def weight_files(tmp_path: Path) -> tuple[Path, Path]:
    splits = load(DataSpec(name="digits"))
    torch.manual_seed(0)
    files = []
    for name in ("init", "final"):
        model = build_for(ArchSpec(family="mlp", width=8, depth=1), splits)
        path = tmp_path / f"{name}.safetensors"
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
        files.append(path)
    return files[0], files[1]


def test_single_model_options_are_honoured_or_refused(weight_files: tuple[Path, Path]):
    init, final = weight_files
    one = ("--arch", "family=mlp,width=8,depth=1", "--data", "digits", "--device", "cpu")
    # a bare file is one set of weights: --which was ignored
    line = one_line_error(gengap("spectra", str(final), "--which", "init"))
    assert "final.safetensors: --which is for ZOO_DIR/RUN_ID" in line
    # a group leaves out what needs --init (and says so); it was refused whole
    norm = gengap("measure", str(final), *one, "--measures", "norm")
    assert norm.returncode == 0, norm.stderr
    assert "path_norm" in norm.stdout and "left out:" in norm.stdout
    assert "frobenius_distance" in norm.stdout.split("left out:")[1]
    # with --init given, the message named --init as what was missing
    line = one_line_error(gengap("measure", str(final), *one, "--init", str(init),
                                 "--measures", "optim_steps_to_0.1"))
    assert "optim_steps_to_0.1 needs a zoo run's training records" in line
    assert "--init" not in line


def test_a_range_in_a_grid_is_refused_without_an_invented_draw():
    with pytest.raises(GengapError) as err:
        parse_zoo_spec({"arch": {"width": {"uniform": [8, 64]}}}, "g.toml")
    assert str(err.value) == 'g.toml: [arch] width: a range needs design = "random"'


def test_a_checkpoint_after_max_epochs_is_refused():
    for train, problem in [
        ({"checkpoints": [500], "max_epochs": 2}, "epoch 500 is after max_epochs = 2"),
        # max_steps only ends a run sooner: still never reached
        ({"checkpoints": [1, 5], "max_epochs": 4, "max_steps": 1000},
         "epoch 5 is after max_epochs = 4"),
        ({"checkpoints": [2, 4], "max_epochs": [1, 3]},  # past the longest runs too
         "epoch 4 is after max_epochs = 3"),
    ]:
        with pytest.raises(GengapError) as err:
            parse_zoo_spec({"train": train}, "k.toml")
        assert str(err.value).startswith(f"k.toml: [train] checkpoints: {problem}")
    # a max_epochs axis shares its checkpoints: the longer runs keep epoch 4 (as before)
    zoo = parse_zoo_spec({"train": {"checkpoints": [1, 4], "max_epochs": [2, 5]}})
    assert [run.train.checkpoints for run in zoo.runs()] == [(1, 4), (1, 4)]
    # whether max_steps ends epoch 3 midway depends on the data's size: kept (README says so)
    zoo = parse_zoo_spec({"train": {"checkpoints": [1, 3], "max_epochs": 3, "max_steps": 5}})
    assert zoo.runs()[0].train.checkpoints == (1, 3)


def test_lr_steps_that_never_act_are_refused():
    for train, problem in [
        # a step after epoch e acts from e + 1: one at max_epochs never does
        ({"schedule": "step", "lr_steps": [2, 4], "max_epochs": 4},
         "lr_steps: epoch 4 is not before max_epochs = 4, so that step never acts"),
        ({"schedule": "step", "lr_steps": [3], "max_epochs": [2, 3]},  # the longest runs too
         "lr_steps: epoch 3 is not before max_epochs = 3"),
        ({"lr_steps": [2], "max_epochs": 5},  # the default schedule is constant
         'lr_steps: only schedule = "step" uses them, and no run has that schedule'),
    ]:
        with pytest.raises(GengapError) as err:
            parse_zoo_spec({"train": train}, "s.toml")
        assert str(err.value).startswith(f"s.toml: [train] {problem}"), str(err.value)
    # steps within the longest stepped runs are theirs; shorter runs of the axis skip them
    zoo = parse_zoo_spec({"train": {"schedule": "step", "lr_steps": [2, 4],
                                    "max_epochs": [3, 5]}})
    assert [run.train.lr_steps for run in zoo.runs()] == [(2, 4), (2, 4)]
    # a schedule axis shares its lr_steps with the runs that do not step
    zoo = parse_zoo_spec({"train": {"schedule": ["step", "constant"], "lr_steps": [1],
                                    "max_epochs": 3}})
    assert len(zoo.runs()) == 2


@pytest.mark.parametrize(("section", "value", "problem"), [
    ({"arch": {"width": "16"}}, None, "[arch] width: expected a number, got text '16'"),
    ({"arch": {"batch_norm": "no"}}, None, "[arch] batch_norm: expected true or false, got "
     "text 'no'"),
    ({"arch": {"batch_norm": 1}}, None, "[arch] batch_norm: expected true or false, got 1"),
    ({"train": {"flip": 0}}, None, "[train] flip: expected true or false, got 0"),
    ({"train": {"lr": "0.1"}}, None, "[train] lr: expected a number, got text '0.1'"),
    ({"data": {"classes": [1, "2"]}}, None, "[data] classes: expected a number, got text '2'"),
    ({"arch": {"width": [8, "16"]}}, None, "[arch] width = '16': expected a number, got text "
     "'16'"),
])
def test_a_spec_files_values_are_not_coerced_to_the_fields_type(section, value, problem):
    # pydantic's lax mode read '16' as 16, 'no' as false and 1 as true
    with pytest.raises(GengapError) as err:
        parse_zoo_spec(section, "c.toml")
    assert str(err.value) == f"c.toml: {problem}"


def test_values_typed_on_the_command_line_are_still_converted(tmp_path: Path):
    from gengap.cli.data_cmds import spec_from_knobs

    spec = spec_from_knobs("digits", {"train_size": "100", "random_labels": "true",
                                      "classes": "1,2"})
    assert (spec.train_size, spec.random_labels, spec.classes) == (100, True, (1, 2))
    # a number stays a number for the fields that take one
    zoo = parse_zoo_spec({"arch": {"width": 16.0}, "train": {"lr": 1}})
    assert (zoo.arch.width, zoo.train.lr) == (16, 1.0)
    # --arch/--data key=value are typed on the command line too; their files are not
    from gengap.specs import ArchSpec
    from gengap.zoo.measure_file import parse_spec_arg

    assert parse_spec_arg("family=mlp,batch_norm=True", ArchSpec, "arch").batch_norm is True
    (tmp_path / "arch.TOML").write_text('[arch]\nfamily = "mlp"\nwidth = "8"\n')
    with pytest.raises(GengapError, match="arch.TOML: width: expected a number, got text '8'"):
        parse_spec_arg(str(tmp_path / "arch.TOML"), ArchSpec, "arch")


def test_a_store_written_before_the_stricter_checks_stays_readable(tmp_path: Path):
    # a zoo the previous version accepted (flip = [0, 1], a blank name, int_uniform with
    # fractional ends) could no longer be opened: status, measure, report all failed
    import sqlite3

    from gengap.specs import ZooSpec
    from gengap.zoo import Store

    lax = ZooSpec(name="old", axes={"train.flip": (0, 1)})
    Store.create(tmp_path / "z", lax).close()
    stored = json.loads(lax.canonical_json())
    stored.update(name=" ", design="random", samples=2,
                  ranges={"arch.width": {"kind": "int_uniform", "low": 1.5, "high": 3.0}})
    with sqlite3.connect(tmp_path / "z" / "gengap.sqlite") as con:
        con.execute("UPDATE meta SET value = ? WHERE key = 'zoo_spec'", (json.dumps(stored),))
    store = Store(tmp_path / "z")
    assert store.zoo.name == " " and store.zoo.axes == {"train.flip": (0, 1)}
    assert [run.train.flip for run in store.runs()] == [False, True]
    with pytest.raises(GengapError, match=r"\[train\] flip = 0: expected true or false, got 0"):
        parse_zoo_spec({"train": {"flip": [0, 1]}}, "new.toml")  # a new spec file: refused


@pytest.mark.parametrize(("train", "problem"), [
    ({"lr": {"normal": [0.0, 1.0]}}, "[train] lr: a range is one of uniform, log_uniform, "
     "int_uniform, int_log_uniform = [low, high], got {normal}"),
    ({"lr": {"uniform": [0.1, 1.0], "log_uniform": [0.1, 1.0]}}, "[train] lr: a range is one "
     "of uniform, log_uniform, int_uniform, int_log_uniform = [low, high], got {uniform, "
     "log_uniform}"),
    # the integer hint only where a float was drawn for an integer field
    ({"lr": {"uniform": [0, 0.1]}}, "[train] lr = 0.0: Input should be greater than 0"),
    ({"max_epochs": {"uniform": [1, 3]}}, "[train] max_epochs = 1.7434: Input should be a "
     "valid integer, got a number with a fractional part (a range of integers is int_uniform "
     "or int_log_uniform)"),
    ({"max_epochs": {"int_uniform": [1.5, 3]}}, "[train] max_epochs: int_uniform range needs "
     "integer ends, got [1.5, 3] (a range of floats is uniform or log_uniform)"),
])
def test_random_design_ranges_are_refused_with_what_is_wrong(train, problem):
    with pytest.raises(GengapError) as err:
        parse_zoo_spec({"design": "random", "samples": 3, "train": train}, "r.toml")
    assert str(err.value) == f"r.toml: {problem}"


@pytest.mark.parametrize(("arch", "problem"), [
    ({"family": "mlp", "heads": [2, 4]}, "[arch] heads: the mlp family does not use it, so its "
     "runs would differ in name only (it reads width, depth, activation, dropout, batch_norm)"),
    ({"family": ["vgg", "nin"], "dense_width": [8, 16]}, "[arch] dense_width: the nin family "
     "does not use it"),
    ({"family": "transformer", "batch_norm": [False, None]}, "[arch] batch_norm: the "
     "transformer family does not use it"),
])
def test_an_axis_over_a_knob_its_family_does_not_read_is_refused(arch, problem):
    # two runs of the same network under different names, and an axis for the evaluation
    with pytest.raises(GengapError) as err:
        parse_zoo_spec({"arch": arch}, "f.toml")
    assert str(err.value).startswith(f"f.toml: {problem}"), str(err.value)
    # the knobs a family reads remain axes
    zoo = parse_zoo_spec({"arch": {"family": "vgg", "dense_width": [8, 16], "width": [4, 8]}})
    assert len(zoo.runs()) == 4


def test_a_warm_up_past_the_epoch_bound_and_a_whole_table_check_name_their_place():
    """The first trained at a rate that never reached lr; the second read "train: lr_steps"."""
    with pytest.raises(GengapError, match=r"^w.toml: \[train\] warmup_epochs: 10 is past "
                                          "max_epochs = 3, so the rate never reaches lr$"):
        parse_zoo_spec({"train": {"warmup_epochs": 10, "max_epochs": 3}}, "w.toml")
    with pytest.raises(GengapError, match=r"^s.toml: \[train\] lr_steps: epochs must be "):
        parse_zoo_spec({"train": {"schedule": "step", "lr_steps": [3, 1]}}, "s.toml")


@pytest.mark.parametrize(("train", "problem"), [
    ({"optimizer": "adam", "momentum": [0.5, 0.9]}, "[train] momentum: the adam optimizer "
     "does not use it, so its runs would differ in name only"),
    ({"optimizer": ["sgd", "rmsprop"], "momentum": {"uniform": [0.5, 0.9]}}, "[train] "
     "momentum: the rmsprop optimizer does not use it"),
    ({"lr_gamma": [0.1, 0.5]}, "[train] lr_gamma: only the step schedule with lr_steps uses "
     "it, so its runs would differ in name only"),
    ({"schedule": "step", "lr_gamma": [0.1, 0.5]}, "[train] lr_gamma: only the step schedule "
     "with lr_steps uses it"),
])
def test_an_axis_over_a_training_knob_no_run_reads_is_refused(train, problem):
    """Four runs of bit-identical weights under four names (helper 93: adam × momentum)."""
    design = {"design": "random", "samples": 3} if any(
        isinstance(v, dict) for v in train.values()) else {}
    with pytest.raises(GengapError) as err:
        parse_zoo_spec({**design, "train": train}, "t.toml")
    assert str(err.value).startswith(f"t.toml: {problem}"), str(err.value)
    zoo = parse_zoo_spec({"train": {"schedule": "step", "lr_steps": [2], "max_epochs": 4,
                                    "lr_gamma": [0.1, 0.5], "momentum": [0.5, 0.9]}})
    assert len(zoo.runs()) == 4
