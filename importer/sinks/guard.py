"""The block size bound: no block this importer makes from an archive is larger than 1 MiB.

1 MiB is what every IPFS transport accepts for one block (bitswap implementations and gateways
have refused larger ones; Kubo's own limit is 2 MiB since boxo raised it). Builders whose blocks
grow with their input (recipe pages, paged lists, directory nodes, HAMT shards) keep under it by
construction; this module is the last check, where a block is made or stored, so a case nobody
foresaw (a 2 MB member name in a directory node) fails with one line naming the block and its
size instead of producing a block the network would not carry.

``add`` is not bound here: it must give the CIDs ``ipfs add`` gives, chunks up to Kubo's limit
included (``importer.layout.builder.BLOCK_SIZE_LIMIT``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from ..errors import OversizeBlock
from .base import BlockSink

#: The largest block written from an archive: 1 MiB.
MAX_BLOCK_SIZE: Final = 1024 * 1024


def check_block_size(cid: bytes, size: int, limit: int = MAX_BLOCK_SIZE) -> None:
    """Raise :class:`OversizeBlock` when a block of ``size`` bytes would pass ``limit``."""
    if size > limit:
        from ..dag.cid import format_cid

        raise OversizeBlock(format_cid(cid), size, limit)


class BlockSizeGuard:
    """A sink that passes blocks on to ``inner`` after checking each against ``limit``.

    Every other attribute (``has``, ``get``, ``flush``...) is the inner sink's, so the guard can
    stand wherever the inner sink stood (a CountingSink asks it what the store already holds).
    """

    def __init__(self, inner: BlockSink, limit: int = MAX_BLOCK_SIZE) -> None:
        self.inner = inner
        self.limit = limit

    @property
    def stores_blocks(self) -> bool:
        return self.inner.stores_blocks

    def put(self, cid: bytes, block: bytes) -> None:
        check_block_size(cid, len(block), self.limit)
        self.inner.put(cid, block)

    def put_many(self, blocks: Iterable[tuple[bytes, bytes]]) -> None:
        for cid, block in blocks:
            self.put(cid, block)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)
