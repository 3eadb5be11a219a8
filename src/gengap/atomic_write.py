"""Files written whole or not at all: to a temporary file beside the target, flushed to the disk,
then renamed over it, so that a failure (a full disk, a refused folder, a killed process, a
crash of the machine) leaves any older file intact. A target that is a symbolic link keeps the
link: the file it points to is replaced. A replaced file keeps its permission bits."""

from __future__ import annotations

import glob
import os
import stat
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

from gengap.errors import GengapError


def write_atomically(path: Path, write: Callable[[Path], None], what: str = "") -> None:
    """Call ``write`` with a temporary file beside ``path`` to fill, then rename it over
    ``path``. The system's refusal (:class:`OSError`) is a one-line :class:`GengapError`
    naming ``path`` (and ``what`` it holds, e.g. "the report"); on any failure the temporary
    file is removed and ``path`` is left as it was. The new file reaches the disk before the
    rename (fsync), takes the old file's permission bits, and replaces the file a symbolic
    link ``path`` points to, not the link."""
    target = _real(path)
    tmp = _temporary(target)
    try:
        write(tmp)
        _to_disk(tmp)  # before the old mode: a mode of 0200 would refuse reading it back
        _keep_mode(target, tmp)
        os.replace(tmp, target)
    except OSError as err:
        _remove(tmp)
        raise _refused(path, err, what) from None
    except BaseException:  # the writer's own error, Ctrl-C: still no half file left behind
        _remove(tmp)
        raise
    with suppress(Exception):  # tidying only: the file is written whatever happens here
        _remove_stale(target)


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
    tmp = _temporary(_real(path))
    try:
        tmp.write_text("")
        tmp.unlink()
    except OSError as err:
        return err
    return None


def _real(path: Path) -> Path:
    """The file ``path`` names: through a symbolic link (even a dangling one), its target."""
    if not path.is_symlink():
        return path
    try:
        return path.resolve(strict=False)
    except (RuntimeError, OSError) as err:  # a loop of links (RuntimeError before 3.13)
        raise GengapError(f"{path}: cannot write (a loop of symbolic links: {err})") from None


def _keep_mode(target: Path, tmp: Path) -> None:
    try:
        mode = stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:  # a new file: the umask decides, as for any new file
        return
    os.chmod(tmp, mode)


def _to_disk(tmp: Path) -> None:
    """fsync: without it a crash soon after the rename can leave an empty file in its place."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def _remove_stale(target: Path) -> None:
    """Remove the temporary files of ``target`` that processes no longer running left behind
    (killed outright mid-write, kill -9, which no cleanup survives)."""
    for tmp in target.parent.glob(f".{glob.escape(target.name)}.tmp*"):
        pid = tmp.name.rsplit(".tmp", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not _running(int(pid)):
            _remove(tmp)


def _running(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (a writer in another PID namespace or on
    another host sharing the folder looks gone: its temporary file would be removed)."""
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except (OSError, OverflowError, ValueError):  # another user's, or no PID at all: keep
        return True
    return True


def _remove(tmp: Path) -> None:
    with suppress(OSError):
        tmp.unlink(missing_ok=True)


def _refused(path: Path, err: OSError, what: str) -> GengapError:
    return GengapError(f"{path}: cannot write{' ' + what if what else ''} "
                       f"({err.strerror or err})")
