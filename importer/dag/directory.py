"""UnixFS directories as Kubo's ``ipfs add -r`` builds them: basic nodes, or HAMT shards when big.

A basic directory is a dag-pb node whose Data is ``UnixFS{Type: Directory}`` (plus mode/mtime
when asked) and whose links are the entries sorted by name bytes, each with the entry's CID and
cumulative size. It becomes a HAMT (:mod:`importer.dag.hamt`) when its size estimate is
*strictly greater* than the threshold (boxo ``io/directory.go`` since boxo#1088 / Kubo 0.40):

* ``links`` (Kubo's default, ``unixfs-v0-2015``): Σ len(name) + len(binary CID);
* ``block`` (``unixfs-v1-2025``): the exact byte size the basic node would have;
* ``disabled``: never by size; only ``max_links`` (``Import.UnixFSDirectoryMaxLinks``) can shard.

Entries are added in any order: a basic node is sorted and a HAMT is canonical, so the result
depends only on the set of (name, CID, size).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

from ..errors import InvalidOption
from ..layout.builder import NO_ATTRIBUTES, DagNode, FileAttributes
from ..sinks.base import BlockSink
from .cid import DAG_PB, make_cid
from .dagpb import PBLink, encode_node, encoded_link_size
from .hamt import build_hamt
from .unixfs import NodeType, UnixFSData, encode_unixfs
from .varint import encode_uvarint

SizeEstimation = Literal["links", "block", "disabled"]

#: ``Import.UnixFSHAMTDirectorySizeThreshold`` default: 256 KiB.
DEFAULT_HAMT_THRESHOLD: Final = 256 * 1024
#: ``Import.UnixFSHAMTDirectoryMaxFanout`` default.
DEFAULT_HAMT_FANOUT: Final = 256


@dataclass(frozen=True, slots=True)
class DirEntry:
    """One named child of a directory."""

    name: bytes
    node: DagNode


@dataclass(frozen=True, slots=True)
class DirectorySettings:
    """How directories are encoded and when they shard."""

    cid_version: int = 0
    hamt_threshold: int = DEFAULT_HAMT_THRESHOLD
    hamt_fanout: int = DEFAULT_HAMT_FANOUT
    size_estimation: SizeEstimation = "links"
    max_links: int = 0

    def validate(self) -> None:
        fanout = self.hamt_fanout
        # boxo validShardWidth: a power of two, a multiple of 8 (whole bitfield bytes), <= 1024.
        if fanout < 8 or fanout > 1024 or fanout & (fanout - 1):
            raise InvalidOption(f"HAMT fanout must be a power of two between 8 and 1024, got {fanout}")
        if self.size_estimation not in ("links", "block", "disabled"):
            raise InvalidOption(f"unknown HAMT size estimation {self.size_estimation!r}")


def directory_data(attrs: FileAttributes) -> bytes:
    """The UnixFS Data of a basic directory node."""
    return encode_unixfs(UnixFSData(type=NodeType.DIRECTORY)) + attrs.encoded()


def estimate_size(entries: Sequence[DirEntry], settings: DirectorySettings, attrs: FileAttributes) -> int:
    """Size estimate of the basic node, per ``settings.size_estimation``."""
    if settings.size_estimation == "links":
        return sum(len(e.name) + len(e.node.cid) for e in entries)
    data = directory_data(attrs)
    size = 1 + len(encode_uvarint(len(data))) + len(data)
    return size + sum(encoded_link_size(len(e.node.cid), len(e.name), e.node.tsize) for e in entries)


def should_shard(entries: Sequence[DirEntry], settings: DirectorySettings, attrs: FileAttributes) -> bool:
    if settings.max_links and len(entries) > settings.max_links:
        return True
    if settings.size_estimation == "disabled":
        return False
    return estimate_size(entries, settings, attrs) > settings.hamt_threshold


def build_directory(entries: Sequence[DirEntry], settings: DirectorySettings, sink: BlockSink,
                    attrs: FileAttributes = NO_ATTRIBUTES) -> DagNode:
    """Encode a directory of ``entries`` (basic or HAMT) and put its blocks into ``sink``."""
    if should_shard(entries, settings, attrs):
        return build_hamt(entries, settings.hamt_fanout, settings.cid_version, sink, attrs)
    return build_basic_directory(entries, settings.cid_version, sink, attrs)


def build_basic_directory(entries: Sequence[DirEntry], cid_version: int, sink: BlockSink,
                          attrs: FileAttributes = NO_ATTRIBUTES) -> DagNode:
    links = sorted((PBLink(e.node.cid, e.name, e.node.tsize) for e in entries), key=lambda link: link.name)
    block = encode_node(links, directory_data(attrs), sort=False)
    cid = make_cid(cid_version, DAG_PB, hashlib.sha256(block).digest())
    sink.put(cid, block)
    return DagNode(cid, len(block) + sum(link.tsize for link in links), sum(e.node.size for e in entries))


def build_symlink(target: bytes, cid_version: int, sink: BlockSink, attrs: FileAttributes = NO_ATTRIBUTES) -> DagNode:
    """A Symlink node; Kubo never stores a mode on symlinks, only an mtime."""
    data = encode_unixfs(UnixFSData(type=NodeType.SYMLINK, data=target))
    data += FileAttributes(mtime=attrs.mtime).encoded()
    block = encode_node((), data)
    cid = make_cid(cid_version, DAG_PB, hashlib.sha256(block).digest())
    sink.put(cid, block)
    return DagNode(cid, len(block), 0)
