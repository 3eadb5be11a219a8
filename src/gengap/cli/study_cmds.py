"""``gengap study NAME``: the ready-made studies, one command each, with a result table in the
terminal, the published finding beside what this run found, the time, and an HTML report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.markup import escape

from gengap.cli.console import console, frame_table, progress
from gengap.cli.options import Device, Workers, checked, population_mode
from gengap.number_format import counted

study_app = typer.Typer(
    help="Ready-made studies that reproduce known findings on embedded data.",
    no_args_is_help=True,
)


def _scale(scale: str) -> None:
    from gengap.studies import check_scale

    check_scale(scale)


Scale = Annotated[str, typer.Option(help="smoke (seconds), default or full",
                                    callback=checked(_scale))]
Out = Annotated[Path | None, typer.Option(help="study folder (default: gengap-study-NAME)")]
Population = Annotated[
    str, typer.Option(help="train same-shaped runs as one batched population: auto, on or off",
                      callback=checked(population_mode))
]


def run_and_show(name: str, scale: str, out: Path | None, workers: int, device: str,
                 population: str) -> None:
    """Run study ``name`` and draw its result in the terminal."""
    from gengap.studies import check_scale, run_study, studies
    from gengap.studies.runner import check_study_folder
    from gengap.zoo.run import check_options

    study = studies.get(name)
    check_scale(scale)
    folder = out or Path(f"gengap-study-{name}")
    # refused before the banner, so that a refusal is the one line printed
    check_options("local", population, device=device)
    check_study_folder(folder, name)
    console.print(f"gengap study {name} --scale {scale}: {study.summary}; folder {folder}")
    with progress() as bar:  # the runs trained so far: a study says nothing else for minutes
        task = bar.add_task("trained", total=None)
        result = run_study(name, folder, scale=scale, workers=workers, device=device,
                           population=population,  # type: ignore[arg-type]
                           on_outcome=lambda _outcome: bar.advance(task))
    console.print(frame_table(_shown(result.table), title=result.title))
    for key, table in result.extra_tables.items():
        if key != "ranking" and not table.empty:
            console.print(frame_table(_shown(table), title=key))
    console.print(f"[bold]published[/]: {escape(result.published)}", highlight=False,
                  markup=True)
    console.print("[bold]this run[/]:", highlight=False, markup=True)
    for line in result.found:
        console.print(f"  - {line}", highlight=False, markup=False)
    for line in result.notes:
        console.print(f"  note: {line}", highlight=False, markup=False)
    console.print(
        f"{counted(result.runs, 'run')}; took {result.seconds:.1f} s (training time stored "
        f"over all runs: {result.train_seconds:.1f} s); report: {folder / 'report.html'}"
    )


def _shown(table: pd.DataFrame) -> pd.DataFrame:
    """Text and boolean columns with their booleans as true or false and None as a dash, as
    the report page shows them (str() gave True, False and None)."""
    def text(value: object) -> str:
        if value is None:
            return "–"
        return str(value).lower() if isinstance(value, bool) else str(value)

    return table.apply(lambda c: c.map(text) if c.dtype in (object, bool) else c)


@study_app.command("list")
def study_list() -> None:
    """The studies, with what each reproduces."""
    from gengap.studies import studies

    rows = [{"study": n, "what": studies.get(n).summary} for n in studies]
    console.print(frame_table(pd.DataFrame(rows), title="gengap studies"))


def _command(name: str, doc: str) -> None:
    def command(scale: Scale = "default", out: Out = None, workers: Workers = 1,
                device: Device = "auto", population: Population = "auto") -> None:
        run_and_show(name, scale, out, workers, device, population)

    command.__doc__ = doc
    study_app.command(name)(command)


_command("randomization", "Zhang et al. 2017: true, noisy and random labels; shuffled, random "
         "and Gaussian inputs.")
_command("pvr", "Pointer value retrieval: accuracy vs training-set size per window and "
         "aggregation; holdout shift.")
_command("grokking", "Power et al. 2022: train and validation accuracy of x/y mod p (97; 23 at "
         "smoke scale) against "
         "steps.")
_command("measures", "Jiang et al. 2020: the measure catalogue on a CNN grid, ranked beside the "
         "published directions.")
