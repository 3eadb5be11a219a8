"""The evaluation results a report shows, computed by :mod:`gengap.evaluate` (never here).

Each metric is computed on its own, so that one the zoo cannot support (CMI on a grid with
holes, the robust sign-error without repeated runs or test-set sizes) leaves a note and the
others still show: the result is ``None`` and the note says why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd

from gengap import evaluate
from gengap.errors import GengapError
from gengap.evaluate.features import FEATURE_SETS, feature_columns
from gengap.evaluate.order import infinities_ranked
from gengap.evaluate.predictors import configurations, cross_validate, run_configuration


@dataclass
class Evaluation:
    """The measures scored against ``target``.

    ``ranking``: one row per measure, ``measure`` then the columns of
    :func:`gengap.evaluate.ranking_table` (``tau``, ``tau_low``, ``tau_high``, ``psi``, its
    interval and ``psi[<axis>]``, ``cmi``, ``cmi[<k>]``, ``robust_mean``, ...), best first.
    ``predictions``: out-of-fold predictions of the learned predictors (gradient-boosted trees on
    each feature set of :mod:`gengap.evaluate.features`), one row per (``predictor``,
    ``run_id``) with ``actual``, ``predicted`` and ``fold``; ``predictor_scores``: one row per
    feature set with its held-out R² and tau (``CVResult.summary()`` of
    :mod:`gengap.evaluate.predictors`). ``notes``: per part (``ranking``, ``intervals``,
    ``cmi``, ``robust``, ``predictor``), what was not computed and why, or remarks.
    """

    target: str
    ranking: pd.DataFrame | None = None
    predictions: pd.DataFrame | None = None
    predictor_scores: pd.DataFrame | None = None
    notes: dict[str, list[str]] = field(default_factory=dict)

    def note(self, part: str, text: str) -> None:
        self.notes.setdefault(part, []).append(text)


def evaluate_frame(
    done: pd.DataFrame,
    measures: Sequence[str],
    hyperparameters: Sequence[str],
    target: str = "gap",
    *,
    bootstrap: int = 1000,
    seed: int = 0,
    test_size: int | str | None = None,
) -> Evaluation:
    """Score ``measures`` over the finished runs in ``done``: tau and Ψ with ``bootstrap``
    percentile intervals, CMI on the largest complete sub-grid, and the robust sign-error
    when ``test_size`` (test examples behind each gap: a number or a column) is known; then
    learned predictors of ``target``, cross-validated 5-fold."""
    result = Evaluation(target=target)
    if done.empty:
        for part in ("ranking", "predictor"):
            result.note(part, "not computed: no finished runs yet (run `gengap zoo train`)")
        return result
    measures, axes = list(measures), list(hyperparameters)
    if not measures:  # the hyperparameters-only baseline needs none
        result.note("ranking", "not computed: no measures stored yet (run `gengap measure DIR`)")
        _predictors(result, done, measures, axes, target, seed)
        return result
    # the predictors take the values as they are; the rankings, which compare by order only,
    # take infinities as ranks, noted once here rather than by each of their tables
    notes: list[str] = []
    ranked = infinities_ranked(done, measures, notes)
    for text in notes:
        result.note("ranking", text)
    try:
        ranking = evaluate.ranking_table(ranked, measures, axes, target, ("tau", "psi"),
                                         bootstrap=bootstrap, seed=seed)
    except GengapError as err:
        result.note("ranking", f"not computed: {err}")
        return result
    # the ranking's own notes (which measures come last, and why) once, under the ranking:
    # the metric tables below carry them too
    shown = list(ranking.attrs.get("notes", []))
    for text in shown:
        result.note("ranking", text)
    if not bootstrap:
        result.note("intervals", "not computed: no bootstrap resamples asked for")
    replicates = "seed" if "seed" in done and done["seed"].nunique() > 1 else None
    ranking = _join(result, "cmi", ranking, lambda: evaluate.ranking_table(
        ranked, measures, axes, target, ("cmi",), grid="largest", replicates=replicates),
        shown)
    if test_size is None:
        result.note("robust", "not computed: the runs' test-set sizes are unknown "
                    "(give them with --test-size N, or test_size= in Python)")
    else:
        ranking = _join(result, "robust", ranking, lambda: evaluate.ranking_table(
            ranked, measures, axes, target, ("robust",), test_size=test_size), shown)
    result.ranking = ranking
    _predictors(result, done, measures, axes, target, seed)
    return result


def _predictors(result: Evaluation, done: pd.DataFrame, measures: list[str], axes: list[str],
                target: str, seed: int, folds: int = 5) -> None:
    """Cross-validated gradient-boosted trees on each feature set: the out-of-fold
    predictions and the held-out scores."""
    scores, predictions = [], []
    together = run_configuration(axes)
    folds = min(folds, len(set(configurations(done, together).tolist())))
    for kind in FEATURE_SETS:
        try:
            columns = feature_columns(done, kind, measures, axes)
            fit = cross_validate(done, columns, target, folds=folds, seed=seed,
                                 together=together)
        except GengapError as err:
            result.note("predictor", f"{kind}: not computed: {err}")
            continue
        summary = fit.summary()
        scores.append({"features": kind, "columns": len(columns), **summary})
        if summary["tau_folds"] < summary["folds"]:  # a mean of few folds, sd 0 for one
            result.note("predictor", f"{kind}: tau has a value in {summary['tau_folds']} of "
                        f"{summary['folds']} held-out folds (a fold whose runs share one "
                        "target or one prediction ranks nothing); the pooled tau reads them "
                        "all")
        held = fit.predictions
        predictions.append(pd.DataFrame({
            "predictor": f"trees on {kind}", "run_id": done.loc[held.index, "run_id"].to_numpy(),
            "actual": held["target"].to_numpy(), "predicted": held["prediction"].to_numpy(),
            "fold": held["fold"].to_numpy(),
        }))
    if scores:
        result.predictor_scores = pd.DataFrame(scores)
        result.predictions = pd.concat(predictions, ignore_index=True)


def _join(result: Evaluation, part: str, ranking: pd.DataFrame, compute,
          shown: Sequence[str] = ()) -> pd.DataFrame:
    """``ranking`` with the metric columns of another table, by measure (order kept); the
    other table's notes under ``part``, but for those already ``shown``."""
    try:
        table = compute()
    except GengapError as err:
        result.note(part, f"not computed: {err}")
        return ranking
    for text in table.attrs.get("notes", []):
        if text not in shown:
            result.note(part, text)
    extra = table.drop(columns=[c for c in ("n",) if c in table]).set_index("measure")
    joined = ranking.join(extra, on="measure")
    joined.attrs = {}
    return joined
