"""Learned predictors of generalization: gradient-boosted trees (scikit-learn) that predict
test accuracy or the gap of a network from its weight statistics, its measures, or its
hyperparameters alone (the baseline), cross-validated k-fold or leave-one-zoo-out.

Held-out models are scored by R² and by Kendall's tau between prediction and truth. A fitted
predictor is saved as JSON (:mod:`gengap.evaluate.predictor_file`), never pickled.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import sklearn
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.metrics import r2_score
from sklearn.model_selection import GroupKFold, LeaveOneGroupOut

from gengap.errors import GengapError
from gengap.evaluate.columns import check_columns
from gengap.evaluate.features import Encoding, feature_columns
from gengap.evaluate.kendall import kendall
from gengap.evaluate.predictor_file import Predictor, Tree
from gengap.evaluate.targets import with_target

DEFAULT_TREES = {"n_estimators": 200, "learning_rate": 0.05, "max_depth": 3, "subsample": 1.0}
CHECK_ROWS = 8


@dataclass(frozen=True)
class CVResult:
    """Per held-out fold (or zoo): ``folds`` with ``fold``, ``n``, ``r2``, ``tau``; and
    ``predictions``: every model's out-of-fold prediction next to its ``target``."""

    folds: pd.DataFrame
    predictions: pd.DataFrame

    def summary(self) -> dict[str, float]:
        """Mean and standard deviation of R² and tau over the folds where they have a value,
        how many folds that is (``r2_folds``, ``tau_folds``: a fold of one held-out model has
        no R², one whose models share one target or one prediction no tau), and both on the
        pooled out-of-fold predictions."""
        truth = self.predictions["target"].to_numpy(float)
        guess = self.predictions["prediction"].to_numpy(float)
        return {
            "r2": float(self.folds["r2"].mean()),
            "r2_sd": float(self.folds["r2"].std(ddof=0)),
            "r2_folds": int(self.folds["r2"].notna().sum()),
            "tau": float(self.folds["tau"].mean()),
            "tau_sd": float(self.folds["tau"].std(ddof=0)),
            "tau_folds": int(self.folds["tau"].notna().sum()),
            "r2_pooled": float(r2_score(truth, guess)) if len(truth) > 1 else float("nan"),
            "tau_pooled": kendall(guess, truth),
            "folds": len(self.folds),
            "n": len(truth),
        }


def fit_predictor(
    frame: pd.DataFrame,
    features: Sequence[str],
    target: str = "test_acc",
    seed: int = 0,
    meta: dict[str, Any] | None = None,
    **trees: Any,
) -> Predictor:
    """Fit gradient-boosted trees (squared error) of ``target`` on the columns ``features``
    of the rows where the target is known; non-numeric columns are one-hot encoded and
    missing values take the training median. ``trees`` override :data:`DEFAULT_TREES`."""
    check_columns(frame, features, "feature")
    data = _rows_with_target(with_target(frame, target), target)
    encoding = Encoding.fit(data, features)
    raw = encoding.transform(data)
    with _quiet_for_empty_columns():
        fill = np.nanmedian(np.where(np.isnan(raw), np.nan, raw), axis=0) if raw.size else (
            np.zeros(raw.shape[1]))
    fill = np.where(np.isfinite(fill), fill, 0.0)
    x = np.where(np.isnan(raw), fill[None, :], raw)
    y = data[target].to_numpy(dtype=float)
    params = {**DEFAULT_TREES, **trees}
    model = GradientBoostingRegressor(random_state=seed, **params).fit(x, y)
    exported = [_tree(est.tree_) for est in model.estimators_[:, 0]]
    with _quiet_for_empty_columns():
        low = np.nanmin(raw, axis=0) if len(raw) else np.full(raw.shape[1], np.nan)
        high = np.nanmax(raw, axis=0) if len(raw) else np.full(raw.shape[1], np.nan)
    predictor = Predictor(
        target=target,
        encoding=encoding,
        fill=[float(v) for v in fill],
        low=[float(v) for v in low],
        high=[float(v) for v in high],
        init=float(model.init_.constant_.ravel()[0]),
        learning_rate=float(model.learning_rate),
        trees=exported,
        meta={
            "trained_on": len(data),
            "trees": params,
            "seed": seed,
            "scikit_learn": sklearn.__version__,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            **(meta or {}),
        },
    )
    # The exported trees must give exactly scikit-learn's predictions; record a few as the
    # file's self-check.
    ours, theirs = predictor.predict_matrix(x), model.predict(x)
    if not np.allclose(ours, theirs, rtol=1e-9, atol=1e-12):
        raise RuntimeError("exported trees disagree with scikit-learn's predictions")
    pick = np.linspace(0, len(x) - 1, min(CHECK_ROWS, len(x))).astype(int)
    predictor.check_rows = [[float(v) for v in x[i]] for i in pick]
    predictor.check_values = [float(ours[i]) for i in pick]
    return predictor


