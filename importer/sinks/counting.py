"""A sink wrapper that counts what an import really added (new blocks and their bytes)."""

from __future__ import annotations

from collections.abc import Iterable

from .base import BlockSink, BlockSource


class CountingSink:
    """Forwards puts to ``inner`` and counts the blocks the store did not hold before.

    ``inner`` must also be a :class:`BlockSource` (``has``) for "new" to mean new to the store;
    otherwise every first put counts as new.
    """

    def __init__(self, inner: BlockSink) -> None:
        self.inner = inner
        self.stores_blocks = inner.stores_blocks
        self._seen: set[bytes] = set()
        self._has = inner.has if isinstance(inner, BlockSource) else None
        self.blocks = 0
        self.bytes = 0
        self.new_blocks = 0
        self.new_bytes = 0
        #: CIDs of the new blocks, in put order (the import report sums their bytes at rest).
        self.new_cids: list[bytes] = []

    def put(self, cid: bytes, block: bytes) -> None:
        if cid in self._seen:
            return
        self._seen.add(cid)
        self.blocks += 1
        self.bytes += len(block)
        if self._has is None or not self._has(cid):
            self.new_blocks += 1
            self.new_bytes += len(block)
            self.new_cids.append(cid)
        self.inner.put(cid, block)

    def put_many(self, blocks: Iterable[tuple[bytes, bytes]]) -> None:
        for cid, block in blocks:
            self.put(cid, block)
