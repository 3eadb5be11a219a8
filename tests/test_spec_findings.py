"""QA findings 4, 13 and 14: spec problems refused before the zoo folder exists, naming the spec
file; options that were silently ignored; errors that misled or reported an invented value."""

from __future__ import annotations

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
