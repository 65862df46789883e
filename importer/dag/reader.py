"""Reading UnixFS back out of a block source: resolve paths, stream files, list directories.

Everything is checked while it is read: every block against its CID (the source does that),
every file node's ``filesize`` against its inline data plus ``blocksizes``, and every child's
actual size against the ``blocksizes`` entry its parent recorded, so a truncated or padded DAG
fails instead of yielding different bytes. Files are streamed block by block: memory grows with
the depth of the DAG, never with the size of the file.

Directories are basic (one dag-pb node, links sorted by name) or HAMT-sharded (boxo
``ipld/unixfs/hamt``): a shard link's name is the bucket index as upper-case hex, zero-padded to
``len("%X" % (fanout - 1))`` characters, followed by the entry's name; a link whose name is the
bare prefix points to a sub-shard holding the entries whose hashes share that bucket.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Final

from ..errors import ImporterError, InvalidBlock
from ..sinks.base import BlockSource
from .cid import DAG_PB, RAW, cid_codec, format_cid
from .dagpb import PBNode, decode_node
from .unixfs import HAMT_HASH_MURMUR3, Mtime, NodeType, UnixFSData, decode_unixfs

#: Deepest file DAG accepted. A balanced DAG of 174-link nodes over 256 KiB leaves needs 6 levels
#: for 2**64 bytes, a trickle DAG a few dozen; 128 only stops crafted chains from exhausting
#: Python's recursion limit (each level is one nested generator).
MAX_FILE_DEPTH: Final = 128
#: HAMT depth limit: 64 hash bits consumed 3 at a time (fanout 8, the smallest valid) = 21 levels.
MAX_SHARD_DEPTH: Final = 64 // 3
#: boxo ``validShardWidth``: a power of two, a multiple of 8, at most 1024.
MAX_FANOUT: Final = 1024


class PathError(ImporterError, LookupError):
    """A path that does not lead to what was asked for (missing name, not a directory...)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class Kind(Enum):
    """What a UnixFS node is, as far as a reader cares."""

    FILE = "file"
    DIRECTORY = "directory"
    SYMLINK = "symlink"


@dataclass(frozen=True, slots=True)
class Node:
    """A decoded UnixFS node: kind, size (file bytes; symlink target length), mode, mtime."""

    cid: bytes
    kind: Kind
    size: int
    mode: int | None = None
    mtime: Mtime | None = None
    target: bytes | None = None
    pb: PBNode | None = None
    unixfs: UnixFSData | None = None


@dataclass(frozen=True, slots=True)
class Entry:
    """One directory entry: its name, CID and the cumulative size (Tsize) of its link."""

    name: str
    cid: bytes
    tsize: int


def _decode_pb(cid: bytes, block: bytes) -> tuple[PBNode, UnixFSData]:
    # The CID is printed only when something is wrong: formatting one costs ~100 us, more than
    # decoding the node, and a 1 GiB file has 4096 of them.
    try:
        pb = decode_node(block)
        if pb.data is None:
            raise InvalidBlock("?", "dag-pb node has no UnixFS Data")
        return pb, decode_unixfs(pb.data)
    except InvalidBlock as e:
        raise InvalidBlock(format_cid(cid), e.reason, e.offset) from None


def _file_total(cid: bytes, pb: PBNode, fs: UnixFSData) -> int:
    """Bytes of a file node from its own fields, after checking they agree with each other."""
    if pb.links and len(fs.blocksizes) != len(pb.links):
        raise InvalidBlock(format_cid(cid), f"UnixFS file has {len(pb.links)} links but "
                                 f"{len(fs.blocksizes)} blocksizes")
    if not pb.links and fs.blocksizes:
        raise InvalidBlock(format_cid(cid), "UnixFS file has blocksizes but no links")
    total = len(fs.data or b"") + sum(fs.blocksizes)
    if fs.filesize is not None and fs.filesize != total:
        raise InvalidBlock(format_cid(cid), f"UnixFS filesize {fs.filesize} but data and blocksizes "
                                 f"add up to {total}")
    return total


