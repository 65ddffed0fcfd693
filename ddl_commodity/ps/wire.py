"""Wire format of the parameter server: a JSON header and raw arrays, never pickle.

    message := MAGIC(4) header_len(u32) header(JSON, utf-8, space-padded) count(u32) array*
    array   := dtype_code(u8) ndim(u8) zero(6) shape(u64 * ndim) nbytes(u64) data(nbytes) zero(0..7)
    data    :  little-endian, C order

Every field after the header starts on an 8-byte boundary of the message (the header is padded with JSON
whitespace, each array's data with zero bytes to a multiple of 8), so a receiver that reads a message into
its own aligned buffer can use the arrays in place (:func:`decode_message` with ``copy=False``) and a
sender can hand the arrays' own memory to the socket (:func:`message_parts`): a 40 MB update is never
copied in user space. Only numeric dtypes on an allow-list travel (``uint8`` for a file's bytes: the final
model, see :meth:`~ddl_commodity.ps.client.ParameterServerClient.final`); decoding checks every length against
the buffer, so a truncated or forged message is a :class:`WireFormatError`, never an out-of-bounds read or
code execution.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence

import numpy as np

MAGIC = b"DDL2"
DTYPES: tuple[np.dtype, ...] = tuple(np.dtype(t).newbyteorder("<") for t in ("<f4", "<f8", "<i4", "<i8", "u1"))
_CODE = {dt: i for i, dt in enumerate(DTYPES)}
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_ALIGN = 8
MAX_NDIM = 8
Buffer = bytes | bytearray | memoryview


class WireFormatError(ValueError):
    """A message does not follow the wire format."""


def _padding(n: int) -> int:
    return -n % _ALIGN


def message_parts(header: dict, arrays: Sequence[np.ndarray] = ()) -> list[Buffer]:
    """The message as a list of buffers whose concatenation is the encoded message; the arrays' data are
    views of the arrays themselves when they are already contiguous little-endian (no copy)."""
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * _padding(len(MAGIC) + 4 + len(head) + 4)
    parts: list[Buffer] = [MAGIC + _U32.pack(len(head)) + head + _U32.pack(len(arrays))]
    for a in arrays:
        a = np.asarray(a)
        dt = a.dtype.newbyteorder("<")
        if dt not in _CODE:
            raise WireFormatError(f"dtype {a.dtype} cannot travel (allowed: float32, float64, int32, int64, uint8)")
        if a.ndim > MAX_NDIM:
            raise WireFormatError(f"{a.ndim}-d arrays are not supported (max {MAX_NDIM})")
        data = np.ascontiguousarray(a, dtype=dt).reshape(-1).view(np.uint8).data
        parts.append(bytes([_CODE[dt], a.ndim]) + bytes(6) + b"".join(_U64.pack(d) for d in a.shape)
                     + _U64.pack(len(data)))
        parts.append(data)
        if _padding(len(data)):
            parts.append(bytes(_padding(len(data))))
    return parts


def encode_message(header: dict, arrays: Sequence[np.ndarray] = ()) -> bytes:
    """Serialise ``header`` (JSON-able) and ``arrays`` (numeric, any layout) into one bytes object."""
    return b"".join(message_parts(header, arrays))


def decode_message(buf: Buffer, max_arrays: int = 4096, copy: bool = True) -> tuple[dict, list[np.ndarray]]:
    """Inverse of :func:`encode_message`.

    Args:
        buf: one whole message.
        max_arrays: refuse messages with more arrays.
        copy: ``True`` returns writable copies; ``False`` returns views of ``buf`` where the data are
            aligned native-order (writable if ``buf`` is), copies otherwise.
    """
    view = memoryview(buf).cast("B")
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
        take(6)
        if code >= len(DTYPES):
            raise WireFormatError(f"array {i}: unknown dtype code {code}")
        if ndim > MAX_NDIM:
            raise WireFormatError(f"array {i}: ndim {ndim} exceeds {MAX_NDIM}")
        shape = tuple(_U64.unpack(take(8))[0] for _ in range(ndim))
        (nbytes,) = _U64.unpack(take(8))
        dt = DTYPES[code]
        if int(np.prod(shape, dtype=object)) * dt.itemsize != nbytes:
            raise WireFormatError(f"array {i}: shape {shape} of {dt} does not match {nbytes} bytes")
        a = np.frombuffer(take(nbytes), dtype=dt).reshape(shape)
        take(_padding(nbytes))
        arrays.append(a.astype(dt.newbyteorder("="), copy=copy or not a.flags.aligned))
    if pos != len(view):
        raise WireFormatError(f"{len(view) - pos} trailing bytes after the last array")
    return header, arrays
