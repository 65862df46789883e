"""DAG-CBOR for the importer's own nodes (archive roots, recipes, pages) and for CAR headers.

The encoder:

hashberg's ``dag_cbor`` is the reference and decodes everything here, but its links must be
``multiformats.CID`` objects, which cost about half a millisecond each to build (type
validation): with ``--open-nested`` an import writes thousands of small roots and recipes.
This encoder takes links as :class:`Link` (a binary CID) and writes DAG-CBOR's canonical form:
shortest heads, map keys sorted by length then bytes, links as tag 42 over ``0x00 + CID``.
Only the types the importer writes are accepted: None, bool, int, bytes, str, list, dict, Link.

The decoder (:func:`decode_dag_cbor`) reads what strangers wrote (CARs, roots and recipes from a
node), so it is strict and bounded: iterative (no recursion, however deep the nesting), every
length checked against the bytes left before anything is allocated, canonical form only (shortest
heads, definite lengths, string keys in canonical order without repeats, tag 42 links holding a
well-formed CID, 64-bit finite floats, no other simple values or tags), and every defect an
:class:`InvalidBlock` naming the byte offset. Links decode as :class:`Link`.
"""

from __future__ import annotations

import math
import struct
from typing import Any, Final

from ..errors import ImporterError, InvalidBlock
from .cid import split_cid


class Link(bytes):
    """A binary CID to encode as a DAG-CBOR link (tag 42)."""


def cbor_head(major: int, value: int) -> bytes:
    """A CBOR head in its shortest form (RFC 8949 3.1; DAG-CBOR allows only that one)."""
    if value < 24:
        return bytes([major << 5 | value])
    for info, width in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if value < 1 << (8 * width):
            return bytes([major << 5 | info]) + value.to_bytes(width, "big")
    raise ValueError(f"integer {value} does not fit in 64 bits")


def encode_dag_cbor(value: Any) -> bytes:
    """Encode ``value`` canonically.

    >>> encode_dag_cbor({"b": 1, "aa": [True, None, -2]}).hex()
    'a261620162616183f5f621'
    """
    out: list[bytes] = []
    _encode(value, out)
    return b"".join(out)


def _encode(value: Any, out: list[bytes]) -> None:
    if value is None:
        out.append(b"\xf6")
    elif value is True:
        out.append(b"\xf5")
    elif value is False:
        out.append(b"\xf4")
    elif isinstance(value, int):
        out.append(cbor_head(0, value) if value >= 0 else cbor_head(1, -1 - value))
    elif isinstance(value, Link):
        out.append(b"\xd8\x2a" + cbor_head(2, len(value) + 1) + b"\x00" + bytes(value))
    elif isinstance(value, bytes):
        out.append(cbor_head(2, len(value)) + value)
    elif isinstance(value, str):
        raw = value.encode("utf-8")
        out.append(cbor_head(3, len(raw)) + raw)
    elif isinstance(value, list | tuple):
        out.append(cbor_head(4, len(value)))
        for item in value:
            _encode(item, out)
    elif isinstance(value, dict):
        keys = []
        for key in value:
            if not isinstance(key, str):
                raise TypeError(f"DAG-CBOR map keys must be strings, not {type(key).__name__}")
            keys.append((key.encode("utf-8"), key))
        keys.sort(key=lambda k: (len(k[0]), k[0]))
        out.append(cbor_head(5, len(keys)))
        for raw, key in keys:
            out.append(cbor_head(3, len(raw)) + raw)
            _encode(value[key], out)
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as DAG-CBOR here")


#: Deepest nesting of lists and maps decoded. Decoding is iterative, so this is not about the
#: decoder: it keeps every value within reach of code that walks it recursively (``==``,
#: ``repr``, Python's recursion limit of 1000); the importer's own nodes nest 3 deep.
MAX_NESTING: Final = 256
#: CBOR major types (RFC 8949 3.1).
_UINT, _NINT, _BYTES, _TEXT, _ARRAY, _MAP, _TAG, _SIMPLE = range(8)
#: The one tag DAG-CBOR allows: 42, a CID link.
CID_TAG: Final = 42
_FALSE, _TRUE, _NULL, _FLOAT64 = 20, 21, 22, 27


class _Container:
    """A list or map being filled: its items still to read and, for a map, the pending key."""

    __slots__ = ("has_key", "key", "last_key", "left", "value")

    def __init__(self, value: list[Any] | dict[str, Any], left: int) -> None:
        self.value = value
        self.left = left
        self.key = ""
        self.has_key = False
        self.last_key: bytes | None = None


