"""The archive root and recipe: the DAG-CBOR schema that rebuilds an archive byte for byte.

Schema version 1 (documented in ``docs/recipe.md``). An imported archive is a DAG-CBOR root::

    {"dpip": 1, "kind": "archive", "name": "foo-1.0-py3-none-any.whl", "size": 12345,
     "sha256": <32 bytes>, "tree": <CID dag-pb>, "recipe": <CID dag-cbor>}

``tree`` is the UnixFS directory of the archive's files (the CID ``add -r --hidden`` gives the
safely extracted archive). ``recipe`` says how to put the archive back together::

    {"v": 1, "body": "zip" | "tar",
     "outer": [item, ...],          # the file, in order: skeleton runs and compressed streams
     "skeleton": <CID UnixFS file>, # one zstd frame: outer skeleton runs, then body skeleton runs
     "skeleton_size": int,          # bytes of all skeleton runs, uncompressed
     "params": [{compressor params}, ...],
     "extra": [<CID UnixFS file>, ...],  # contents that are not in the tree
     "pages": [<CID dag-cbor>, ...],     # the member table, PAGE_SIZE entries per block
     "members": int}

``outer`` items are ``[0, length]`` (a skeleton run of the file) or ``[1, params, source,
content_offset, content_size]`` (a compressed stream over ``body[content_offset:+content_size]``,
rebuilt with ``params[params]``, or copied from ``extra[source]`` when params is -1). A plain
zip or tar has one item ``[2, body_size]``: the body itself.

The body (the zip file, the decompressed tar stream, or for ``"raw"`` the one decompressed file
of a plain ``.gz``) is ``skel, member, skel, member, ..., skel``; each member table entry is
``[skeleton_before, source, params]``: ``skeleton_before`` bytes of body skeleton come first,
then the member's stored bytes, produced from ``source`` (a tree path ``str``, an ``int`` index
into ``extra``, or a link to a nested archive root whose rebuilt bytes are the content:
``--open-nested``) compressed with ``params[params]`` or copied as they are when ``params`` is
-1. ``tail`` is the body skeleton after the last member.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

import dag_cbor
from multiformats import CID

from ..dag.cbor import Link, encode_dag_cbor
from ..dag.cbor import cbor_head as _head
from ..dag.cid import DAG_CBOR, cid_of_block, split_cid
from ..errors import InvalidBlock
from ..sinks.base import BlockSink, BlockSource

SCHEMA_VERSION: Final = 1
#: Member table entries per page block: 4096 entries of ~60 bytes (a path, two small ints) keep a
#: page near 256 KiB, well under the 1 MiB that every IPFS transport accepts for one block.
PAGE_SIZE: Final = 4096

OUTER_SKELETON: Final = 0
OUTER_STREAM: Final = 1
OUTER_BODY: Final = 2
VERBATIM: Final = -1


@dataclass(frozen=True, slots=True)
class OuterStream:
    """A compressed stream of the file: body bytes ``[content_offset, +content_size)`` compressed."""

    params: int
    source: int
    content_offset: int
    content_size: int


OuterItem = int | OuterStream  # an int is a skeleton run of that many bytes


@dataclass(frozen=True, slots=True)
class MemberEntry:
    """One member of the body: skeleton bytes before it, where its content is, how it is stored."""

    skeleton_before: int
    source: str | int | bytes
    params: int = VERBATIM


@dataclass(frozen=True, slots=True)
class Recipe:
    body: str
    outer: tuple[OuterItem | None, ...]  # None: the body itself, uncompressed
    skeleton: bytes
    skeleton_size: int
    params: tuple[dict[str, Any], ...]
    extra: tuple[bytes, ...]
    members: tuple[MemberEntry, ...]
    tail: int


@dataclass(frozen=True, slots=True)
class ArchiveRoot:
    name: str
    size: int
    sha256: bytes
    tree: bytes
    recipe: bytes


def _link(cid: bytes) -> Link:
    return Link(cid)


def _put(sink: BlockSink, value: Any) -> bytes:
    block = encode_dag_cbor(value)
    cid = cid_of_block(1, DAG_CBOR, block)
    sink.put(cid, block)
    return cid


def _int(value: int) -> bytes:
    return _head(0, value) if value >= 0 else _head(1, -1 - value)


def encode_page(entries: Sequence[MemberEntry]) -> bytes:
    """``dag_cbor.encode([[skeleton_before, source, params], ...])``, written directly: the generic
    encoder spends ~60 us per entry, which is 6 s of a 100,000-member archive."""
    out = [_head(4, len(entries))]
    for m in entries:
        if isinstance(m.source, str):
            name = m.source.encode("utf-8")
            source = _head(3, len(name)) + name
        elif isinstance(m.source, bytes):
            # A nested archive root: a CID link, CBOR tag 42 over 0x00 + the binary CID.
            source = b"\xd8\x2a" + _head(2, len(m.source) + 1) + b"\x00" + m.source
        else:
            source = _int(m.source)
        out.append(b"\x83" + _int(m.skeleton_before) + source + _int(m.params))  # 0x83: array of 3
    return b"".join(out)


def write_recipe(recipe: Recipe, sink: BlockSink) -> bytes:
    """Put the recipe's blocks (pages first, then the recipe node); return the recipe CID."""
    pages = []
    for start in range(0, len(recipe.members), PAGE_SIZE):
        block = encode_page(recipe.members[start:start + PAGE_SIZE])
        cid = cid_of_block(1, DAG_CBOR, block)
        sink.put(cid, block)
        pages.append(_link(cid))
    outer: list[list[int]] = []
    for item in recipe.outer:
        if item is None:
            outer.append([OUTER_BODY])
        elif isinstance(item, int):
            outer.append([OUTER_SKELETON, item])
        else:
            outer.append([OUTER_STREAM, item.params, item.source, item.content_offset, item.content_size])
    node = {
        "v": SCHEMA_VERSION, "body": recipe.body, "outer": outer,
        "skeleton": _link(recipe.skeleton), "skeleton_size": recipe.skeleton_size,
        "params": list(recipe.params), "extra": [_link(c) for c in recipe.extra],
        "pages": pages, "members": len(recipe.members), "tail": recipe.tail,
    }
    return _put(sink, node)


