"""gengap's own compiled kernels: C++ sources shipped in the package, compiled with the
machine's C++ compiler on first use and loaded with :mod:`ctypes` (no torch headers, so a
build takes seconds).

A build is cached under ``$GENGAP_CACHE`` (default ``~/.cache/gengap``), keyed by the
source, the compiler, its flags and the CPU's instruction sets, since it is built for this
CPU (``-march=native``): a home folder shared by machines of other CPUs gets a build per kind.
A build whose checksum no longer matches is built again before it is loaded. ``$CXX`` may hold
arguments (``ccache g++``).
``GENGAP_NATIVE=0`` (or ``false``, ``off``, ``no``) turns the kernels off; without a compiler,
or when a build fails, callers take their torch path and :func:`why_unavailable` says why.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

KERNELS = Path(__file__).parent / "train" / "kernels"
FLAGS = ("-O3", "-std=c++17", "-shared", "-fPIC", "-pthread")
TUNED = ("-march=native",)  # dropped when the compiler does not know it
OFF = ("0", "false", "off", "no")  # GENGAP_NATIVE values that turn the kernels off
_REASONS: dict[str, str] = {}


def library(name: str) -> ctypes.CDLL | None:
    """The compiled kernel library ``name`` (``train/kernels/NAME.cpp``), or None when it
    cannot be had here (:func:`why_unavailable`). Built once per machine and cached."""
    return None if turned_off() else _built(name)


def turned_off() -> bool:
    """Whether ``GENGAP_NATIVE`` turns the compiled kernels off (``0``, ``false``, ``off``,
    ``no``): a choice, where a failed build is a fault."""
    return os.environ.get("GENGAP_NATIVE", "").strip().lower() in OFF


def why_unavailable(name: str) -> str | None:
    """Why :func:`library` gives None for ``name`` (None if it does not, or was not asked)."""
    if turned_off():
        return f"turned off by GENGAP_NATIVE={os.environ['GENGAP_NATIVE']}"
    return _REASONS.get(name)


@functools.cache
def _built(name: str) -> ctypes.CDLL | None:
    compiler = shlex.split(os.environ.get("CXX", "")) or [
        found for found in (shutil.which("c++") or shutil.which("g++"),) if found]
    if not compiler:
        _REASONS[name] = "no C++ compiler found (set CXX)"
        return None
    folder = _cache_folder()
    if folder is None:
        _REASONS[name] = "no cache folder of this user's own to build in (set GENGAP_CACHE)"
        return None
    source = KERNELS / f"{name}.cpp"
    errors = []
    for flags in (FLAGS + TUNED, FLAGS):
        target = folder / f"{name}-{_key(source, compiler, flags)}.so"
        if not _intact(target):  # never built, or damaged since: build it (again)
            error = _compile(compiler, flags, source, target)
            if error:
                errors.append(error)
                continue
        try:
            loaded = ctypes.CDLL(str(target))
            _REASONS.pop(name, None)
            return loaded
        except OSError as error:
            errors.append(str(error))
    _REASONS[name] = f"building {source.name} failed: {errors[-1]}"
    return None


def _compile(compiler: list[str], flags: tuple[str, ...], source: Path,
             target: Path) -> str | None:
    """Build ``target`` and its checksum file; None, or the compiler's last line of
    complaint. The library is written beside its place and renamed into it, so that workers
    building it at once never load a half-written file."""
    partial = None
    try:
        handle, partial = tempfile.mkstemp(suffix=".so", dir=target.parent)
        os.close(handle)
        done = subprocess.run([*compiler, *flags, str(source), "-o", partial],
                              capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines()
            return lines[-1] if lines else f"{compiler[0]} exited with {done.returncode}"
        os.chmod(partial, 0o755)  # as a linker leaves a library (mkstemp gave 0600)
        digest = _digest(Path(partial))
        os.replace(partial, target)
        _checksum(target).write_text(digest)  # last: a library without one is rebuilt
        return None
    except (OSError, subprocess.TimeoutExpired) as error:
        return str(error)
    finally:
        if partial is not None and os.path.exists(partial):
            os.unlink(partial)


def _intact(library: Path) -> bool:
    """Whether ``library`` is there as it was built: a truncated shared library (an
    interrupted copy or sync of the folder) makes the loader crash the process (SIGBUS)."""
    try:
        return _checksum(library).read_text() == _digest(library)
    except OSError:
        return False


def _checksum(library: Path) -> Path:
    return library.with_suffix(".sha256")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _cache_folder() -> Path | None:
    """``$GENGAP_CACHE/kernels`` (default ``~/.cache/gengap/kernels``), else
    ``gengap-kernels-UID`` in the system's temporary folder: the first that this user owns
    and no one else can write to (a library loaded from a folder others can write to would
    run their code)."""
    base = os.environ.get("GENGAP_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "gengap")
    for folder in (Path(base) / "kernels",
                   Path(tempfile.gettempdir()) / f"gengap-kernels-{os.getuid()}"):
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            stat = folder.stat()
            if (stat.st_uid == os.getuid() and not stat.st_mode & 0o022
                    and os.access(folder, os.W_OK)):
                return folder
        except OSError:
            pass
    return None


def _key(source: Path, compiler: list[str], flags: tuple[str, ...]) -> str:
    """What the build depends on: the source, the compiler and its version, the flags, and
    (for ``-march=native``) this CPU's instruction sets."""
    digest = hashlib.sha256(source.read_bytes())
    for part in (*compiler, _version(tuple(compiler)), *flags, platform.machine(),
                 _cpu_features()):
        digest.update(b"\0" + part.encode())
    return digest.hexdigest()[:16]


@functools.cache
def _version(compiler: tuple[str, ...]) -> str:
    """The first line of ``compiler --version`` (asked once per process)."""
    try:
        lines = subprocess.run([*compiler, "--version"], capture_output=True, text=True,
                               timeout=60).stdout.splitlines()
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return lines[0] if lines else ""


def _cpu_features() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith(("flags", "Features")):
                    return line
    except OSError:
        pass
    return platform.processor()
