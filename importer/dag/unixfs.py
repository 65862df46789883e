"""The UnixFS ``Data`` message (proto2) carried in PBNode.Data, encoded as Go's proto.Marshal does.

Fields are written in field-number order and only when set; ``blocksizes`` is repeated and
*not* packed (one ``20 <varint>`` per child), as proto2 defaults to. ``mtime`` is an embedded
message ``{1: seconds (int64 varint, two's complement), 2: nanos (fixed32, only when > 0)}``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum

from ..errors import InvalidBlock
from .varint import decode_uvarint, encode_uvarint


class NodeType(IntEnum):
    """UnixFS ``Type`` enum (boxo ``ipld/unixfs/pb/unixfs.proto``)."""

    RAW = 0
    DIRECTORY = 1
    FILE = 2
    METADATA = 3
    SYMLINK = 4
    HAMT_SHARD = 5


#: multicodec of murmur3-x64-64, the only HAMT hash function Kubo writes.
HAMT_HASH_MURMUR3 = 0x22


@dataclass(frozen=True, slots=True)
class Mtime:
    """A modification time; ``nanos`` in [0, 1e9)."""

    seconds: int
    nanos: int = 0


@dataclass(frozen=True, slots=True)
class UnixFSData:
    """A decoded or to-be-encoded UnixFS Data message."""

    type: NodeType
    data: bytes | None = None
    filesize: int | None = None
    blocksizes: tuple[int, ...] = field(default=())
    hash_type: int | None = None
    fanout: int | None = None
    mode: int | None = None
    mtime: Mtime | None = None


def _int64_varint(n: int) -> bytes:
    # protobuf int64: negative values are their 64-bit two's complement (10 bytes).
    return encode_uvarint(n & 0xFFFFFFFFFFFFFFFF)


def encode_mtime(mtime: Mtime) -> bytes:
    body = b"\x08" + _int64_varint(mtime.seconds)
    if mtime.nanos > 0:
        body += b"\x15" + struct.pack("<I", mtime.nanos)
    return body


def encode_unixfs(msg: UnixFSData) -> bytes:
    """Serialise ``msg`` byte for byte as boxo does."""
    parts = [b"\x08", encode_uvarint(int(msg.type))]
    if msg.data is not None:
        parts += [b"\x12", encode_uvarint(len(msg.data)), msg.data]
    if msg.filesize is not None:
        parts += [b"\x18", encode_uvarint(msg.filesize)]
    for size in msg.blocksizes:
        parts += [b"\x20", encode_uvarint(size)]
    if msg.hash_type is not None:
        parts += [b"\x28", encode_uvarint(msg.hash_type)]
    if msg.fanout is not None:
        parts += [b"\x30", encode_uvarint(msg.fanout)]
    if msg.mode is not None:
        parts += [b"\x38", encode_uvarint(msg.mode)]
    if msg.mtime is not None:
        body = encode_mtime(msg.mtime)
        parts += [b"\x42", encode_uvarint(len(body)), body]
    return b"".join(parts)


def decode_unixfs(buf: bytes, cid_text: str = "?") -> UnixFSData:
    """Decode a UnixFS Data message; unknown field numbers are an error."""
    values: dict[int, object] = {}
    blocksizes: list[int] = []
    pos = 0
    try:
        while pos < len(buf):
            key, pos = decode_uvarint(buf, pos)
            number, wire = key >> 3, key & 7
            if wire == 0:
                value, pos = decode_uvarint(buf, pos)
                if number == 4:
                    blocksizes.append(value)
                else:
                    values[number] = value
            elif wire == 2:
                length, pos = decode_uvarint(buf, pos)
                if pos + length > len(buf):
                    raise InvalidBlock(cid_text, "UnixFS field runs past the data", pos)
                chunk = buf[pos:pos + length]
                pos += length
                if number == 4:  # a packed blocksizes, legal proto2 input though Kubo never writes it
                    p = 0
                    while p < len(chunk):
                        v, p = decode_uvarint(chunk, p)
                        blocksizes.append(v)
                else:
                    values[number] = chunk
            else:
                raise InvalidBlock(cid_text, f"UnixFS field {number} has wire type {wire}", pos)
        type_value = values.get(1)
        if not isinstance(type_value, int) or type_value not in NodeType._value2member_map_:
            raise InvalidBlock(cid_text, f"UnixFS Type {type_value!r} is missing or unknown")
        mtime = None
        raw_mtime = values.get(8)
        if isinstance(raw_mtime, bytes):
            mtime = _decode_mtime(raw_mtime, cid_text)
        data = values.get(2)
        return UnixFSData(
            type=NodeType(type_value),
            data=data if isinstance(data, bytes) else None,
            filesize=_opt_int(values.get(3)),
            blocksizes=tuple(blocksizes),
            hash_type=_opt_int(values.get(5)),
            fanout=_opt_int(values.get(6)),
            mode=_opt_int(values.get(7)),
            mtime=mtime,
        )
    except InvalidBlock:
        raise
    except ValueError as e:
        raise InvalidBlock(cid_text, f"UnixFS: {e}", pos) from None


def _opt_int(value: object) -> int | None:
    return value if isinstance(value, int) else None


def _decode_mtime(buf: bytes, cid_text: str) -> Mtime:
    seconds = 0
    nanos = 0
    pos = 0
    while pos < len(buf):
        key = buf[pos]
        pos += 1
        if key == 0x08:
            raw, pos = decode_uvarint(buf, pos)
            seconds = raw - (1 << 64) if raw >= 1 << 63 else raw
        elif key == 0x15 and pos + 4 <= len(buf):
            (nanos,) = struct.unpack_from("<I", buf, pos)
            pos += 4
        else:
            raise InvalidBlock(cid_text, f"UnixFS mtime has unexpected key 0x{key:02x}", pos - 1)
    return Mtime(seconds, nanos)
