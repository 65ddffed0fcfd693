"""The PS wire format: exact round trips, and every malformed message refused."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from ddl_commodity.ps.wire import MAGIC, WireFormatError, decode_message, encode_message

ARRAYS = [
    np.arange(12, dtype=np.float32).reshape(3, 4),
    np.linspace(0, 1, 7, dtype=np.float64),
    np.array(-3, dtype=np.int32),
    np.arange(5, dtype=np.int64) * 2**40,
    np.zeros((0, 3), dtype=np.float32),
    np.arange(24, dtype=np.float64).reshape(2, 3, 4).transpose(2, 0, 1),  # not contiguous
    np.arange(4, dtype=">f4"),  # big-endian input travels as little-endian
    np.frombuffer(b"a file's bytes", np.uint8),  # 14 bytes: the padding after it is exercised
    np.random.default_rng(0).normal(size=1_000_000).astype(np.float32),
]


def test_round_trip_is_exact() -> None:
    header, arrays = decode_message(encode_message({"worker": 3, "base_version": 9}, ARRAYS))
    assert header == {"worker": 3, "base_version": 9}
    for got, want in zip(arrays, ARRAYS, strict=True):
        assert got.shape == want.shape
        assert got.dtype == want.dtype.newbyteorder("=")
        np.testing.assert_array_equal(got, want)
        assert got.flags.writeable


def test_unsupported_dtypes_are_refused_not_pickled() -> None:
    for bad in (np.array([{"a": 1}], dtype=object), np.array(["hello"]), np.array([1 + 2j])):
        with pytest.raises(WireFormatError, match="cannot travel"):
            encode_message({}, [bad])


def good() -> bytes:
    return encode_message({"k": 1}, [np.arange(4, dtype=np.float32)])


@pytest.mark.parametrize(
    ("mangle", "needle"),
    [
        (lambda b: b[:-3], "truncated"),
        (lambda b: b"XXXX" + b[4:], "bad magic"),
        (lambda b: b + b"\0", "trailing bytes"),
        (lambda b: b[:4] + struct.pack("<I", 2) + b"{]" + b[4 + 4 + 7:], "not JSON"),
        (lambda b: b.replace(bytes([0, 1]), bytes([9, 1]), 1), "unknown dtype code"),
        (lambda b: b[: len(b) - 16 - 8] + struct.pack("<Q", 12) + b[-16:], "does not match"),
        (lambda b: MAGIC + struct.pack("<I", 2) + b"[]" + struct.pack("<I", 0), "JSON object"),
    ],
)
def test_malformed_messages(mangle, needle: str) -> None:
    with pytest.raises(WireFormatError, match=needle):
        decode_message(mangle(good()))


def test_array_count_limit() -> None:
    with pytest.raises(WireFormatError, match="exceed the limit"):
        decode_message(encode_message({}, [np.zeros(1, np.float32)] * 3), max_arrays=2)


def test_every_array_starts_aligned_and_decodes_in_place() -> None:
    """Data offsets are multiples of 8, so a receiver's own buffer holds usable arrays: no copy."""
    buf = bytearray(encode_message({"worker": 1}, ARRAYS))
    _, arrays = decode_message(buf, copy=False)
    base = np.frombuffer(buf, np.uint8).ctypes.data
    for got, want in zip(arrays, ARRAYS, strict=True):
        np.testing.assert_array_equal(got, want)
        if got.dtype == want.dtype and got.size:  # native order: a view of buf
            assert (got.ctypes.data - base) % 8 == 0 and np.shares_memory(got, np.frombuffer(buf, np.uint8))
            assert got.flags.writeable


def test_parts_send_the_arrays_own_memory() -> None:
    from ddl_commodity.ps.wire import message_parts

    big = np.arange(1000, dtype=np.float32)
    parts = message_parts({}, [big])
    assert b"".join(parts) == encode_message({}, [big])
    assert any(np.shares_memory(np.frombuffer(p, np.uint8), big) for p in parts if isinstance(p, memoryview))