def cross_validate(
    frame: pd.DataFrame,
    features: Sequence[str],
    target: str = "test_acc",
    folds: int = 5,
    groups: str | None = None,
    seed: int = 0,
    together: Sequence[str] = (),
    **trees: Any,
) -> CVResult:
    """Out-of-fold R² and Kendall tau: ``folds``-fold (shuffled by ``seed``), or, with
    ``groups`` (a column such as ``zoo``), leave one group out. In k-fold, the runs that agree
    on every column of ``together`` (a configuration's hyperparameters: its seeds) fall in the
    same fold, so no held-out network has a twin in training."""
    data = _rows_with_target(with_target(frame, target), target)
    if groups is not None:
        if groups not in data.columns:
            raise GengapError(f"no group column {groups!r} in the table")
        labels = data[groups].astype(str).to_numpy()
        if len(set(labels)) < 2:
            raise GengapError(f"leave-one-{groups}-out needs at least two values of {groups!r}")
        splits = LeaveOneGroupOut().split(data, groups=labels)
    else:
        configs = configurations(data, together)
        count = len(set(configs.tolist()))
        if count < 2:
            raise GengapError(f"cross-validation needs models of at least two configurations "
                              f"(hyperparameter settings) with a known {target}; there "
                              f"{'is one' if count else 'are none'}")
        if not 2 <= folds <= count:  # each fold holds out whole configurations
            raise GengapError(f"--folds {folds}: the models with a known {target} form {count} "
                              f"configurations (hyperparameter settings, seeds together), so "
                              f"choose 2 to {count} folds")
        labels = None
        splits = GroupKFold(folds, shuffle=True, random_state=seed).split(data, groups=configs)
    rows, parts = [], []
    for k, (train, test) in enumerate(splits):
        name = labels[test[0]] if labels is not None else str(k)
        if len(train) < 2:  # else fit_predictor's count would be of this fold, not the data
            which = f"{groups} {name!r}" if labels is not None else f"fold {k + 1} of {folds}"
            raise GengapError(f"holding out {which} leaves {len(train)} of the {len(data)} "
                              f"models with a known {target!r} to fit on; a predictor needs "
                              "at least two")
        model = fit_predictor(data.iloc[train], features, target, seed=seed, **trees)
        held = data.iloc[test]
        guess = model.predict(held)
        truth = held[target].to_numpy(dtype=float)
        rows.append({
            "fold": name,
            "n": len(test),
            "r2": float(r2_score(truth, guess)) if len(test) > 1 else float("nan"),
            "tau": kendall(guess, truth),
        })
        parts.append(pd.DataFrame({"fold": name, "target": truth, "prediction": guess},
                                  index=held.index))
    return CVResult(pd.DataFrame(rows), pd.concat(parts))


@contextmanager
def _quiet_for_empty_columns() -> Iterator[None]:
    """A feature column without any value among the training runs (a measure another zoo
    lacks) has NaN statistics, filled in afterwards: numpy's "All-NaN slice" warning about it
    is expected, not news for the user."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def configurations(data: pd.DataFrame, together: Sequence[str]) -> np.ndarray:
    """One label per row: equal for rows that agree on every column of ``together`` present in
    ``data``; every row its own when none is present."""
    kept = [c for c in together if c in data.columns]
    if not kept:
        return np.arange(len(data))
    # str of each value: a missing one (NaN, None) is text too, one configuration with itself
    # (astype(str) keeps NaN a float in pandas 3, and the join failed)
    return data[kept].map(str).agg("|".join, axis=1).to_numpy()


def run_configuration(hyperparameters: Sequence[str]) -> list[str]:
    """The columns that make one configuration of a population: its hyperparameters and its
    zoo (the same values in two zoos are two configurations); none without hyperparameters
    (then each run stands alone)."""
    return [*hyperparameters, "zoo"] if hyperparameters else []


def compare_feature_sets(
    frame: pd.DataFrame,
    measures: Sequence[str],
    hyperparameters: Sequence[str],
    target: str = "test_acc",
    kinds: Sequence[str] = ("weights", "measures", "hyperparameters"),
    folds: int = 5,
    groups: str | None = None,
    seed: int = 0,
    **trees: Any,
) -> pd.DataFrame:
    """One row per feature set: its cross-validated R² and tau on held-out models (a set
    that is empty in this table gets a ``note`` instead). A one-line :class:`GengapError`
    where every set is empty: there is nothing to compare."""
    if not kinds:
        raise GengapError("no feature sets to compare")
    rows: list[dict[str, Any]] = []
    for kind in kinds:
        try:
            columns = feature_columns(frame, kind, measures, hyperparameters)
        except GengapError as err:
            rows.append({"features": kind, "note": str(err)})
            continue
        result = cross_validate(frame, columns, target, folds, groups, seed,
                                together=run_configuration(hyperparameters), **trees)
        rows.append({"features": kind, "columns": len(columns), **result.summary()})
    if all("note" in row for row in rows):
        raise GengapError("every feature set is empty (" + "; ".join(
            f"{row['features']}: {row['note'].split(': ', 1)[-1]}" for row in rows) + ")")
    return pd.DataFrame(rows)


def _rows_with_target(frame: pd.DataFrame, target: str) -> pd.DataFrame:
    keep = np.isfinite(frame[target].to_numpy(dtype=float))
    data = frame[keep]
    if len(data) < 2:
        raise GengapError(f"need at least two models with a known {target!r} (have {len(data)})")
    return data


def _tree(tree: Any) -> Tree:
    """scikit-learn's public ``tree_`` arrays as a :class:`Tree` (the learning rate stays
    outside, as scikit-learn applies it)."""
    return Tree(
        left=[int(v) for v in tree.children_left],
        right=[int(v) for v in tree.children_right],
        feature=[int(v) if lc >= 0 else -1 for v, lc in
                 zip(tree.feature, tree.children_left, strict=True)],
        threshold=[float(v) for v in tree.threshold],
        value=[float(v) for v in tree.value[:, 0, 0]],
    )
