"""The archive root and recipe: the DAG-CBOR schema that rebuilds an archive byte for byte.

Schema version 1, recipe versions 1 and 2 (documented in ``docs/recipe.md``). An imported
archive is a DAG-CBOR root::

    {"dpip": 1, "kind": "archive", "name": "foo-1.0-py3-none-any.whl", "size": 12345,
     "sha256": <32 bytes>, "tree": <CID dag-pb>, "recipe": <CID dag-cbor>}

``tree`` is the UnixFS directory of the archive's files (the CID ``add -r --hidden`` gives the
safely extracted archive). ``recipe`` says how to put the archive back together::

    {"v": 1, "body": "zip" | "tar" | "raw",
     "outer": [item, ...],          # the file, in order: skeleton runs and compressed streams
     "skeleton": <CID UnixFS file>, # one zstd frame: outer skeleton runs, then body skeleton runs
     "skeleton_size": int,          # bytes of all skeleton runs, uncompressed
     "params": [{compressor params}, ...],
     "extra": [<CID UnixFS file>, ...],  # contents that are not in the tree
     "pages": [<CID dag-cbor>, ...],     # the member table, at most PAGE_SIZE entries per block
     "members": int, "tail": int}

``outer`` items are ``[0, length]`` (a skeleton run of the file), ``[1, params, source,
content_offset, content_size]`` (a compressed stream over ``body[content_offset:+content_size]``,
rebuilt with ``params[params]``, or copied from ``extra[source]`` when params is -1) or ``[2]``
(the body itself: a plain zip or tar).

The body (the zip file, the decompressed tar stream, or for ``"raw"`` the one decompressed file
of a plain ``.gz``) is ``skel, member, skel, member, ..., skel``; each member table entry is
``[skeleton_before, source, params]``: ``skeleton_before`` bytes of body skeleton come first,
then the member's stored bytes, produced from ``source`` (a tree path ``str``, an ``int`` index
into ``extra``, or a link to a nested archive root whose rebuilt bytes are the content:
``--open-nested``) compressed with ``params[params]`` or copied as they are when ``params`` is
-1. ``tail`` is the body skeleton after the last member.

No block may exceed :data:`MAX_BLOCK_SIZE` (1 MiB). Member pages are cut at PAGE_SIZE entries or
PAGE_BYTES bytes, whichever comes first; ``outer``, ``params`` or ``extra`` lists whose inline
encoding passes INLINE_LIST_BYTES become *paged lists* ``{"n": count, "pages": [<CID>...]}``
(each page a DAG-CBOR list), and such a recipe says ``"v": 2``. A recipe that fits inline is
written as version 1, byte for byte as before, so existing roots keep their CIDs.

Everything read is checked before any work: types and ranges of every field, indices into the
tables, declared counts against what the pages hold, no page listed twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

from ..compress import CompressorParams
from ..dag.cbor import Link, decode_dag_cbor, encode_dag_cbor
from ..dag.cbor import cbor_head as _head
from ..dag.cid import DAG_CBOR, DAG_PB, RAW, cid_codec, cid_of_block, format_cid
from ..dag.fields import MAX_FIELD_INT, Fields, checked_int, checked_link, kind_of
from ..errors import ImporterError, InvalidBlock
from ..sinks.base import BlockSink, BlockSource
from ..sinks.guard import check_block_size
from ..sources.auto import RAW_FORMATS
from ..sources.base import DEFAULT_LIMITS

SCHEMA_VERSION: Final = 1
#: Recipe versions read: 1 (every list inline) and 2 (``outer``/``params``/``extra`` may be paged).
RECIPE_V1: Final = 1
RECIPE_V2: Final = 2
#: Member table entries per page block: 4096 entries of ~60 bytes (a path, two small ints) keep a
#: page near 256 KiB, well under the 1 MiB that every IPFS transport accepts for one block.
PAGE_SIZE: Final = 4096
#: ... and bytes per page: long member names (a zip name may be 64 KiB) would take 4096 entries
#: far past 1 MiB, so a page also closes before it passes 512 KiB, half the block limit, which
#: leaves room for one entry of up to 512 KiB more. A page of typical entries reaches 4096 entries
#: (~256 KiB) first, so pages written before this bound existed are unchanged.
PAGE_BYTES: Final = 512 * 1024
#: An ``outer``, ``params`` or ``extra`` list up to 64 KiB stays inline in the recipe node (3 of
#: them and the page links stay far below 1 MiB); longer ones (an sdist of 100,000 gzip streams
#: has a 1.5 MB ``outer``) are paged. Real archives have a few outer items and params and rarely
#: 1,700 extra files (38 bytes per link), so their recipes stay version 1.
INLINE_LIST_BYTES: Final = 64 * 1024
#: Most member entries a recipe may declare: what the importer accepts (``Limits.max_members``).
MAX_MEMBERS: Final = DEFAULT_LIMITS.max_members
#: Longest archive name: 1024 bytes, four times NAME_MAX (255), enough for any wheel or sdist
#: name, yet no output path is ever derived from it without checking (``cli/output.py``).
MAX_NAME_BYTES: Final = 1024
#: Most items an ``outer``, ``params`` or ``extra`` list may declare: one per byte of a maximal
#: 16 GiB archive would be absurd, 10 million (a 100,000-stream sdist 100 times over) is ample
#: and keeps a hostile count from being believed before its pages are read.
MAX_LIST_ITEMS: Final = 10_000_000

OUTER_SKELETON: Final = 0
OUTER_STREAM: Final = 1
OUTER_BODY: Final = 2
VERBATIM: Final = -1
BODIES: Final = ("zip", "tar", "raw")


def body_of_format(archive_format: str) -> str:
    """The recipe ``body`` of an opened archive's format: ``zip``, ``raw`` or (any tar) ``tar``."""
    if archive_format == "zip":
        return "zip"
    return "raw" if archive_format in RAW_FORMATS else "tar"


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

    @property
    def body_size(self) -> int | None:
        """Bytes of the body the outer items consume, when the file does not contain it whole.

        With compressed streams the body is exactly their contents; with a ``[2]`` item it is
        the file's own bytes, bounded by the root's size (None here).
        """
        if any(item is None for item in self.outer):
            return None
        return sum(item.content_size for item in self.outer if isinstance(item, OuterStream))


