"""A trained zoo as one table: every run's full spec, final metrics, status and measures.

``Zoo(DIR).frame()`` in Python, ``gengap zoo export DIR --parquet FILE`` in the terminal.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from gengap.errors import GengapError
from gengap.specs import RunSpec, ZooSpec
from gengap.table_file import write_table
from gengap.zoo.store import Store


class Zoo:
    """A zoo folder opened for reading (see :class:`Store` for the folder itself)."""

    def __init__(self, root: str | Path) -> None:
        self.store = Store(root)

    @property
    def root(self) -> Path:
        return self.store.root

    @property
    def spec(self) -> ZooSpec:
        return self.store.zoo

    def runs(self, status: str | None = None) -> list[RunSpec]:
        return self.store.runs(status)

    def frame(self) -> pd.DataFrame:
        """One row per run: ``run_id``, ``status``, ``reason``, every spec field (dotted, like
        ``arch.width``; list values such as ``train.checkpoints`` as JSON text), ``seed``, the
        final metrics, ``gap``, one column per stored measure and ``monte_carlo_arithmetic`` (see
        :meth:`Store.frame`)."""
        base = self.store.frame()
        if base.empty:
            return base
        specs = pd.DataFrame(
            [{"run_id": run.run_id, **_flatten(run.model_dump(mode="json"))}
             for run in self.store.runs()]
        )
        rest = base.drop(columns=[c for c in specs.columns if c != "run_id" and c in base])
        head = rest[["run_id", "status", "reason"]].merge(specs, on="run_id", how="left")
        return pd.concat([head, rest.drop(columns=["run_id", "status", "reason"])], axis=1)

    def to_parquet(self, path: str | Path) -> Path:
        """Write :meth:`frame` to a Parquet file; return its path."""
        path = Path(path)
        if path.parent and not path.parent.is_dir():
            raise GengapError(f"{path}: folder {path.parent} does not exist")
        if path.suffix.lower() != ".parquet":  # not over the zoo's gengap.sqlite or a weight file
            raise GengapError(f"{path}: write .parquet")
        write_table(self.frame(), path)
        return path

    def close(self) -> None:
        self.store.close()


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(_flatten(value, f"{name}."))
        elif isinstance(value, list | dict):  # an empty dict keeps its column, as "{}"
            out[name] = json.dumps(value)
        else:
            out[name] = value
    return out
