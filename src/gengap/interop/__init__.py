"""Formats of others: PGDL task folders (Keras config + HDF5 + TFRecord) and the Small CNN Zoo.

Importing this package registers what their imported zoos need: the ``keras`` and
``smallcnn`` architecture families and the ``pgdl`` and ``cnnzoo`` data sources.
"""

from gengap.interop import cnnzoo, pgdl  # noqa: F401  (registers families and sources)
