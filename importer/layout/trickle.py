"""The trickle layout (boxo ``importer/trickle/trickledag.go``, ``ipfs add --trickle``).

Made for streaming appends: the root is always an internal File node (even for 0 or 1 chunk),
leaves are UnixFS type Raw when not raw blocks, and a node "of depth d" holds first up to
``max_links`` leaves, then for each j in 1..d-1 up to ``DEPTH_REPEAT`` sub-nodes of depth j. The
root has no depth limit (j = 1, 2, 3, ... until the data ends)::

    root: [174 leaves] [4 x depth-1] [4 x depth-2] [4 x depth-3] ...
    depth-2 node: [174 leaves] [4 x depth-1 nodes of 174 leaves]

Recursion depth grows with log of the file size (about 11 levels for 1 TiB at 256 KiB chunks).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from ..dag.unixfs import NodeType
from .builder import NO_ATTRIBUTES, DagBuilder, DagNode, FileAttributes
from .peek import ChunkStream

#: boxo ``trickle.depthRepeat``: sub-trees of each depth added per level.
DEPTH_REPEAT: Final = 4


def layout(builder: DagBuilder, chunks: Iterator[bytes], attrs: FileAttributes = NO_ATTRIBUTES) -> DagNode:
    """Build the trickle DAG of ``chunks``; ``attrs`` go on the root only."""
    return _fill(builder, ChunkStream(chunks), None, attrs)


def _fill(builder: DagBuilder, stream: ChunkStream, max_depth: int | None,
          attrs: FileAttributes = NO_ATTRIBUTES) -> DagNode:
    children: list[DagNode] = []
    while len(children) < builder.max_links and not stream.done():
        children.append(builder.leaf(stream.take(), NodeType.RAW))
    depth = 1
    while (max_depth is None or depth < max_depth) and not stream.done():
        for _ in range(DEPTH_REPEAT):
            if stream.done():
                break
            children.append(_fill(builder, stream, depth))
        depth += 1
    return builder.internal(children, attrs)