def write_root(root: ArchiveRoot, sink: BlockSink) -> bytes:
    return _put(sink, {
        "dpip": SCHEMA_VERSION, "kind": "archive", "name": root.name, "size": root.size,
        "sha256": root.sha256, "tree": _link(root.tree), "recipe": _link(root.recipe),
    })


def _cid_bytes(value: object, where: str) -> bytes:
    if not isinstance(value, CID):
        raise InvalidBlock(where, f"expected a CID link, found {type(value).__name__}")
    return bytes(value)


def _decode(source: BlockSource, cid: bytes) -> Any:
    block = source.get(cid)
    if split_cid(cid)[1] != DAG_CBOR:
        raise InvalidBlock(str(CID.decode(cid)), "not a dag-cbor block: not a dpip archive root")
    try:
        return dag_cbor.decode(block)
    except Exception as e:  # noqa: BLE001  (dag_cbor raises several unrelated types)
        raise InvalidBlock(str(CID.decode(cid)), f"dag-cbor: {e}") from None


def read_root(source: BlockSource, cid: bytes) -> ArchiveRoot:
    """Decode an archive root; anything that is not one is an InvalidBlock error."""
    where = str(CID.decode(cid))
    node = _decode(source, cid)
    if not isinstance(node, dict) or node.get("kind") != "archive":
        raise InvalidBlock(where, "not a dpip archive root")
    if node.get("dpip") != SCHEMA_VERSION:
        raise InvalidBlock(where, f"archive schema version {node.get('dpip')!r} is not supported "
                                  f"(this dpip-import reads version {SCHEMA_VERSION})")
    try:
        return ArchiveRoot(name=str(node["name"]), size=int(node["size"]), sha256=bytes(node["sha256"]),
                           tree=_cid_bytes(node["tree"], where), recipe=_cid_bytes(node["recipe"], where))
    except (KeyError, TypeError, ValueError) as e:
        raise InvalidBlock(where, f"archive root is missing or has a bad field: {e}") from None


