"""The ``keras`` architecture family and the ``pgdl`` data source, so that a zoo imported from
a PGDL task (:func:`gengap.interop.pgdl.import_task`) is rebuilt and measured by the ordinary
zoo code (``gengap measure``, ``gengap evaluate``).

Both read the task folder named by their ``task`` option. The family finds the model by its
``model`` option, or else by the hyperparameter values in its other options (looked up in
``model_configs.json``, at ``configs`` when that option is given).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from pydantic import Field
from torch import nn

from gengap.data.sources import RawSplits, SourceOptions, register_source
from gengap.errors import GengapError
from gengap.interop.pgdl.task import PgdlTask
from gengap.models.families import register_family
from gengap.specs import ArchSpec, DataSpec

RESERVED = ("task", "configs", "model")  # keras family options that are not hyperparameters


@lru_cache(maxsize=8)
def cached_task(root: str, configs: str | None = None) -> PgdlTask:
    """One :class:`PgdlTask` per folder per process (its data is read once)."""
    return PgdlTask(root, configs)


@register_family("keras", knobs=())  # options only
def build_keras_family(
    spec: ArchSpec, input_shape: tuple[int, ...], num_classes: int, vocab_size: int | None = None
) -> nn.Module:
    """A PGDL task's Keras model as a torch module (options: ``task``, and ``model`` or the
    model's hyperparameter values; ``configs`` locates ``model_configs.json``)."""
    options = dict(spec.options)
    if "task" not in options:
        raise GengapError("architecture 'keras' needs option task = the PGDL task folder")
    configs = options.get("configs")
    task = cached_task(str(options["task"]), str(configs) if configs is not None else None)
    model_id = options.get("model")
    if model_id is None:
        hparams = {k: v for k, v in options.items() if k not in RESERVED}
        model_id = task.find_model(hparams)
    net = task.build(str(model_id))
    expected = task.input_shape(str(model_id))
    if tuple(input_shape) != expected:
        raise GengapError(
            f"{task.root / str(model_id)}: the model takes inputs of shape {expected}, "
            f"the data has {tuple(input_shape)}"
        )
    return net


class PgdlDataOptions(SourceOptions):
    task: str = Field(description="the PGDL task folder (holds dataset_1/train/shard_*.tfrecord)")


@register_source(
    "pgdl", "a PGDL task's TFRecord shards (dataset_1/train, and dataset_1/test when shipped)",
    options=PgdlDataOptions, needs_files=True,
)
def make_pgdl(spec: DataSpec, options: PgdlDataOptions, data_dir: Path | None) -> RawSplits:
    path = Path(options.task)
    if not path.is_absolute() and data_dir is not None:
        path = Path(data_dir) / path
    task = cached_task(str(path.resolve()))
    x, y = task.train_data
    x_test, y_test = task.test_data
    x_np, y_np = x.numpy(), y.numpy()
    if len(y_test) == 0:
        x_test_np = np.zeros((0, *x_np.shape[1:]), dtype=np.float32)
    else:
        x_test_np = x_test.numpy()
    y_test_np = y_test.numpy()
    num_classes = int(max(y_np.max(initial=1), y_test_np.max(initial=1))) + 1
    return RawSplits(x_np, y_np, x_test_np, y_test_np, num_classes=num_classes)