@dataclass(frozen=True, slots=True)
class ArchiveRoot:
    name: str
    size: int
    sha256: bytes
    tree: bytes
    recipe: bytes


# -- writing -----------------------------------------------------------------------------------

def _put_block(sink: BlockSink, block: bytes) -> bytes:
    cid = cid_of_block(1, DAG_CBOR, block)
    check_block_size(cid, len(block))
    sink.put(cid, block)
    return cid


def _put(sink: BlockSink, value: Any) -> bytes:
    return _put_block(sink, encode_dag_cbor(value))


def _int(value: int) -> bytes:
    return _head(0, value) if value >= 0 else _head(1, -1 - value)


def encode_entry(m: MemberEntry) -> bytes:
    """One member table entry, ``dag_cbor.encode([skeleton_before, source, params])``."""
    if isinstance(m.source, str):
        name = m.source.encode("utf-8")
        source = _head(3, len(name)) + name
    elif isinstance(m.source, bytes):
        # A nested archive root: a CID link, CBOR tag 42 over 0x00 + the binary CID.
        source = b"\xd8\x2a" + _head(2, len(m.source) + 1) + b"\x00" + m.source
    else:
        source = _int(m.source)
    return b"\x83" + _int(m.skeleton_before) + source + _int(m.params)  # 0x83: array of 3


def encode_page(entries: Sequence[MemberEntry]) -> bytes:
    """``dag_cbor.encode([[skeleton_before, source, params], ...])``, written directly: the generic
    encoder spends ~60 us per entry, which is 6 s of a 100,000-member archive."""
    return _head(4, len(entries)) + b"".join(encode_entry(m) for m in entries)


