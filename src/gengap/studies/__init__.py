"""Ready-made studies that reproduce known generalization findings on embedded data.

Each study is one or more zoo specs built in Python, trained with the zoo engine into a folder
(so it resumes and parallelizes), then analysed into a :class:`StudyResult`: a table, plotly
figures, the published finding beside what this run found, and how long it took.

``run_study("randomization", "runs/rand", scale="smoke")`` runs one and writes its report.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from gengap.studies import grokking, measures_study, pvr, randomization  # noqa: F401 (registers)
from gengap.studies.registry import Study, register_study, studies
from gengap.studies.report import REPORT_NAME, study_sections, write_study_report
from gengap.studies.runner import (
    SCALES,
    StudyOptions,
    StudyResult,
    check_scale,
    check_study_folder,
    mark_study_folder,
)
from gengap.zoo.planning import PopulationMode
from gengap.zoo.pool import check_workers
from gengap.zoo.run import check_options
from gengap.zoo.worker import RunOutcome


def run_study(
    name: str,
    out: str | Path,
    scale: str = "default",
    workers: int = 1,
    device: str = "auto",
    population: PopulationMode = "auto",
    report: bool = True,
    on_outcome: Callable[[RunOutcome], None] | None = None,
) -> StudyResult:
    """Run study ``name`` at ``scale`` into folder ``out`` (resuming what is there) and, with
    ``report``, write ``out/report.html``. ``on_outcome`` is called after each run trained
    (a progress bar's tick)."""
    study = studies.get(name)
    check_options("local", population, device=device)  # before any folder is made
    check_workers(workers)
    check_study_folder(Path(out), name)
    options = StudyOptions(Path(out), check_scale(scale), workers, device, population,
                           on_outcome)
    mark_study_folder(Path(out), name)
    result = study.run(options)
    if report:
        write_study_report(result)
    return result


__all__ = [
    "REPORT_NAME",
    "SCALES",
    "Study",
    "StudyOptions",
    "StudyResult",
    "register_study",
    "run_study",
    "studies",
    "study_sections",
    "write_study_report",
]
