"""Resolving ``CID/path`` across codecs: UnixFS directories, and DAG-CBOR nodes such as archive roots.

IPLD pathing, as ``ipfs dag get`` and gateways do it: in a DAG-CBOR node each segment is a map
key or a list index, followed until a link; from there the rest of the path continues in the
linked block, whatever its codec. In a dag-pb UnixFS directory a segment is an entry name
(:func:`importer.dag.reader.resolve`, HAMT shards included).

One shortcut on top, for the archive roots ``wheel``/``sdist``/``auto`` print: below an archive
root, a path whose first segment is not one of the root's links (``tree``, ``recipe``) is looked
up in its tree, so ``ROOT/pkg/__init__.py`` and the IPLD path ``ROOT/tree/pkg/__init__.py`` name
the same file (a top-level entry called ``tree`` or ``recipe`` is reached as ``ROOT/tree/tree``).
:func:`unixfs_node` takes an archive root to its tree for ``ls``, ``cat`` and ``get``, and says what any
other DAG-CBOR node is instead of failing with "not a UnixFS node".
"""

from __future__ import annotations

from typing import Any, Final

from ..sinks.base import BlockSource
from .cbor import Link, decode_dag_cbor
from .cid import DAG_CBOR, cid_codec, format_cid
from .reader import PathError, resolve

#: The links of an archive root (importer.archive.recipe): the IPLD path segments that stay IPLD.
ARCHIVE_LINKS: Final = ("tree", "recipe")


def _decode_cbor(source: BlockSource, cid: bytes) -> Any:
    return decode_dag_cbor(source.get(cid), format_cid(cid))


def is_archive_root(node: Any) -> bool:
    return isinstance(node, dict) and node.get("kind") == "archive" and "tree" in node


def resolve_path(source: BlockSource, root: bytes, path: str) -> bytes:
    """The CID that ``path`` leads to from ``root`` (module docstring); PathError if it leads nowhere."""
    segments = [part for part in path.split("/") if part]
    cid, walked = root, format_cid(root)
    while segments and cid_codec(cid) == DAG_CBOR:
        node = _decode_cbor(source, cid)
        if is_archive_root(node) and segments[0] not in ARCHIVE_LINKS:
            segments.insert(0, "tree")
        value: Any = node
        while segments:
            name = segments.pop(0)
            if isinstance(value, dict) and name in value:
                value = value[name]
            elif isinstance(value, list) and name.isdigit() and int(name) < len(value):
                value = value[int(name)]
            else:
                raise PathError(walked, f"no field or link named {name!r}")
            walked += "/" + name
            if isinstance(value, Link):
                break
        if not isinstance(value, Link):
            raise PathError(walked, "is a field inside a DAG-CBOR node, not a block")
        cid = bytes(value)
    try:
        return resolve(source, cid, "/".join(segments))
    except PathError as e:  # name the path as the user wrote it, not from the last link followed
        raise PathError(walked + e.path.removeprefix(format_cid(cid)), e.reason) from None


def unixfs_node(source: BlockSource, cid: bytes, text: str) -> tuple[bytes, str | None]:
    """``(cid, note)``: a UnixFS node to list or read; an archive root becomes its tree (``note`` says so).

    Any other DAG-CBOR node is refused with what it is and which command reads it.
    """
    if cid_codec(cid) != DAG_CBOR:
        return cid, None
    node = _decode_cbor(source, cid)
    if is_archive_root(node) and isinstance(node["tree"], Link):
        tree = bytes(node["tree"])
        name = node.get("name")
        shown = name if isinstance(name, str) and name.isprintable() else repr(name)  # no terminal escapes from data
        return tree, f"{text} is the archive root of {shown}; its files are the tree {format_cid(tree)}"
    if isinstance(node, dict) and {"v", "body", "outer"} <= node.keys():
        raise PathError(text, "is an archive recipe (DAG-CBOR), not UnixFS: `dpip-import inspect ROOT` describes it")
    raise PathError(text, "is a DAG-CBOR node, not a UnixFS file or directory: `dpip-import export` writes its "
                          "DAG to a CAR")
