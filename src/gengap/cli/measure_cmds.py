"""``gengap measure``: a zoo folder or one safetensors file, optionally with a time profile."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import typer

from gengap.atomic_write import write_text_atomically
from gengap.cli.console import console, frame_table
from gengap.cli.options import OptionError, blamed_on
from gengap.cli.outputs import output_file
from gengap.cli.steps import measure_step, print_no_value
from gengap.table_file import write_table


def measure_target(
    ctx: typer.Context, target: Path, measures: str | None, recompute: bool, device: str,
    data_dir: Path | None, workers: int, arch: str | None, data: str | None, init: Path | None,
    profile: bool, out: Path | None, precision: str = "auto",
) -> None:
    """Dispatch on TARGET: a zoo folder, or a ``.safetensors`` file with ``--arch``/``--data``."""
    if target.suffix == ".safetensors" or target.is_file():
        if arch is None or data is None:
            raise OptionError(f"{target}: measuring one model needs --arch and --data", ctx)
        if recompute or workers > 1:  # refused rather than ignored
            raise OptionError("--recompute and --workers are for a zoo folder; one file is "
                              "measured once, in this process", ctx)
        _measure_file(ctx, target, measures, device, data_dir, arch, data, init, profile, out,
                      precision)
        return
    if arch or data or init or out:
        raise OptionError("--arch, --data, --init and --out are for a single .safetensors file",
                          ctx)
    from gengap.zoo import Store

    if profile and workers > 1:
        raise OptionError("--profile times one process: use it with --workers 1", ctx)
    timings: dict[str, dict[str, float]] | None = {} if profile else None
    count = measure_step(Store(target), measures, device, data_dir, recompute, workers, timings,
                         precision)
    console.print(f"measured {count} run{'' if count == 1 else 's'} in {target}")
    if timings is not None:
        print_profile(timings.get("measures", {}), timings.get("passes", {}),
                      timings.get("monte_carlo_precision", {}))


def _measure_file(
    ctx: typer.Context, target: Path, measures: str | None, device: str,
    data_dir: Path | None, arch: str, data: str, init: Path | None, profile: bool,
    out: Path | None, precision: str,
) -> None:
    from gengap.specs import ArchSpec, DataSpec, MeasureOptions
    from gengap.zoo.measure_file import file_measures, lacking_words, measure_chosen, parse_spec_arg

    output_file(out, (".json", ".csv"), inputs=(target, init, arch, data))
    with blamed_on("--measures", ctx):  # a measure named that one file cannot give
        chosen, left_out = file_measures(measures, init is not None)
    with blamed_on("--arch", ctx):
        arch_spec = parse_spec_arg(arch, ArchSpec, "arch")
    with blamed_on("--data", ctx):
        data_spec = parse_spec_arg(data, DataSpec, "data")
    result = measure_chosen(target, arch_spec, data_spec, chosen, init, device, data_dir,
                            MeasureOptions(precision=precision))
    values = {name: value for name, (value, _) in result.values.items()}
    shown = {k: v for k, v in values.items() if not k.startswith("wstat.")}
    frame = pd.DataFrame({"measure": list(shown), "value": list(shown.values())})
    console.print(frame_table(frame, title=f"measures of {target}", digits=5))
    if len(shown) < len(values):
        console.print(f"(and {len(values) - len(shown)} weight-statistics features)")
    if left_out:
        console.print(f"left out: {lacking_words(left_out)}")
    print_no_value({name: {reason: 1} for name, reason in result.no_value.items()},
                   of="network")
    if out is not None:
        if result.monte_carlo_arithmetic:  # beside the values, as a zoo's export has it
            values["monte_carlo_arithmetic"] = result.monte_carlo_arithmetic
        if out.suffix.lower() == ".json":
            write_text_atomically(out, json.dumps(values, indent=1))
        else:
            write_table(pd.DataFrame([values]), out)
        console.print(f"wrote {out}")
    if profile:
        print_profile(result.measure_seconds, result.pass_seconds,
                      {result.monte_carlo_precision: 1} if result.monte_carlo_precision else {})


def print_profile(measure_seconds: dict[str, float], pass_seconds: dict[str, float],
                  precision_runs: dict[str, float] | None = None) -> None:
    """Two tables: each measure's own time and each shared pass's time, largest first; then
    the arithmetic of the Monte Carlo passes (``precision_runs``: precision -> runs)."""
    total = sum(measure_seconds.values()) + sum(pass_seconds.values())
    for title, seconds in (("shared passes", pass_seconds), ("measures (own time)",
                                                             measure_seconds)):
        rows = sorted(seconds.items(), key=lambda kv: -kv[1])
        frame = pd.DataFrame(
            [{"name": n, "seconds": s, "share": s / total if total else 0.0} for n, s in rows]
        )
        if not frame.empty:
            console.print(frame_table(frame, title=f"profile: {title}", digits=4))
    console.print(f"total {total:.3f} s")
    if precision_runs:
        console.print("Monte Carlo passes (σ′, α′, module criticality): " + ", ".join(
            f"{name} on {runs:g} run{'s' if runs != 1 else ''}"
            for name, runs in sorted(precision_runs.items())) + " (--precision chooses)")