def _cut_pages(items: Sequence[bytes], max_items: int) -> Iterator[list[bytes]]:
    """Encoded items grouped into pages of at most ``max_items`` items and PAGE_BYTES bytes
    (an item larger than PAGE_BYTES gets a page of its own)."""
    page: list[bytes] = []
    size = 0
    for item in items:
        if page and (len(page) == max_items or size + len(item) > PAGE_BYTES):
            yield page
            page, size = [], 0
        page.append(item)
        size += len(item)
    if page:
        yield page


def _write_pages(sink: BlockSink, items: Sequence[bytes], max_items: int) -> list[Link]:
    return [Link(_put_block(sink, _head(4, len(page)) + b"".join(page))) for page in _cut_pages(items, max_items)]


def _list_field(sink: BlockSink, values: Sequence[Any]) -> tuple[Any, bool]:
    """A list inline, or as a paged list when its encoding passes INLINE_LIST_BYTES."""
    encoded = [encode_dag_cbor(v) for v in values]
    if sum(len(e) for e in encoded) <= INLINE_LIST_BYTES:
        return list(values), False
    return {"n": len(values), "pages": _write_pages(sink, encoded, len(encoded))}, True


def write_recipe(recipe: Recipe, sink: BlockSink) -> bytes:
    """Put the recipe's blocks (pages first, then the recipe node); return the recipe CID."""
    pages = _write_pages(sink, [encode_entry(m) for m in recipe.members], PAGE_SIZE)
    outer: list[list[int]] = []
    for item in recipe.outer:
        if item is None:
            outer.append([OUTER_BODY])
        elif isinstance(item, int):
            outer.append([OUTER_SKELETON, item])
        else:
            outer.append([OUTER_STREAM, item.params, item.source, item.content_offset, item.content_size])
    outer_field, outer_paged = _list_field(sink, outer)
    params_field, params_paged = _list_field(sink, recipe.params)
    extra_field, extra_paged = _list_field(sink, [Link(c) for c in recipe.extra])
    node = {
        "v": RECIPE_V2 if outer_paged or params_paged or extra_paged else RECIPE_V1,
        "body": recipe.body, "outer": outer_field,
        "skeleton": Link(recipe.skeleton), "skeleton_size": recipe.skeleton_size,
        "params": params_field, "extra": extra_field,
        "pages": pages, "members": len(recipe.members), "tail": recipe.tail,
    }
    return _put(sink, node)


def write_root(root: ArchiveRoot, sink: BlockSink) -> bytes:
    return _put(sink, {
        "dpip": SCHEMA_VERSION, "kind": "archive", "name": root.name, "size": root.size,
        "sha256": root.sha256, "tree": Link(root.tree), "recipe": Link(root.recipe),
    })


# -- reading -----------------------------------------------------------------------------------

def _decode(source: BlockSource, cid: bytes, what: str) -> Any:
    if cid_codec(cid) != DAG_CBOR:
        raise InvalidBlock(format_cid(cid), f"not a dag-cbor block: not a dpip {what}")
    return decode_dag_cbor(source.get(cid), format_cid(cid))


def read_root(source: BlockSource, cid: bytes) -> ArchiveRoot:
    """Decode an archive root; anything that is not one is an InvalidBlock error."""
    where = format_cid(cid)
    node = _decode(source, cid, "archive root")
    if not isinstance(node, dict) or node.get("kind") != "archive":
        raise InvalidBlock(where, "not a dpip archive root")
    if node.get("dpip") != SCHEMA_VERSION or isinstance(node.get("dpip"), bool):
        raise InvalidBlock(where, f"archive schema version {node.get('dpip')!r} is not supported "
                                  f"(this dpip-import reads version {SCHEMA_VERSION})")
    f = Fields(where, "archive root", node)
    name = f.text("name")
    if "\0" in name or not name or len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise f.fail(f"name {name[:80]!r} is empty, longer than {MAX_NAME_BYTES} bytes or holds a NUL")
    sha256 = f.get("sha256")
    if not isinstance(sha256, bytes) or isinstance(sha256, Link) or len(sha256) != 32:
        raise f.fail(f"field 'sha256' is {kind_of(sha256)}"
                     f"{f' of {len(sha256)} bytes' if isinstance(sha256, bytes) else ''}, not 32 bytes")
    return ArchiveRoot(name=name, size=f.integer("size"), sha256=sha256, tree=f.link("tree", DAG_PB),
                       recipe=f.link("recipe", DAG_CBOR))


