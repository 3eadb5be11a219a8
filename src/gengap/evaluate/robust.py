"""The robust sign-error of Dziugaite et al. 2020 ("In Search of Robust Measures of
Generalization", NeurIPS 2020), as their coupled-network analysis computes it.

An *environment* is an ordered pair of hyperparameter settings that differ in exactly one
hyperparameter; its samples are all pairs of runs (one from each setting, e.g. every pair of
seeds). Each pair (a, b) has the sign error

    ℓ = (1 − sign(μ_a − μ_b) · sign(g_a − g_b)) / 2        (a tie on either side gives 1/2)

and, against the noise of estimating the gaps on n test examples, the Hoeffding weight

    w = (max(0, 1 − 2·exp(−2n(|g_a − g_b|/2)²))² − 0.5)_+     (w = 1 without noise filtering).

The environment's loss is the weighted mean of ℓ; environments whose effective sample size
(Σw)²/Σw² is below ``min_ess`` (12 in the paper) are left out. Reported per hyperparameter
(and over all): the mean, quantiles and the maximum ("robust", worst-case) loss.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from gengap.errors import GengapError
from gengap.evaluate.grid import plain_value
from gengap.evaluate.order import as_scored

PAPER_MIN_ESS = 12.0
PAPER_TEST_SIZE = 10_000


def hoeffding_weight(delta: np.ndarray, n: np.ndarray | float) -> np.ndarray:
    """The probability bound that two gaps estimated on ``n`` test examples each differ in
    the sign observed, squared: max(0, 1 − 2·exp(−2n(|Δ|/2)²))²."""
    phi = 2.0 * np.exp(-2.0 * np.asarray(n, dtype=float) * (np.abs(delta) / 2.0) ** 2)
    return np.maximum(0.0, 1.0 - phi) ** 2


def least_weighed_difference(n: float) -> float:
    """The gap difference above which a pair of runs measured on ``n`` test examples keeps a
    positive filtered weight (:func:`hoeffding_weight` above 0.5): √(2·ln(2/(1 − √0.5))/n)."""
    return math.sqrt(2 * math.log(2 / (1 - math.sqrt(0.5))) / n)


@dataclass(frozen=True)
class Environments:
    """Every environment of a table: ``table`` has one row per environment (columns
    ``hyperparameter``, ``from``, ``to``, ``others``: the fixed values) and ``pairs`` the
    run pairs (row positions ``a``, ``b``, environment ``env``, Hoeffding ``weight``)."""

    table: pd.DataFrame
    a: np.ndarray
    b: np.ndarray
    env: np.ndarray
    weight: np.ndarray


def environments(
    frame: pd.DataFrame,
    hyperparameters: Sequence[str],
    target: str = "gap",
    test_size: int | str | None = None,
    filter_noise: bool = True,
) -> Environments:
    """Pairs of runs whose settings differ in exactly one hyperparameter, grouped into
    environments, with their weights. ``test_size``: the number of test examples behind
    each gap (an int, or a column of the table; a pair uses the smaller of its two; by
    default the table's ``test_size`` column, else the paper's 10,000)."""
    if target not in frame.columns:
        raise GengapError(f"no column {target!r} in the table")
    g = frame[target].to_numpy(dtype=float)
    sizes = _test_sizes(frame, test_size)
    rows, a_parts, b_parts, env_parts = [], [], [], []
    for h in hyperparameters:
        others = [o for o in hyperparameters if o != h]
        keys = (frame.groupby(others, dropna=False, sort=True).ngroup().to_numpy()
                if others else np.zeros(len(frame), dtype=np.int64))
        for key in np.unique(keys):
            members = np.flatnonzero(keys == key)
            by_value: dict[object, np.ndarray] = {}
            for value in pd.unique(frame[h].iloc[members]):
                by_value[value] = members[(frame[h].iloc[members] == value).to_numpy()]
            if len(by_value) < 2:
                continue
            fixed = ", ".join(f"{o}={plain_value(frame[o].iloc[members[0]])!r}" for o in others)
            for v1, r1 in by_value.items():
                for v2, r2 in by_value.items():
                    if v1 == v2:
                        continue
                    aa, bb = np.meshgrid(r1, r2, indexing="ij")
                    a_parts.append(aa.ravel())
                    b_parts.append(bb.ravel())
                    env_parts.append(np.full(aa.size, len(rows)))
                    rows.append({"hyperparameter": h, "from": plain_value(v1),
                                 "to": plain_value(v2), "others": fixed})
    table = pd.DataFrame(rows, columns=["hyperparameter", "from", "to", "others"])
    if not rows:
        empty = np.zeros(0, dtype=np.int64)
        return Environments(table, empty, empty, empty, np.zeros(0))
    a, b, env = np.concatenate(a_parts), np.concatenate(b_parts), np.concatenate(env_parts)
    if filter_noise:
        w = hoeffding_weight(g[a] - g[b], np.minimum(sizes[a], sizes[b]))
        w = np.where(w > 0.5, w - 0.5, 0.0)
    else:
        w = np.ones(len(a))
    return Environments(table, a, b, env, w)


def _test_sizes(frame: pd.DataFrame, test_size: int | str | None) -> np.ndarray:
    """The test examples behind each row's gap: a column of ``frame``, or one number; None
    reads the ``test_size`` column where the table has one (a zoo's frame does), else takes
    :data:`PAPER_TEST_SIZE`, as it does for the rows where that column is empty (runs stored
    before it was recorded)."""
    if test_size is None:
        if "test_size" not in frame.columns:
            return np.full(len(frame), float(PAPER_TEST_SIZE))
        sizes = pd.to_numeric(frame["test_size"], errors="coerce").to_numpy(dtype=float)
        return np.where(np.isnan(sizes), float(PAPER_TEST_SIZE), sizes)
    if isinstance(test_size, str):
        if test_size not in frame.columns:
            raise GengapError(f"no test-size column {test_size!r} in the table")
        return frame[test_size].to_numpy(dtype=float)
    return np.full(len(frame), float(test_size))


def all_filtered_as_noise(frame: pd.DataFrame, envs: Environments, target: str = "gap",
                          test_size: int | str | None = None) -> bool:
    """Whether the noise filter alone left every pair of ``envs`` without weight: pairs there
    are, their gaps and test sizes are all known, and none kept a weight."""
    g, sizes = frame[target].to_numpy(dtype=float), _test_sizes(frame, test_size)
    known = np.isfinite(g[envs.a]) & np.isfinite(g[envs.b]) & np.isfinite(sizes[envs.a]) & (
        np.isfinite(sizes[envs.b]))
    return len(envs.a) > 0 and bool(known.all()) and not bool((envs.weight > 0).any())


def environment_losses(
    frame: pd.DataFrame,
    measure: str,
    envs: Environments,
    target: str = "gap",
    min_ess: float = PAPER_MIN_ESS,
) -> pd.DataFrame:
    """``envs.table`` with, for ``measure``: ``weight`` (Σw), ``ess``, ``kept`` and ``loss``
    (the weighted mean sign error; NaN where not kept). Pairs with a missing value are left
    out of their environment."""
    m = frame[measure].to_numpy(dtype=float)
    g = frame[target].to_numpy(dtype=float)
    valid = np.isfinite(m[envs.a]) & np.isfinite(m[envs.b]) & np.isfinite(g[envs.a]) & (
        np.isfinite(g[envs.b])
    )
    loss = (1.0 - np.sign(m[envs.a] - m[envs.b]) * np.sign(g[envs.a] - g[envs.b])) / 2.0
    w = np.where(valid, envs.weight, 0.0)
    count = len(envs.table)
    total = np.bincount(envs.env, w, minlength=count)
    squared = np.bincount(envs.env, w * w, minlength=count)
    weighted = np.bincount(envs.env, np.where(valid, w * loss, 0.0), minlength=count)
    with np.errstate(divide="ignore", invalid="ignore"):
        ess = np.where(squared > 0, total**2 / np.where(squared > 0, squared, 1.0), 0.0)
        env_loss = weighted / total
    kept = (ess > min_ess) | np.isclose(ess, min_ess)
    kept &= total > 0
    out = envs.table.copy()
    out["weight"], out["ess"], out["kept"] = total, ess, kept
    out["loss"] = np.where(kept, env_loss, np.nan)
    return out


def robust_sign_error(
    frame: pd.DataFrame,
    measure: str,
    hyperparameters: Sequence[str],
    target: str = "gap",
    *,
    test_size: int | str | None = None,
    min_ess: float = PAPER_MIN_ESS,
    filter_noise: bool = True,
    quantiles: Sequence[float] = (0.5, 0.9),
    envs: Environments | None = None,
) -> pd.DataFrame:
    """Per hyperparameter (rows, plus ``all``): ``environments`` kept (of ``total``), the
    ``mean`` sign error, the ``p50``/``p90``… quantiles and the worst case ``max``; lower is
    better, 0.5 is a coin flip. Pass ``envs`` (from :func:`environments`) to reuse the
    pairs across measures. A pair with a NaN is left out; ±inf is a value at its end of the
    order, and ``test_acc`` is read turned round, as ``test_error`` is
    (:func:`.order.as_scored`). ``total`` counts every environment of the grid, also those
    where the measure has no values to compare."""
    # the noise filter weighs the target's own differences (a ranked infinity would make them
    # all 1 or more, and keep every environment), so the pairs come from the values as they are
    envs = envs if envs is not None else environments(
        frame, hyperparameters, target, test_size, filter_noise
    )
    frame = as_scored(frame, measure, target)
    losses = environment_losses(frame, measure, envs, target, min_ess)
    rows = []
    groups = [(h, losses[losses["hyperparameter"] == h]) for h in hyperparameters]
    for name, part in [*groups, ("all", losses)]:
        values = part["loss"].to_numpy(dtype=float)
        values = values[np.isfinite(values)]
        row = {"hyperparameter": name, "environments": len(values), "total": len(part)}
        row["mean"] = float(values.mean()) if len(values) else float("nan")
        for q in quantiles:
            row[f"p{round(100 * q):d}"] = (
                float(np.percentile(values, 100 * q)) if len(values) else float("nan")
            )
        row["max"] = float(values.max()) if len(values) else float("nan")
        rows.append(row)
    return pd.DataFrame(rows).set_index("hyperparameter")
