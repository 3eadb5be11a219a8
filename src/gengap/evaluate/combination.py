"""Monotone combinations of measures, chosen on some zoos and scored on others.

A combination is c = Σ_i w_i · s_i · z_i with w_i ≥ 0: z_i is measure i standardised on the
training zoos (after a log when it is positive there), s_i = ±1 its direction (the sign of
its Kendall tau with the target on the training zoos). So c is monotone in every measure, and
a user can read which measures it uses and how. The weights are a non-negative least-squares
fit of the standardised target (scikit-learn's ``LinearRegression(positive=True)``).

Scoring it on zoos it never saw, next to the single measure that the training zoos would
have chosen, says whether combining measures transfers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.linear_model import LinearRegression

from gengap.errors import GengapError
from gengap.evaluate.kendall import granulated_kendall, kendall
from gengap.evaluate.ranking import enough_networks
from gengap.evaluate.targets import ORIENTATION, with_target


@dataclass(frozen=True)
class Combination:
    """The fitted combination: per measure its ``sign``, ``log`` flag, ``center``, ``scale``
    and ``weight`` (measures with weight 0 are dropped)."""

    target: str
    measures: list[str]
    signs: list[int]
    logs: list[bool]
    centers: list[float]
    scales: list[float]
    weights: list[float]

    def score(self, frame: pd.DataFrame) -> np.ndarray:
        """The combination's value per row (a missing measure counts as its training mean; an
        infinite one, or one at or below 0 under a log, saturates at its end of the order)."""
        total = np.zeros(len(frame))
        for name, s, lg, c, sc, w in zip(self.measures, self.signs, self.logs, self.centers,
                                          self.scales, self.weights, strict=True):
            total += w * s * _standardized(frame[name].to_numpy(dtype=float), lg, c, sc)
        return total

    def describe(self) -> str:
        terms = [f"{w:.3g}·{'+' if s > 0 else '−'}{'log ' if lg else ''}{m}"
                 for m, s, lg, w in zip(self.measures, self.signs, self.logs, self.weights,
                                        strict=True)]
        return " + ".join(terms) if terms else "(empty)"


def fit_combination(frame: pd.DataFrame, measures: Sequence[str], target: str = "gap",
                    max_measures: int | None = None) -> Combination:
    """Fit a monotone combination of ``measures`` to ``target`` on ``frame`` (the training
    zoos). ``max_measures`` keeps only the measures with the largest |tau| first."""
    data = with_target(frame, target)
    y = data[target].to_numpy(dtype=float)
    known = np.isfinite(y)
    candidates = []
    for name in measures:
        values = data[name].to_numpy(dtype=float)
        ok = known & np.isfinite(values)
        if ok.sum() < 3 or np.nanstd(values[ok]) == 0:
            continue
        candidates.append((abs(kendall(values[ok], y[ok])), name))
    candidates = [c for c in candidates if np.isfinite(c[0])]
    candidates.sort(key=lambda c: -c[0])
    if max_measures is not None:
        candidates = candidates[:max_measures]
    if not candidates:
        raise GengapError("no measure varies with a known target on the training zoos")
    names, signs, logs, centers, scales, columns = [], [], [], [], [], []
    for _, name in candidates:
        raw = data[name].to_numpy(dtype=float)
        ok = np.isfinite(raw)
        lg = bool((raw[ok] > 0).all())
        t = _transform(raw, lg)
        finite = t[np.isfinite(t)]
        center, scale = float(finite.mean()), float(finite.std()) or 1.0
        z = _standardized(raw, lg, center, scale)
        sign = 1 if kendall(z[known], y[known]) >= 0 else -1
        names.append(name)
        signs.append(sign)
        logs.append(lg)
        centers.append(center)
        scales.append(scale)
        columns.append(sign * z[known])
    x = np.column_stack(columns)
    yk = y[known]
    yz = (yk - yk.mean()) / (yk.std() or 1.0)
    weights = LinearRegression(positive=True).fit(x, yz).coef_
    keep = [i for i, w in enumerate(weights) if w > 0]
    if not keep:  # nothing helps linearly: fall back to the best single measure
        keep, weights = [0], np.ones(len(names))
    return Combination(target, [names[i] for i in keep], [signs[i] for i in keep],
                       [logs[i] for i in keep], [centers[i] for i in keep],
                       [scales[i] for i in keep], [float(weights[i]) for i in keep])


def transfer_table(
    frame: pd.DataFrame,
    measures: Sequence[str],
    hyperparameters: Sequence[str],
    target: str = "gap",
    zoo: str = "zoo",
    test_zoos: Sequence[str] | None = None,
    max_measures: int | None = None,
) -> pd.DataFrame:
    """Choose on some zoos, score on the others. With ``test_zoos`` the rest are the training
    zoos; without, every zoo is held out in turn (the others train). Per held-out zoo: the
    combination's tau and Ψ against ``target``, next to those of the single measure with the
    best tau on the training zoos (oriented the same way), and what was chosen. A zoo without
    a value of any of the measures is refused."""
    data = with_target(frame, target)
    if zoo not in data.columns:
        raise GengapError(f"no zoo column {zoo!r}: give tables of several zoos")
    labels = data[zoo].astype(str)
    names = sorted(labels.unique())
    if len(names) < 2:
        raise GengapError("choosing on some zoos and scoring on others needs two zoos or more")
    for name in names:  # its rows would be the imputation's alone: a constant, scored as ties
        rows = data[labels == name]
        if not any(np.isfinite(rows[m].to_numpy(dtype=float)).any()
                   for m in measures if m in rows.columns):
            raise GengapError(f"zoo {name!r} has no value of any measure (measure it first: "
                              "`gengap measure`)")
    held_out = [[z] for z in names] if test_zoos is None else [list(test_zoos)]
    for group in held_out:
        unknown = [z for z in group if z not in names]
        if unknown:
            raise GengapError(f"unknown zoo {unknown[0]!r} (zoos: {', '.join(names)})")
    rows = []
    orientation = ORIENTATION.get(target, 1)
    for group in held_out:
        is_test = labels.isin(group).to_numpy()
        train, test = data[~is_test], data[is_test]
        combo = fit_combination(train, measures, target, max_measures)
        best, best_tau = None, -np.inf
        # among the measures with a value on enough training networks, as the ranking orders
        enough = [m for m in measures if int(np.isfinite(train[m].to_numpy(dtype=float)).sum())
                  >= enough_networks(len(train))]
        for m in enough or measures:
            t = kendall(train[m], train[target])
            if np.isfinite(t) and orientation * t > best_tau:
                best, best_tau = m, orientation * t
        for z in group:
            part = test[test[zoo].astype(str) == z]
            axes = [h for h in hyperparameters if h in part.columns and part[h].nunique() > 1]
            combined = part.assign(_combination=orientation * combo.score(part))
            row = {
                "test_zoo": z,
                "n": len(part),
                "combination_tau": kendall(combined["_combination"], part[target]),
                "combination_psi": granulated_kendall(combined, "_combination", target,
                                                      axes)[0],
                "best_single": best,
                "single_tau": kendall(part[best], part[target]) if best else float("nan"),
                "single_psi": (granulated_kendall(part, best, target, axes)[0]
                               if best else float("nan")),
                "combination": combo.describe(),
            }
            rows.append(row)
    return pd.DataFrame(rows)


Z_LIMIT = 1e6  # standardized values saturate here: ±inf keep their place at the ends


def _transform(values: np.ndarray, log: bool) -> np.ndarray:
    """``values`` (log: their log, −inf at or below 0, below every positive value)."""
    if not log:
        return values
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(values > 0, np.log(np.where(values > 0, values, 1.0)), -np.inf)
    return np.where(np.isnan(values), np.nan, out)


def _standardized(values: np.ndarray, log: bool, center: float, scale: float) -> np.ndarray:
    """(transform − center)/scale, monotone in ``values``: missing values at 0 (the training
    mean), infinite ones at ±:data:`Z_LIMIT`."""
    with np.errstate(invalid="ignore"):
        z = (_transform(values, log) - center) / scale
    return np.clip(np.where(np.isnan(z), 0.0, z), -Z_LIMIT, Z_LIMIT)
