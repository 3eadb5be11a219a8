"""The report: one self-contained HTML page of a zoo (summary, the measures ranked with
confidence intervals, the granulated heatmap, scatter plots, training curves, the learned
predictor's held-out fit), and tables for the terminal.

``write_report(Store(DIR), "report.html")`` in Python, ``gengap report DIR -o report.html`` in
the terminal. No torch here: the caller opens the store.
"""

from gengap.report.build import render, write_report
from gengap.report.data import ReportData, gather
from gengap.report.evaluation import Evaluation, evaluate_frame
from gengap.report.terminal import ranking_frame, summary_frame

__all__ = [
    "Evaluation",
    "ReportData",
    "evaluate_frame",
    "gather",
    "ranking_frame",
    "render",
    "summary_frame",
    "write_report",
]
