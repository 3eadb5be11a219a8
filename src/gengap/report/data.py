"""What a report is made of: the zoo's table, its axes, chosen training curves and the
evaluation results, gathered once so that every section reads the same numbers.

Nothing here imports torch: :func:`gather` takes an open :class:`gengap.zoo.Store` (which does)
from its caller.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from gengap.errors import GengapError
from gengap.evaluate.features import WEIGHT_PREFIX
from gengap.evaluate.targets import TARGETS, with_target
from gengap.report.evaluation import Evaluation, evaluate_frame

if TYPE_CHECKING:
    from gengap.zoo.store import Store

@dataclass
class ReportData:
    """Everything the report shows. ``frame`` holds every run (any status); ``axes`` maps each
    hyperparameter of the zoo to the values it takes; ``histories`` maps the run ids whose
    training curves are drawn to their per-epoch records."""

    name: str
    source: str
    frame: pd.DataFrame
    axes: dict[str, list[Any]]
    measures: list[str]
    target: str = "gap"
    design: str = "grid"
    seeds: list[int] = field(default_factory=list)
    histories: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    curves_chosen: bool = False  # the user named the runs (--runs), not the default choice
    evaluation: Evaluation | None = None

    @property
    def hyperparameters(self) -> list[str]:
        return list(self.axes)

    @property
    def done(self) -> pd.DataFrame:
        """The finished runs (the only ones with metrics and measures)."""
        if self.frame.empty or "status" not in self.frame:
            return self.frame
        return self.frame[self.frame["status"] == "done"]


def gather(
    store: Store,
    target: str = "gap",
    curve_runs: list[str] | None = None,
    max_curves: int = 4,
    evaluate: bool = True,
    bootstrap: int = 1000,
    test_size: int | str | None = None,
    data_dir: str | Path | None = None,
) -> ReportData:
    """Read a zoo folder into a :class:`ReportData` and evaluate its measures.

    ``curve_runs`` names the runs whose training curves are drawn (full ids or unique
    prefixes); by default up to ``max_curves`` finished runs spread from the smallest to the
    largest ``target``. ``bootstrap``: resamples behind the confidence intervals;
    ``test_size``: test examples behind each gap, for the robust sign-error (default: the
    runs' recorded ``test_size``, else counted from their data specs as ``gengap evaluate``
    does, local files from ``data_dir``; unknown when a spec cannot be loaded here). When the
    finished runs record no accuracies to derive ``target`` from, the evaluation is only notes
    saying so; a target that is neither one of gap, test_error, test_acc nor a column is a
    :class:`GengapError`.
    """
    zoo = store.zoo
    frame = store.frame()
    missing = None  # why the target cannot be had, when the zoo records no accuracies
    if not frame.empty and (frame["status"] == "done").any():
        try:
            frame = with_target(frame, target)  # gap, test_error derived
        except GengapError:
            if target not in TARGETS:  # a misspelt --target: one clear error
                raise
            # e.g. a PGDL import without reference metrics: the rest of the report still shows
            missing = (f"not computed: the finished runs have no {target} (this zoo records no "
                       "train and test accuracy)")
    axes = {name: _axis_values(zoo, name, frame) for name in zoo.hyperparameters}
    # the weight statistics are a predictor's inputs, not measures to rank
    measures = sorted(n for n in store.measure_names() if not n.startswith(WEIGHT_PREFIX))
    data = ReportData(
        name=zoo.name, source=str(store.root), frame=frame, axes=axes, measures=measures,
        target=target, design=zoo.design, seeds=list(zoo.seeds),
    )
    ids = resolve_runs(frame, curve_runs) if curve_runs else default_curve_runs(data, max_curves)
    data.curves_chosen = bool(curve_runs)
    data.histories = {run_id: store.history(run_id) for run_id in ids}
    if evaluate and missing:
        data.evaluation = Evaluation(target=target, notes={"ranking": [missing],
                                                           "predictor": [missing]})
    elif evaluate:
        done = data.done
        if test_size is None and not done.empty and measures:  # as `gengap evaluate` does
            from gengap.zoo.evaluation import with_test_sizes

            try:
                done, test_size = with_test_sizes(store, done, data_dir), "test_size"
            except GengapError:  # data not loadable here: the robust part says so
                pass
        data.evaluation = evaluate_frame(done, measures, data.hyperparameters, target,
                                         bootstrap=bootstrap, test_size=test_size)
    return data


class UnknownRun(GengapError):
    """A ``--runs`` id that names no run of the zoo, or several: the option's value is at
    fault (the CLI reports it as a bad ``--runs``)."""


def resolve_runs(frame: pd.DataFrame, wanted: list[str]) -> list[str]:
    """Full run ids for ids or unique prefixes; a clear error for an unknown or ambiguous one."""
    ids = frame["run_id"].tolist() if "run_id" in frame else []
    out = []
    for prefix in wanted:
        matches = [run_id for run_id in ids if run_id.startswith(prefix)]
        if len(matches) != 1:
            problem = "no run" if not matches else f"{len(matches)} runs"
            raise UnknownRun(f"{prefix}: {problem} with that id (or id prefix) in the zoo")
        out.append(matches[0])
    return out


def default_curve_runs(data: ReportData, count: int) -> list[str]:
    """Finished runs spread over the target: the smallest, the largest, then evenly between."""
    done = data.done
    if done.empty or data.target not in done or count <= 0:
        return []
    ordered = done.sort_values(data.target, kind="stable")["run_id"].tolist()
    if len(ordered) <= count:
        return ordered
    if count == 1:
        return [ordered[0]]
    picks = [round(i * (len(ordered) - 1) / (count - 1)) for i in range(count)]
    return [ordered[i] for i in dict.fromkeys(picks)]


def _axis_values(zoo: Any, name: str, frame: pd.DataFrame) -> list[Any]:
    if name in zoo.axes:
        return list(zoo.axes[name])
    # a continuous range of the random design: the values that were drawn
    if name in frame:
        return sorted(frame[name].dropna().unique().tolist())
    return []


def value_key(value: Any) -> str:
    """A hyperparameter value as a comparable key: numbers by value (so the spec's ``1`` and a
    run's ``1.0`` match), anything else (strings, lists) as canonical JSON."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return json.dumps(value, sort_keys=True, default=str)
    return repr(float(value))


def runs_with(frame: pd.DataFrame, axis: str, value: Any) -> pd.Series:
    """A mask of the rows of ``frame`` whose ``axis`` equals ``value``."""
    key = value_key(value)
    return frame[axis].map(value_key) == key
