"""A table of networks written to a file by its suffix. The commands' result tables and a zoo's
export (:meth:`gengap.zoo.Zoo.to_parquet`) share it, so a refused write reads the same
everywhere."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from gengap.errors import GengapError


def write_table(table: pd.DataFrame, out: Path) -> None:
    """``table`` as ``out``: Parquet for a ``.parquet`` name, CSV otherwise (the caller has
    checked the suffix); a one-line :class:`GengapError` naming ``out`` when the system refuses
    the write (a folder writable when checked, or a special one)."""
    try:
        if out.suffix == ".parquet":
            table.to_parquet(out, index=False)
        else:
            table.to_csv(out, index=False)
    except OSError as err:
        raise GengapError(f"{out}: cannot write ({err.strerror or err})") from None