def read_recipe(source: BlockSource, cid: bytes) -> Recipe:
    where = str(CID.decode(cid))
    node = _decode(source, cid)
    try:
        if node["v"] != SCHEMA_VERSION:
            raise InvalidBlock(where, f"recipe version {node['v']!r} is not supported")
        outer: list[OuterItem | None] = []
        for item in node["outer"]:
            if item[0] == OUTER_BODY:
                outer.append(None)
            elif item[0] == OUTER_SKELETON:
                outer.append(int(item[1]))
            else:
                outer.append(OuterStream(int(item[1]), int(item[2]), int(item[3]), int(item[4])))
        members: list[MemberEntry] = []
        for page in node["pages"]:
            for entry in _decode(source, _cid_bytes(page, where)):
                member_source = bytes(entry[1]) if isinstance(entry[1], CID) else entry[1]
                members.append(MemberEntry(int(entry[0]), member_source, int(entry[2])))
        if len(members) != node["members"]:
            raise InvalidBlock(where, f"member table has {len(members)} entries, recipe says {node['members']}")
        recipe = Recipe(
            body=str(node["body"]), outer=tuple(outer), skeleton=_cid_bytes(node["skeleton"], where),
            skeleton_size=int(node["skeleton_size"]), params=tuple(node["params"]),
            extra=tuple(_cid_bytes(c, where) for c in node["extra"]), members=tuple(members),
            tail=int(node["tail"]),
        )
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise InvalidBlock(where, f"recipe is missing or has a bad field: {e}") from None
    _check_indices(recipe, where)
    return recipe


def _check_indices(recipe: Recipe, where: str) -> None:
    """Every index and length a rebuild follows is in range, so a hostile recipe fails here, clearly."""
    def bad(what: str) -> InvalidBlock:
        return InvalidBlock(where, f"recipe {what} is out of range")

    if min(recipe.skeleton_size, recipe.tail) < 0:
        raise bad("skeleton size or tail")
    for item in recipe.outer:
        if isinstance(item, int) and item < 0:
            raise bad("outer skeleton run")
        if isinstance(item, OuterStream) and (
                not -1 <= item.params < len(recipe.params) or min(item.content_offset, item.content_size) < 0
                or (item.params == VERBATIM and not 0 <= item.source < len(recipe.extra))):
            raise bad("outer stream")
    for entry in recipe.members:
        if entry.skeleton_before < 0 or not -1 <= entry.params < len(recipe.params):
            raise bad("member entry")
        if isinstance(entry.source, int) and not -1 <= entry.source < len(recipe.extra):
            raise bad("member source")
        if not isinstance(entry.source, int | str | bytes):
            raise bad("member source type")


def iter_links(recipe_cid: bytes, source: BlockSource) -> Iterator[bytes]:
    """Every block CID a recipe links to directly (for verify and pinning checks)."""
    recipe = read_recipe(source, recipe_cid)
    yield recipe.skeleton
    yield from recipe.extra


def params_index(table: list[dict[str, Any]], index: dict[str, int], params: dict[str, Any]) -> int:
    """Intern ``params`` into ``table``; return its index."""
    key = repr(sorted(params.items()))
    found = index.get(key)
    if found is None:
        found = index[key] = len(table)
        table.append(params)
    return found


def member_sources(entries: Sequence[MemberEntry]) -> set[str]:
    return {e.source for e in entries if isinstance(e.source, str)}
