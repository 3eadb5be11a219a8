"""The ranking table: every measure scored against the target by each metric."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from gengap.errors import GengapError
from gengap.evaluate.bootstrap import granulated_kendall_interval, kendall_interval
from gengap.evaluate.cmi import Grid, cmi_by_size
from gengap.evaluate.columns import check_columns, listed
from gengap.evaluate.grid import (
    check_grid,
    largest_complete_subgrid,
    largest_complete_subgrids,
)
from gengap.evaluate.kendall import granulated_kendall, kendall
from gengap.evaluate.order import infinities_ranked
from gengap.evaluate.robust import (
    PAPER_MIN_ESS,
    all_filtered_as_noise,
    environments,
    robust_sign_error,
)
from gengap.evaluate.targets import ORIENTATION, with_target
from gengap.number_format import counted

METRICS = ("tau", "psi", "cmi", "robust")


def ranking_table(
    frame: pd.DataFrame,
    measures: str | Sequence[str],
    hyperparameters: str | Sequence[str],
    target: str = "gap",
    metrics: str | Sequence[str] = ("tau", "psi"),
    *,
    bootstrap: int = 0,
    confidence: float = 0.95,
    seed: int = 0,
    max_conditioning: int = 2,
    grid: Grid = "strict",
    replicates: str | None = None,
    levels: Mapping[str, Sequence[Any]] | None = None,
    test_size: int | str | None = None,
    min_ess: float = PAPER_MIN_ESS,
    filter_noise: bool = True,
) -> pd.DataFrame:
    """One row per measure, best first, with the columns of the chosen ``metrics``:

    - ``tau``: Kendall's tau-b against ``target`` (``tau_low``/``tau_high`` with
      ``bootstrap`` resamples);
    - ``psi``: the granulated Kendall Ψ (``psi_low``/``psi_high``) and ``psi[<axis>]``;
    - ``cmi``: the conditional mutual information ×100, min over conditioning sets of size
      ≤ ``max_conditioning`` (Jiang et al. 2020), and ``cmi[0]``, ``cmi[1]``, ``cmi[2]`` the
      min over sets of each size (``cmi[2]`` is the PGDL task score on a complete grid);
    - ``robust``: the sign error of Dziugaite et al. 2020 over single-hyperparameter
      environments: ``robust_mean``, ``robust_p90``, ``robust_max`` and ``robust_envs``
      (environments kept).

    ``n`` counts runs with a finite value; interval columns come last. "Best" is the highest
    tau (lowest for ``test_acc``), else Ψ, CMI, or the lowest mean sign error. The grid
    options are those of :func:`gengap.evaluate.conditional_mi`, the robust ones those of
    :func:`gengap.evaluate.robust_sign_error`. A measure whose own missing values break the
    grid gets NaN CMI, and ``table.attrs["notes"]`` says why. ``measures``,
    ``hyperparameters`` and ``metrics`` are sequences of names or comma-separated strings.
    """
    measures, hyperparameters, metrics = listed(measures), listed(hyperparameters), listed(metrics)
    if not measures:
        raise GengapError("no measures to rank")
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise GengapError(f"unknown metric {unknown[0]!r} (metrics: {', '.join(METRICS)})")
    frame = with_target(frame, target)
    check_columns(frame, measures, "measure")
    notes: list[str] = []
    frame = infinities_ranked(frame, measures, notes)
    cmi_errors: dict[str, list[str]] = {}  # one note per reason, naming its measures
    # (the CMI and the sign error read test_acc turned round themselves: order.as_scored)
    cmi_frame, cmi_levels = frame, levels
    if "cmi" in metrics:  # the zoo's own grid must hold before any measure is scored
        if grid == "largest":
            # the one scored and, where there is one, another as large (the choice is
            # arbitrary, and the CMI can differ there)
            found = largest_complete_subgrids(frame, hyperparameters, levels, replicates,
                                              most=2)
            cmi_frame, cmi_levels = found[0]
            if len(cmi_frame) < len(frame):
                notes.append(f"CMI on the largest complete sub-grid: {len(cmi_frame)} of "
                             f"{len(frame)} runs ({_describe_levels(cmi_levels)})"
                             + _as_large(found))
        elif grid == "strict":
            check_grid(frame, hyperparameters, levels, replicates)
    envs = (environments(frame, hyperparameters, target, test_size, filter_noise)
            if "robust" in metrics else None)
    rows = []
    for name in measures:
        row: dict[str, Any] = {"measure": name}
        if "tau" in metrics:
            if bootstrap:
                row["tau"], row["tau_low"], row["tau_high"] = kendall_interval(
                    frame[name], frame[target], bootstrap, confidence, seed
                )
            else:
                row["tau"] = kendall(frame[name], frame[target])
        if "psi" in metrics:
            if bootstrap:
                psi, axes = granulated_kendall_interval(
                    frame, name, target, hyperparameters, bootstrap, confidence, seed
                )
                row["psi"], row["psi_low"], row["psi_high"] = psi
                row.update({f"psi[{a}]": v.value for a, v in axes.items()})
            else:
                psi_value, per_axis = granulated_kendall(frame, name, target, hyperparameters)
                row["psi"] = psi_value
                row.update({f"psi[{a}]": v for a, v in per_axis.items()})
        if "cmi" in metrics:
            row.update(_cmi_columns(cmi_frame, name, hyperparameters, target, max_conditioning,
                                    grid, replicates, cmi_levels, cmi_errors))
        if "robust" in metrics:
            summary = robust_sign_error(frame, name, hyperparameters, target,
                                        min_ess=min_ess, envs=envs)
            overall = summary.loc["all"]
            row["robust_mean"] = overall["mean"]
            row["robust_p90"] = overall["p90"]
            row["robust_max"] = overall["max"]
            row["robust_envs"] = int(overall["environments"])
        row["n"] = int(np.isfinite(frame[name].to_numpy(dtype=float)).sum())
        rows.append(row)
    for err, names in cmi_errors.items():
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        notes.append(f"CMI of {shown}: {err}")
    if envs is not None and len(envs.table) and rows and all(
        r["robust_envs"] == 0 for r in rows
    ):
        if filter_noise and all_filtered_as_noise(frame, envs, target, test_size):
            notes.append("robust: no environment kept: every pair's gaps differ by less than "
                         "the test-set noise, so each has no weight (Hoeffding)")
        else:
            notes.append(f"robust: no environment kept: each needs an effective sample size "
                         f"of {min_ess:g} (repeated runs per setting, e.g. seeds), and pairs "
                         f"whose gaps differ by less than the test-set noise get no weight "
                         f"(Hoeffding)")
    table = pd.DataFrame(rows)
    # the values first, their intervals last (the first columns stay measure, tau, psi)
    intervals = [c for c in table.columns if c.endswith(("_low", "_high"))]
    table = table[[c for c in table.columns if c not in intervals] + intervals]
    if table.empty:
        table.attrs["notes"] = notes
        return table
    table = _sort(table, target)
    scored = int(np.isfinite(frame[target].to_numpy(float)).sum())
    if scored < FEW_NETWORKS:  # a perfect tau with a zero-width interval, unremarked
        notes.append(f"only {counted(scored, 'network')} with a {target}: tau takes few values "
                     "there (±1 or 0 with two) and a bootstrap interval little room, so no "
                     "ranking of them is a finding")
    # a tau over a handful of networks (a measure NaN on most) is no finding: after the rest
    enough = enough_networks(len(frame))
    short = table["n"] < enough
    if short.any() and not short.all():
        notes.append(f"ranked after the others: {', '.join(table.loc[short, 'measure'])} (a "
                     f"value on fewer than {enough} of the {len(frame)} networks)")
    table = table.sort_values("n", key=lambda n: n < enough, kind="stable")
    table.attrs["notes"] = notes
    return table.reset_index(drop=True)


FEW_NETWORKS = 5  # below: 3 or 4 networks give tau 7 values at most


def enough_networks(networks: int) -> int:
    """Networks a measure needs a value on for its ranking to count as a finding: half of
    them, and at least 3."""
    return max(3, math.ceil(networks / 2))


def _cmi_columns(
    frame: pd.DataFrame,
    measure: str,
    hyperparameters: Sequence[str],
    target: str,
    max_conditioning: int,
    grid: Grid,
    replicates: str | None,
    levels: Mapping[str, Sequence[Any]] | None,
    errors: dict[str, list[str]],
) -> dict[str, float]:
    sizes = range(min(max_conditioning, len(hyperparameters)) + 1)
    try:
        if grid == "largest":  # the grid again, among the runs where this measure has a value
            finite = frame[np.isfinite(frame[measure].to_numpy(dtype=float))]
            if len(finite) < len(frame):
                frame, levels = largest_complete_subgrid(finite, hyperparameters, levels,
                                                         replicates)
                errors.setdefault("on the largest complete sub-grid of the runs where it has "
                                  "a value", []).append(measure)
        by_size = cmi_by_size(
            frame, measure, hyperparameters, target, max_conditioning=max(sizes),
            grid="none" if grid == "none" else "strict", replicates=replicates, levels=levels,
        )
    except GengapError as err:
        errors.setdefault(str(err), []).append(measure)
        by_size = {s: float("nan") for s in sizes}
    finite = [v for v in by_size.values() if np.isfinite(v)]
    out = {"cmi": 100 * min(finite) if finite else float("nan")}
    out.update({f"cmi[{s}]": 100 * by_size[s] for s in sizes})
    return out


def _sort(table: pd.DataFrame, target: str) -> pd.DataFrame:
    sign = ORIENTATION.get(target, 1)
    for column, ascending in (("tau", sign < 0), ("psi", sign < 0), ("cmi", False),
                              ("robust_mean", True)):
        if column in table.columns:
            return table.sort_values(column, ascending=ascending, na_position="last")
    return table


def _as_large(found: list[tuple[pd.DataFrame, dict[str, list[Any]]]]) -> str:
    """A note's tail naming the second of ``found`` (complete sub-grids as large as the
    first), if any."""
    if len(found) < 2:
        return ""
    return (f"; another as large ({_describe_levels(found[1][1])}) may give other values: "
            "the first found is used, which keeps the most values of the first hyperparameter, "
            "lower values first")


def _describe_levels(levels: Mapping[str, Sequence[Any]]) -> str:
    return "; ".join(f"{h} in {list(v)}" for h, v in levels.items())
