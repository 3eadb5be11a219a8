"""Every registered measure is exercised by a test: its name appears in some
tests/test_measures_*.py file other than this one."""

from __future__ import annotations

from pathlib import Path

from gengap.measures import measures


def test_every_registered_measure_has_a_test():
    here = Path(__file__).resolve()
    texts = "\n".join(
        path.read_text() for path in here.parent.glob("test_measures_*.py") if path != here
    )
    untested = [name for name in measures if f'"{name}"' not in texts]
    assert not untested, f"measures without a test: {untested}"
