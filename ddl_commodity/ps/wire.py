"""Wire format of the parameter server: a JSON header and raw arrays, never pickle.

    message := MAGIC(4) header_len(u32) header(JSON, utf-8) count(u32) array*
    array   := dtype_code(u8) ndim(u8) shape(u64 * ndim) nbytes(u64) data(nbytes, little-endian, C order)

Only numeric dtypes on an allow-list travel; decoding checks every length against the buffer, so a
truncated or forged message is a :class:`WireFormatError`, never an out-of-bounds read or code execution.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence

import numpy as np

MAGIC = b"DDL1"
DTYPES: tuple[np.dtype, ...] = tuple(np.dtype(t).newbyteorder("<") for t in ("<f4", "<f8", "<i4", "<i8"))
_CODE = {dt: i for i, dt in enumerate(DTYPES)}
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
MAX_NDIM = 8


class WireFormatError(ValueError):
    """A message does not follow the wire format."""


def encode_message(header: dict, arrays: Sequence[np.ndarray] = ()) -> bytes:
    """Serialise ``header`` (JSON-able) and ``arrays`` (numeric, any layout) into one bytes object."""
    head = json.dumps(header, separators=(",", ":")).encode()
    parts = [MAGIC, _U32.pack(len(head)), head, _U32.pack(len(arrays))]
    for a in arrays:
        a = np.asarray(a)
        dt = a.dtype.newbyteorder("<")
        if dt not in _CODE:
            raise WireFormatError(f"dtype {a.dtype} cannot travel (allowed: float32, float64, int32, int64)")
        if a.ndim > MAX_NDIM:
            raise WireFormatError(f"{a.ndim}-d arrays are not supported (max {MAX_NDIM})")
        data = np.ascontiguousarray(a, dtype=dt).tobytes()
        parts += [bytes([_CODE[dt], a.ndim]), b"".join(_U64.pack(d) for d in a.shape), _U64.pack(len(data)), data]
    return b"".join(parts)


def decode_message(buf: bytes, max_arrays: int = 4096) -> tuple[dict, list[np.ndarray]]:
    """Inverse of :func:`encode_message`; returns writable copies of the arrays."""
    view = memoryview(buf)
    pos = 0

    def take(n: int) -> memoryview:
        nonlocal pos
        if n < 0 or pos + n > len(view):
            raise WireFormatError(f"message truncated: needs {n} bytes at offset {pos}, has {len(view) - pos}")
        out = view[pos:pos + n]
        pos += n
        return out

    if bytes(take(4)) != MAGIC:
        raise WireFormatError("not a ddl parameter-server message (bad magic)")
    (head_len,) = _U32.unpack(take(4))
    try:
        header = json.loads(bytes(take(head_len)))
    except ValueError as err:
        raise WireFormatError(f"header is not JSON: {err}") from None
    if not isinstance(header, dict):
        raise WireFormatError("header must be a JSON object")
    (count,) = _U32.unpack(take(4))
    if count > max_arrays:
        raise WireFormatError(f"{count} arrays exceed the limit of {max_arrays}")
    arrays = []
    for i in range(count):
        code, ndim = take(2)
        if code >= len(DTYPES):
            raise WireFormatError(f"array {i}: unknown dtype code {code}")
        if ndim > MAX_NDIM:
            raise WireFormatError(f"array {i}: ndim {ndim} exceeds {MAX_NDIM}")
        shape = tuple(_U64.unpack(take(8))[0] for _ in range(ndim))
        (nbytes,) = _U64.unpack(take(8))
        dt = DTYPES[code]
        if int(np.prod(shape, dtype=object)) * dt.itemsize != nbytes:
            raise WireFormatError(f"array {i}: shape {shape} of {dt} does not match {nbytes} bytes")
        arrays.append(np.frombuffer(take(nbytes), dtype=dt).reshape(shape).astype(dt.newbyteorder("="), copy=True))
    if pos != len(view):
        raise WireFormatError(f"{len(view) - pos} trailing bytes after the last array")
    return header, arrays
