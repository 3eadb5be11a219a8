"""A table of networks written to a file by its suffix. The commands' result tables and a zoo's
export (:meth:`gengap.zoo.Zoo.to_parquet`) share it, so a refused write reads the same
everywhere."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from gengap.atomic_write import write_atomically


def write_table(table: pd.DataFrame, out: Path) -> None:
    """``table`` as ``out``: Parquet for a ``.parquet`` name, CSV otherwise (the caller has
    checked the suffix). Written whole or not at all (:func:`.write_atomically`): a failure
    midway keeps an older ``out``, and the system's refusal is a one-line
    :class:`GengapError` naming ``out``."""
    if out.suffix.lower() == ".parquet":
        write_atomically(out, lambda tmp: table.to_parquet(tmp, index=False))
    else:
        write_atomically(out, lambda tmp: table.to_csv(tmp, index=False))
