"""The pipeline's steps as the terminal shows them: each calls the Python API and draws
progress and tables. Commands and the demo share these."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd
from rich.markup import escape

from gengap.cli.console import console, frame_table, progress
from gengap.cli.outputs import TABLES, output_file
from gengap.errors import GengapError
from gengap.measures import measures
from gengap.number_format import counted
from gengap.specs import MeasureOptions, RunSpec, ZooSpec
from gengap.table_file import write_table
from gengap.train.population import population_path
from gengap.zoo import Store, Zoo, evaluate_zoo, measure_zoo, train_zoo
from gengap.zoo.executors import session
from gengap.zoo.measure import unreadable_summary
from gengap.zoo.planning import MIN_SPEEDUP
from gengap.zoo.run import check_new_zoo, check_options, session_device
from gengap.zoo.worker import RunOutcome, cached_splits


def train_step(
    zoo: ZooSpec, out: Path, workers: int, device: str, data_dir: Path | None,
    executor: str = "local", address: str | None = None, population: str = "off",
    source: str | None = None,
) -> Store:
    # bad options (the device too) and a bad folder fail here, before any folder is made or
    # any progress drawn
    check_options(executor, population, address, device)
    check_new_zoo(zoo, out, executor, data_dir, source)
    with session(executor, address):  # Ray joined before the folder is made
        device = session_device(executor, device, population)
        before = Store.create(out, zoo)
        counts = {**before.counts()}
        before.close()
        with progress() as bar:
            planning = " (measuring populations)" if population == "auto" else ""
            task = bar.add_task(f"training {zoo.name}{planning}", total=None)

            def describe() -> str:
                return (
                    f"training {zoo.name}: done {counts['done']}, failed {counts['failed']}, "
                    f"remaining {counts['pending']}"
                )

            def probed(group: list[RunSpec], speedup: float) -> None:
                verdict = "together" if speedup >= MIN_SPEEDUP else "one at a time"
                arch = group[0].arch
                splits = cached_splits(group[0].data.canonical_json(),
                                       None if data_dir is None else str(data_dir))
                path = population_path(group[0], splits, device)
                console.print(escape(
                    f"population of {len(group)} {arch.family} networks (width {arch.width}, "
                    f"depth {arch.depth}, {arch.activation}; {path}): {speedup:.1f}x faster "
                    f"together; training them {verdict}"
                ))

            def started(pending: int, total: int) -> None:
                bar.update(task, total=total, completed=total - pending, description=describe())

            def finished(outcome: RunOutcome) -> None:
                counts[outcome.status] += 1
                counts["pending"] -= 1
                bar.update(task, advance=1, description=describe())

            store = train_zoo(
                zoo, out, workers=workers, device=device, data_dir=data_dir,
                on_start=started, on_outcome=finished, executor=executor, address=address,
                population=population, on_probe=probed,  # type: ignore[arg-type]
                options_checked=True,  # above, before the folder was made; device resolved
            )
    return store


def measure_step(
    store: Store, names: str | None, device: str, data_dir: Path | None, recompute: bool = False,
    workers: int = 1, profile_into: dict[str, dict[str, float]] | None = None,
    precision: str = "auto",
) -> int:
    """``measure_zoo`` behind a progress bar, then what was left out and why values are NaN
    (``precision``: :attr:`gengap.specs.MeasureOptions.precision`); the runs measured. Weight
    files that cannot be read are named, one line each, after the rest is measured: the last
    line as the error (exit status 2)."""
    store.check_writable()  # before the bar is drawn (measure_zoo checks too, for Python)
    total = store.counts()["done"]
    left_out: dict[str, int] = {}
    no_value: dict[str, dict[str, int]] = {}
    unreadable: dict[str, str] = {}
    try:
        with progress() as bar:
            task = bar.add_task("measuring", total=total)
            count = measure_zoo(
                store, names, device=device, data_dir=data_dir, recompute=recompute,
                on_run=lambda run_id, values: bar.advance(task), workers=workers,
                profile_into=profile_into, left_out=left_out, no_value=no_value,
                options=MeasureOptions(precision=precision), unreadable=unreadable,
            )
            bar.update(task, completed=total)
    except BaseException:  # stopped by something else: the bad files found so far, named
        _print_skipped(unreadable.values())
        raise
    for name, runs in left_out.items():
        needs = measures.get(name).needs
        why = ("a finished seed twin (the run of the same spec with the next seed)"
               if "second_model" in needs else "initial weights")
        console.print(f"{name}: left out on {runs} run{'s' if runs > 1 else ''} that "
                      f"lack{'s' if runs == 1 else ''} "
                      f"{why}")
    print_no_value(no_value)
    if unreadable:
        first, *others = unreadable.values()
        _print_skipped(others)
        raise GengapError(unreadable_summary(first, len(unreadable), count))
    return count


def _print_skipped(problems: Iterable[str]) -> None:
    """One line per weight file that could not be read, never wrapped (to read or grep)."""
    for problem in problems:
        console.print(f"skipped: {escape(problem)}", markup=True, soft_wrap=True)


def print_no_value(no_value: dict[str, dict[str, int]], of: str = "run") -> None:
    """One line per reason a value is NaN (a formula that does not apply), with the
    measures it hit and on how many runs: "no value on 8 runs: pacbayes_sigma, ... (why)"."""
    by_reason: dict[tuple[str, int], list[str]] = {}
    for name, reasons in no_value.items():
        for reason, runs in reasons.items():
            by_reason.setdefault((reason, runs), []).append(name)
    for (reason, runs), names in by_reason.items():
        console.print(f"no value (NaN) on {runs} {of}{'s' if runs > 1 else ''}: "
                      f"{', '.join(names)} ({escape(reason)})", markup=True)


def evaluate_step(store: Store, target: str, out: Path | None = None) -> pd.DataFrame:
    output_file(out, TABLES)
    table = evaluate_zoo(store, target=target)
    shown = table.rename(columns=lambda c: _short_axis(c) if c.startswith("psi[") else c)
    console.print(frame_table(shown, title=f"measures against {target}, best first"))
    if out is not None:
        write_table(table, out)
        console.print(f"wrote {out}")
    return table


def status_table(store: Store) -> None:
    zoo = store.zoo
    counts = store.counts()
    console.print(
        f"zoo [bold]{escape(zoo.name)}[/] at {escape(str(store.root))}: "
        f"{counted(sum(counts.values()), 'run')}, {counts['done']} done, "
        f"{counts['failed']} failed, {counts['pending']} pending", markup=True,
    )
    frame = store.frame()
    if frame.empty:
        return
    columns = ["run_id", "status", *zoo.hyperparameters, "seed"]
    columns += [c for c in ("train_acc", "test_acc", "gap", "epochs") if c in frame.columns]
    shown = frame[columns].rename(columns=short_names(columns))
    if "epochs" in shown:  # whole epochs, also beside the NaN of pending runs
        shown["epochs"] = shown["epochs"].round().astype("Int64")
    console.print(frame_table(shown))
    failed = frame[frame["status"] == "failed"]
    for row in failed.itertuples():
        console.print(f"[red]failed[/] {row.run_id}: {escape(str(row.reason))}", markup=True)
    have = store.measured()
    names = set().union(*have.values())
    if names:  # how far measuring has come: which runs have every measure stored so far
        done = frame.loc[frame["status"] == "done", "run_id"]
        whole = sum(all(n in have.get(run_id, {}) for n in names) for run_id in done)
        some = sum(bool(have.get(run_id)) for run_id in done)
        console.print(f"measures: {len(names)} stored; {whole} of {len(done)} done runs have "
                      f"every one, {some - whole} some, {len(done) - some} none")


def short_names(columns: list[str]) -> dict[str, str]:
    """Each dotted column by its last part (``train.lr`` -> ``lr``) where that part names one
    column only; the full name where two would collide (``data.seed`` beside ``seed``)."""
    last = [c.rsplit(".", 1)[-1] for c in columns]
    return {c: short if last.count(short) == 1 else c
            for c, short in zip(columns, last, strict=True)}


def _short_axis(column: str) -> str:
    """``psi[train.weight_decay]`` -> ``ψ weight_decay``: narrow enough for a terminal."""
    return "ψ " + column[4:-1].rsplit(".", 1)[-1]


def export_step(directory: Path, parquet: Path) -> None:
    zoo = Zoo(directory)
    # never over the zoo's database or its weights
    output_file(parquet, (".parquet",), option="--parquet")
    path = zoo.to_parquet(parquet)
    runs = sum(zoo.store.counts().values())  # the frame's rows: one per run
    console.print(f"wrote {runs} run{'' if runs == 1 else 's'} of zoo {zoo.spec.name!r} to "
                  f"{path}")
