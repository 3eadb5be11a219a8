"""Finding and reading a source's local files, with one-line errors that say which file is
expected where."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

from gengap.errors import GengapError

GZIP_MAGIC = b"\x1f\x8b"


def source_folder(data_dir: Path | None, source: str, folder: str) -> Path:
    """``data_dir/folder``, or a clear error when no data folder was given."""
    if data_dir is None:
        raise GengapError(
            f"data source {source!r} reads local files: pass --data-dir DIR or set GENGAP_DATA "
            f"(expects DIR/{folder}/)"
        )
    return Path(data_dir) / folder


def find_file(folder: Path, names: list[str], source: str) -> Path:
    """The first of ``names`` that exists in ``folder``; else an error naming the first."""
    for name in names:
        if (folder / name).is_file():
            return folder / name
    others = f" (or {', '.join(names[1:])})" if len(names) > 1 else ""
    raise GengapError(f"{source}: expected file {folder / names[0]}{others}: not found")


def read_bytes(path: Path) -> bytes:
    """The content of ``path``, gunzipped when it is a gzip file (by its magic bytes)."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise GengapError(f"{path}: cannot read: {err.strerror or err}") from None
    if data[:2] == GZIP_MAGIC:
        try:
            return gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as err:
            raise GengapError(f"{path}: corrupt or truncated gzip file ({err})") from None
    return data
