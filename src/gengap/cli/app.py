"""``gengap``: every command is one call of the Python API, drawn in the terminal."""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from typing import Annotated

import typer

from gengap.cli.console import console, errors, frame_table
from gengap.cli.data_cmds import data_app
from gengap.cli.evaluate_cmds import evaluate
from gengap.cli.options import (
    DataDir,
    Device,
    OptionError,
    Precision,
    TrainDevice,
    Workers,
    checked,
    population_mode,
)
from gengap.cli.pgdl_app import pgdl_app
from gengap.cli.pgdl_cmds import zoo_import_cnnzoo  # also registers `gengap pgdl` commands
from gengap.cli.pgdl_score import pgdl_score  # noqa: F401  (registers `gengap pgdl score`)
from gengap.cli.predict_cmds import predict_app
from gengap.cli.report_cmd import report
from gengap.cli.spectra_cmds import spectra
from gengap.cli.steps import (
    evaluate_step,
    export_step,
    measure_step,
    status_table,
    train_step,
)
from gengap.cli.study_cmds import study_app
from gengap.errors import GengapError
from gengap.zoo.pool import MAX_WORKERS

app = typer.Typer(
    help="Measure, predict and stress-test how well deep networks generalize.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
zoo_app = typer.Typer(help="Train populations of networks and inspect them.", no_args_is_help=True)
measures_app = typer.Typer(help="The catalogue of measures.", no_args_is_help=True)
app.add_typer(zoo_app, name="zoo")
app.add_typer(measures_app, name="measures")
app.add_typer(data_app, name="data")
app.add_typer(pgdl_app, name="pgdl")
app.add_typer(study_app, name="study")
app.add_typer(predict_app, name="predict")
app.command("spectra")(spectra)
zoo_app.command("import-cnnzoo")(zoo_import_cnnzoo)

# The demo's measures: every group whose cost stays within a few passes over the data
# (sharpness's gradient-ascent searches, Hessian flatness and module criticality are left out,
# and agreement needs seed pairs the demo grid does not have); `gengap measure` computes all.
DEMO_MEASURES = "size,output,norm,heavy_tailed,representation,optimization,pacbayes,weight_stats"


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="zoo folder")] = Path("gengap-demo"),
    workers: Workers = 1,
    device: Device = "auto",
) -> None:
    """Train the built-in 16-network digits zoo, measure it, and rank the measures."""
    from gengap.zoo.builtin import builtin_spec

    zoo = builtin_spec("demo")
    console.print(
        f"gengap demo: {len(zoo.runs())} CNNs on scikit-learn's digits over "
        f"{', '.join(zoo.hyperparameters)}; zoo folder {out}"
    )
    store = train_step(zoo, out, workers, device, None)
    measure_step(store, DEMO_MEASURES, device, None)
    evaluate_step(store, "gap")
    console.print(f"zoo, weights and measures are in {out}/ (see `gengap zoo status {out}`)")
    from gengap.report import write_report

    write_report(store, out / "report.html")
    console.print(f"report: {out / 'report.html'} (open it in a browser)")


def _executor(name: str) -> None:
    from gengap.zoo.executors import executors

    executors.get(name)


def _address(address: str) -> None:
    """The form of a HOST:PORT address, at parse time; whether it answers is checked later."""
    from gengap.zoo.ray_address import split_host_port

    if address not in ("auto", "local") and "://" not in address:  # as check_reachable
        split_host_port(address)


@zoo_app.command("train")
def zoo_train(
    ctx: typer.Context,
    spec: Annotated[Path, typer.Argument(help="zoo spec (TOML)")],
    out: Annotated[Path, typer.Option(help="zoo folder (created, or resumed)")],
    workers: Workers = 1,
    device: TrainDevice = "auto",
    data_dir: DataDir = None,
    executor: Annotated[
        str, typer.Option(help="local (processes on this machine) or ray (a Ray cluster)",
                          callback=checked(_executor))
    ] = "local",
    address: Annotated[
        str | None, typer.Option(help="Ray cluster address (auto, host:port, ray://...)",
                                 callback=checked(_address))
    ] = None,
    population: Annotated[
        str, typer.Option(help="train same-shaped runs as one batched population: off "
                          "(bit-for-bit reproducible), auto (where measured faster) or on",
                          callback=checked(population_mode))
    ] = "off",
) -> None:
    """Train every run of SPEC that the zoo folder does not hold yet."""
    from gengap.zoo import load_zoo_spec

    if address and executor != "ray":  # train_zoo refuses it too, but cannot point at --help
        raise OptionError("--address is for --executor ray", ctx)

    zoo = load_zoo_spec(spec)
    store = train_step(zoo, out, workers, device, data_dir, executor, address, population,
                       source=str(spec))
    counts = store.counts()
    console.print(
        f"{zoo.name}: {counts['done']} done, {counts['failed']} failed, "
        f"{counts['pending']} pending in {out}"
    )


@zoo_app.command("status")
def zoo_status(directory: Annotated[Path, typer.Argument(help="zoo folder")]) -> None:
    """Show a zoo's runs: status, hyperparameters and accuracies."""
    from gengap.zoo import Store

    status_table(Store(directory))


@zoo_app.command("export")
def zoo_export(
    directory: Annotated[Path, typer.Argument(help="zoo folder")],
    parquet: Annotated[Path, typer.Option(help="Parquet file to write")],
) -> None:
    """Write one row per run (spec fields, final metrics, status, measures) to a Parquet file."""
    export_step(directory, parquet)


