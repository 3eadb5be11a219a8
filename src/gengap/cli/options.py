"""Option types that several commands share, so each reads the same in every --help."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from gengap.errors import GengapError
from gengap.zoo.pool import MAX_WORKERS


class OptionError(GengapError):
    """An option mistake found by gengap rather than by click (a bad value, or options that
    do not go together): ``main`` points at the command's --help, as it does for click's own
    option errors. Without ``ctx``, the command running (so helpers need none passed); none
    outside a command (a call from Python): no hint then."""

    def __init__(self, message: str, ctx: typer.Context | None = None) -> None:
        super().__init__(message)
        if ctx is None:
            ctx = _current_context()
        self.command_path = ctx.command_path if ctx is not None else None


class BadOption(OptionError):
    """A bad value of one option, worded as click words its own."""

    def __init__(self, option: str, message: str, ctx: typer.Context | None = None) -> None:
        super().__init__(f"Invalid value for '{option}': {message}", ctx)


def _current_context() -> typer.Context | None:
    try:  # recent typer runs on its own copy of click, whose context stack is not click's
        from typer._click.globals import get_current_context
    except ImportError:
        from click import get_current_context
    return get_current_context(silent=True)


@contextmanager
def blamed_on(option: str, ctx: typer.Context | None,
              *kinds: type[GengapError]) -> Iterator[None]:
    """The errors of ``kinds`` (default: any :class:`GengapError`) raised in the block, as a
    :class:`BadOption` of ``option``: for checks whose errors are all about its value."""
    caught = kinds or (GengapError,)
    try:
        yield
    except caught as err:
        raise BadOption(option, str(err), ctx) from None


def checked(check: Callable[[Any], object]) -> Callable[..., Any]:
    """A typer callback that runs ``check(value)`` while the options are parsed (before any
    work), its :class:`GengapError` becoming a :class:`BadOption` that names the option."""

    def callback(ctx: typer.Context, param: typer.CallbackParam, value: Any) -> Any:
        if value is not None:
            with blamed_on(param.opts[0], ctx):
                check(value)
        return value

    return callback


def _device(name: str) -> None:
    from gengap.device import resolve_device

    resolve_device(name)


def _device_name(name: str) -> None:
    from gengap.device import named_device

    if name != "auto":
        named_device(name)


def population_mode(mode: str) -> None:
    """:func:`gengap.zoo.planning.check_population_mode` (imported late: it loads torch)."""
    from gengap.zoo.planning import check_population_mode

    check_population_mode(mode)


def _precision(name: str) -> None:
    from gengap.specs import PRECISIONS

    if name not in PRECISIONS:
        raise GengapError(f"unknown precision {name!r} (use {', '.join(PRECISIONS)})")


Precision = Annotated[str, typer.Option(
    help="arithmetic of the Monte Carlo passes (σ′, α′, module criticality): auto (bfloat16 "
    "where native, for models of at least 1 MFLOP), float32 or bfloat16 (on a zoo, these two "
    "also compute again the stored values of the other arithmetic, or of unknown arithmetic)",
    callback=checked(_precision))]
Device = Annotated[str, typer.Option(help="auto (CUDA when present), cpu, cuda or cuda:N",
                                     callback=checked(_device))]
# `zoo train`: with Ray the cluster's nodes have the device, not this machine, so only the name
# is checked here; train_zoo's check_options checks it for the executor
TrainDevice = Annotated[str, typer.Option(
    help="auto (CUDA when present; with Ray, where the cluster has GPUs), cpu, cuda or cuda:N "
    "(not with Ray)", callback=checked(_device_name))]
Workers = Annotated[
    int, typer.Option(min=1, max=MAX_WORKERS, help="training processes on this machine")
]
DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="folder of local data files (default: $GENGAP_DATA)"),
]
# numpy's generators and scikit-learn take seeds in [0, 2**32 - 1]
SEED_MAX = 2**32 - 1
Seed = Annotated[int, typer.Option(min=0, max=SEED_MAX, help="seed of the folds and the trees")]
