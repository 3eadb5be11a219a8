"""Text files written whole or not at all: to a temporary file beside the target, then renamed
over it, so that a failure (a full disk, a refused folder) leaves any older file intact."""

from __future__ import annotations

import os
from contextlib import suppress
from pathlib import Path

from gengap.errors import GengapError


def write_text_atomically(path: Path, text: str, what: str = "") -> None:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file renamed into place; a
    one-line :class:`GengapError` naming ``path`` (and ``what`` it holds, e.g. "the report")
    when the system refuses, the temporary file removed."""
    tmp = _temporary(path)
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as err:
        with suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise _refused(path, err, what) from None


def check_writable(path: Path, what: str = "") -> None:
    """Make and remove the temporary file :func:`write_text_atomically` would use: a place
    that takes no file fails now, before the work whose result goes there."""
    tmp = _temporary(path)
    try:
        tmp.write_text("")
        tmp.unlink()
    except OSError as err:
        raise _refused(path, err, what) from None


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def _refused(path: Path, err: OSError, what: str) -> GengapError:
    return GengapError(f"{path}: cannot write{' ' + what if what else ''} "
                       f"({err.strerror or err})")
