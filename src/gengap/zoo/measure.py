"""Measuring the finished runs of a zoo and storing the values."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from concurrent.futures import as_completed
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gengap.data import Splits, load
from gengap.errors import GengapError
from gengap.measures import MeasureContext, compute_timed, measures, profile, select
from gengap.measures.registry import is_monte_carlo
from gengap.models import build_for
from gengap.models.weight_check import load_checked
from gengap.specs import MeasureOptions, RunSpec
from gengap.zoo.pool import check_workers, worker_pool
from gengap.zoo.seed_pairs import seed_partners
from gengap.zoo.store import Store, opened

TRAJECTORY_KEYS = ("steps_to_ce_0.1", "steps_to_ce_0.01", "steps", "epochs")

OnRun = Callable[[str, dict[str, tuple[float, float]]], None]


class UnreadableWeights(GengapError):
    """A run's weight file that cannot be read or does not fit its network: that run is not
    measured, the others are (see :func:`measure_zoo`)."""


def load_model(store: Store, run: RunSpec, splits: Splits, which: str = "final") -> nn.Module:
    """Rebuild a run's network and load its ``init`` or ``final`` weights from the store. A
    weight file that cannot be read or does not fit raises :class:`UnreadableWeights`; a
    network that cannot be built (the zoo's own problem) its plain :class:`GengapError`."""
    model = build_for(run.arch, splits)
    try:
        return load_checked(model, store.load_weights(run.run_id, which),
                            str(store.weights_path(run.run_id, which)), "run's network")
    except GengapError as err:
        raise UnreadableWeights(str(err)) from None


def needing(names: list[str], need: str) -> list[str]:
    """The ``names`` whose measures need ``need`` (a :data:`registry.NEEDS` key)."""
    return [n for n in names if need in measures.get(n).needs]


def trajectory(run: RunSpec, metrics: dict[str, Any]) -> dict[str, Any]:
    """What the optimization measures read from a run's records: the steps at which training
    cross-entropy first reached 0.1 and 0.01 (None when never), and the batch size."""
    out: dict[str, Any] = {"batch_size": run.train.batch_size}
    for key in TRAJECTORY_KEYS:
        value = metrics.get(key)
        out[key] = None if value is None or (isinstance(value, float) and math.isnan(value)) \
            else value
    return out


def missing_measures(wanted: list[str], have: Mapping[str, str | None],
                     precision: str = "auto") -> list[str]:
    """``wanted`` names not stored yet in ``have`` (name -> arithmetic, as
    :meth:`Store.measured` gives a run's); a vector measure is stored when any ``name.*`` is.
    With an explicit ``precision`` ("float32" or "bfloat16", not "auto"), a Monte Carlo
    measure of a float32 model stored in the other arithmetic, or stored before gengap kept
    its arithmetic, is missing too (a float64 model's passes keep its own dtype either way)."""
    def stored(name: str) -> bool:
        if measures.get(name).vector:
            return any(h.startswith(name + ".") for h in have)
        if name not in have:
            return False
        if precision == "auto" or not measures.get(name).monte_carlo:
            return True
        arithmetic = have[name]
        return arithmetic == precision or arithmetic not in (None, "float32", "bfloat16")

    return [n for n in wanted if not stored(n)]


def has_init(store: Store, run: RunSpec, metrics: Mapping[str, Any]) -> bool:
    """Whether the run has initial weights: a run gengap trained (its records say what
    stopped it) always does, so a missing file there is an error to report when it is read,
    not a reason to leave measures out; an imported one only where the file is there.
    Something in the file's place that is not a file counts too: reading it is the error."""
    return (_trained_here(metrics)
            or store.weights_path(run.run_id, "init").exists())


def _trained_here(metrics: Mapping[str, Any]) -> bool:
    """Whether a run's records come from gengap's own training, which says what stopped it
    (an import's records are its source's metrics: no such key)."""
    stopped = metrics.get("stopped_by")
    return isinstance(stopped, str) and bool(stopped)


def measure_run(
    store: Store, run: RunSpec, names: list[str], splits: Splits, metrics: dict[str, Any],
    device: str = "auto", options: MeasureOptions | None = None,
    profile_into: dict[str, dict[str, float]] | None = None,
    partner: RunSpec | None = None,
    no_value_into: dict[str, str] | None = None,
    arithmetic_into: dict[str, str] | None = None,
    unreadable_into: dict[str, str] | None = None,
) -> dict[str, tuple[float, float]]:
    """``name -> (value, seconds)`` of ``names`` on one finished run (``no_value_into``, a
    dict to fill: measure -> why its value is NaN, where its formula does not apply;
    ``arithmetic_into``: Monte Carlo measure -> the arithmetic of its passes); with
    ``profile_into``,
    add each measure's own seconds to ``profile_into["measures"]`` and each shared pass's to
    ``profile_into["passes"]``, and count the run under its Monte Carlo passes' precision in
    ``profile_into["monte_carlo_precision"]`` where they ran. ``partner``: the run of the
    same spec with another seed (see :func:`seed_partners`), the second model of the agreement
    measures, which compare the two on the test split's inputs. The run's final weights that
    cannot be read or do not fit raise :class:`UnreadableWeights`; where its initial weights,
    or the partner's final ones, cannot be read, the run is measured without the measures that
    need them, and ``unreadable_into`` (a dict to fill) gets the file owner's run id and the
    problem."""
    final = load_model(store, run, splits, "final")
    # the initial weights, and the twin's, only for measures that read them; a bad file there
    # holds back just those measures
    sources = {"init_weights": (run, "init") if has_init(store, run, metrics) else None,
               "second_model": (partner, "final") if partner is not None else None}
    models: dict[str, nn.Module] = {}
    for need, source in sources.items():
        if source is None or not needing(names, need):
            continue
        try:
            models[need] = load_model(store, source[0], splits, source[1])
        except UnreadableWeights as err:
            if unreadable_into is None:  # a caller that does not collect them hears of it
                raise
            unreadable_into.setdefault(source[0].run_id, str(err))
            names = [n for n in names if need not in measures.get(n).needs]
    if not names:
        return {}
    ctx = MeasureContext(
        final,
        init_model=models.get("init_weights"),
        x_train=splits.x_train,
        y_train=splits.y_train,
        device=device,
        options=options,
        trajectory=trajectory(run, metrics),
        second_model=models.get("second_model"),
        x_heldout=splits.x_test if partner else None,
    )
    if profile_into is None:
        values = compute_timed(ctx, names)
    else:
        result = profile(ctx, names)
        for part, seconds in (("measures", result.measure_seconds),
                              ("passes", result.pass_seconds)):
            into = profile_into.setdefault(part, {})
            for name, value in seconds.items():
                into[name] = into.get(name, 0.0) + value
        if result.monte_carlo_precision:
            runs = profile_into.setdefault("monte_carlo_precision", {})
            runs[result.monte_carlo_precision] = runs.get(result.monte_carlo_precision, 0) + 1
        values = result.values
    if no_value_into is not None:
        no_value_into.update(ctx.reasons(names))
    if arithmetic_into is not None:
        monte_carlo = [name for name in values if is_monte_carlo(name)]
        if monte_carlo:  # the property decides the arithmetic: asked once
            arithmetic = ctx.monte_carlo_arithmetic
            arithmetic_into.update(dict.fromkeys(monte_carlo, arithmetic))
    return values


_worker_splits: dict[str, Splits] = {}


def _measure_task(
    root: str, run_json: str, names: list[str], metrics: dict[str, Any], device: str,
    data_dir: str | None, options_json: str, partner_json: str | None = None,
) -> tuple[str, dict[str, tuple[float, float]], dict[str, str], dict[str, str],
           dict[str, str]]:
    """One run in a worker process (it reads the store; the parent writes): its id, values,
    NaN reasons, Monte Carlo arithmetic, and the problems of the other files it read (see
    :func:`measure_run`)."""
    import gengap.interop  # noqa: F401  (a fresh process: register imported zoos' families)

    torch.set_num_threads(1)
    run = RunSpec.model_validate_json(run_json)
    key = run.data.canonical_json()
    if key not in _worker_splits:
        _worker_splits.clear()
        _worker_splits[key] = load(run.data, data_dir)
    store = Store(root)
    reasons: dict[str, str] = {}
    arithmetic: dict[str, str] = {}
    others: dict[str, str] = {}
    try:
        values = measure_run(store, run, names, _worker_splits[key], metrics, device,
                             MeasureOptions.model_validate_json(options_json),
                             partner=RunSpec.model_validate_json(partner_json)
                             if partner_json else None, no_value_into=reasons,
                             arithmetic_into=arithmetic, unreadable_into=others)
    finally:
        store.close()
    return run.run_id, values, reasons, arithmetic, others


def measure_zoo(
    store: Store | str | Path,
    names: str | list[str] | None = None,
    device: str = "auto",
    data_dir: str | Path | None = None,
    recompute: bool = False,
    on_run: OnRun | None = None,
    workers: int = 1,
    options: MeasureOptions | None = None,
    profile_into: dict[str, dict[str, float]] | None = None,
    left_out: dict[str, int] | None = None,
    no_value: dict[str, dict[str, int]] | None = None,
    unreadable: dict[str, str] | None = None,
) -> int:
    """Compute the chosen measures on every ``done`` run that lacks them (with an explicit
    ``options.precision``, also Monte Carlo measures stored in the other arithmetic: see
    :func:`missing_measures`); return how many runs were measured. Values go into the store
    as each run finishes (an interrupted call keeps what it finished). ``workers`` > 1
    measures that many runs at a time in separate processes (one torch thread each).
    ``profile_into``: see :func:`measure_run` (one worker only). ``left_out`` (a dict to
    fill) counts, per measure, the runs it waits for: those without a seed twin (agreement
    measures) or initial weights; ``no_value`` (a dict to fill) counts, per measure and
    reason, the runs measured now where its value is NaN because its formula does not apply
    (σ′ of a network at chance, say). A weight file that cannot be read or does not fit its
    network holds back only the measures that read it, and the others are measured: a run's
    final weights all of its measures; its initial weights those that need them (read only
    for those); a seed twin's final weights the agreement measures. With ``unreadable`` (a dict
    to fill) the bad file's run id maps to the one-line problem, in the zoo's order, else the
    first problem is raised as :class:`UnreadableWeights` once the rest is stored
    (:func:`unreadable_summary`). A read-only zoo is refused before any work. ``store`` may be
    the zoo's folder."""
    check_workers(workers)
    if workers > 1 and profile_into is not None:
        raise GengapError("--profile times one process: use it with --workers 1")
    with opened(store) as store:
        store.check_writable()
        done, todo, partners = _plan(store, names, recompute,
                                     (options or MeasureOptions()).precision, left_out)
        problems: dict[str, str] = {}
        try:
            if workers <= 1:
                measured = _measure_here(store, todo, partners, device, data_dir, options,
                                         profile_into, on_run, no_value, problems)
            else:
                measured = _measure_in_pool(store, todo, partners, workers, device, data_dir,
                                            options, on_run, no_value, problems)
        finally:  # the problems found so far, in the zoo's order, whatever stopped the call
            order = {run.run_id: i for i, run in enumerate(done)}
            ordered = dict(sorted(problems.items(), key=lambda item: order[item[0]]))
            if unreadable is not None:
                unreadable.update(ordered)
        if ordered and unreadable is None:
            raise UnreadableWeights(unreadable_summary(next(iter(ordered.values())), len(ordered),
                                                       measured))
        return measured


def unreadable_summary(first: str, files: int, measured: int) -> str:
    """One line for a measuring call that met ``files`` weight files it could not read,
    ``first`` the first one's problem, and measured ``measured`` runs."""
    others = f", nor those of {files - 1} other bad file{'s' if files > 2 else ''}" \
        if files > 1 else ""
    return (f"{first} (the measures that read it were not computed{others}; {measured} "
            f"run{'s' if measured != 1 else ''} measured and stored)")


Todo = list[tuple[RunSpec, list[str], dict[str, Any]]]  # run, measures it lacks, its metrics


def _plan(store: Store, names: str | list[str] | None, recompute: bool, precision: str,
          left_out: dict[str, int] | None
          ) -> tuple[list[RunSpec], Todo, dict[str, RunSpec]]:
    """What :func:`measure_zoo` does: the runs done, those to measure with the measures each
    lacks and its metrics, and the seed twins they need (run id -> twin)."""
    wanted = [m.name for m in select(names)]
    have = store.measured()
    frame = store.frame()
    metrics_of = (
        {row["run_id"]: row for row in frame.to_dict("records")} if not frame.empty else {}
    )
    todo: Todo = []
    done = store.runs(status="done")
    finished = {run.run_id for run in done}
    # twins among the runs done or still to train, so that the pairing does not depend on
    # which had finished when `measure` ran (a run whose twin is pending waits; a failed run
    # is no one's twin, and a done run's twin never changes)
    partners = {run_id: twin for run_id, twin
                in seed_partners(done + store.runs(status="pending")).items()
                if twin.run_id in finished}
    for run in done:
        missing = wanted if recompute else missing_measures(
            wanted, have.get(run.run_id, {}), precision)
        # an import without a step-0 checkpoint, or a run without a seed twin (yet): the
        # measures that need them wait
        metrics = metrics_of.get(run.run_id, {})
        lacking = set() if has_init(store, run, metrics) else {"init_weights"}
        if run.run_id not in partners:
            lacking.add("second_model")
        waiting = [n for n in missing if lacking & set(measures.get(n).needs)]
        missing = [n for n in missing if n not in waiting]
        if left_out is not None:
            for name in waiting:
                left_out[name] = left_out.get(name, 0) + 1
        if run.run_id in partners and not needing(missing, "second_model"):
            partners.pop(run.run_id)  # not needed: do not load the twin's weights
        if missing:
            todo.append((run, missing, metrics))
    return done, todo, partners


def _measure_here(
    store: Store, todo: Todo, partners: dict[str, RunSpec], device: str,
    data_dir: str | Path | None, options: MeasureOptions | None,
    profile_into: dict[str, dict[str, float]] | None, on_run: OnRun | None,
    no_value: dict[str, dict[str, int]] | None, problems: dict[str, str],
) -> int:
    """:func:`measure_zoo`'s runs in this process, stored as each finishes; the runs
    measured. A run whose weight file cannot be read goes into ``problems``."""
    splits_by_data: dict[str, Splits] = {}
    measured = 0
    for run, missing, metrics in todo:
        key = run.data.canonical_json()
        if key not in splits_by_data:
            splits_by_data = {key: load(run.data, data_dir)}  # zoos are grouped by data
        reasons: dict[str, str] = {}
        arithmetic: dict[str, str] = {}
        others: dict[str, str] = {}
        try:
            values = measure_run(store, run, missing, splits_by_data[key], metrics, device,
                                 options, profile_into, partners.get(run.run_id), reasons,
                                 arithmetic, others)
        except UnreadableWeights as err:
            problems[run.run_id] = str(err)
            continue
        measured += _record(store, (run.run_id, values, reasons, arithmetic, others), on_run,
                            no_value, problems)
    return measured


def _measure_in_pool(
    store: Store, todo: Todo, partners: dict[str, RunSpec], workers: int, device: str,
    data_dir: str | Path | None, options: MeasureOptions | None, on_run: OnRun | None,
    no_value: dict[str, dict[str, int]] | None, problems: dict[str, str],
) -> int:
    """:func:`measure_zoo`'s runs in ``workers`` processes, stored as each finishes; the runs
    measured. A run whose weight file cannot be read goes into ``problems``."""
    options_json = (options or MeasureOptions()).model_dump_json()
    measured = 0
    with worker_pool(workers) as pool:
        futures = {
            pool.submit(_measure_task, str(store.root), run.canonical_json(), missing,
                        _plain(metrics), device, str(data_dir) if data_dir else None,
                        options_json, partners[run.run_id].canonical_json()
                        if run.run_id in partners else None): run.run_id
            for run, missing, metrics in todo
        }
        try:
            for future in as_completed(futures):
                try:
                    result = future.result()
                except UnreadableWeights as err:
                    problems[futures[future]] = str(err)
                    continue
                measured += _record(store, result, on_run, no_value, problems)
        finally:
            for future in futures:
                future.cancel()
    return measured


def _record(
    store: Store,
    result: tuple[str, dict[str, tuple[float, float]], dict[str, str], dict[str, str],
                  dict[str, str]],
    on_run: OnRun | None, no_value: dict[str, dict[str, int]] | None,
    problems: dict[str, str],
) -> int:
    """Store one run's ``(run id, values, NaN reasons, arithmetic, other files' problems)``
    and count its NaN reasons and those problems; 1 when it had values to store."""
    run_id, values, reasons, arithmetic, others = result
    for owner, problem in others.items():
        problems.setdefault(owner, problem)
    _count(no_value, reasons)
    if not values:  # its only measures read a file that could not be read
        return 0
    store.put_measures(run_id, values, arithmetic)
    if on_run:
        on_run(run_id, values)
    return 1


def _count(into: dict[str, dict[str, int]] | None, reasons: dict[str, str]) -> None:
    """Add one run's NaN reasons to the per-measure, per-reason counts ``into``."""
    if into is None:
        return
    for name, reason in reasons.items():
        counts = into.setdefault(name, {})
        counts[reason] = counts.get(reason, 0) + 1


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    """A frame row's trajectory fields as plain Python values (picklable, NaN as None)."""
    out = {}
    for key in TRAJECTORY_KEYS:
        value = row.get(key)
        out[key] = None if value is None or value != value else float(value)
    return out
