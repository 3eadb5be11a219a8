"""Output files of the commands: checked, and their folder made, before the work starts (a
failure after it would lose the results), and tables written by their suffix."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from gengap.errors import GengapError

TABLES = (".csv", ".parquet")


def output_file(path: Path | None, suffixes: tuple[str, ...] | None = None,
                inputs: Iterable[Path | str | None] = ()) -> Path | None:
    """``path`` once it can be written: its suffix one of ``suffixes``, not the same file as
    any of the command's ``inputs`` (which it would replace), its folder created (with its
    parents). A one-line error otherwise; None passes through."""
    if path is None:
        return None
    if suffixes and path.suffix not in suffixes:
        raise GengapError(f"{path}: write {' or '.join(suffixes)}")
    for source in inputs:
        if source is not None and _same_file(path, Path(source)):
            raise GengapError(f"{path}: is an input of this command too; write elsewhere")
    if path.is_dir():
        raise GengapError(f"{path}: is a folder, expected a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise GengapError(f"{path}: cannot make its folder ({err.strerror})") from None
    if not os.access(path.parent, os.W_OK):
        raise GengapError(f"{path}: its folder is not writable")
    return path


def output_folder(path: Path) -> Path:
    """``path`` as a folder to write files into, created (with its parents) before the work;
    a one-line error when it cannot be."""
    if path.exists() and not path.is_dir():
        raise GengapError(f"{path}: exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise GengapError(f"{path}: cannot make the folder ({err.strerror})") from None
    if not os.access(path, os.W_OK):
        raise GengapError(f"{path}: the folder is not writable")
    return path


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.is_file() and b.is_file() and os.path.samefile(a, b)
    except OSError:
        return False


def write_table(table: pd.DataFrame, out: Path) -> None:
    """``table`` as ``out`` (.csv or .parquet, see :func:`output_file`); a one-line error when
    the system refuses the write (the folder was writable when checked, or is a special one)."""
    try:
        if out.suffix == ".parquet":
            table.to_parquet(out, index=False)
        else:
            table.to_csv(out, index=False)
    except OSError as err:
        raise GengapError(f"{out}: cannot write ({err.strerror or err})") from None
