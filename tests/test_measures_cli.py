"""``gengap measure`` on one safetensors file and on a zoo (workers, profile), the --arch/--data
syntax, and ``gengap measures list``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from gengap.data import load
from gengap.errors import GengapError
from gengap.measures import MeasureContext, compute
from gengap.models import build_for
from gengap.specs import ArchSpec, DataSpec
from gengap.zoo.measure_file import parse_spec_arg


def gengap(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gengap.cli", *args], capture_output=True, text=True, timeout=600
    )


def test_arch_and_data_syntax(tmp_path: Path):
    assert parse_spec_arg("family=nin,width=200,depth=2", ArchSpec, "arch") == ArchSpec(
        family="nin", width=200, depth=2)
    assert parse_spec_arg("digits", DataSpec, "data") == DataSpec(name="digits")
    assert parse_spec_arg("name=digits,train_fraction=0.5", DataSpec, "data") == DataSpec(
        name="digits", train_fraction=0.5)
    assert parse_spec_arg("name=digits,classes=[0, 1],seed=3", DataSpec, "data") == DataSpec(
        name="digits", classes=[0, 1], seed=3)  # the list's comma was taken as a separator
    toml = tmp_path / "arch.toml"
    toml.write_text('[arch]\nfamily = "mlp"\nwidth = 8\n')
    assert parse_spec_arg(str(toml), ArchSpec, "arch") == ArchSpec(family="mlp", width=8)
    js = tmp_path / "arch.json"
    js.write_text('{"family": "cnn", "depth": 2}')
    assert parse_spec_arg(str(js), ArchSpec, "arch") == ArchSpec(family="cnn", depth=2)
    with pytest.raises(GengapError, match="width"):
        parse_spec_arg("family=mlp,width=-1", ArchSpec, "arch")
    with pytest.raises(GengapError, match="key=value"):
        parse_spec_arg("family=mlp,wide", ArchSpec, "arch")
    with pytest.raises(GengapError, match="no such file"):
        parse_spec_arg(str(tmp_path / "missing.toml"), ArchSpec, "arch")
    options = tmp_path / "data.toml"
    options.write_text('[data]\nname = "mnist1d"\n[data.options]\nnum_samples = "500"\n')
    with pytest.raises(GengapError, match="data.toml: options.num_samples: expected a number, "
                                          "got text '500'"):
        parse_spec_arg(str(options), DataSpec, "data")
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00family")  # not UTF-8: was a UnicodeDecodeError
    with pytest.raises(GengapError, match="bin.toml: not valid TOML"):
        parse_spec_arg(str(binary), ArchSpec, "arch")


@pytest.fixture
def one_model(tmp_path: Path) -> tuple[Path, Path, torch.nn.Module, torch.nn.Module]:
    splits = load(DataSpec(name="digits"))
    arch = ArchSpec(family="mlp", width=8, depth=1)
    torch.manual_seed(0)
    init, final = build_for(arch, splits), build_for(arch, splits)
    # trained a little, so that σ′ exists (its search is skipped at chance accuracy)
    opt = torch.optim.Adam(final.parameters(), lr=0.05)
    for _ in range(100):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(final(splits.x_train), splits.y_train).backward()
        opt.step()
    final.eval()
    weights, init_weights = tmp_path / "final.safetensors", tmp_path / "init.safetensors"
    save_file(final.state_dict(), str(weights))
    save_file(init.state_dict(), str(init_weights))
    return weights, init_weights, final, init


def test_measure_one_safetensors_file(one_model, tmp_path: Path):
    weights, init_weights, final, init = one_model
    out = tmp_path / "values.json"
    done = gengap("measure", str(weights), "--arch", "family=mlp,width=8,depth=1",
                  "--data", "digits", "--init", str(init_weights), "--measures",
                  "norm,size,wstat,pacbayes_sigma", "--device", "cpu", "--profile", "--out",
                  str(out))
    assert done.returncode == 0, done.stderr
    assert "profile: shared passes" in done.stdout and "logits" in done.stdout
    # a tiny model: float32 whatever the CPU (gengap.measures.precision)
    assert ("Monte Carlo passes (σ′, α′, module criticality): float32 on 1 run"
            in " ".join(done.stdout.split()))
    values = json.loads(out.read_text())
    splits = load(DataSpec(name="digits"))
    ctx = MeasureContext(final, init, splits.x_train, splits.y_train, device="cpu")
    expected = compute(ctx, ["path_norm", "frobenius_distance", "sum_of_spec_fft", "vc_dim"])
    for name, value in expected.items():
        assert values[name] == pytest.approx(value, rel=1e-9), name
    assert "wstat.l0.weight.mean" in values
    assert values["monte_carlo_arithmetic"] == "float32"  # σ′'s, as a zoo records it


def test_measure_one_file_chooses_its_measures_once(one_model, monkeypatch):
    """The command listed what is left out with one call of file_measures, and measured
    with a second."""
    from typer.testing import CliRunner

    from gengap.cli.app import app
    from gengap.zoo import measure_file

    calls = []
    choose = measure_file.file_measures
    monkeypatch.setattr(measure_file, "file_measures",
                        lambda *args: calls.append(args) or choose(*args))
    weights, *_ = one_model
    done = CliRunner().invoke(app, ["measure", str(weights), "--arch",
                                    "family=mlp,width=8,depth=1", "--data", "digits",
                                    "--measures", "size", "--device", "cpu"])
    assert done.exit_code == 0, done.output
    assert "params" in done.output and len(calls) == 1


def test_measure_one_file_errors_are_one_line(one_model, tmp_path: Path):
    weights, *_ = one_model
    no_arch = gengap("measure", str(weights), "--data", "digits")
    assert no_arch.returncode == 2 and "needs --arch and --data" in no_arch.stderr
    wrong = gengap("measure", str(weights), "--arch", "family=mlp,width=9,depth=1",
                   "--data", "digits", "--measures", "norm")
    assert wrong.returncode == 2 and "weights do not fit" in wrong.stderr
    assert len(wrong.stderr.strip().splitlines()) == 1
    no_init = gengap("measure", str(weights), "--arch", "family=mlp,width=8,depth=1",
                     "--data", "digits", "--measures", "frobenius_distance")
    assert no_init.returncode == 2 and "needs --init" in no_init.stderr
    assert "size mismatch for" in wrong.stderr  # the tensor and its shapes
    for option, text, problem in [("--arch", "family=mlp,width=", "width"),
                                  ("--data", "name=digits,bogus", "expected key=value")]:
        args = {"--arch": "family=mlp,width=8,depth=1", "--data": "digits", option: text}
        bad = gengap("measure", str(weights), *(x for kv in args.items() for x in kv))
        assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
        assert f"Invalid value for '{option}': '{text}': " in bad.stderr and problem in bad.stderr
        assert "gengap measure --help" in bad.stderr
    state = load_file(str(weights))
    for name, bad, problem in [
        ("nan", {**state, "1.weight": torch.full_like(state["1.weight"], float("nan"))},
         "tensor '1.weight' holds NaN or infinite values"),
        ("int", {**state, "1.bias": state["1.bias"].long()}, "tensor '1.bias' is int64"),
    ]:
        path = tmp_path / f"{name}.safetensors"
        save_file(bad, str(path))
        refused = gengap("measure", str(path), "--arch", "family=mlp,width=8,depth=1",
                         "--data", "digits", "--measures", "param_norm")
        assert refused.returncode == 2 and f"{path}: {problem}" in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1


def test_measures_list_shows_needs_and_cost():
    listed = gengap("measures", "list")
    assert listed.returncode == 0
    for text in ("pacbayes_mag_flatness", "sharpness_mag_flatness", "prod_of_spec_fft",
                 "grad_noise", "trajectory", "init_weights"):
        assert text in listed.stdout, text


def test_measure_precision_is_an_option(one_model, tmp_path: Path):
    weights = one_model[0]
    args = ("measure", str(weights), "--arch", "family=mlp,width=8,depth=1", "--data", "digits",
            "--measures", "pacbayes_sigma", "--device", "cpu", "--profile")
    done = gengap(*args, "--precision", "bfloat16")
    assert done.returncode == 0, done.stderr
    assert ("Monte Carlo passes (σ′, α′, module criticality): bfloat16 on 1 run (--precision "
            "chooses)" in " ".join(done.stdout.split()))
    csv = tmp_path / "values.csv"
    plain = gengap("measure", str(weights), "--arch", "family=mlp,width=8,depth=1", "--data",
                   "digits", "--measures", "path_norm", "--device", "cpu", "--out", str(csv))
    assert plain.returncode == 0, plain.stderr
    assert csv.read_text().splitlines()[0] == "path_norm"  # no Monte Carlo measure: no record
    bad = gengap(*args, "--precision", "half")
    assert bad.returncode == 2 and "Invalid value for '--precision'" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_measure_a_zoo_with_workers_and_profile(tiny_zoo_toml: Path, tmp_path: Path):
    from gengap.zoo import Store

    out = tmp_path / "zoo"
    assert gengap("zoo", "train", str(tiny_zoo_toml), "--out", str(out)).returncode == 0
    names = "norm,optimization,wstat,output_entropy,vc_dim"
    parallel = gengap("measure", str(out), "--measures", names, "--workers", "2",
                      "--device", "cpu")
    assert parallel.returncode == 0, parallel.stderr
    frame = Store(out).frame()
    for column in ("wstat.l0.weight.q50", "optim_steps_to_0.1", "grad_noise",
                   "log_spec_orig_main_fft", "output_entropy"):
        assert column in frame.columns, column
    assert frame["grad_noise"].notna().all() and frame["wstat.l0.weight.q50"].notna().all()
    # Nothing is missing any more, so a second call measures nothing ...
    again = gengap("measure", str(out), "--measures", names)
    assert "measured 0 runs" in again.stdout
    # ... and one process recomputes the same values, with a profile.
    serial = gengap("measure", str(out), "--measures", "grad_noise,sum_of_spec_fft,pacbayes_sigma",
                    "--recompute", "--profile", "--device", "cpu", "--precision", "bfloat16")
    assert serial.returncode == 0 and "profile: measures (own time)" in serial.stdout
    after = Store(out).frame()
    # the runs whose σ′ search ran (at chance accuracy it is skipped and NaN)
    searched = int(after["pacbayes_sigma"].notna().sum())
    assert searched >= 1
    assert (f"Monte Carlo passes (σ′, α′, module criticality): bfloat16 on {searched} run"
            in " ".join(serial.stdout.split()))
    for name in ("grad_noise", "sum_of_spec_fft"):
        assert after[name].tolist() == pytest.approx(frame[name].tolist(), rel=1e-6), name
