"""``gengap evaluate``: rank a zoo's (or a table's) measures by the field's metrics."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from gengap.cli.console import console, frame_table
from gengap.cli.options import SEED_MAX, BadOption, DataDir, OptionError, blamed_on, checked
from gengap.cli.outputs import TABLES, output_file
from gengap.errors import GengapError
from gengap.table_file import write_table

MAX_BOOTSTRAP = 100_000  # far past what a stable interval needs; more only fills memory

def split_names(text: str | None) -> list[str] | None:
    """Comma-separated names as a list; None where none are given."""
    from gengap.evaluate.columns import listed

    return (listed(text) or None) if text is not None else None


def _metrics(text: str) -> None:
    from gengap.evaluate.ranking import METRICS

    names = split_names(text) or []
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise GengapError(f"unknown metric {unknown[0]!r} (metrics: {', '.join(METRICS)})")
    if not names:
        raise GengapError(f"name one or more of {', '.join(METRICS)}")


def _grid(mode: str) -> None:
    # a subset of gengap.evaluate.cmi.Grid on purpose: its "none" (no grid check, used by the
    # PGDL scorer) would let an incomplete grid through without a word
    if mode not in ("strict", "largest"):
        raise GengapError(f"must be strict or largest, not {mode!r}")


def evaluate(
    ctx: typer.Context,
    source: Annotated[Path, typer.Argument(help="zoo folder, or a .csv/.parquet table")],
    metric: Annotated[
        str, typer.Option(help="comma-separated: tau, psi, cmi, robust", callback=checked(_metrics))
    ] = "tau,psi",
    target: Annotated[
        str, typer.Option(help="what measures should rank: gap, test_error or test_acc")
    ] = "gap",
    out: Annotated[
        Path | None, typer.Option(help="also write the table (.csv or .parquet)")
    ] = None,
    bootstrap: Annotated[
        int, typer.Option(min=0, max=MAX_BOOTSTRAP,
                          help="bootstrap resamples for tau and Psi intervals (0: none)")
    ] = 1000,
    grid: Annotated[
        str, typer.Option(help="CMI grid check: strict (refuse an incomplete grid, as the PGDL "
                          "scorer) or largest (score the largest complete sub-grid)",
                          callback=checked(_grid))
    ] = "strict",
    max_conditioning: Annotated[
        int, typer.Option(min=0, max=2, help="CMI: largest conditioning set (0, 1 or 2)")
    ] = 2,
    min_ess: Annotated[
        float, typer.Option(min=0, help="robust: least effective sample size of an environment")
    ] = 12.0,
    test_size: Annotated[
        int | None, typer.Option(min=1, help="robust: test examples behind each gap "
                                 "(default: counted)")
    ] = None,
    no_noise_filter: Annotated[
        bool, typer.Option("--no-noise-filter", help="robust: weight every pair 1")
    ] = False,
    hyperparameters: Annotated[
        str | None, typer.Option(help="tables only: comma-separated hyperparameter columns")
    ] = None,
    measures: Annotated[
        str | None, typer.Option(help="tables only: measure columns (default: numeric ones)")
    ] = None,
    seed: Annotated[int, typer.Option(min=0, max=SEED_MAX, help="bootstrap seed")] = 0,
    data_dir: DataDir = None,
) -> None:
    """Rank the stored measures against the target: Kendall's tau, granulated Psi (with
    bootstrap intervals), the conditional mutual information (x100) and the robust
    sign-error."""
    from gengap.evaluate.targets import UnknownTarget
    from gengap.zoo.evaluation import evaluate_table, is_table, read_table

    metrics = split_names(metric) or []  # checked by _metrics
    table_source = is_table(source)
    if not table_source:
        refuse_table_options(source, hyperparameters, measures)
    output_file(out, TABLES, inputs=(source,))
    options = dict(bootstrap=bootstrap, seed=seed, grid=grid, max_conditioning=max_conditioning,
                   min_ess=min_ess, filter_noise=not no_noise_filter)
    if test_size is not None:
        options["test_size"] = test_size
    if table_source:
        rows = read_table(source)  # a missing one: "no such file"
        axes = split_names(hyperparameters)
        if not axes:
            raise OptionError(f"{source}: a table needs --hyperparameters a,b,...", ctx)
        if data_dir is not None:  # a table's sizes are its column or --test-size
            raise OptionError(f"{source}: --data-dir is for zoos (to count their test sets)", ctx)
        try:
            table = evaluate_table(rows, axes, split_names(measures), target, metrics, **options)
        except UnknownTarget as err:  # a misspelt --target, not the table's problem
            raise BadOption("--target", f"{source}: {err}", ctx) from None
        except GengapError as err:  # the table's problems: name the file
            raise GengapError(f"{source}: {err}") from None
    else:
        from gengap.zoo import Store, evaluate_zoo

        with blamed_on("--target", ctx, UnknownTarget):
            table = evaluate_zoo(Store(source), target, metrics, data_dir=data_dir, **options)
    show_ranking(table, target)
    if out is not None:
        write_table(table, out)
        console.print(f"wrote {out}")


def refuse_table_options(zoo: Path, hyperparameters: str | None, measures: str | None) -> None:
    """A zoo knows its axes and measures (its spec, its store): the table options would be
    ignored, so they are refused rather than silently dropped."""
    if hyperparameters is not None:
        from gengap.zoo import Store

        store = Store(zoo)  # not a zoo: that error says so
        axes = ", ".join(store.zoo.hyperparameters) or "none"
        store.close()
        raise OptionError(f"{zoo}: --hyperparameters is for tables; a zoo's hyperparameters "
                          f"are the axes of its spec ({axes})")
    if measures is not None:
        raise OptionError(f"{zoo}: --measures is for tables; a zoo ranks every measure it "
                          "stores")


def show_ranking(table: pd.DataFrame, target: str) -> None:
    """The table in the terminal: rank correlations (intervals folded into their column,
    axes shortened), then CMI and robust sign-error, rows in the same order."""
    shown = table.copy()
    for name in ("tau", "psi"):
        if f"{name}_low" in shown.columns:
            shown[name] = [
                _with_interval(v, lo, hi)
                for v, lo, hi in zip(shown[name], shown[f"{name}_low"], shown[f"{name}_high"],
                                     strict=True)
            ]
            shown = shown.drop(columns=[f"{name}_low", f"{name}_high"])
    information = [c for c in shown.columns if c.startswith(("cmi", "robust"))]
    ranks = [c for c in shown.columns if c not in information]
    title = f"measures against {target}, best first"
    if len(ranks) > 2:
        console.print(frame_table(shown[ranks].rename(columns=_short), title=title))
        title = f"information and robustness against {target}"
    if information:
        columns = ["measure", *information]
        console.print(frame_table(shown[columns].rename(columns=_short), title=title))
    for note in table.attrs.get("notes", []):
        console.print(f"note: {note}")


def _with_interval(value: float, low: float, high: float) -> str:
    if not math.isfinite(value):
        return "–"
    if not (math.isfinite(low) and math.isfinite(high)):
        return f"{value:.3f}"
    return f"{value:.3f} [{low:.2f},{high:.2f}]"


def _short(column: str) -> str:
    """``psi[train.weight_decay]`` -> ``ψ weight_decay``: narrow enough for a terminal."""
    if column.startswith("psi["):
        return "ψ " + column[4:-1].rsplit(".", 1)[-1]
    if column.startswith("cmi["):
        return f"cmi|S|={column[4:-1]}"
    if column.startswith("robust_"):
        return column[len("robust_"):]
    return column
