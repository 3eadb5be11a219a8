"""``gengap pgdl predict`` and ``gengap pgdl import`` (registered on :data:`pgdl_app`), and
``gengap zoo import-cnnzoo`` (registered by app.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

import gengap.interop  # noqa: F401  (imported zoos' families and sources, for `gengap measure`)
from gengap.cli.console import console, progress
from gengap.cli.options import Device, OptionError, blamed_on
from gengap.cli.outputs import output_folder, outside_inputs
from gengap.cli.pgdl_app import pgdl_app
from gengap.errors import GengapError

Configs = Annotated[
    Path | None,
    typer.Option(help="model_configs.json, or the reference_data folder holding <task>/ "
                 "(default: the task's own, else ../../reference_data/<task>/)"),
]


@pgdl_app.command("predict")
def pgdl_predict(
    ctx: typer.Context,
    tasks: Annotated[list[Path], typer.Argument(help="PGDL task folders")],
    measure: Annotated[str, typer.Option(help="a measure of `gengap measures list`")],
    out: Annotated[Path, typer.Option(help="folder for the <task>.predict files")],
    device: Device = "auto",
    time_per_model: Annotated[
        float, typer.Option(min=0, help="the competition's budget in seconds per model (300 in "
                            "PGDL); models past it are EXCEEDED, and so are later tasks; "
                            "0: no limit")
    ] = 0.0,
) -> None:
    """Measure every model of each task and write <task>.predict (one float per model)."""
    import time

    from gengap.errors import GengapError
    from gengap.interop.pgdl import EXCEEDED, load_task, predict_task, write_predict
    from gengap.interop.pgdl.predict import task_measure, without_value

    with blamed_on("--measure", ctx):  # an unknown or unfit one, before any task is read
        task_measure(measure)
    opened = [load_task(path) for path in tasks]
    names: dict[str, Path] = {}
    for task in opened:  # one <task>.predict per name: a second would overwrite the first
        if task.name in names and names[task.name] != task.root:
            raise GengapError(f"{names[task.name]} and {task.root} would both write "
                              f"{task.name}.predict: give tasks of different names")
        names[task.name] = task.root
    outside_inputs(out, inputs=tasks)
    _outside_tasks(out)  # another task's folder
    output_folder(out, inputs=tasks)  # made before any model is measured
    exceeded = False
    for task in opened:
        started = time.perf_counter()
        if exceeded:  # the competition's flag is never reset: later tasks are EXCEEDED too
            values: dict[str, float | str] = {m: EXCEEDED for m in task.model_ids}
        else:
            with progress() as bar:
                job = bar.add_task(f"{task.name}: {measure}", total=len(task.model_ids))

                def shown(result, task=task, bar=bar, job=job) -> None:  # noqa: ANN001
                    value = result.value
                    text = value if isinstance(value, str) else f"{value:.6g}"
                    why = f", {result.why}" if result.why else ""
                    console.print(f"{task.name} {result.model_id}: {measure} = {text} "
                                  f"({result.seconds:.2f} s{why})")
                    bar.advance(job)

                values = predict_task(task, measure, device=device,
                                      time_per_model=time_per_model or None,
                                      started=started, on_model=shown)
            exceeded = EXCEEDED in values.values()
        path = write_predict(out / f"{task.name}.predict", values)
        console.print(f"wrote {path} ({len(values)} models, "
                      f"{time.perf_counter() - started:.1f} s)")
        missing = without_value(values)
        if missing:
            console.print(f"[yellow]warning:[/] {escape(measure)} is not finite for "
                          f"{len(missing)} model(s) of {escape(task.name)} "
                          f"({escape(', '.join(missing[:5]))}"
                          f"{', …' if len(missing) > 5 else ''}): written as they are (NaN, "
                          "Infinity), as the competition's ingestion wrote them; the scorer "
                          "ranks a NaN as tied with every model, an infinity at its end",
                          markup=True)


@pgdl_app.command("import")
def pgdl_import(
    task_dir: Annotated[Path, typer.Argument(help="a PGDL task folder")],
    out: Annotated[Path, typer.Option(help="zoo folder (created, or completed)")],
    configs: Configs = None,
) -> None:
    """Turn a PGDL task into a gengap zoo, for `gengap measure` and `gengap evaluate`."""
    from gengap.interop.pgdl import import_task, load_task

    outside_inputs(out, inputs=(task_dir,))  # the zoo folder is made by the import
    _outside_tasks(out)  # another task's folder
    task = load_task(task_dir, configs)
    before = _finished_runs(out)
    with progress() as bar:
        job = bar.add_task(f"importing {task.name}", total=len(task.model_ids))
        store = import_task(task, out, on_model=lambda _: bar.advance(job))
    zoo = store.zoo
    axes = ", ".join(a.rsplit(".", 1)[-1] for a in zoo.hyperparameters)
    gap = "with train/test accuracy" if task.records else "without reference accuracies"
    counts = store.counts()
    failed = f"; {counts['failed']} with non-finite weights recorded as failed" \
        if counts['failed'] else ""
    console.print(f"{_imported(counts, before, f'models of {task.name}', out)} "
                  f"(axes: {axes}; {gap}{failed})")


def zoo_import_cnnzoo(
    folder: Annotated[Path, typer.Argument(help="folder with weights.npy, layout.csv, "
                                           "metrics.csv.gz")],
    out: Annotated[Path, typer.Option(help="zoo folder (created, or completed)")],
    limit: Annotated[
        int | None, typer.Option(min=1, help="import only the first N networks")
    ] = None,
) -> None:
    """Import the Small CNN Zoo (Unterthiner et al. 2020) into a gengap zoo."""
    from gengap.interop.cnnzoo import final_rows, import_cnnzoo, read_cnnzoo

    total = len(final_rows(read_cnnzoo(folder)))
    total = min(total, limit) if limit else total
    before = _finished_runs(out)
    with progress() as bar:
        job = bar.add_task(f"importing {folder.name}", total=total)
        store = import_cnnzoo(folder, out, limit=limit, on_run=lambda _: bar.advance(job))
    counts = store.counts()
    console.print(f"{_imported(counts, before, 'networks', out)} "
                  f"({counts['failed']} recorded as failed: non-finite weights or no trained "
                  "checkpoint)")


def _finished_runs(out: Path) -> int:
    """The runs an earlier import of ``out`` finished (none where it holds no zoo yet)."""
    from gengap.zoo.store import Store

    try:
        store = Store(out)
    except GengapError:  # no zoo there yet (or not one: the import says so)
        return 0
    try:
        counts = store.counts()
    finally:
        store.close()
    return counts["done"] + counts["failed"]


def _imported(counts: dict[str, int], before: int, what: str, out: Path) -> str:
    """"imported 18 models of T into OUT", or on a zoo an earlier import began, what is
    new."""
    total = counts["done"] + counts["failed"]
    if not before:
        return f"imported {counts['done']} {what} into {out}"
    if before == total:
        return f"nothing to import: all {total} {what} were already in {out}"
    return f"imported {total - before} more {what} into {out} ({counts['done']} now)"


def _outside_tasks(path: Path) -> None:
    """Refuse ``path`` when it is, or lies in, a PGDL task folder, as a bad ``--out``."""
    from gengap.interop.pgdl.task import outside_task_folders

    try:
        outside_task_folders(path)
    except GengapError as err:
        raise OptionError(str(err)) from None
