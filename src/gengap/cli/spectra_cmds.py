"""``gengap spectra``: the per-layer heavy-tailed spectral table of one network."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from gengap.cli.console import console, frame_table
from gengap.cli.options import OptionError, checked
from gengap.cli.outputs import output_file
from gengap.errors import GengapError
from gengap.table_file import write_table

SHOWN = ["layer_id", "name", "kind", "N", "M", "num_evals", "alpha", "D", "xmin",
         "alpha_weighted", "log_norm", "log_spectral_norm", "stable_rank", "mp_softrank",
         "rand_distance", "warning"]


def _which(name: str) -> None:
    """The names a run's weight files have (not a path: ``../x`` would leave the zoo)."""
    if not re.fullmatch(r"final|init|epoch\d+", name):
        raise GengapError(f"must be final, init or epoch<N>, not {name!r}")


def spectra(
    ctx: typer.Context,
    target: Annotated[Path, typer.Argument(
        help="a .safetensors weight file, or ZOO_DIR/RUN_ID (a run of a zoo; BatchNorm folded)")],
    which: Annotated[str | None, typer.Option(
        help="a zoo run's weights: final (the default), init or epoch<N>",
        callback=checked(_which))] = None,
    randomize: Annotated[bool, typer.Option(help="compare with the ESD of shuffled weights")]
    = True,
    out: Annotated[Path | None, typer.Option(help="also write every column (.csv)")] = None,
    data_dir: Annotated[Path | None, typer.Option(
        "--data-dir", help="folder of local data files, to rebuild a zoo run's network")] = None,
) -> None:
    """Per-layer ESD table (WeightWatcher's metrics): eigenvalue counts, power-law alpha and
    its fit, norms, MP fit; layers with fewer than 50 eigenvalues are flagged unreliable."""
    from gengap.measures.spectral import spectral_table, summarize

    output_file(out, (".csv",))
    if which is not None and target.is_file():  # one set of weights: refused, not ignored
        raise OptionError(f"{target}: --which is for ZOO_DIR/RUN_ID, not a weight file (give "
                          "the file of the weights wanted)", ctx)
    source, weights = _weights(target, which, data_dir)
    table = spectral_table(weights, randomize=randomize)
    if table.empty:
        raise GengapError(f"{target}: no layer weights found" + (
            " (in a bare file, a layer's weights are a float tensor of 2 or more dimensions "
            "whose name ends in 'weight')" if target.is_file() else " (Linear, Conv or "
            "Embedding)"))
    shown = table[[c for c in SHOWN if c in table.columns]]
    console.print(frame_table(shown, title=f"spectra of {source}", digits=4))
    means = ", ".join(f"{k} {v:.4g}" for k, v in summarize(table).items() if v == v)
    console.print("model (mean over layers with ≥ 8 eigenvalues): "
                  + (means or "none, no layer has 8 eigenvalues"))
    if out is not None:
        write_table(table, out)
        console.print(f"wrote {out}")


def _weights(target: Path, which: str | None, data_dir: Path | None) -> tuple[str, object]:
    """A state dict (bare file) or the folded network (zoo run) to analyse."""
    if target.is_file():  # --which refused above
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        from gengap.models.weight_check import weight_problem

        if _is_hdf5(target):
            raise GengapError(f"{target}: an HDF5 (Keras) file; spectra reads .safetensors "
                              "weights or a zoo run (import a PGDL task's models with "
                              "`gengap pgdl import`)")
        try:
            state = load_file(str(target))
        except (SafetensorError, OSError) as err:
            raise GengapError(f"{target}: unreadable weight file ({err})") from None
        problem = weight_problem(state)
        if problem:
            raise GengapError(f"{target}: {problem}")
        return f"{target} (weights as stored, BatchNorm not folded)", state
    root = target.parent
    if not (root / "gengap.sqlite").is_file():
        if not target.exists() and target.suffix:  # a file name, not a run id
            raise GengapError(f"{target}: no such file")
        raise GengapError(f"{target}: neither a weight file nor ZOO_DIR/RUN_ID")
    from gengap.data import load
    from gengap.measures.layers import fold_batchnorm
    from gengap.zoo import Store
    from gengap.zoo.measure import load_model

    store = Store(root)
    runs = [r for r in store.runs() if r.run_id.startswith(target.name)]
    if len(runs) != 1:
        raise GengapError(f"{target}: {len(runs)} runs of {root} match {target.name!r}")
    splits = load(runs[0].data, data_dir)
    which = which or "final"
    model = load_model(store, runs[0], splits, which)
    # the dataflow of two training inputs shows which layer feeds which BatchNorm
    return (f"run {runs[0].run_id} ({which}, BatchNorm folded)",
            fold_batchnorm(model, splits.x_train[:2]))


def _is_hdf5(path: Path) -> bool:
    """Whether ``path`` starts with HDF5's signature (Keras weights are HDF5)."""
    try:
        with path.open("rb") as f:
            return f.read(8) == b"\x89HDF\r\n\x1a\n"
    except OSError:
        return False
