"""The IDX format of MNIST and Fashion-MNIST (LeCun's distribution): a magic number
0x0000TTDD (TT the element type, DD the number of dimensions), DD big-endian uint32 sizes,
then the elements in C order, big-endian."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np

from gengap.data.files import read_bytes
from gengap.errors import GengapError

IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """The array stored in an IDX file (gzipped or not), in native byte order."""
    data = read_bytes(path)
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] not in IDX_TYPES:
        raise GengapError(f"{path}: not an IDX file (bad magic number)")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise GengapError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(IDX_TYPES[data[2]])
    expected = math.prod(shape) * dtype.itemsize
    if len(data) - header != expected:
        raise GengapError(
            f"{path}: IDX header promises {expected} bytes of data for shape {shape}, "
            f"the file holds {len(data) - header}"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="))
