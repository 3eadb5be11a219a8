"""The PGDL competition's scoring driver (``score.py`` of the starting kit), on gengap's
exact conditional mutual information.

For each task folder of the reference data (``reference_data/<task>/model_configs.json``):

1. read ``<predictions>/<task>.predict`` (JSON: model id -> float);
2. if any value is ``"EXCEEDED"`` (the ingestion program's time-out mark), the submission's
   average becomes 0.0 and this task is skipped;
3. check the reference grid is complete and unique (the scorer's "The data are not
   complete!" / "The data are not unique!");
4. require as many predictions as models;
5. score = :func:`gengap.evaluate.cmi.pgdl_cmi` (a fraction).

A task that fails at any step (missing file, bad grid, wrong count) gets the scorer's
``missing_score`` of -0.999999 and is left out of the average, as in the competition. The
average is 100 × the mean of the scored tasks (0.0 if any task timed out).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from gengap.errors import GengapError
from gengap.evaluate.cmi import pgdl_cmi
from gengap.evaluate.grid import (
    check_grid,
    largest_complete_subgrid,
    largest_complete_subgrids,
)
from gengap.interop.pgdl.reference import CONFIGS_NAME, Reference, read_json, read_reference

MISSING_SCORE = -0.999999  # what the scorer writes for a task it could not score
EXCEEDED = "EXCEEDED"
_SKIPPED_NAMES = (".DS_Store", "__MACOSX")


@dataclass(frozen=True)
class TaskScore:
    """One task: ``score`` is the fraction (NaN unless ``status == "scored"``); ``status`` is
    ``scored``, ``exceeded`` or ``error``; ``message`` says why when not scored."""

    task: str
    score: float
    status: str
    message: str = ""
    models: int = 0
    dropped: int = 0  # models left out by the largest complete sub-grid

    @property
    def written(self) -> float | None:
        """The value the scorer writes to ``scores.txt`` for this task: None for a timed-out
        task, which ``score.py`` skips without a line."""
        return self.score if self.status == "scored" else (
            None if self.status == "exceeded" else MISSING_SCORE
        )


@dataclass(frozen=True)
class Scores:
    """All tasks and the competition's average (×100)."""

    tasks: list[TaskScore]
    average: float
    time_exceeded: bool
    notes: list[str] = field(default_factory=list)

    def frame(self) -> pd.DataFrame:
        rows = [
            {"task": t.task, "score": 100 * t.score, "status": t.status, "models": t.models,
             "dropped": t.dropped, "message": t.message}
            for t in self.tasks
        ]
        return pd.DataFrame(rows)

    def scores_txt(self) -> str:
        """The scorer's ``scores.txt``: each task's raw score, the average, then ``Duration: 0``
        (``score.py`` reads the duration from an undefined folder, so it always writes 0)."""
        lines = [f"task_{t.task}_score: {t.written:0.12f}" for t in self.tasks
                 if t.written is not None]
        lines.append(f"task_average_score: {self.average:0.12f}")
        lines.append("Duration: 0")
        return "\n".join(lines) + "\n"


def _subgrid_note(task: str, ref: Reference, prediction: dict[str, Any], path: Path,
                  dropped: int) -> str:
    """What ``--subgrid`` left out of ``task`` (values without models too), and the scores of
    the other sub-grids as large; "" when it scored the whole grid."""
    (first, _), *others = subgrid_alternatives(ref, prediction, path)
    if not any(first.values()):
        return ""
    note = (f"{task}: --subgrid scored {len(ref.frame) - dropped} of {len(ref.frame)} models, "
            f"leaving out {_left_out(first)}")
    if others:
        note += "; as large: " + "; ".join(
            f"leaving out {_left_out(left)} "
            + (f"scores {100 * score:.2f}" if math.isfinite(score) else
               "cannot be scored: the predictions lack some of its models")
            for left, score in others)
        note += (" (the one scored is the first found: it keeps the most values of the first "
                 "hyperparameter, then of the next, lower values first)")
    return note


