"""Putting the sections together and writing the page."""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

from gengap.atomic_write import check_writable, write_text_atomically
from gengap.errors import GengapError
from gengap.number_format import counted
from gengap.report.data import ReportData, gather
from gengap.report.page import assemble
from gengap.report.sections.curves import curves_section
from gengap.report.sections.granulated import granulated_section
from gengap.report.sections.predictor import predictor_section
from gengap.report.sections.ranking import ranking_section
from gengap.report.sections.scatter import scatter_section
from gengap.report.sections.summary import status_counts, summary_section

if TYPE_CHECKING:
    from gengap.zoo.store import Store

# What a report may be written as: anything else (the zoo's gengap.sqlite, a results table)
# would be overwritten by a page.
SUFFIXES = (".html", ".htm")


def render(data: ReportData, top: int = 4) -> str:
    """The report of ``data`` as one self-contained HTML page."""
    counts = status_counts(data.frame)
    subtitle = (f"{counted(counts['runs'], 'run')}: {counts['done']} done, "
                f"{counts['failed']} failed, {counts['pending']} pending · "
                f"{len(data.measures)} measures · target <b>{escape(data.target)}</b>")
    sections = [
        summary_section(data),
        ranking_section(data),
        granulated_section(data),
        scatter_section(data, top=top),
        curves_section(data),
        predictor_section(data),
    ]
    return assemble(f"gengap report: {data.name}", subtitle, sections)


def write_report(
    store: Store | str | Path,
    out: str | Path,
    target: str = "gap",
    runs: list[str] | None = None,
    top: int = 4,
    bootstrap: int = 1000,
    test_size: int | str | None = None,
    data_dir: str | Path | None = None,
) -> ReportData:
    """Gather ``store``'s zoo (a :class:`Store` or its folder), evaluate it and write the
    report to ``out`` (atomically: a temporary file renamed into place). Returns what the
    report shows.

    ``runs``: run ids (or unique prefixes) whose training curves are drawn; ``top``: how many
    of the best measures get a scatter plot; ``bootstrap``, ``test_size`` and ``data_dir``: as
    in :func:`gengap.report.gather`."""
    out = Path(out)
    if out.is_dir():
        raise GengapError(f"{out}: is a folder; give the report's file name (report.html)")
    if out.suffix.lower() not in SUFFIXES:
        raise GengapError(f"{out}: write {' or '.join(SUFFIXES)} (the report is an HTML page)")
    if not out.parent.is_dir():
        raise GengapError(f"{out.parent}: no such folder for the report")
    check_writable(out, "the report")  # before the work: a place that takes no file fails now
    from gengap.zoo.store import opened  # the zoo package loads torch

    with opened(store) as zoo:
        data = gather(zoo, target=target, curve_runs=runs, bootstrap=bootstrap,
                      test_size=test_size, data_dir=data_dir)
    write_text_atomically(out, render(data, top=top), "the report")
    return data
