"""TFRecord files without TensorFlow: the record framing, tf.Example, and serialized tensors.

A TFRecord file is a sequence of records, each ``uint64 length``, ``uint32 masked crc32c of
the length``, ``data``, ``uint32 masked crc32c of the data`` (little endian). Both checksums are
verified, so a truncated or corrupt file ends in one line naming it. The PGDL shards hold
``tf.train.Example`` protos whose features are ``tf.io.serialize_tensor`` bytes (a
``TensorProto``); the few protobuf messages involved are parsed here from the wire format.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import google_crc32c
import numpy as np

from gengap.errors import GengapError

_MASK_DELTA = 0xA282EAD8

# TensorFlow DataType enum -> numpy dtype (the types a serialized image or label can have)
DTYPES: dict[int, np.dtype] = {
    1: np.dtype("<f4"),  # DT_FLOAT
    2: np.dtype("<f8"),  # DT_DOUBLE
    3: np.dtype("<i4"),  # DT_INT32
    4: np.dtype("u1"),  # DT_UINT8
    5: np.dtype("<i2"),  # DT_INT16
    6: np.dtype("i1"),  # DT_INT8
    9: np.dtype("<i8"),  # DT_INT64
    10: np.dtype("?"),  # DT_BOOL
    19: np.dtype("<f2"),  # DT_HALF
}


def masked_crc(data: bytes) -> int:
    """TFRecord's masked CRC-32C: rotate right by 15 bits and add a constant."""
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


# -- the record framing ---------------------------------------------------------------------


def read_records(path: Path) -> Iterator[bytes]:
    """Every record's data in ``path``, checksums verified."""
    try:
        blob = Path(path).read_bytes()
    except OSError as err:
        raise GengapError(f"{path}: cannot read: {err.strerror or err}") from None
    offset, index = 0, 0
    while offset < len(blob):
        if offset + 12 > len(blob):
            raise GengapError(f"{path}: truncated TFRecord file (record {index} header)")
        header = blob[offset : offset + 8]
        (length,) = struct.unpack("<Q", header)
        (length_crc,) = struct.unpack("<I", blob[offset + 8 : offset + 12])
        if masked_crc(header) != length_crc:
            raise GengapError(
                f"{path}: corrupt TFRecord file (bad length checksum, record {index})"
            )
        start, end = offset + 12, offset + 12 + length
        if end + 4 > len(blob):
            raise GengapError(f"{path}: truncated TFRecord file (record {index})")
        data = blob[start:end]
        (data_crc,) = struct.unpack("<I", blob[end : end + 4])
        if masked_crc(data) != data_crc:
            raise GengapError(f"{path}: corrupt TFRecord file (bad data checksum, record {index})")
        yield data
        offset, index = end + 4, index + 1


def write_records(path: Path, records: list[bytes]) -> None:
    """Write ``records`` as a TFRecord file (for tests and for exporting)."""
    out = bytearray()
    for data in records:
        header = struct.pack("<Q", len(data))
        out += header + struct.pack("<I", masked_crc(header))
        out += data + struct.pack("<I", masked_crc(data))
    Path(path).write_bytes(bytes(out))


