"""What every study shares: the scales, training its zoos on the zoo engine (so a study resumes
and parallelizes like any zoo), the clock, and the :class:`StudyResult` it hands back."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pandas as pd
import plotly.graph_objects as go
import torch

from gengap.errors import GengapError
from gengap.number_format import counted
from gengap.specs import ZooSpec
from gengap.zoo import Store, train_zoo
from gengap.zoo.planning import PopulationMode
from gengap.zoo.store import DB_NAME
from gengap.zoo.worker import RunOutcome

Scale = Literal["smoke", "default", "full"]
SCALES: tuple[str, ...] = ("smoke", "default", "full")
REPORT_NAME = "report.html"  # each study's page, in its folder
STUDY_MARK = ".gengap-study"  # names the study that owns the folder


@dataclass
class StudyResult:
    """One study's outcome: its result ``table`` (one row per condition or run), the figures
    of the report, the ``published`` finding to compare with, what this run ``found`` (computed
    sentences), and the time: ``seconds`` of this call and ``train_seconds`` summed over the
    stored runs (the compute, counted once even when the study was resumed)."""

    name: str
    scale: str
    title: str
    table: pd.DataFrame
    figures: list[go.Figure]
    published: str
    found: list[str]
    seconds: float
    train_seconds: float
    runs: int
    folder: Path
    notes: list[str] = field(default_factory=list)
    extra_tables: dict[str, pd.DataFrame] = field(default_factory=dict)


@dataclass
class StudyOptions:
    """How a study runs: where (``out``), at what ``scale``, on what ``device``, with how many
    training ``workers``, and whether same-shaped runs train as one population."""

    out: Path
    scale: Scale = "default"
    workers: int = 1
    device: str = "auto"
    population: PopulationMode = "auto"
    on_outcome: Callable[[RunOutcome], None] | None = None


def check_study_folder(out: Path, study: str | None = None) -> None:
    """Refuse ``out`` unless it is new, empty or a study's folder (zoo folders and the study's
    report): a study writes its zoos and ``report.html`` into it, and must not do so into a
    zoo, a PGDL task or any other folder of the user's, nor inside a study's or a zoo's folder
    (the outer study would find a stranger in its own). With ``study``, refuse as well the
    folder of another study (its mark, :func:`mark_study_folder`), whose report it would
    replace."""
    if out.exists() and not out.is_dir():
        raise GengapError(f"{out}: exists and is not a folder")
    if (out / DB_NAME).is_file():
        raise GengapError(f"{out}: is a zoo folder, not a study's (give a new folder)")
    for above in out.resolve().parents:  # the outer study would find a stranger in its folder
        if (above / STUDY_MARK).is_file() or (above / DB_NAME).is_file():
            what = "a study's" if (above / STUDY_MARK).is_file() else "a zoo's"
            raise GengapError(f"{out}: inside {what} folder {above} (give a folder outside it)")
    if not out.is_dir():
        return
    owner = _owner(out)
    if study is not None and owner is not None and owner != study:
        raise GengapError(f"{out}: holds the {owner!r} study, not {study!r} (give another "
                          "folder: its report would be replaced)")
    foreign = [p.name for p in out.iterdir()  # dot-files: a killed report's temporary file
               if p.name != REPORT_NAME and not p.name.startswith(".")
               and not (p / DB_NAME).is_file()]
    if foreign:
        raise GengapError(f"{out}: folder holds {foreign[0]!r}, which is no study's "
                          "(give a new or empty folder, or a study's own)")
    report = out / REPORT_NAME
    if (report.exists() or report.is_symlink()) and not report.is_file():  # else after training
        raise GengapError(f"{report}: not a file, where the study writes its report")


def _owner(out: Path) -> str | None:
    """The study named by ``out``'s mark (None: no mark, as in folders of gengap before it)."""
    try:
        return (out / STUDY_MARK).read_text().strip() or None
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, UnicodeDecodeError) as err:
        raise GengapError(f"{out / STUDY_MARK}: unreadable ({err})") from None


