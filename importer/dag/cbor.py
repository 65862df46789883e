"""A minimal DAG-CBOR encoder for the importer's own nodes (archive roots, recipes).

hashberg's ``dag_cbor`` is the reference and decodes everything here, but its links must be
``multiformats.CID`` objects, which cost about half a millisecond each to build (type
validation): with ``--open-nested`` an import writes thousands of small roots and recipes.
This encoder takes links as :class:`Link` (a binary CID) and writes DAG-CBOR's canonical form:
shortest heads, map keys sorted by length then bytes, links as tag 42 over ``0x00 + CID``.
Only the types the importer writes are accepted: None, bool, int, bytes, str, list, dict, Link.
"""

from __future__ import annotations

from typing import Any


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
