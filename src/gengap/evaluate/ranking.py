"""The ranking table: every measure scored against the target by each metric."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from gengap.evaluate.kendall import granulated_kendall, kendall


def ranking_table(
    frame: pd.DataFrame,
    measures: Sequence[str],
    hyperparameters: Sequence[str],
    target: str = "gap",
) -> pd.DataFrame:
    """One row per measure: ``tau`` against ``target``, ``psi``, one ``psi[<axis>]`` column per
    hyperparameter, and ``n`` (runs with a finite value); best (highest tau) first."""
    rows = []
    for name in measures:
        psi, per_axis = granulated_kendall(frame, name, target, hyperparameters)
        rows.append(
            {
                "measure": name,
                "tau": kendall(frame[name], frame[target]),
                "psi": psi,
                **{f"psi[{axis}]": value for axis, value in per_axis.items()},
                "n": int(np.isfinite(frame[name].to_numpy(dtype=float)).sum()),
            }
        )
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    return table.sort_values("tau", ascending=False, na_position="last").reset_index(drop=True)