def stat(source: BlockSource, cid: bytes) -> Node:
    """Load and classify the node ``cid``; raw blocks are files."""
    codec = cid_codec(cid)
    block = source.get(cid)
    if codec == RAW:
        return Node(cid, Kind.FILE, len(block))
    if codec != DAG_PB:
        raise PathError(format_cid(cid), "not a UnixFS node (codec is neither dag-pb nor raw)")
    pb, fs = _decode_pb(cid, block)
    if fs.type in (NodeType.FILE, NodeType.RAW):
        return Node(cid, Kind.FILE, _file_total(cid, pb, fs), fs.mode, fs.mtime, None, pb, fs)
    if fs.type in (NodeType.DIRECTORY, NodeType.HAMT_SHARD):
        return Node(cid, Kind.DIRECTORY, 0, fs.mode, fs.mtime, None, pb, fs)
    if fs.type == NodeType.SYMLINK:
        target = fs.data or b""
        return Node(cid, Kind.SYMLINK, len(target), fs.mode, fs.mtime, target, pb, fs)
    raise PathError(format_cid(cid), f"UnixFS {fs.type.name} nodes are not supported")


# -- files -------------------------------------------------------------------------------------

def iter_file(source: BlockSource, cid: bytes) -> Iterator[bytes]:
    """The bytes of the file ``cid``, a block at a time, every size checked on the way."""
    node = stat(source, cid)
    if node.kind is not Kind.FILE:
        raise PathError(format_cid(cid), f"is a {node.kind.value}, not a file")
    return _file_bytes(source, cid, node.size, 0)


def _file_bytes(source: BlockSource, cid: bytes, expected: int, depth: int) -> Iterator[bytes]:
    if depth > MAX_FILE_DEPTH:
        raise InvalidBlock(format_cid(cid), f"file DAG deeper than {MAX_FILE_DEPTH} levels")
    block = source.get(cid)
    codec = cid_codec(cid)
    if codec == RAW:
        if len(block) != expected:
            raise InvalidBlock(format_cid(cid), f"raw leaf holds {len(block)} bytes, its parent says {expected}")
        if block:
            yield block
        return
    if codec != DAG_PB:
        raise InvalidBlock(format_cid(cid), "a file's block is neither dag-pb nor raw")
    pb, fs = _decode_pb(cid, block)
    if fs.type not in (NodeType.FILE, NodeType.RAW):
        raise InvalidBlock(format_cid(cid), f"a file's child is a UnixFS {fs.type.name}")
    total = _file_total(cid, pb, fs)
    if total != expected:
        raise InvalidBlock(format_cid(cid), f"file node holds {total} bytes, its parent says {expected}")
    if fs.data:
        yield fs.data
    for link, size in zip(pb.links, fs.blocksizes):
        yield from _file_bytes(source, link.cid, size, depth + 1)


@dataclass(frozen=True, slots=True)
class LeafSpan:
    """One leaf of a file: where its bytes start in the file, how many, and its CID."""

    offset: int
    length: int
    cid: bytes


def file_leaves(source: BlockSource, cid: bytes) -> tuple[int, list[LeafSpan]]:
    """``(size, leaves)`` of the file ``cid``: every block without links, with its offset and length.

    Only the nodes with links are read (their blocksizes give the leaves' lengths, checked as
    :func:`iter_file` checks them), except for a file of one block, whose length is its data's.
    """
    leaves: list[LeafSpan] = []
    return _leaves(source, cid, 0, None, leaves, 0), leaves


def _leaves(source: BlockSource, cid: bytes, offset: int, expected: int | None, out: list[LeafSpan],
            depth: int) -> int:
    if depth > MAX_FILE_DEPTH:
        raise InvalidBlock(format_cid(cid), f"file DAG deeper than {MAX_FILE_DEPTH} levels")
    codec = cid_codec(cid)
    if codec == RAW and expected is not None:
        out.append(LeafSpan(offset, expected, cid))  # its parent says how long; no need to read it
        return expected
    block = source.get(cid)
    if codec == RAW:
        out.append(LeafSpan(offset, len(block), cid))
        return len(block)
    if codec != DAG_PB:
        raise InvalidBlock(format_cid(cid), "a file's block is neither dag-pb nor raw")
    pb, fs = _decode_pb(cid, block)
    if fs.type not in (NodeType.FILE, NodeType.RAW):
        raise InvalidBlock(format_cid(cid), f"a file's block is a UnixFS {fs.type.name}")
    total = _file_total(cid, pb, fs)
    if expected is not None and total != expected:
        raise InvalidBlock(format_cid(cid), f"file node holds {total} bytes, its parent says {expected}")
    if not pb.links:
        out.append(LeafSpan(offset, total, cid))
        return total
    position = offset + len(fs.data or b"")
    for link, size in zip(pb.links, fs.blocksizes, strict=True):
        _leaves(source, link.cid, position, size, out, depth + 1)
        position += size
    return total