def reference_tasks(reference: str | Path) -> dict[str, Path]:
    """Task name -> its ``model_configs.json``. ``reference`` is the reference folder (or its
    parent holding ``reference_data/``), or one task folder that holds the file itself."""
    root = Path(reference)
    if root.is_file() and root.name == CONFIGS_NAME:  # the task's file itself
        root = root.parent
    if not root.is_dir():
        raise GengapError(f"{root}: no such reference folder (a folder of {CONFIGS_NAME} "
                          "files, or one task folder)" if not root.exists() else
                          f"{root}: not a reference folder (a folder of {CONFIGS_NAME} "
                          "files, or one task folder)")
    if (root / CONFIGS_NAME).is_file():
        return {root.resolve().name: root / CONFIGS_NAME}
    if (root / "reference_data").is_dir():
        root = root / "reference_data"
    tasks = {
        name: root / name / CONFIGS_NAME
        for name in sorted(os.listdir(root))
        if not any(s in name for s in _SKIPPED_NAMES) and (root / name).is_dir()
    }
    if not tasks:
        raise GengapError(f"{root}: no task folders (expected <task>/{CONFIGS_NAME})")
    return tasks


def read_predictions(path: Path) -> dict[str, Any]:
    """A ``.predict`` file: JSON object of model id -> float (or ``"EXCEEDED"``)."""
    data = read_json(path, missing="no predictions for this task")
    if not isinstance(data, dict):
        raise GengapError(f"{path}: expected a JSON object of model id -> value")
    return data


def score_task(
    reference: Reference | str | Path, predictions: dict[str, Any], subgrid: bool = False,
    source: str | Path | None = None,
) -> tuple[float, int]:
    """The task score (a fraction) of ``predictions`` against one task's reference data, and
    the number of models dropped (non-zero only with ``subgrid``, which scores the largest
    complete sub-grid instead of refusing an incomplete one; :func:`subgrid_alternatives`
    names it and scores the other sub-grids as large).

    Raises :class:`GengapError` where the scorer raises (incomplete or non-unique grid,
    wrong number of predictions, a value that is not a number); the predictions' errors name
    ``source`` (their file), the grid's the reference.
    """
    ref = reference if isinstance(reference, Reference) else read_reference(reference)
    frame, levels = ref.frame, ref.levels
    if subgrid:
        frame, levels = largest_complete_subgrid(frame, ref.hyperparameters, levels)
    return _score_on(ref, frame, levels, predictions, source), len(ref.frame) - len(frame)


def subgrid_alternatives(reference: Reference, predictions: dict[str, Any],
                         source: str | Path | None = None, most: int = 3
                         ) -> list[tuple[dict[str, list[Any]], float]]:
    """(the hyperparameter values each leaves out, its score) for up to ``most`` largest
    complete sub-grids of an incomplete task, the first the one ``score_task(subgrid=True)``
    scores: which one that is among equally large ones is arbitrary, and the score can
    differ. A sub-grid the predictions cannot be scored on (one lacks its models) scores
    NaN."""
    found = largest_complete_subgrids(reference.frame, reference.hyperparameters,
                                      reference.levels, most=most)
    out = []
    for frame, kept in found:
        try:
            score = _score_on(reference, frame, kept, predictions, source)
        except GengapError:
            score = math.nan
        out.append(({h: [v for v in reference.levels[h] if v not in kept[h]] for h in kept},
                    score))
    return out


def _score_on(ref: Reference, frame: pd.DataFrame, levels: dict[str, list[Any]],
              predictions: dict[str, Any], source: str | Path | None) -> float:
    """The scorer on the models of ``frame`` (all of the reference's, or a sub-grid's): the
    predictions of other models are left out when exactly this grid's are there."""
    where = str(ref.path)
    blame = str(source) if source is not None else where
    if len(frame) < len(ref.frame):
        wanted = {k: v for k, v in predictions.items() if k in frame.index}
        predictions = wanted if len(wanted) == len(frame) else predictions
    check_grid(frame, ref.hyperparameters, levels, where=where, remedy="--subgrid")
    if len(frame) != len(predictions):
        lacking = [m for m in frame.index if m not in predictions]
        hint = f" (no prediction for {', '.join(lacking[:3])}" + (
            " …)" if len(lacking) > 3 else ")") if lacking else ""
        raise GengapError(
            f"{blame}: Prediction shape={len(predictions)} instead of Solution "
            f"shape={len(frame)}{f' of {where}' if source is not None else ''}{hint}"
        )
    values = {}
    for key, value in predictions.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise GengapError(f"{blame}: prediction for {key!r} is not a number: {value!r}")
        values[key] = float(value)
    # The scorer skips every pair that involves a model without a prediction (a KeyError).
    present = frame[frame.index.isin(list(values))].copy()
    present["prediction"] = [values[i] for i in present.index]
    return pgdl_cmi(present, "prediction", ref.hyperparameters, "gap", grid="none",
                    levels=levels)


