"""Scoring measures against generalization, on DataFrames (no torch here)."""

from gengap.evaluate.kendall import granulated_kendall, kendall
from gengap.evaluate.ranking import ranking_table

__all__ = ["granulated_kendall", "kendall", "ranking_table"]
