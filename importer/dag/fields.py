"""Typed access to decoded DAG-CBOR from blocks anyone may have written (roots, recipes, pages).

Every accessor checks the value's kind and range and raises one :class:`InvalidBlock` naming the
block, the field and what it found ("field 'size' is a string, not an integer", "value -1 is
outside 0..9223372036854775807"), so a reader never meets a ``TypeError`` or a huge integer
where it expects a small one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from ..errors import InvalidBlock
from .cbor import Link
from .cid import DAG_CBOR, DAG_PB, RAW, cid_codec, format_cid

#: Largest integer in a size, offset or count field: int64, as Go readers of such schemas decode it.
MAX_FIELD_INT: Final = (1 << 63) - 1


class Fields:
    """Typed access to one decoded map; every defect an InvalidBlock naming the block and field."""

    def __init__(self, where: str, what: str, node: object) -> None:
        if not isinstance(node, dict):
            raise InvalidBlock(where, f"{what} is not a map")
        self.where = where
        self.what = what
        self.node = node

    def fail(self, reason: str) -> InvalidBlock:
        return InvalidBlock(self.where, f"{self.what} {reason}")

    def get(self, key: str) -> object:
        if key not in self.node:
            raise self.fail(f"has no {key!r} field")
        return self.node[key]

    def integer(self, key: str, low: int = 0, high: int = MAX_FIELD_INT) -> int:
        return checked_int(self.get(key), low, high, lambda r: self.fail(f"field {key!r} {r}"))

    def text(self, key: str) -> str:
        value = self.get(key)
        if not isinstance(value, str):
            raise self.fail(f"field {key!r} is {kind_of(value)}, not a string")
        return value

    def link(self, key: str, *codecs: int) -> bytes:
        return checked_link(self.get(key), codecs, lambda r: self.fail(f"field {key!r} {r}"))


def kind_of(value: object) -> str:
    """What a decoded value is, in a schema's terms ("an integer", "a link"...)."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, Link):
        return "a link"
    return {int: "an integer", str: "a string", bytes: "bytes", list: "a list", dict: "a map",
            float: "a float", type(None): "null"}.get(type(value), type(value).__name__)


def checked_int(value: object, low: int, high: int, fail: Callable[[str], InvalidBlock]) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise fail(f"is {kind_of(value)}, not an integer")
    if not low <= value <= high:
        raise fail(f"value {value} is outside {low}..{high}")
    return value


def checked_link(value: object, codecs: tuple[int, ...], fail: Callable[[str], InvalidBlock]) -> bytes:
    if not isinstance(value, Link):
        raise fail(f"is {kind_of(value)}, not a CID link")
    cid = bytes(value)
    if codecs and cid_codec(cid) not in codecs:
        raise fail(f"links to {format_cid(cid)}, which is not a {' or '.join(CODEC_WORDS.get(c, hex(c)) for c in codecs)} block")
    return cid


#: Codec names in messages; any other codec is shown by its number.
CODEC_WORDS: Final = {DAG_CBOR: "dag-cbor", DAG_PB: "dag-pb", RAW: "raw"}
