"""Output files of the commands: checked, and their folder made, before the work starts (a
failure after it would lose the results). Tables are written by :mod:`gengap.table_file`."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from gengap.atomic_write import check_writable, trial_refusal
from gengap.cli.options import BadOption, OptionError
from gengap.errors import GengapError

TABLES = (".csv", ".parquet")


def output_file(path: Path | None, suffixes: tuple[str, ...] | None = None,
                inputs: Iterable[Path | str | None] = (), option: str | None = "--out"
                ) -> Path | None:
    """``path`` once it can be written: its suffix one of ``suffixes``, not the same file as
    any of the command's ``inputs`` (which it would replace), its folder created (with its
    parents) and taking the file (:func:`.check_writable`). A one-line error otherwise, a bad
    value of ``option`` (None: a path the user did not give) where the path is at fault; None
    passes through."""
    if path is None:
        return None
    if suffixes and path.suffix.lower() not in suffixes:  # x.CSV is a CSV
        if path.is_dir():  # a folder given for a file, not a wrong file type
            raise _bad(option, f"{path}: is a folder; name a {' or '.join(suffixes)} file")
        raise _bad(option, f"{path}: write {' or '.join(suffixes)}")
    # a link is written through: where it points must be such a file too (out.csv pointing at
    # a zoo's gengap.sqlite would replace the database)
    target = path.resolve()
    if suffixes and path.is_symlink() and target.suffix.lower() not in suffixes:
        raise _bad(option, f"{path}: a link to {target}, not a {' or '.join(suffixes)} file; "
                           "write elsewhere")
    for source in inputs:
        if source is not None and _same_file(path, Path(source)):
            raise _bad(option, f"{path}: is an input of this command too; write elsewhere")
    if path.is_dir():
        raise _bad(option, f"{path}: is a folder, expected a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        blocking = next((p for p in path.parents if p.is_file()), None)  # "File exists"
        if blocking is not None:  # the path given is at fault
            raise _bad(option, f"{path}: cannot make its folder ({blocking} is a file)"
                       ) from None
        raise GengapError(f"{path}: cannot make its folder ({err.strerror})") from None
    # the very temporary file the writers use, made and removed: os.access says yes to root
    # in a folder that takes no file (/proc), and the refusal would come after the work
    check_writable(path)
    return path


def output_folder(path: Path, inputs: Iterable[Path | str | None] = (),
                  option: str = "--out") -> Path:
    """``path`` as a folder to write files into, created (with its parents) before the work;
    a one-line error when it cannot be, or when it is one of the input folders ``inputs`` or
    lies inside one (see :func:`outside_inputs`)."""
    outside_inputs(path, inputs)
    if path.exists() and not path.is_dir():
        raise BadOption(option, f"{path}: exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise GengapError(f"{path}: cannot make the folder ({err.strerror})") from None
    # a trial file, as for output files (os.access says yes to root in /proc)
    err = trial_refusal(path / "probe")
    if err is not None:
        raise GengapError(f"{path}: the folder takes no file ({err.strerror or err})")
    return path


def outside_inputs(path: Path, inputs: Iterable[Path | str | None]) -> Path:
    """``path`` when it is neither one of the input folders ``inputs`` nor inside one: what a
    command writes there would change its input (a new folder in a PGDL task folder reads as
    one more model). A one-line error otherwise; symbolic links are followed."""
    target = path.resolve()
    for source in inputs:
        if source is None or not Path(source).is_dir():
            continue
        folder = Path(source).resolve()
        if target.is_relative_to(folder):  # the folder itself included
            where = "is" if target == folder else "is inside"
            # the option and its input together are at fault: the help, not "Invalid value"
            raise OptionError(f"{path}: {where} {source}, an input of this command; "
                              "write elsewhere")
    return path


def _bad(option: str | None, message: str) -> GengapError:
    return BadOption(option, message) if option else GengapError(message)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.is_file() and b.is_file() and os.path.samefile(a, b)
    except OSError:
        return False

