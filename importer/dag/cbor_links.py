"""The links of a DAG-CBOR block, read off its CBOR heads without building its values.

``store gc`` and ``store verify`` only need to know which blocks a DAG-CBOR block links to.
hashberg's ``dag_cbor.decode`` builds a ``multiformats.CID`` for each link, which costs about
0.3-1.2 ms (validation; ``python -m bench.perf_gc``): a DAG-CBOR node of 1,000 links took 1.2 s
on a loaded machine, and the mark phase of gc was 13 of 15 s on 30,000 blocks. This walks the
heads (RFC 8949 section 3: a major type in the top 3 bits, an argument in the rest or in the
1-8 bytes that follow) and, at each tag 42 (a link, in DAG-CBOR the only tag allowed), takes the
byte string after it: ``0x00`` and a binary CID, checked with :func:`~importer.dag.cid.split_cid`.
Links come in the order they are encoded, which is the order of a depth-first walk of the
decoded value (map values follow their keys), as :func:`importer.sinks.car.iter_links` gives.

It is a structural check, not a full DAG-CBOR validator: indefinite lengths, reserved values,
truncation, trailing bytes and tags other than 42 are refused with the offset, but map key order
and UTF-8 in text strings are not checked. A block the strict decoder refuses for one of those
reasons still gives its links here, which for gc errs on the side of keeping blocks.
"""

from __future__ import annotations

from typing import Final

from ..errors import InvalidBlock, InvalidCid
from .cid import split_cid

#: The one CBOR tag DAG-CBOR allows: a CID link (``0x00`` multibase prefix + binary CID).
TAG_CID: Final = 42
#: Additional information values 24-27: the argument follows in 1, 2, 4 or 8 bytes.
_WIDTHS: Final = {24: 1, 25: 2, 26: 4, 27: 8}


def cbor_links(block: bytes, where: str) -> list[bytes]:
    """The binary CIDs ``block`` links to, in encoded order; InvalidBlock (``where``, offset) if it is not CBOR.

    >>> cbor_links(bytes.fromhex("a1616cd82a4700017100020000"), "x")
    [b'\\x01q\\x00\\x02\\x00\\x00']
    """
    links: list[bytes] = []
    size = len(block)
    pos = 0
    pending = 1  # items still to read at the current nesting level
    outer: list[int] = []  # what is left to read at each enclosing level
    link_next = False
    while True:
        while pending == 0:
            if not outer:
                if pos != size:
                    raise InvalidBlock(where, "dag-cbor: bytes after the end of the value", pos)
                return links
            pending = outer.pop()
        if pos >= size:
            raise InvalidBlock(where, "dag-cbor: the block ends inside a value", pos)
        start = pos
        major, info = block[pos] >> 5, block[pos] & 31
        pos += 1
        if info < 24:
            arg = info
        elif info in _WIDTHS:
            width = _WIDTHS[info]
            if pos + width > size:
                raise InvalidBlock(where, "dag-cbor: the block ends inside a head", start)
            arg = int.from_bytes(block[pos:pos + width], "big")
            pos += width
        else:
            raise InvalidBlock(where, f"dag-cbor: additional information {info} (indefinite length or reserved) "
                                      "is not DAG-CBOR", start)
        pending -= 1
        if link_next and major != 2:
            raise InvalidBlock(where, "dag-cbor: tag 42 must wrap a byte string", start)
        if major in (2, 3):
            if arg > size - pos:
                raise InvalidBlock(where, f"dag-cbor: a string of {arg} bytes runs past the end of the block", start)
            if link_next:
                links.append(_link(block[pos:pos + arg], where, start))
                link_next = False
            pos += arg
        elif major in (4, 5):
            outer.append(pending)
            pending = arg * (2 if major == 5 else 1)
        elif major == 6:
            if arg != TAG_CID:
                raise InvalidBlock(where, f"dag-cbor: tag {arg} (DAG-CBOR allows only tag 42, a link)", start)
            pending += 1  # the tagged item fills the same place
            link_next = True
        # majors 0, 1 (integers) and 7 (simple values, floats) are the head alone


def _link(payload: bytes, where: str, offset: int) -> bytes:
    if not payload.startswith(b"\x00"):
        raise InvalidBlock(where, "dag-cbor: a link must start with the identity multibase prefix 0x00", offset)
    cid = payload[1:]
    try:
        split_cid(cid)
    except InvalidCid as e:
        raise InvalidBlock(where, f"dag-cbor: a link that is not a CID ({e.reason})", offset) from None
    return cid