def mark_study_folder(out: Path, study: str) -> None:
    """Make ``out`` and name ``study`` its owner, so that another study will not write there."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # a file on the way, no permission, a read-only file system
        raise GengapError(f"{out}: cannot make the folder ({err.strerror or err})") from None
    if _owner(out) != study:
        try:
            (out / STUDY_MARK).write_text(study + "\n")
        except OSError as err:
            raise GengapError(f"{out}: cannot write ({err.strerror or err})") from None


def check_scale(scale: str) -> Scale:
    if scale not in SCALES:
        raise GengapError(f"unknown scale {scale!r} (use {', '.join(SCALES)})")
    return scale  # type: ignore[return-value]


def pick(scale: str, smoke: object, default: object, full: object) -> object:
    """The value of a knob at ``scale``."""
    return {"smoke": smoke, "default": default, "full": full}[check_scale(scale)]


def train_zoos(zoos: Sequence[ZooSpec], options: StudyOptions) -> dict[str, Store]:
    """Train each zoo into ``options.out / zoo.name`` (resuming what is there); the stores by
    zoo name."""
    names = [zoo.name for zoo in zoos]
    if len(set(names)) != len(names):
        raise ValueError(f"zoo names must be distinct: {names}")
    options.out.mkdir(parents=True, exist_ok=True)
    with one_thread():
        return {
            zoo.name: train_zoo(
                zoo, options.out / zoo.name, workers=options.workers, device=options.device,
                population=options.population, on_outcome=options.on_outcome,
            )
            for zoo in zoos
        }


@contextmanager
def one_thread() -> Iterator[None]:
    """One torch thread while studies train in this process, as zoo workers do: the studies'
    networks are small, and on a busy 2-core machine two threads per tiny step were measured
    20x slower than one (thread contention)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def finished_frame(stores: dict[str, Store]) -> pd.DataFrame:
    """Every run of every store, one row each, with a ``zoo`` column; failed runs included.
    A one-line error where no run finished: there is nothing to tabulate."""
    frames = []
    for name, store in stores.items():
        frame = store.frame()
        frame.insert(0, "zoo", name)
        frames.append(frame)
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if frame.empty or not (frame["status"] == "done").any():
        failed = frame[frame["status"] == "failed"] if not frame.empty else frame
        first = f" (first: {failed['reason'].iloc[0]})" if len(failed) else ""
        raise GengapError(f"no run of the study finished: {len(failed)} of "
                          f"{counted(len(frame), 'run')} failed{first}")
    return frame


def failed_runs(frame: pd.DataFrame, most: int = 5) -> list[str]:
    """A note naming the failed runs of ``frame`` (:func:`finished_frame`), which every
    table leaves out, with each one's reason; none where every run finished."""
    failed = frame[frame["status"] == "failed"]
    if failed.empty:
        return []
    named = "; ".join(f"{row.zoo} seed {row.seed}: {row.reason}"
                      for row in failed.head(most).itertuples())
    more = f"; and {len(failed) - most} more" if len(failed) > most else ""
    return [f"{len(failed)} of {len(frame)} runs failed and are left out of the results "
            f"({named}{more})"]


def histories(stores: dict[str, Store], frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Each run's per-epoch history (epoch, steps, train/test loss and accuracy) by run id."""
    out = {}
    for row in frame.itertuples():
        rows = stores[row.zoo].history(row.run_id)
        if rows:
            out[row.run_id] = pd.DataFrame(rows)
    return out


def train_seconds(frame: pd.DataFrame) -> float:
    """Training seconds summed over the finished runs (what the study cost in compute)."""
    if "seconds" not in frame.columns:
        return 0.0
    return float(frame["seconds"].fillna(0).sum())


class Clock:
    """Wall-clock seconds since it was made."""

    def __init__(self) -> None:
        self.started = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started