def _paged_list(source: BlockSource, f: Fields, key: str, version: int) -> list[Any]:
    """A list field, inline or (version 2) paged; a paged list's count and pages are checked."""
    value = f.get(key)
    if isinstance(value, list):
        return value
    if version < RECIPE_V2 or not isinstance(value, dict):
        raise f.fail(f"field {key!r} is {kind_of(value)}, not a list")
    paged = Fields(f.where, f"recipe {key!r} paged list", value)
    count = paged.integer("n", 0, MAX_LIST_ITEMS)
    return _read_pages(source, paged, "pages", count, lambda item: item)


def _read_pages(source: BlockSource, f: Fields, key: str, count: int, convert: Callable[[Any], Any]) -> list[Any]:
    """The items of the pages linked from ``f[key]``: exactly ``count``, no page twice, none empty."""
    links = f.get(key)
    if not isinstance(links, list):
        raise f.fail(f"field {key!r} is {kind_of(links)}, not a list")
    if len(links) > count:
        raise f.fail(f"lists {len(links)} pages for {count} items")
    seen: set[bytes] = set()
    items: list[Any] = []
    for index, link in enumerate(links):
        page_cid = checked_link(link, (DAG_CBOR,), lambda r, i=index: f.fail(f"page {i} {r}"))  # type: ignore[misc]
        if page_cid in seen:
            raise f.fail(f"lists page {format_cid(page_cid)} twice")
        seen.add(page_cid)
        page = decode_dag_cbor(source.get(page_cid), format_cid(page_cid))
        if not isinstance(page, list) or not page:
            raise InvalidBlock(format_cid(page_cid), "a recipe page is not a non-empty list")
        if len(items) + len(page) > count:
            raise f.fail(f"pages hold more than the {count} items it declares")
        for item in page:
            items.append(convert(item))
    if len(items) != count:
        raise f.fail(f"pages hold {len(items)} items, it declares {count}")
    return items


def read_recipe(source: BlockSource, cid: bytes) -> Recipe:
    """Decode and check a recipe (version 1 or 2): every field's type and range, every index."""
    where = format_cid(cid)
    f = Fields(where, "recipe", _decode(source, cid, "recipe"))
    version = f.integer("v", RECIPE_V1, RECIPE_V2)
    body = f.text("body")
    if body not in BODIES:
        raise f.fail(f"body {body!r} is not one of {', '.join(BODIES)}")
    outer = [_outer_item(item, f, i) for i, item in enumerate(_paged_list(source, f, "outer", version))]
    params = _paged_list(source, f, "params", version)
    for i, entry in enumerate(params):
        _check_params(entry, f, i)
    extra = [checked_link(c, (DAG_PB, RAW), lambda r, i=i: f.fail(f"extra {i} {r}"))  # type: ignore[misc]
             for i, c in enumerate(_paged_list(source, f, "extra", version))]
    count = f.integer("members", 0, MAX_MEMBERS)
    members = _read_pages(source, f, "pages", count, lambda entry: _member(entry, f))
    recipe = Recipe(body=body, outer=tuple(outer), skeleton=f.link("skeleton", DAG_PB, RAW),
                    skeleton_size=f.integer("skeleton_size"), params=tuple(params), extra=tuple(extra),
                    members=tuple(members), tail=f.integer("tail"))
    _check_indices(recipe, where)
    return recipe


