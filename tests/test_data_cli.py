"""``gengap data list`` and ``gengap data show``: knobs from the command line, the printed
summary, one-line errors."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gengap.cli.app import app
from gengap.cli.data_cmds import parse_knobs, spec_from_knobs
from gengap.data import sources
from gengap.errors import GengapError


def gengap(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gengap.cli", *args], capture_output=True, text=True, timeout=300
    )


def run(*args: str):
    return CliRunner().invoke(app, list(args))


def test_parse_knobs_forms() -> None:
    args = ["--window", "3", "--label-noise=0.2", "--wrap", "--no-normalize", "--seed", "-1"]
    assert parse_knobs(args) == {
        "window": "3", "label_noise": "0.2", "wrap": "true", "normalize": "false", "seed": "-1",
    }
    with pytest.raises(GengapError, match="unexpected argument '3'"):
        parse_knobs(["3"])
    # the last of two silently won: classes=(2, 3)
    for twice in (["--classes", "0,1", "--classes", "2,3"], ["--normalize", "--no-normalize"]):
        with pytest.raises(GengapError, match=r"^--(classes|normalize) is given twice$"):
            parse_knobs(twice)


def test_a_key_given_twice_in_a_spec_option_is_refused() -> None:
    from gengap.specs import ArchSpec
    from gengap.zoo.measure_file import parse_spec_arg

    with pytest.raises(GengapError, match="'family=cnn,width=8,width=16': width is given "
                       "twice"):
        parse_spec_arg("family=cnn,width=8,width=16", ArchSpec, "arch")


def test_knobs_are_routed_and_typed() -> None:
    spec = spec_from_knobs("pvr-vector", parse_knobs(
        ["--window", "3", "--aggregation", "min", "--label-noise", "0.2", "--classes", "0,1,2",
         "--wrap"]
    ))
    assert spec.options == {"window": 3, "aggregation": "min", "wrap": True}
    assert spec.label_noise == 0.2 and spec.classes == (0, 1, 2)
    with pytest.raises(GengapError, match="unknown knob --windw for data source 'pvr-vector'"):
        spec_from_knobs("pvr-vector", {"windw": "3"})
    with pytest.raises(GengapError, match="option window: Input should be a valid integer"):
        spec_from_knobs("pvr-vector", {"window": "three"})
    with pytest.raises(GengapError, match="label_noise: Input should be less than or equal"):
        spec_from_knobs("digits", {"label_noise": "2"})


def test_data_list_shows_every_source_and_the_common_knobs() -> None:
    result = run("data", "list")
    assert result.exit_code == 0, result.output
    for name in sources:
        assert name in result.output
    for knob in ("label_noise", "random_pixels", "gaussian_inputs", "window=1", "p=97"):
        assert knob in result.output


def test_data_show_prints_sizes_balance_and_majority_baseline() -> None:
    result = run("data", "show", "pvr-vector", "--window", "3", "--aggregation", "min",
                 "--n-train", "4000", "--n-test", "1000")
    assert result.exit_code == 0, result.output
    assert "4000 training and 1000 test examples" in result.output
    assert "class balance" in result.output
    found = re.search(r"scores (0\.\d+) on train", result.output)
    assert found and abs(float(found.group(1)) - 0.271) < 0.03  # min over 3 digits: far above 10%


def test_data_show_notes_test_classes_that_training_lacks(tmp_path: Path) -> None:
    """Training labels 0..2 and test labels 7 loaded as 8 classes without a word."""
    import numpy as np

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.random((30, 4)), y=np.arange(30) % 3,
             x_test=rng.random((20, 4)), y_test=np.full(20, 7))
    result = run("data", "show", "npz", "--file", str(tmp_path / "d.npz"))
    assert result.exit_code == 0, result.output
    assert ("note: 1 class of the test split never occurs in training (7): no network trained "
            "on it can learn it") in " ".join(result.output.split())
    ok = run("data", "show", "digits")
    assert "never occur" not in ok.output


def test_data_show_errors_are_one_line(tmp_path: Path) -> None:
    for args, fragment in (
        (["data", "show", "digits", "--window", "3"], "unknown knob --window"),
        (["data", "show", "nosuch"], "unknown data source 'nosuch'"),
        (["data", "show", "mnist", "--data-dir", str(tmp_path)], "expected file"),
    ):
        result = run(*args)
        assert isinstance(result.exception, GengapError), result.output
        assert fragment in str(result.exception) and "\n" not in str(result.exception)
    # through the real entry point: one line on stderr, exit status 2
    result = gengap("data", "show", "digits", "--window", "3")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "gengap: error: unknown knob --window for data source 'digits' (its own: none; "
        "common: see `gengap data list`)"
    ]
