"""File DAG shapes: balanced and trickle trees have boxo's exact structure; oversize leaves fail."""

from __future__ import annotations

import io

import pytest

from importer.dag.dagpb import decode_node
from importer.dag.unixfs import NodeType, decode_unixfs
from importer.layout import DagBuilder, balanced_layout, trickle_layout
from importer.layout.builder import BLOCK_SIZE_LIMIT, BlockTooLarge
from importer.layout.trickle import DEPTH_REPEAT
from importer.sinks import MemorySink


def chunks(n: int, size: int = 1) -> list[bytes]:
    return [bytes([i % 256]) * size for i in range(n)]


def shape(sink: MemorySink, cid: bytes) -> object:
    """A nested list per internal node, the leaf's byte count for a leaf."""
    block = sink.get(cid)
    if cid[:1] == b"\x01" and cid[1] == 0x55:  # raw leaf
        return len(block)
    node = decode_node(block)
    fs = decode_unixfs(node.data or b"")
    if not node.links:
        return len(fs.data or b"")
    children = [shape(sink, link.cid) for link in node.links]
    assert fs.blocksizes == tuple(_size(c) for c in children)
    assert fs.filesize == sum(fs.blocksizes)
    return children


def _size(s: object) -> int:
    if isinstance(s, int):
        return s
    assert isinstance(s, list)
    return sum(_size(c) for c in s)


@pytest.mark.parametrize(("n", "expected"), [
    (1, 1),
    (2, [1, 1]),
    (3, [1, 1, 1]),
    (4, [[1, 1, 1], [1]]),
    (9, [[1, 1, 1], [1, 1, 1], [1, 1, 1]]),
    (10, [[[1, 1, 1], [1, 1, 1], [1, 1, 1]], [[1]]]),
])
def test_balanced_layout_fills_left_and_chains_right_edge(n: int, expected: object) -> None:
    sink = MemorySink()
    builder = DagBuilder(sink, cid_version=0, raw_leaves=False, max_links=3)
    root = balanced_layout(builder, iter(chunks(n)))
    assert shape(sink, root.cid) == expected
    assert root.size == n


def _check_trickle(sink: MemorySink, cid: bytes, max_links: int, depth: int | None) -> int:
    """Check boxo's trickle invariant; return the number of leaves below ``cid``."""
    node = decode_node(sink.get(cid))
    fs = decode_unixfs(node.data or b"")
    assert fs.type == NodeType.FILE
    links = list(node.links)
    leaves = 0
    while links and not decode_node(sink.get(links[0].cid)).links:
        leaf = decode_unixfs(decode_node(sink.get(links.pop(0).cid)).data or b"")
        assert leaf.type == NodeType.RAW  # trickle leaves are UnixFS Raw, not File
        leaves += 1
    assert leaves <= max_links
    if links:
        assert leaves == max_links
    level = 1
    while links:
        group, links = links[:DEPTH_REPEAT], links[DEPTH_REPEAT:]
        for link in group:
            leaves += _check_trickle(sink, link.cid, max_links, level)
        assert depth is None or level < depth
        level += 1
    return leaves


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 15, 16, 17, 40, 100])
def test_trickle_layout_has_boxo_structure(n: int) -> None:
    sink = MemorySink()
    builder = DagBuilder(sink, cid_version=0, raw_leaves=False, max_links=3)
    root = trickle_layout(builder, iter(chunks(n)))
    assert _check_trickle(sink, root.cid, 3, None) == n
    assert root.size == n


def test_chunk_over_block_limit_is_refused_like_kubo() -> None:
    builder = DagBuilder(MemorySink(), cid_version=0, raw_leaves=True, max_links=174)
    with pytest.raises(BlockTooLarge) as e:
        balanced_layout(builder, iter([bytes(BLOCK_SIZE_LIMIT + 1)]))
    assert e.value.size == BLOCK_SIZE_LIMIT + 1
    assert "object size limit exceeded" in str(e.value)


def test_leaf_at_block_limit_is_accepted() -> None:
    builder = DagBuilder(MemorySink(), cid_version=1, raw_leaves=True, max_links=174)
    assert balanced_layout(builder, iter([bytes(BLOCK_SIZE_LIMIT)])).size == BLOCK_SIZE_LIMIT


def test_streaming_add_matches_in_memory_chunks() -> None:
    from importer.adder import Adder
    from importer.profiles import resolve_settings

    data = bytes(range(256)) * 5000
    streamed = Adder(resolve_settings(chunker="size-1000"), MemorySink()).add_stream(io.BytesIO(data))
    builder = DagBuilder(MemorySink(), cid_version=0, raw_leaves=False, max_links=174)
    direct = balanced_layout(builder, iter([data[i:i + 1000] for i in range(0, len(data), 1000)]))
    assert streamed == direct
