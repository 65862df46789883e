"""The balanced layout (boxo ``importer/balanced/builder.go``), Kubo's default.

Every leaf sits at the same depth D, the smallest with ``max_links ** D >= chunks``; internal
nodes are filled left to right, so all are full except along the right edge, which may hold
chains of one-child nodes. With 174 links (boxo's 8192 // 47)::

    175 chunks:          root
                        /    \\
          node(174 leaves)   node(1 leaf)

A single chunk is its own root (the leaf: a raw block with raw leaves, else a dag-pb File leaf);
no chunk at all gives the empty-file node.

Streaming form used here: ``levels[k]`` holds the finished nodes of height k not yet linked to
a parent. A full level is closed into one parent on level k + 1 only when one more node arrives
for it, which is where boxo's depth-first fill closes that subtree; closing lazily means the
root is never built before we know it is the root (it carries mode/mtime). At the end of the
data every level below the top is wrapped into a parent (this makes the one-child chains), and
the top level, which then always holds at least two nodes, becomes the root. Memory: at most
``max_links`` nodes per level.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..dag.unixfs import NodeType
from .builder import NO_ATTRIBUTES, DagBuilder, DagNode, FileAttributes
from .peek import ChunkStream


def layout(builder: DagBuilder, chunks: Iterator[bytes], attrs: FileAttributes = NO_ATTRIBUTES) -> DagNode:
    """Build the balanced DAG of ``chunks``; ``attrs`` go on the root only."""
    stream = ChunkStream(chunks)
    if stream.done():
        return builder.empty_file(attrs)
    first = stream.take()
    if stream.done():
        # One chunk: the leaf is the root and carries the attributes itself.
        return builder.leaf(first, NodeType.FILE, attrs)
    levels: list[list[DagNode]] = [[builder.leaf(first, NodeType.FILE)]]
    while not stream.done():
        _push(builder, levels, 0, builder.leaf(stream.take(), NodeType.FILE))
    height = 0
    while height < len(levels) - 1:
        if levels[height]:
            parent = builder.internal(levels[height])
            levels[height] = []
            _push(builder, levels, height + 1, parent)
        height += 1
    return builder.internal(levels[-1], attrs)


def _push(builder: DagBuilder, levels: list[list[DagNode]], height: int, node: DagNode) -> None:
    """Append ``node`` at ``height``, first closing that level if it is already full."""
    if height == len(levels):
        levels.append([])
    level = levels[height]
    if len(level) == builder.max_links:
        levels[height] = []
        _push(builder, levels, height + 1, builder.internal(level))
    levels[height].append(node)