# -- directories -------------------------------------------------------------------------------

def _entry_name(cid: bytes, raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidBlock(format_cid(cid), f"entry name {raw!r} is not UTF-8") from None


def _shard_params(cid: bytes, fs: UnixFSData) -> tuple[int, int]:
    """``(fanout, prefix width)`` of a HAMT shard, after checking the fanout is one boxo allows."""
    fanout = fs.fanout or 0
    if fanout < 8 or fanout > MAX_FANOUT or fanout & (fanout - 1) or fanout % 8:
        raise InvalidBlock(format_cid(cid), f"HAMT fanout {fanout} is not a power of two in 8..1024")
    return fanout, len(f"{fanout - 1:X}")


def _load_dir(source: BlockSource, cid: bytes) -> Node:
    node = stat(source, cid)
    if node.kind is not Kind.DIRECTORY:
        raise PathError(format_cid(cid), f"is a {node.kind.value}, not a directory")
    return node


def iter_directory(source: BlockSource, cid: bytes) -> Iterator[Entry]:
    """The entries of the directory ``cid``: sorted by name (basic), bucket order (HAMT)."""
    node = _load_dir(source, cid)
    assert node.pb is not None and node.unixfs is not None
    if node.unixfs.type == NodeType.DIRECTORY:
        for link in node.pb.links:
            yield Entry(_entry_name(cid, link.name), link.cid, link.tsize)
        return
    fanout, _ = _shard_params(cid, node.unixfs)
    yield from _shard_entries(source, cid, node.pb, node.unixfs, fanout, 0)


def _shard_entries(source: BlockSource, cid: bytes, pb: PBNode, fs: UnixFSData, fanout: int,
                   depth: int) -> Iterator[Entry]:
    text = format_cid(cid)
    if depth > MAX_SHARD_DEPTH:
        raise InvalidBlock(text, f"HAMT deeper than {MAX_SHARD_DEPTH} levels")
    width = len(f"{fanout - 1:X}")
    bitfield = int.from_bytes(fs.data or b"", "big")
    for link in pb.links:
        bucket = _bucket_of_link(cid, link.name, width, fanout)
        if not bitfield >> bucket & 1:
            raise InvalidBlock(text, f"HAMT link {link.name!r} is in bucket {bucket}, "
                                     "which the bitfield marks empty")
        if len(link.name) > width:
            yield Entry(_entry_name(cid, link.name[width:]), link.cid, link.tsize)
            continue
        child_pb, child_fs = _child_shard(source, link.cid, fanout)
        yield from _shard_entries(source, link.cid, child_pb, child_fs, fanout, depth + 1)


def _bucket_of_link(cid: bytes, name: bytes, width: int, fanout: int) -> int:
    prefix = name[:width]
    if len(prefix) != width or prefix.upper() != prefix or not all(c in b"0123456789ABCDEF" for c in prefix):
        raise InvalidBlock(format_cid(cid), f"HAMT link name {name!r} lacks a {width}-digit hex prefix")
    bucket = int(prefix, 16)
    if bucket >= fanout:
        raise InvalidBlock(format_cid(cid), f"HAMT bucket {bucket} is outside fanout {fanout}")
    return bucket


def _child_shard(source: BlockSource, cid: bytes, fanout: int) -> tuple[PBNode, UnixFSData]:
    if cid_codec(cid) != DAG_PB:
        raise InvalidBlock(format_cid(cid), "HAMT sub-shard is not dag-pb")
    pb, fs = _decode_pb(cid, source.get(cid))
    if fs.type != NodeType.HAMT_SHARD or fs.fanout != fanout:
        raise InvalidBlock(format_cid(cid), "HAMT sub-shard is not a shard of the same fanout")
    return pb, fs


def lookup(source: BlockSource, cid: bytes, name: str) -> Entry | None:
    """The entry ``name`` of directory ``cid``, or None; HAMTs are descended by hash."""
    return _lookup(source, _load_dir(source, cid), name)


def _lookup(source: BlockSource, node: Node, name: str) -> Entry | None:
    cid = node.cid
    assert node.pb is not None and node.unixfs is not None
    wanted = name.encode("utf-8")
    if node.unixfs.type == NodeType.DIRECTORY:
        for link in node.pb.links:
            if link.name == wanted:
                return Entry(name, link.cid, link.tsize)
        return None
    fanout, width = _shard_params(cid, node.unixfs)
    if node.unixfs.hash_type != HAMT_HASH_MURMUR3:
        raise InvalidBlock(format_cid(cid), f"HAMT hash function 0x{node.unixfs.hash_type or 0:x} "
                                            "is not murmur3-x64-64 (0x22)")
    from .hamt import bucket_of, hamt_hash

    bits = fanout.bit_length() - 1
    h = hamt_hash(wanted)
    shard_cid, pb = cid, node.pb
    for depth in range(64 // bits):
        prefix = f"{bucket_of(h, depth, bits):0{width}X}".encode()
        for link in pb.links:
            if link.name[:width] != prefix:
                continue
            if len(link.name) == width:  # a sub-shard: descend with the next bits of the hash
                shard_cid = link.cid
                pb, _ = _child_shard(source, shard_cid, fanout)
                break
            return Entry(name, link.cid, link.tsize) if link.name[width:] == wanted else None
        else:
            return None
    raise InvalidBlock(format_cid(shard_cid), "HAMT deeper than its hash has bits")


def resolve(source: BlockSource, root: bytes, path: str) -> bytes:
    """The CID that ``path`` (names separated by ``/``) leads to from ``root``.

    Symlinks are not followed, as in Kubo's resolver: a symlink in the middle of a path is an
    error, and one at the end is returned as itself.
    """
    cid = root
    walked = format_cid(root)
    for name in (part for part in path.split("/") if part):
        node = stat(source, cid)
        if node.kind is not Kind.DIRECTORY:
            raise PathError(walked, f"is a {node.kind.value}, cannot look up {name!r} in it")
        entry = _lookup(source, node, name)
        if entry is None:
            raise PathError(walked, f"no link named {name!r}")
        cid = entry.cid
        walked += "/" + name
    return cid


def iter_tree(source: BlockSource, tree: bytes, prefix: str = "") -> Iterator[tuple[str, bytes, bool, int]]:
    """``(path, CID, is a directory, size)`` of every directory and file under the directory
    ``tree``, depth first in entry order, a directory before what it holds (size 0).

    Symlinks are skipped; a raw-leaf entry is a file without reading it (its size is its link's).
    The walk keeps a stack of directory listings instead of recursing, so a tree of any depth is
    listed.
    """
    stack: list[tuple[str, Iterator[Entry]]] = [(prefix, iter_directory(source, tree))]
    while stack:
        here, entries = stack[-1]
        entry = next(entries, None)
        if entry is None:
            stack.pop()
            continue
        path = f"{here}{entry.name}"
        if cid_codec(entry.cid) == RAW:
            yield path, entry.cid, False, entry.tsize
            continue
        node = stat(source, entry.cid)
        if node.kind is Kind.DIRECTORY:
            yield path, entry.cid, True, 0
            stack.append((path + "/", iter_directory(source, entry.cid)))
        elif node.kind is Kind.FILE:
            yield path, entry.cid, False, node.size


def iter_tree_files(source: BlockSource, tree: bytes, prefix: str = "") -> Iterator[tuple[str, bytes]]:
    """``(path, file CID)`` of every file under the directory ``tree``, depth first in entry order
    (:func:`iter_tree`)."""
    for path, cid, is_dir, _ in iter_tree(source, tree, prefix):
        if not is_dir:
            yield path, cid