def _outer_item(item: object, f: Fields, index: int) -> OuterItem | None:
    def fail(reason: str) -> InvalidBlock:
        return f.fail(f"outer item {index} {reason}")

    if not isinstance(item, list) or not item:
        raise fail(f"is {kind_of(item)}, not a non-empty list")
    kind = checked_int(item[0], 0, 2, fail)
    arity = {OUTER_SKELETON: 2, OUTER_STREAM: 5, OUTER_BODY: 1}[kind]
    if len(item) != arity:
        raise fail(f"has {len(item)} fields, kind {kind} has {arity}")
    if kind == OUTER_BODY:
        return None
    if kind == OUTER_SKELETON:
        return checked_int(item[1], 0, MAX_FIELD_INT, fail)
    return OuterStream(checked_int(item[1], -1, MAX_FIELD_INT, fail), checked_int(item[2], -1, MAX_FIELD_INT, fail),
                       checked_int(item[3], 0, MAX_FIELD_INT, fail), checked_int(item[4], 0, MAX_FIELD_INT, fail))


def _check_params(entry: object, f: Fields, index: int) -> None:
    from ..compress import CompressorParams

    if not isinstance(entry, dict):
        raise f.fail(f"params {index} is {kind_of(entry)}, not a map")
    try:
        CompressorParams.from_dict(entry)
    except ImporterError as e:
        raise f.fail(f"params {index}: {e}") from None


def _member(entry: object, f: Fields) -> MemberEntry:
    def fail(reason: str) -> InvalidBlock:
        return f.fail(f"member entry {reason}")

    if not isinstance(entry, list) or len(entry) != 3:
        raise fail(f"is {kind_of(entry)}{f' of {len(entry)}' if isinstance(entry, list) else ''}, not a list of 3")
    before, source, params = entry
    member_source: str | int | bytes
    if isinstance(source, Link):
        member_source = checked_link(source, (DAG_CBOR,), fail)
    elif isinstance(source, str):
        if not source or "\0" in source:
            raise fail(f"source path {source!r} is empty or holds a NUL")
        member_source = source
    else:
        member_source = checked_int(source, -1, MAX_FIELD_INT, fail)
    return MemberEntry(checked_int(before, 0, MAX_FIELD_INT, fail), member_source,
                       checked_int(params, -1, MAX_FIELD_INT, fail))


def _check_indices(recipe: Recipe, where: str) -> None:
    """Every index and length a rebuild follows is in range, so a hostile recipe fails here, clearly."""
    def bad(what: str) -> InvalidBlock:
        return InvalidBlock(where, f"recipe {what} is out of range")

    for item in recipe.outer:
        if isinstance(item, OuterStream) and (
                not -1 <= item.params < len(recipe.params)
                or (item.params == VERBATIM and not 0 <= item.source < len(recipe.extra))):
            raise bad("outer stream")
    for entry in recipe.members:
        if not -1 <= entry.params < len(recipe.params):
            raise bad("member entry")
        if isinstance(entry.source, int) and not -1 <= entry.source < len(recipe.extra):
            raise bad("member source")


class RecipeTables:
    """The recipe's ``params`` and ``extra`` tables as an import fills them, each entry's index returned.

    Compressor settings are interned (a wheel of 10,000 deflated members has one or two entries);
    extra files are appended in order, one per content that is not in the tree.
    """

    def __init__(self) -> None:
        self.params: list[dict[str, Any]] = []
        self.extra: list[bytes] = []
        self._by_value: dict[CompressorParams, int] = {}
        self._by_dict: dict[str, int] = {}

    def add_params(self, params: CompressorParams) -> int:
        index = self._by_value.get(params)
        if index is None:
            entry = params.to_dict()
            key = repr(sorted(entry.items()))  # settings that write the same entry share it
            index = self._by_dict.get(key)
            if index is None:
                index = self._by_dict[key] = len(self.params)
                self.params.append(entry)
            self._by_value[params] = index
        return index

    def add_extra(self, cid: bytes) -> int:
        self.extra.append(cid)
        return len(self.extra) - 1
