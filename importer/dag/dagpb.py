"""dag-pb (PBNode/PBLink) encoding exactly as Kubo writes it, and a strict decoder.

Kubo's byte order (go-codec-dagpb ``marshal.go``): every link first, each
``12 <len> { 0a <len> Hash | 12 <len> Name | 18 Tsize }`` with Name and Tsize *always*
present (an empty name is ``12 00``, a zero size ``18 00``), then ``0a <len> Data``. Links are
sorted by name bytes with a stable sort, so file nodes (all names empty) keep insertion order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import InvalidBlock
from .varint import decode_uvarint, encode_uvarint


@dataclass(frozen=True, slots=True)
class PBLink:
    """One link of a dag-pb node: binary CID, name (raw bytes) and cumulative size."""

    cid: bytes
    name: bytes
    tsize: int


@dataclass(frozen=True, slots=True)
class PBNode:
    """A decoded dag-pb node."""

    links: tuple[PBLink, ...]
    data: bytes | None


def encode_link(link: PBLink) -> bytes:
    """One ``Links`` entry including its ``12 <len>`` framing."""
    body = b"".join((
        b"\x0a", encode_uvarint(len(link.cid)), link.cid,
        b"\x12", encode_uvarint(len(link.name)), link.name,
        b"\x18", encode_uvarint(link.tsize),
    ))
    return b"\x12" + encode_uvarint(len(body)) + body


def encode_node(links: Sequence[PBLink], data: bytes | None, *, sort: bool = True) -> bytes:
    """Serialise a PBNode; ``sort=False`` only when the caller already sorted by name."""
    ordered = sorted(links, key=lambda link: link.name) if sort else links
    parts = [encode_link(link) for link in ordered]
    if data is not None:
        parts.append(b"\x0a" + encode_uvarint(len(data)) + data)
    return b"".join(parts)


def encoded_link_size(cid_len: int, name_len: int, tsize: int) -> int:
    """Bytes one link takes in a PBNode, framing included (for HAMT ``block`` estimation)."""
    inner = (1 + len(encode_uvarint(cid_len)) + cid_len
             + 1 + len(encode_uvarint(name_len)) + name_len
             + 1 + len(encode_uvarint(tsize)))
    return 1 + len(encode_uvarint(inner)) + inner


def decode_node(block: bytes, cid_text: str = "?") -> PBNode:
    """Decode a dag-pb block; reject unknown fields, Data before Links and trailing junk."""
    links: list[PBLink] = []
    data: bytes | None = None
    pos = 0
    end = len(block)
    try:
        while pos < end:
            key = block[pos]
            start = pos
            pos += 1
            if key == 0x12:
                if data is not None:
                    raise InvalidBlock(cid_text, "dag-pb Links after Data", start)
                length, pos = decode_uvarint(block, pos)
                links.append(_decode_link(block, pos, pos + length, cid_text))
                pos += length
            elif key == 0x0A:
                if data is not None:
                    raise InvalidBlock(cid_text, "dag-pb Data twice", start)
                length, pos = decode_uvarint(block, pos)
                if pos + length > end:
                    raise InvalidBlock(cid_text, "dag-pb Data runs past the block", start)
                data = bytes(block[pos:pos + length])
                pos += length
            else:
                raise InvalidBlock(cid_text, f"dag-pb unexpected field key 0x{key:02x}", start)
    except ValueError as e:
        if isinstance(e, InvalidBlock):
            raise
        raise InvalidBlock(cid_text, str(e), pos) from None
    return PBNode(tuple(links), data)


def _decode_link(block: bytes, pos: int, end: int, cid_text: str) -> PBLink:
    if end > len(block):
        raise InvalidBlock(cid_text, "dag-pb link runs past the block", pos)
    cid: bytes | None = None
    name = b""
    tsize = 0
    while pos < end:
        key = block[pos]
        pos += 1
        if key in (0x0A, 0x12):
            length, pos = decode_uvarint(block, pos)
            if pos + length > end:
                raise InvalidBlock(cid_text, "dag-pb link field runs past the link", pos)
            value = bytes(block[pos:pos + length])
            pos += length
            if key == 0x0A:
                cid = value
            else:
                name = value
        elif key == 0x18:
            tsize, pos = decode_uvarint(block, pos)
        else:
            raise InvalidBlock(cid_text, f"dag-pb link unexpected field key 0x{key:02x}", pos - 1)
    if cid is None:
        raise InvalidBlock(cid_text, "dag-pb link without Hash", pos)
    return PBLink(cid, name, tsize)
