"""``gengap report``: the zoo as one self-contained HTML page, and its tables in the
terminal."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gengap.cli.console import console, frame_table
from gengap.cli.evaluate_cmds import MAX_BOOTSTRAP, split_names
from gengap.cli.options import DataDir, blamed_on, checked
from gengap.cli.outputs import output_file
from gengap.errors import GengapError


def _run_names(text: str) -> None:
    if not split_names(text):
        raise GengapError(f"no run named in {text!r} (comma-separated run ids or prefixes)")


def report(
    ctx: typer.Context,
    directory: Annotated[Path, typer.Argument(help="zoo folder")],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="HTML file to write (default: DIR/report.html)"),
    ] = None,
    target: Annotated[
        str, typer.Option(help="what measures should rank: gap, test_error or test_acc")
    ] = "gap",
    runs: Annotated[
        str | None,
        typer.Option(help="comma-separated run ids (or prefixes) whose training curves are "
                     "drawn (default: spread over the target)", callback=checked(_run_names)),
    ] = None,
    top: Annotated[int, typer.Option(min=1, help="best measures drawn against the target")] = 4,
    bootstrap: Annotated[
        int, typer.Option(min=0, max=MAX_BOOTSTRAP,
                          help="bootstrap resamples for the intervals (0: none)")
    ] = 1000,
    test_size: Annotated[
        int | None,
        typer.Option(min=1, help="test examples behind each gap, for the robust sign-error"),
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Write the zoo's report: summary, measures ranked with intervals, the granulated
    heatmap, scatter plots, training curves and the learned predictor's held-out fit."""
    from gengap.evaluate.targets import UnknownTarget
    from gengap.report.data import UnknownRun

    with blamed_on("--target", ctx, UnknownTarget), blamed_on("--runs", ctx, UnknownRun):
        write_and_show(directory, out, target, runs, top, bootstrap, test_size, data_dir)


def write_and_show(
    directory: Path,
    out: Path | None = None,
    target: str = "gap",
    runs: str | None = None,
    top: int = 4,
    bootstrap: int = 1000,
    test_size: int | None = None,
    data_dir: Path | None = None,
) -> Path:
    """Write the report and print its tables; returns the path written."""
    from gengap.report import ranking_frame, summary_frame, write_report
    from gengap.report.build import SUFFIXES
    from gengap.zoo import Store

    store = Store(directory)
    if out is None and store.read_only:  # the default place is in the zoo
        raise GengapError(f"{directory}: the zoo is read-only here; write the report "
                          "elsewhere with -o FILE.html")
    path = out if out is not None else Path(directory) / "report.html"
    # never over the zoo's database or a results table; the default place is not an option's
    output_file(path, SUFFIXES, option=None if out is None else "--out")
    chosen = split_names(runs)
    data = write_report(store, path, target=target, runs=chosen, top=top, bootstrap=bootstrap,
                        test_size=test_size, data_dir=data_dir)
    console.print(frame_table(summary_frame(data), title=f"zoo {data.name}"))
    ranking = ranking_frame(data, top=10)
    if not ranking.empty:
        console.print(frame_table(ranking, title=f"best measures against {target}"))
    for part, texts in (data.evaluation.notes if data.evaluation else {}).items():
        for text in texts:
            console.print(f"note ({part}): {text}", highlight=False)
    console.print(f"wrote the report to {path}")
    return path