def _left_out(values: dict[str, list[Any]]) -> str:
    return ", ".join(f"{h} {', '.join(map(str, v))}" for h, v in values.items() if v)


def score_predictions(
    reference: str | Path, predictions: str | Path, subgrid: bool = False
) -> Scores:
    """Score a folder of ``<task>.predict`` files (or one file, for a one-task reference)
    against the reference data, as the competition's ``score.py`` did. A ``.predict`` file in
    the folder that names no reference task is left out with a note."""
    tasks = reference_tasks(reference)
    pred_root = Path(predictions)
    if not pred_root.exists():
        raise GengapError(f"{pred_root}: no such predictions folder or file")
    if pred_root.is_file() and len(tasks) > 1:
        raise GengapError(f"{pred_root}: a single .predict file, but {len(tasks)} tasks")
    results: list[TaskScore] = []
    notes: list[str] = []
    time_exceeded = False
    for task, configs in tasks.items():
        path = pred_root if pred_root.is_file() else pred_root / f"{task}.predict"
        if not configs.is_file():  # a stray folder beside the tasks: not the predictions' fault
            results.append(TaskScore(task, math.nan, "error", f"{configs.parent}: not a task "
                                     f"folder of the reference (no {CONFIGS_NAME})"))
            continue
        try:
            prediction = read_predictions(path)
            if any(v == EXCEEDED for v in prediction.values()):
                time_exceeded = True
            if time_exceeded:  # the scorer's flag stays set for every later task
                results.append(TaskScore(task, math.nan, "exceeded",
                                         "predictions timed out (EXCEEDED)"))
                continue
            ref = read_reference(configs)
            if len(ref.hyperparameters) < 2:  # the scorer's minimum over no pairs: inf
                raise GengapError(
                    f"{configs}: {len(ref.hyperparameters)} hyperparameter(s); the score is "
                    "the least over pairs of hyperparameters, and there is no pair")
            unknown = [k for k in prediction if k not in ref.frame.index]
            if prediction and len(unknown) == len(prediction):
                raise GengapError(
                    f"{path}: no prediction names a model of the reference (keys like "
                    f"{unknown[0]!r}; the reference's are like {ref.frame.index[0]!r})")
            score, dropped = score_task(ref, prediction, subgrid=subgrid, source=path)
            if subgrid and (note := _subgrid_note(task, ref, prediction, path, dropped)):
                notes.append(note)
            if unknown:
                notes.append(
                    f"{task}: {len(unknown)} predictions name no reference model (e.g. "
                    f"{unknown[0]!r}); the scorer skips every pair that involves them"
                )
            if not math.isfinite(score):  # NaN would make the whole average NaN
                raise GengapError("no pair of models could be compared (the score is NaN)")
            results.append(TaskScore(task, score, "scored", models=len(ref.frame) - dropped,
                                     dropped=dropped))
        except GengapError as err:
            results.append(TaskScore(task, math.nan, "error", str(err)))
    if pred_root.is_dir():  # a misnamed file would otherwise pass without a word
        notes.extend(f"{path}: no task {path.stem!r} in the reference; not scored"
                     for path in sorted(pred_root.glob("*.predict")) if path.stem not in tasks)
    scored = [t.score for t in results if t.status == "scored"]
    if time_exceeded:
        average = 0.0
    elif scored:
        average = 100.0 * sum(scored) / len(scored)
    else:  # the scorer divides by zero here; no task could be scored
        average = math.nan
    return Scores(results, average, time_exceeded, notes)