# -- the protobuf wire format ---------------------------------------------------------------


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def fields(buf: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """``(field number, wire type, value)`` of each field of one protobuf message; a
    length-delimited value is its bytes, a varint or fixed value its integer."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = int.from_bytes(buf[pos : pos + 8], "little"), pos + 8
        elif wire == 2:
            size, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + size], pos + size
        elif wire == 5:
            value, pos = int.from_bytes(buf[pos : pos + 4], "little"), pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if pos > len(buf):
            raise ValueError("truncated message")
        yield number, wire, value


def _varint_bytes(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint_bytes(number << 3 | 2) + _varint_bytes(len(payload)) + payload


def parse_example(buf: bytes) -> dict[str, list[bytes]]:
    """The bytes-list features of a ``tf.train.Example`` (name -> values). Float and int64
    lists are not used by PGDL and are refused."""
    out: dict[str, list[bytes]] = {}
    for number, _, features in fields(buf):
        if number != 1 or not isinstance(features, bytes):  # Example.features
            continue
        for fnum, _, entry in fields(features):  # Features.feature: map<string, Feature>
            if fnum != 1 or not isinstance(entry, bytes):
                continue
            key, feature = "", b""
            for enum, _, value in fields(entry):
                if enum == 1 and isinstance(value, bytes):
                    key = value.decode("utf-8")
                elif enum == 2 and isinstance(value, bytes):
                    feature = value
            values: list[bytes] = []
            for kind, _, value in fields(feature):
                if kind != 1:  # 1 = bytes_list; 2 float_list and 3 int64_list are not PGDL's
                    raise ValueError(f"feature {key!r} is not a bytes list")
                values += [v for n, _, v in fields(value) if n == 1 and isinstance(v, bytes)]
            out[key] = values
    return out


def build_example(features: dict[str, bytes]) -> bytes:
    """A ``tf.train.Example`` holding one bytes value per feature (inverse of
    :func:`parse_example`, for tests and exports)."""
    entries = b""
    for key, value in features.items():
        feature = _field(1, _field(1, value))  # Feature.bytes_list.value
        entries += _field(1, _field(1, key.encode()) + _field(2, feature))
    return _field(1, entries)


def tensor_parts(buf: bytes) -> tuple[int, list[int], bytes | None, list[int]]:
    """The fields of a ``TensorProto``: dtype code, shape, ``tensor_content`` (or None) and
    the values of its typed value fields (``float_val``, ``int_val``, ... as raw integers)."""
    dtype_code, shape, content = 0, [], None
    repeated: list[int] = []
    for number, wire, value in fields(buf):
        if number == 1:
            dtype_code = int(value)  # type: ignore[arg-type]
        elif number == 2 and isinstance(value, bytes):  # TensorShapeProto
            for dnum, _, dim in fields(value):
                if dnum == 2 and isinstance(dim, bytes):
                    size = next((int(v) for n, _, v in fields(dim) if n == 1), 0)  # type: ignore[arg-type]
                    shape.append(size)
        elif number == 4 and isinstance(value, bytes):
            content = value
        elif number in (5, 6, 7, 10, 13) and wire != 2:  # an unpacked value field
            repeated.append(int(value))  # type: ignore[arg-type]
        elif number in (5, 6, 7, 10, 13) and isinstance(value, bytes):  # packed values
            repeated += _packed(number, value)
    if dtype_code not in DTYPES:
        raise ValueError(f"unsupported tensor dtype code {dtype_code}")
    return dtype_code, shape, content, repeated


def parse_tensor(buf: bytes) -> np.ndarray:
    """A ``TensorProto`` (what ``tf.io.serialize_tensor`` writes) as a numpy array."""
    dtype_code, shape, content, repeated = tensor_parts(buf)
    dtype = DTYPES[dtype_code]
    count = int(np.prod(shape)) if shape else 1
    if content is not None:
        array = np.frombuffer(content, dtype=dtype)
    elif dtype.kind == "f" and dtype.itemsize in (4, 8) and repeated:
        code = "<f" if dtype.itemsize == 4 else "<d"
        raw = struct.pack(f"<{len(repeated)}{'I' if dtype.itemsize == 4 else 'Q'}", *repeated)
        array = np.frombuffer(raw, dtype=code).astype(dtype)
    else:
        array = np.array(repeated, dtype=np.int64).astype(dtype)
    if array.size == 1 and count > 1:  # TensorFlow stores a constant tensor as one value
        array = np.full(count, array[0], dtype=dtype)
    if array.size != count:
        raise ValueError(f"tensor of shape {shape} holds {array.size} values")
    return array.reshape(shape)


def _packed(number: int, value: bytes) -> list[int]:
    if number == 5:  # float_val: fixed32
        return list(struct.unpack(f"<{len(value) // 4}I", value))
    if number == 6:  # double_val: fixed64
        return list(struct.unpack(f"<{len(value) // 8}Q", value))
    out, pos = [], 0
    while pos < len(value):  # int_val, int64_val, half_val: varints
        item, pos = _varint(value, pos)
        out.append(item - (1 << 64) if item >= 1 << 63 else item)
    return out


def serialize_tensor(array: np.ndarray) -> bytes:
    """A ``TensorProto`` with ``tensor_content`` (what ``tf.io.serialize_tensor`` writes)."""
    codes = {dtype: code for code, dtype in DTYPES.items()}
    array = np.asarray(array)  # tobytes() below writes C order; keeps 0-d scalars 0-d
    dtype = array.dtype.newbyteorder("<") if array.dtype.itemsize > 1 else array.dtype
    if dtype not in codes:
        raise ValueError(f"unsupported dtype {array.dtype}")
    dims = b"".join(_field(2, _varint_bytes(1 << 3) + _varint_bytes(n)) for n in array.shape)
    return (
        _varint_bytes(1 << 3) + _varint_bytes(codes[dtype])
        + _field(2, dims) + _field(4, array.astype(dtype).tobytes())
    )


# -- PGDL shards ----------------------------------------------------------------------------


def read_shards(paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """Inputs (float32, the stored layout) and labels (int64) of the PGDL examples in
    ``paths``, in file order and record order."""
    chunks: list[bytes] = []  # float32 tensor_content of each input: joined once at the end
    labels: list[int] = []
    shape: list[int] | None = None
    for path in paths:
        for index, record in enumerate(read_records(path)):
            try:
                example = parse_example(record)
                code, x_shape, content, _ = tensor_parts(example["inputs"][0])
                if code != 1 or content is None:  # not float32 bytes: the general path
                    content = parse_tensor(example["inputs"][0]).astype("<f4").tobytes()
                y = parse_tensor(example["output"][0])
            except (ValueError, KeyError, IndexError, UnicodeDecodeError) as err:
                problem = f"missing feature {err}" if isinstance(err, KeyError) else err
                raise GengapError(f"{path}: record {index} is not a PGDL example ({problem})") \
                    from None
            if shape is None:
                shape = x_shape
            if x_shape != shape or len(content) != 4 * int(np.prod(shape or [1])):
                raise GengapError(
                    f"{path}: record {index} has inputs of shape {tuple(x_shape)}, "
                    f"earlier ones {tuple(shape)}"
                )
            if y.size != 1:
                raise GengapError(f"{path}: record {index} has a label of shape {y.shape}")
            chunks.append(content)
            labels.append(int(y.reshape(-1)[0]))
    if not chunks:
        return np.zeros((0,), np.float32), np.zeros((0,), np.int64)
    x = np.frombuffer(b"".join(chunks), dtype="<f4").reshape(len(chunks), *(shape or []))
    return x.astype(np.float32), np.asarray(labels, dtype=np.int64)
