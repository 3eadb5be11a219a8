"""``gengap pgdl score``: the competition's scorer on a folder of ``.predict`` files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gengap.atomic_write import write_text_atomically
from gengap.cli.console import console, frame_table
from gengap.cli.outputs import output_file
from gengap.cli.pgdl_app import pgdl_app
from gengap.errors import GengapError


@pgdl_app.command("score")
def pgdl_score(
    reference: Annotated[
        Path,
        typer.Option(help="reference folder: <task>/model_configs.json for each task (or the "
                     "folder above reference_data/, or one task folder)"),
    ],
    predictions: Annotated[
        Path, typer.Option(help="folder of <task>.predict files (or one .predict file)")
    ],
    subgrid: Annotated[
        bool, typer.Option(help="score the largest complete sub-grid of an incomplete task "
                           "instead of refusing it")
    ] = False,
    out: Annotated[
        Path | None, typer.Option(help="also write the scorer's scores.txt here")
    ] = None,
) -> None:
    """Score predictions as the PGDL competition did: conditional mutual information per task
    (min over hyperparameter pairs), x100, averaged over tasks."""
    from gengap.interop.pgdl.scoring import score_predictions

    output_file(out, (".txt",))  # never over the reference's files or the predictions
    scores = score_predictions(reference, predictions, subgrid=subgrid)
    table = scores.frame()
    shown = table.drop(columns=["dropped"]) if not subgrid else table
    console.print(frame_table(shown, title="PGDL score per task (x100)", digits=2))
    for note in scores.notes:
        console.print(f"note: {note}")
    if scores.time_exceeded:
        console.print("a task timed out (EXCEEDED): the competition scored the submission 0.0")
    elif (table["status"] == "error").any():
        console.print("tasks with an error get -0.999999 in scores.txt and are left out of "
                      "the average, as in the competition")
    console.print(f"task_average_score: {scores.average:.2f}")
    if out is not None:
        write_text_atomically(out, scores.scores_txt())
        console.print(f"wrote {out}")
    failed = [t for t in scores.tasks if t.status == "error"]
    if len(failed) == len(scores.tasks):  # nothing scored, and not for time: bad input
        raise GengapError(f"no task could be scored; {failed[0].task}: {failed[0].message}")
