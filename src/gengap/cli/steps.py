"""The pipeline's steps as the terminal shows them: each calls the Python API and draws
progress and tables. Commands and the demo share these."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from gengap.cli.console import console, frame_table, progress
from gengap.specs import ZooSpec
from gengap.zoo import Store, evaluate_zoo, measure_zoo, train_zoo
from gengap.zoo.worker import RunOutcome


def train_step(
    zoo: ZooSpec, out: Path, workers: int, device: str, data_dir: Path | None
) -> Store:
    Store.create(out, zoo).close()  # a bad folder fails here, before any progress is drawn
    counts = {"done": 0, "failed": 0}
    with progress() as bar:
        task = bar.add_task(f"training {zoo.name}", total=None)

        def started(pending: int, total: int) -> None:
            bar.update(task, total=total, completed=total - pending)

        def finished(outcome: RunOutcome) -> None:
            counts[outcome.status] += 1
            bar.update(
                task, advance=1,
                description=f"training {zoo.name} (done {counts['done']}, "
                f"failed {counts['failed']})",
            )

        store = train_zoo(
            zoo, out, workers=workers, device=device, data_dir=data_dir,
            on_start=started, on_outcome=finished,
        )
    return store


def measure_step(
    store: Store, names: str | None, device: str, data_dir: Path | None, recompute: bool = False
) -> int:
    total = store.counts()["done"]
    with progress() as bar:
        task = bar.add_task("measuring", total=total)
        count = measure_zoo(
            store, names, device=device, data_dir=data_dir, recompute=recompute,
            on_run=lambda run_id, values: bar.advance(task),
        )
        bar.update(task, completed=total)
    return count


def evaluate_step(store: Store, target: str, out: Path | None = None) -> pd.DataFrame:
    table = evaluate_zoo(store, target=target)
    shown = table.rename(columns=lambda c: _short_axis(c) if c.startswith("psi[") else c)
    console.print(frame_table(shown, title=f"measures against {target}, best first"))
    if out is not None:
        write_table(table, out)
        console.print(f"wrote {out}")
    return table


def write_table(table: pd.DataFrame, out: Path) -> None:
    if out.suffix == ".parquet":
        table.to_parquet(out, index=False)
    else:
        table.to_csv(out, index=False)


def status_table(store: Store) -> None:
    zoo = store.zoo
    counts = store.counts()
    console.print(
        f"zoo [bold]{zoo.name}[/] at {store.root}: {sum(counts.values())} runs, "
        f"{counts['done']} done, {counts['failed']} failed, {counts['pending']} pending"
    )
    frame = store.frame()
    if frame.empty:
        return
    columns = ["run_id", "status", *zoo.hyperparameters, "seed"]
    columns += [c for c in ("train_acc", "test_acc", "gap", "epochs") if c in frame.columns]
    shown = frame[columns].rename(columns=lambda c: c.rsplit(".", 1)[-1])
    console.print(frame_table(shown))
    failed = frame[frame["status"] == "failed"]
    for row in failed.itertuples():
        console.print(f"[red]failed[/] {row.run_id}: {row.reason}")


def _short_axis(column: str) -> str:
    """``psi[train.weight_decay]`` -> ``ψ weight_decay``: narrow enough for a terminal."""
    return "ψ " + column[4:-1].rsplit(".", 1)[-1]
