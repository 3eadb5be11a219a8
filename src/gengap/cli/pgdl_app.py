"""The ``gengap pgdl`` command group: the PGDL competition's task folders and scorer.

Commands register themselves on :data:`pgdl_app` from their own modules (imported by app.py).
"""

import typer

pgdl_app = typer.Typer(
    help="PGDL (NeurIPS 2020) task folders: predict, score, import.", no_args_is_help=True
)
