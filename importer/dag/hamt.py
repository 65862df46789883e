"""HAMT-sharded UnixFS directories, byte for byte as boxo ``ipld/unixfs/hamt`` writes them.

* Hash: MurmurHash3 x64_128 (seed 0) of the entry name; only h1, the first 64-bit half, read
  big-endian. multicodec 0x22 (murmur3-x64-64) is recorded in every shard.
* At depth k the bucket is the next log2(fanout) bits of h1, most significant first (fanout 256:
  byte k of h1). 64 bits / 8 = at most 8 levels at fanout 256.
* Per occupied bucket, ascending: one entry → link ``HEX(bucket) + name`` to the entry itself;
  two or more → link ``HEX(bucket)`` to a child shard of those entries at depth k + 1. HEX is
  upper case, zero-padded to ``len("%X" % (fanout - 1))`` characters.
* Shard Data = ``UnixFS{Type: HAMTShard, Data: bitfield, hashType: 0x22, fanout}``, mode/mtime on
  the root shard only. The bitfield is the big-endian integer with bit i set for bucket i, with
  leading zero bytes stripped (go-bitfield ``Bytes()``).

The shape depends only on the set of names, so entries may come in any order.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING

import mmh3

from ..errors import InvalidOption
from ..layout.builder import NO_ATTRIBUTES, DagNode, FileAttributes
from ..sinks.base import BlockSink
from .cid import DAG_PB, make_cid
from .dagpb import PBLink, encode_node
from .unixfs import HAMT_HASH_MURMUR3, NodeType, UnixFSData, encode_unixfs

if TYPE_CHECKING:
    from .directory import DirEntry

HASH_BITS = 64


def hamt_hash(name: bytes) -> int:
    """h1 of MurmurHash3 x64_128 (seed 0) as an unsigned 64-bit integer.

    >>> f"{hamt_hash(b'470.txt'):016x}"
    '006e88df5847e67c'
    """
    # mmh3.hash_bytes returns h1 || h2, each little-endian.
    return int.from_bytes(mmh3.hash_bytes(name)[:8], "little")


def bucket_of(h: int, depth: int, bits: int) -> int:
    """The bucket of hash ``h`` at ``depth`` for a fanout of ``2 ** bits``."""
    shift = HASH_BITS - (depth + 1) * bits
    if shift < 0:
        raise InvalidOption(f"HAMT deeper than {HASH_BITS // bits} levels: names collide in all 64 hash bits")
    return (h >> shift) & ((1 << bits) - 1)


def build_hamt(entries: Sequence[DirEntry], fanout: int, cid_version: int, sink: BlockSink,
               attrs: FileAttributes = NO_ATTRIBUTES) -> DagNode:
    """Encode ``entries`` as a HAMT of width ``fanout``; return the root shard."""
    bits = fanout.bit_length() - 1
    width = len(f"{fanout - 1:X}")
    hashed = [(hamt_hash(e.name), e) for e in entries]
    return _shard(hashed, 0, bits, width, fanout, cid_version, sink, attrs)


def _shard(items: list[tuple[int, DirEntry]], depth: int, bits: int, width: int, fanout: int,
           cid_version: int, sink: BlockSink, attrs: FileAttributes) -> DagNode:
    buckets: dict[int, list[tuple[int, DirEntry]]] = defaultdict(list)
    for h, entry in items:
        buckets[bucket_of(h, depth, bits)].append((h, entry))
    links: list[PBLink] = []
    size = 0
    for index in sorted(buckets):
        group = buckets[index]
        prefix = f"{index:0{width}X}".encode()
        if len(group) == 1:
            entry = group[0][1]
            links.append(PBLink(entry.node.cid, prefix + entry.name, entry.node.tsize))
            size += entry.node.size
        else:
            child = _shard(group, depth + 1, bits, width, fanout, cid_version, sink, NO_ATTRIBUTES)
            links.append(PBLink(child.cid, prefix, child.tsize))
            size += child.size
    bitfield_int = 0
    for index in buckets:
        bitfield_int |= 1 << index
    bitfield = bitfield_int.to_bytes((bitfield_int.bit_length() + 7) // 8, "big")
    data = encode_unixfs(UnixFSData(
        type=NodeType.HAMT_SHARD, data=bitfield, hash_type=HAMT_HASH_MURMUR3, fanout=fanout,
    )) + attrs.encoded()
    block = encode_node(links, data, sort=False)
    cid = make_cid(cid_version, DAG_PB, hashlib.sha256(block).digest())
    sink.put(cid, block)
    return DagNode(cid, len(block) + sum(link.tsize for link in links), size)
