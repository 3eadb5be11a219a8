"""Every data set as tensors, chosen by name: ``load(DataSpec) -> Splits``.

Sources register themselves in :data:`sources`; importing this package imports them all.
Embedded (no files): digits, mnist1d, pvr-vector, pvr-visual, modular, hidden-manifold,
teacher-student. Local files (``--data-dir`` or ``$GENGAP_DATA``): mnist, fashion-mnist,
cifar10, cifar100, svhn, npz.
"""

from gengap.data import (  # noqa: F401  (each module registers its sources)
    cifar,
    digits,
    hidden_manifold,
    mnist,
    mnist1d,
    modular,
    npz,
    pvr_vector,
    pvr_visual,
    svhn,
    teacher_student,
)
from gengap.data.sources import RawSplits, Source, register_source, sources
from gengap.data.splits import Splits, data_dir, load, load_raw, source_options
from gengap.data.summary import DataSummary, summarize

__all__ = [
    "DataSummary",
    "RawSplits",
    "Source",
    "Splits",
    "data_dir",
    "load",
    "load_raw",
    "register_source",
    "source_options",
    "sources",
    "summarize",
]
