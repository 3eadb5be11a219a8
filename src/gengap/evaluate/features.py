"""Feature sets of learned predictors, and their encoding into a numeric matrix.

Three inputs, as in Unterthiner et al. 2020 and Jiang et al. 2020:

- ``weights``: the per-layer weight statistics (columns ``wstat.*`` of the weight_stats
  measure);
- ``measures``: the vector of scalar generalization measures;
- ``hyperparameters``: the zoo's axes only, the baseline a predictor must beat.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from gengap.errors import GengapError

FEATURE_SETS = ("weights", "measures", "hyperparameters")
WEIGHT_PREFIX = "wstat."


def feature_columns(
    frame: pd.DataFrame,
    kind: str,
    measures: Sequence[str] = (),
    hyperparameters: Sequence[str] = (),
    weight_prefix: str = WEIGHT_PREFIX,
) -> list[str]:
    """The columns of feature set ``kind`` (``weights``, ``measures`` or
    ``hyperparameters``), or ``kind`` itself read as comma-separated column names."""
    if kind == "weights":
        columns = [c for c in frame.columns if str(c).startswith(weight_prefix)]
        hint = "compute the weight_stats measure first (gengap measure DIR --measures wstat)"
    elif kind == "measures":
        columns = [m for m in measures if m in frame.columns
                   and not str(m).startswith(weight_prefix)]
        hint = "compute some measures first (gengap measure DIR)"
    elif kind == "hyperparameters":
        columns = [h for h in hyperparameters if h in frame.columns]
        hint = ("no hyperparameter columns (a zoo's are its spec's axes, a table's those "
                "named by --hyperparameters)")
    else:
        columns = [c.strip() for c in kind.split(",") if c.strip()]
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise GengapError(
                f"no feature column {missing[0]!r} (feature sets: {', '.join(FEATURE_SETS)})"
            )
        hint = ""
    if not columns:
        raise GengapError(f"feature set {kind!r} is empty: {hint}")
    return columns


FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass
class Encoding:
    """Raw columns -> numeric matrix: numbers as they are, clipped to float32's range (the
    trees' own precision; an infinite measure, such as 1/γ² at γ = 0, keeps its place at the
    end of the order), any other column one-hot over the categories seen in training. Missing
    values, and a category not seen in training, are NaN in every column they encode to (the
    predictor imputes them)."""

    features: list[str]
    categories: dict[str, list[Any]] = field(default_factory=dict)
    # False: a missing or unseen category is all zeros (predictor files of format version 1,
    # whose trees were grown so)
    unseen_as_missing: bool = True

    @classmethod
    def fit(cls, frame: pd.DataFrame, features: Sequence[str]) -> Encoding:
        categories = {}
        for c in features:
            if not _numeric(frame[c]):
                values = pd.unique(frame[c].dropna())
                categories[c] = sorted(values, key=str)
        return cls(list(features), {k: [_plain(v) for v in v_] for k, v_ in categories.items()})

    @property
    def columns(self) -> list[str]:
        out = []
        for c in self.features:
            if c in self.categories:
                out.extend(f"{c}={v}" for v in self.categories[c])
            else:
                out.append(c)
        return out

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        missing = [c for c in self.features if c not in frame.columns]
        if missing:
            raise GengapError(f"the table lacks the predictor's feature column {missing[0]!r} "
                              f"(and {len(missing) - 1} more)" if len(missing) > 1 else
                              f"the table lacks the predictor's feature column {missing[0]!r}")
        parts = []
        for c in self.features:
            if c in self.categories:
                values = frame[c].map(_plain).tolist()
                known = np.array([v in self.categories[c] or not self.unseen_as_missing
                                  for v in values])
                for cat in self.categories[c]:
                    hot = np.array([v == cat for v in values], dtype=float)
                    parts.append(np.where(known, hot, np.nan))
            else:
                try:
                    numbers = pd.to_numeric(frame[c]).to_numpy(dtype=float)
                except (ValueError, TypeError):
                    raise GengapError(f"feature column {c!r} must be numeric") from None
                parts.append(np.clip(numbers, -FLOAT32_MAX, FLOAT32_MAX))
        if not parts:
            return np.zeros((len(frame), 0))
        return np.column_stack(parts)

    def missing(self, raw: np.ndarray) -> np.ndarray:
        """(rows, features): which features of each row of ``raw`` (:meth:`transform`'s
        matrix) are missing or an unseen category, so imputed."""
        out, at = [], 0
        for c in self.features:
            width = len(self.categories[c]) if c in self.categories else 1
            out.append(np.isnan(raw[:, at : at + width]).any(axis=1))
            at += width
        return np.column_stack(out) if out else np.zeros((len(raw), 0), dtype=bool)


def _numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def _plain(value: Any) -> Any:
    """numpy scalars as Python values, so that categories survive a JSON round trip."""
    return value.item() if isinstance(value, np.generic) else value
