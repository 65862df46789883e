"""Unsigned LEB128 varints, as used by multiformats, protobuf and CAR framing."""

from __future__ import annotations

from ..errors import ImporterError


class VarintError(ImporterError, ValueError):
    """A varint that runs past the end of its buffer or beyond 64 bits."""

    def __init__(self, reason: str, offset: int) -> None:
        super().__init__(f"bad varint at byte {offset}: {reason}")
        self.reason = reason
        self.offset = offset


# Pre-encoded varints for 0..16383 (two bytes max): link and field lengths on the hot path are
# almost always below 2^14, so most encodes become one list index.
_SMALL: list[bytes] = []


def _encode_slow(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_SMALL = [_encode_slow(i) for i in range(1 << 14)]


def encode_uvarint(n: int) -> bytes:
    """Encode a non-negative integer below 2**64."""
    if n < 0x4000:
        if n < 0:
            raise ValueError(f"uvarint must be non-negative, got {n}")
        return _SMALL[n]
    if n >= 1 << 64:
        raise ValueError(f"uvarint must be below 2**64, got {n}")
    return _encode_slow(n)


def decode_uvarint(buf: bytes | memoryview, offset: int = 0) -> tuple[int, int]:
    """Decode a varint at ``offset``; return ``(value, offset after it)``.

    >>> decode_uvarint(bytes([0xAC, 0x02]))
    (300, 2)
    """
    value = 0
    shift = 0
    pos = offset
    end = len(buf)
    while True:
        if pos >= end:
            raise VarintError("truncated", offset)
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            # A 64-bit value needs at most 10 bytes (7 * 10 = 70 >= 64).
            if value >= 1 << 64:
                raise VarintError("exceeds 64 bits", offset)
            return value, pos
        shift += 7
        if shift >= 70:
            raise VarintError("longer than 10 bytes", offset)
