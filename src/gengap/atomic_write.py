"""Files written whole or not at all: to a temporary file beside the target, then renamed over
it, so that a failure (a full disk, a refused folder, a killed process) leaves any older file
intact."""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

from gengap.errors import GengapError


def write_atomically(path: Path, write: Callable[[Path], None], what: str = "") -> None:
    """Call ``write`` with a temporary file beside ``path`` to fill, then rename it over
    ``path``. The system's refusal (:class:`OSError`) is a one-line :class:`GengapError`
    naming ``path`` (and ``what`` it holds, e.g. "the report"); on any failure the temporary
    file is removed and ``path`` is left as it was."""
    tmp = _temporary(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as err:
        _remove(tmp)
        raise _refused(path, err, what) from None
    except BaseException:  # the writer's own error, Ctrl-C: still no half file left behind
        _remove(tmp)
        raise


def write_text_atomically(path: Path, text: str, what: str = "") -> None:
    """Write ``text`` (UTF-8) to ``path`` through :func:`write_atomically`."""
    write_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), what)


def check_writable(path: Path, what: str = "") -> None:
    """Make and remove the temporary file :func:`write_atomically` would use: a place that
    takes no file fails now, before the work whose result goes there."""
    err = trial_refusal(path)
    if err is not None:
        raise _refused(path, err, what)


def trial_refusal(path: Path) -> OSError | None:
    """The system's refusal to make (and remove) the temporary file of ``path``, or None."""
    tmp = _temporary(path)
    try:
        tmp.write_text("")
        tmp.unlink()
    except OSError as err:
        return err
    return None


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def _remove(tmp: Path) -> None:
    with suppress(OSError):
        tmp.unlink(missing_ok=True)


def _refused(path: Path, err: OSError, what: str) -> GengapError:
    return GengapError(f"{path}: cannot write{' ' + what if what else ''} "
                       f"({err.strerror or err})")
