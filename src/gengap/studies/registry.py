"""The studies by name: each is a function of :class:`StudyOptions` that returns a
:class:`StudyResult`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from gengap.registry import Registry
from gengap.studies.runner import StudyOptions, StudyResult


@dataclass(frozen=True)
class Study:
    name: str
    summary: str
    run: Callable[[StudyOptions], StudyResult]


studies: Registry[Study] = Registry("study")


def register_study(
    name: str, summary: str
) -> Callable[[Callable[[StudyOptions], StudyResult]], Callable[[StudyOptions], StudyResult]]:
    """Decorator: register a study function under ``name`` with a one-line ``summary``."""

    def decorate(
        run: Callable[[StudyOptions], StudyResult]
    ) -> Callable[[StudyOptions], StudyResult]:
        studies.add(name, Study(name, summary, run))
        return run

    return decorate
