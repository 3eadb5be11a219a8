"""Option types that several commands share, so each reads the same in every --help."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

Device = Annotated[str, typer.Option(help="auto (CUDA when present), cpu, cuda or cuda:N")]
Workers = Annotated[
    int, typer.Option(min=1, max=1024, help="training processes on this machine")
]
DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="folder of local data files (default: $GENGAP_DATA)"),
]
