"""PGDL (NeurIPS 2020 "Predicting Generalization in Deep Learning") task folders without
TensorFlow: Keras models as torch modules, TFRecord data, ``.predict`` files, and import into a
gengap zoo. Importing this package registers the ``keras`` architecture family and the
``pgdl`` data source.

The competition's scorer lives in :mod:`gengap.interop.pgdl.scoring`.
"""

from gengap.interop.pgdl.keras import build_keras, keras_state_dict, load_keras, read_keras_weights
from gengap.interop.pgdl.predict import EXCEEDED, ModelPrediction, predict_task, write_predict
from gengap.interop.pgdl.registered import build_keras_family, make_pgdl  # noqa: F401 (registers)
from gengap.interop.pgdl.task import PgdlTask, load_task, read_model_configs
from gengap.interop.pgdl.to_zoo import hyperparameter_grid, import_task, task_zoo

__all__ = [
    "EXCEEDED",
    "ModelPrediction",
    "PgdlTask",
    "build_keras",
    "hyperparameter_grid",
    "import_task",
    "keras_state_dict",
    "load_keras",
    "load_task",
    "predict_task",
    "read_keras_weights",
    "read_model_configs",
    "task_zoo",
    "write_predict",
]