def _measure_names(names: str) -> None:
    from gengap.measures import select

    select(names)


@app.command()
def measure(
    ctx: typer.Context,
    target: Annotated[
        Path, typer.Argument(help="zoo folder, or one MODEL.safetensors (with --arch, --data)")
    ],
    measures: Annotated[
        str | None, typer.Option(help="comma-separated measure or group names (default: all)",
                                 callback=checked(_measure_names))
    ] = None,
    recompute: Annotated[bool, typer.Option(help="recompute values already stored")] = False,
    device: Device = "auto",
    data_dir: DataDir = None,
    workers: Annotated[
        int, typer.Option(min=1, max=MAX_WORKERS, help="runs measured at a time (processes)")
    ] = 1,
    arch: Annotated[
        str | None, typer.Option(help="one model's architecture: family=nin,width=200,depth=2 "
                                 "or a TOML/JSON file of [arch] fields")
    ] = None,
    data: Annotated[
        str | None, typer.Option(help="one model's data: a source name, name=cifar10,"
                                 "train_size=10000 (a source's own knobs as JSON: "
                                 "name=modular,options={\"p\":11}), or a TOML/JSON file of "
                                 "[data] fields")
    ] = None,
    init: Annotated[
        Path | None, typer.Option(help="one model's initial weights (.safetensors)")
    ] = None,
    profile: Annotated[
        bool, typer.Option(help="print the time of each measure and each shared pass")
    ] = False,
    out: Annotated[
        Path | None, typer.Option(help="one model: also write the values (.json or .csv)")
    ] = None,
    precision: Precision = "auto",
) -> None:
    """Compute the measures each finished run of a zoo still lacks and store them, or measure
    one network given as a safetensors file."""
    from gengap.cli.measure_cmds import measure_target

    measure_target(ctx, target, measures, recompute, device, data_dir, workers, arch, data,
                   init, profile, out, precision)


@measures_app.command("list")
def measures_list() -> None:
    """Print the catalogue: each measure's group, needs, cost class and formula."""
    import pandas as pd

    from gengap.measures import measures

    rows = [
        {
            "measure": m.name,
            "group": m.group,
            "needs": ", ".join(sorted(m.needs)) or "architecture",
            "cost": m.cost,
            "what": m.summary,
        }
        for m in (measures.get(name) for name in measures)
    ]
    console.print(frame_table(pd.DataFrame(rows), title="gengap measures"))


app.command("evaluate")(evaluate)  # defined in evaluate_cmds.py
app.command("report")(report)  # defined in report_cmd.py


def _one_line_summaries(*typers: typer.Typer) -> None:
    """Each command's summary in its group's list is its docstring's first paragraph as one
    line: typer's rich help keeps the docstring's line breaks there, which break the list's
    lines in odd places on a narrow terminal (a command's own --help reflows them)."""
    for group in typers:
        for info in group.registered_commands:
            doc = info.help or inspect.getdoc(info.callback) or ""
            if info.short_help is None and doc:
                info.short_help = " ".join(doc.split("\n\n")[0].split())


_one_line_summaries(app, zoo_app, measures_app, data_app, pgdl_app, study_app, predict_app)


def main() -> None:
    """Entry point: a user's mistake is one line on stderr and exit status 2 (a bad option
    too: click's own report is a boxed paragraph)."""
    try:
        # click's errors reach us instead of its printer; the name the --help hints give, also
        # under `python -m gengap` (click would say "python -m gengap")
        code = app(standalone_mode=False, prog_name="gengap")
    except GengapError as err:  # a BadOption knows its command: point at its --help
        path = getattr(err, "command_path", None)
        _error(f"{err} (see: {path} --help)" if path else str(err))
    except typer.TyperException as err:  # click's usage errors (typer bundles its click)
        if not err.format_message():  # a bare command group: click shows its help
            err.show()
            sys.exit(err.exit_code)
        ctx = getattr(err, "ctx", None)
        help_hint = f" (see: {ctx.command_path} --help)" if ctx is not None else ""
        _error(f"{err.format_message()}{help_hint}")
    except (KeyboardInterrupt, typer.Abort):
        _interrupted()
    except (MemoryError, RuntimeError) as err:
        if not _out_of_memory(err):  # a bug: keep its traceback
            raise
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        _error(f"not enough memory ({reason}); ask for less (a smaller size, width or data set)")
    except SystemExit as done:  # click turns Ctrl-C into exit status 130 before it reaches us
        if done.code == 130:
            _interrupted()
        raise
    if code == 130:  # Ctrl-C: typer hands back click's exit status instead of raising
        _interrupted()
    if isinstance(code, int) and code:  # --help and friends end with click's exit status
        sys.exit(code)


def _out_of_memory(err: BaseException) -> bool:
    """numpy's MemoryError, torch's CUDA OutOfMemoryError, or its CPU allocator's refusal."""
    return (isinstance(err, MemoryError) or type(err).__name__ == "OutOfMemoryError"
            or "can't allocate memory" in str(err))


def _error(message: str) -> None:
    errors.print(f"gengap: error: {message}", markup=False, highlight=False, soft_wrap=True)
    sys.exit(2)


def _interrupted() -> None:
    errors.print("gengap: interrupted; finished runs are kept, run the command again to resume")
    sys.exit(130)
