"""A study's own page: its finding beside the published one, its table and its figures, as one
self-contained HTML file built with :mod:`gengap.report`'s page and figure helpers."""

from __future__ import annotations

from html import escape
from pathlib import Path

from gengap.atomic_write import write_text_atomically
from gengap.number_format import counted
from gengap.report.figures import plotly_div
from gengap.report.page import Section, assemble, note
from gengap.report.tables import html_table
from gengap.studies.runner import REPORT_NAME, StudyResult


def study_sections(result: StudyResult) -> list[Section]:
    """The study as report sections: finding, table, figures (usable in a larger report)."""
    found = "".join(f"<li>{escape(line)}</li>" for line in result.found)
    timing = (
        f"{counted(result.runs, 'run')}; this call took {result.seconds:.1f} s, training time "
        f"stored over all runs {result.train_seconds:.1f} s (scale {result.scale})"
    )
    finding = (
        f"<h3>Published</h3><p>{escape(result.published)}</p>"
        f"<h3>This run</h3><ul>{found}</ul><p>{escape(timing)}</p>"
        + "".join(note(n) for n in result.notes)
    )
    sections = [
        Section(f"{result.name}-finding", "Finding", finding),
        Section(f"{result.name}-table", "Results", html_table(result.table, sortable=True)),
    ]
    for key, table in result.extra_tables.items():
        sections.append(Section(f"{result.name}-{key}", key, html_table(table, sortable=True)))
    if result.figures:
        figures = "".join(plotly_div(fig) for fig in result.figures)
        sections.append(Section(f"{result.name}-figures", "Figures", figures))
    return sections


def write_study_report(result: StudyResult, path: Path | None = None) -> Path:
    """Write the study's page (default: ``report.html`` in its folder) whole or not at all
    (an older page stays when the write fails); return the path."""
    path = path or result.folder / REPORT_NAME
    page = assemble(result.title, escape(f"gengap study {result.name} --scale {result.scale}"),
                    study_sections(result))
    write_text_atomically(path, page, "the study's page")
    return path
