"""Scoring measures against generalization, on DataFrames (no torch here).

Ranking metrics: :func:`kendall`, :func:`granulated_kendall` (with bootstrap intervals in
:mod:`~gengap.evaluate.bootstrap`), :func:`conditional_mi` (Jiang et al. 2020 and the exact
PGDL scorer), :func:`robust_sign_error` (Dziugaite et al. 2020); the table of all of them,
:func:`ranking_table`. Learned predictors live in :mod:`~gengap.evaluate.predictors`.
"""

from gengap.evaluate.bootstrap import granulated_kendall_interval, kendall_interval
from gengap.evaluate.cmi import cmi_by_set, cmi_by_size, conditional_mi, pgdl_cmi
from gengap.evaluate.grid import check_grid, largest_complete_subgrid, largest_complete_subgrids
from gengap.evaluate.kendall import granulated_kendall, kendall
from gengap.evaluate.ranking import METRICS, ranking_table
from gengap.evaluate.robust import environments, hoeffding_weight, robust_sign_error
from gengap.evaluate.targets import TARGETS, with_target

__all__ = [
    "METRICS",
    "TARGETS",
    "check_grid",
    "cmi_by_set",
    "cmi_by_size",
    "conditional_mi",
    "environments",
    "granulated_kendall",
    "granulated_kendall_interval",
    "hoeffding_weight",
    "kendall",
    "kendall_interval",
    "largest_complete_subgrid",
    "largest_complete_subgrids",
    "pgdl_cmi",
    "ranking_table",
    "robust_sign_error",
    "with_target",
]
