"""Makes the blocks of a file DAG (leaves and internal nodes) and hands them to the sink.

This is boxo's ``helpers.DagBuilderHelper``: the layouts decide the shape, this module decides
the bytes. Leaves are raw blocks (``--raw-leaves``, CIDv1 codec raw) or dag-pb nodes whose UnixFS
type is File (balanced) or Raw (trickle); internal nodes are dag-pb File nodes with ``filesize``
and one ``blocksizes`` entry per child, links named ``""``.

Hot path: a 1 GiB file is 4096 leaves of 256 KiB, so the per-leaf Python cost is small next to
sha256; when the sink discards blocks (``add -n``) a dag-pb leaf is hashed as
prefix + chunk + suffix without assembling it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from ..dag.cid import DAG_PB, RAW, make_cid
from ..dag.dagpb import PBLink, encode_node
from ..dag.unixfs import Mtime, NodeType, UnixFSData, encode_mtime, encode_unixfs
from ..dag.varint import encode_uvarint
from ..errors import ImporterError
from ..sinks.base import BlockSink

#: boxo ``chunker/parse.go`` ``BlockSizeLimit``: 2 MiB, the largest block bitswap moves. A chunker
#: that never cuts (``rabin-30``, MinSize < 16) yields one huge chunk, which Kubo then refuses
#: with ``object size limit exceeded`` instead of making an unshareable block.
BLOCK_SIZE_LIMIT = 2 * 1024 * 1024


class BlockTooLarge(ImporterError, ValueError):
    """A chunk larger than :data:`BLOCK_SIZE_LIMIT` (Kubo's ``ErrSizeLimitExceeded``)."""

    def __init__(self, size: int) -> None:
        super().__init__(f"object size limit exceeded: a {size}-byte chunk is over the "
                         f"{BLOCK_SIZE_LIMIT}-byte block limit (choose a chunker that cuts smaller)")
        self.size = size


@dataclass(frozen=True, slots=True)
class DagNode:
    """A finished node: binary CID, cumulative block bytes below it (Tsize), file bytes below it."""

    cid: bytes
    tsize: int
    size: int


@dataclass(frozen=True, slots=True)
class FileAttributes:
    """UnixFS 1.5 metadata for a file root or directory (``--preserve-mode/-mtime``)."""

    mode: int | None = None
    mtime: Mtime | None = None

    @property
    def empty(self) -> bool:
        return self.mode is None and self.mtime is None

    def encoded(self) -> bytes:
        """Fields 7 and 8 of the UnixFS message, in order, as proto.Marshal writes them."""
        out = b""
        if self.mode is not None:
            out += b"\x38" + encode_uvarint(self.mode)
        if self.mtime is not None:
            body = encode_mtime(self.mtime)
            out += b"\x42" + encode_uvarint(len(body)) + body
        return out


NO_ATTRIBUTES = FileAttributes()


class DagBuilder:
    """Builds leaves and internal file nodes with fixed settings, writing blocks to ``sink``."""

    def __init__(self, sink: BlockSink, *, cid_version: int, raw_leaves: bool, max_links: int) -> None:
        if max_links < 2:
            # boxo rejects fewer than 2 links: a 1-link node could never grow a tree.
            raise ValueError(f"max links per file node must be at least 2, got {max_links}")
        self.sink = sink
        self.cid_version = cid_version
        self.raw_leaves = raw_leaves
        self.max_links = max_links
        self._store = sink.stores_blocks

    # -- leaves -----------------------------------------------------------------------------

    def leaf(self, chunk: bytes, leaf_type: NodeType, attrs: FileAttributes = NO_ATTRIBUTES) -> DagNode:
        """A leaf for ``chunk``: a raw block, or a dag-pb node of ``leaf_type`` (File or Raw).

        Attributes force a dag-pb leaf (Kubo turns raw leaves off for mode/mtime).
        """
        n = len(chunk)
        if n > BLOCK_SIZE_LIMIT:
            raise BlockTooLarge(n)
        if self.raw_leaves and attrs.empty:
            cid = make_cid(1, RAW, hashlib.sha256(chunk).digest())
            if self._store:
                self.sink.put(cid, bytes(chunk))
            return DagNode(cid, n, n)
        size_varint = encode_uvarint(n)
        tail = b"\x18" + size_varint + attrs.encoded()
        head_unixfs = b"\x08" + bytes((leaf_type,)) + (b"\x12" + size_varint if n else b"")
        unixfs_len = len(head_unixfs) + n + len(tail)
        head = b"\x0a" + encode_uvarint(unixfs_len) + head_unixfs
        h = hashlib.sha256(head)
        h.update(chunk)
        h.update(tail)
        cid = make_cid(self.cid_version, DAG_PB, h.digest())
        block_len = len(head) + n + len(tail)
        if self._store:
            self.sink.put(cid, b"".join((head, chunk, tail)))
        return DagNode(cid, block_len, n)

    def empty_file(self, attrs: FileAttributes = NO_ATTRIBUTES) -> DagNode:
        """The root of a 0-byte file under the balanced layout."""
        if self.raw_leaves and attrs.empty:
            return self.leaf(b"", NodeType.RAW)
        return self.internal((), attrs)

    # -- internal nodes ---------------------------------------------------------------------

    def internal(self, children: Sequence[DagNode], attrs: FileAttributes = NO_ATTRIBUTES) -> DagNode:
        """A File node over ``children`` (in order); filesize is written even when 0."""
        filesize = sum(child.size for child in children)
        data = encode_unixfs(UnixFSData(
            type=NodeType.FILE,
            filesize=filesize,
            blocksizes=tuple(child.size for child in children),
        )) + attrs.encoded()
        links = [PBLink(child.cid, b"", child.tsize) for child in children]
        block = encode_node(links, data, sort=False)
        cid = make_cid(self.cid_version, DAG_PB, hashlib.sha256(block).digest())
        if self._store:
            self.sink.put(cid, block)
        return DagNode(cid, len(block) + sum(child.tsize for child in children), filesize)

    def with_attributes(self, node: DagNode, leaf_chunk: bytes | None, children: Sequence[DagNode],
                        attrs: FileAttributes) -> DagNode:
        """Rebuild ``node`` carrying ``attrs`` (used when the root is only known afterwards)."""
        if attrs.empty:
            return node
        if leaf_chunk is not None:
            return self.leaf(leaf_chunk, NodeType.FILE, attrs)
        return self.internal(children, attrs)