def decode_dag_cbor(block: bytes, where: str = "?") -> Any:
    """Decode one DAG-CBOR value that fills ``block`` exactly; ``where`` names it in errors.

    >>> decode_dag_cbor(bytes.fromhex('a261620162616183f5f621'))
    {'b': 1, 'aa': [True, None, -2]}
    """
    buf = memoryview(block)
    end = len(buf)
    pos = 0
    stack: list[_Container] = []

    def fail(reason: str, at: int) -> InvalidBlock:
        return InvalidBlock(where, f"dag-cbor: {reason}", at)

    def head(at: int) -> tuple[int, int, int, int]:
        """``(major, info, argument, next position)`` of the item head at ``at``."""
        if at >= end:
            raise fail("the block ends inside a value", at)
        first = buf[at]
        major, info = first >> 5, first & 31
        if info < 24:
            return major, info, info, at + 1
        if info > 27:
            raise fail("indefinite lengths and reserved head values are not DAG-CBOR", at)
        width = 1 << (info - 24)
        if at + 1 + width > end:
            raise fail("the block ends inside an item head", at)
        arg = int.from_bytes(buf[at + 1:at + 1 + width], "big")
        if major != _SIMPLE and arg < (24 if width == 1 else 1 << (4 * width)):
            raise fail("an integer or length is not in its shortest form", at)
        return major, info, arg, at + 1 + width

    def span(at: int, length: int, what: str) -> int:
        if length > end - at:
            raise fail(f"{what} of {length} bytes runs past the end of the block", at)
        return at + length

    while True:
        top = stack[-1] if stack else None
        if top is not None and top.left == 0:
            stack.pop()
            value: Any = top.value
        else:
            start = pos
            major, info, arg, pos = head(pos)
            if top is not None and isinstance(top.value, dict) and not top.has_key and major != _TEXT:
                raise fail("a map key is not a string", start)
            if major == _UINT:
                value = arg
            elif major == _NINT:
                value = -1 - arg
            elif major == _BYTES:
                value = bytes(buf[pos:span(pos, arg, "a byte string")])
                pos += arg
            elif major == _TEXT:
                raw = bytes(buf[pos:span(pos, arg, "a text string")])
                pos += arg
                try:
                    value = raw.decode("utf-8")
                except UnicodeDecodeError:
                    raise fail("a text string is not UTF-8", start) from None
            elif major in (_ARRAY, _MAP):
                if arg > (end - pos) // (2 if major == _MAP else 1):
                    raise fail(f"a {'map' if major == _MAP else 'list'} of {arg} items is longer than "
                               "the rest of the block", start)
                if len(stack) >= MAX_NESTING:
                    raise fail(f"lists and maps nest deeper than {MAX_NESTING} levels", start)
                stack.append(_Container({} if major == _MAP else [], arg))
                continue
            elif major == _TAG:
                if arg != CID_TAG:
                    raise fail(f"tag {arg} is not allowed (only 42, a CID link)", start)
                inner, _, length, pos = head(pos)
                if inner != _BYTES:
                    raise fail("a tag 42 link does not hold a byte string", start)
                raw = bytes(buf[pos:span(pos, length, "a link")])
                pos += length
                if not raw or raw[0] != 0:
                    raise fail("a link's bytes do not start with the 0x00 multibase prefix", start)
                try:
                    split_cid(raw[1:])
                except ImporterError as e:
                    raise fail(f"a link is not a valid CID ({e})", start) from None
                value = Link(raw[1:])
            elif info == _FALSE:
                value = False
            elif info == _TRUE:
                value = True
            elif info == _NULL:
                value = None
            elif info == _FLOAT64:
                value = struct.unpack(">d", buf[pos - 8:pos])[0]
                if not math.isfinite(value):
                    raise fail("NaN and infinities are not DAG-CBOR", start)
            else:
                raise fail("only false, true, null and 64-bit floats are DAG-CBOR simple values", start)
        if top is None or not stack:
            if pos != end:
                raise fail(f"{end - pos} bytes follow the value", pos)
            return value
        top = stack[-1]
        if isinstance(top.value, dict):
            if not top.has_key:
                key = value.encode("utf-8")
                if top.last_key is not None and (len(key), key) <= (len(top.last_key), top.last_key):
                    raise fail(f"map key {value!r} repeats or is out of canonical order", pos)
                top.key, top.has_key, top.last_key = value, True, key
                continue
            top.value[top.key] = value
            top.has_key = False
        else:
            top.value.append(value)
        top.left -= 1
