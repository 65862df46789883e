"""The sink and source protocols: where blocks go to, and where they are read back from.

Builders (layouts, directories, the archive importer) only ever call ``BlockSink.put``; only
sinks do I/O. A sink with ``stores_blocks = False`` (``add -n``) lets builders skip assembling
block bytes and only hash them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol, runtime_checkable


@runtime_checkable
class BlockSink(Protocol):
    """Receives blocks; ``put`` of a block already present is a no-op."""

    @property
    def stores_blocks(self) -> bool:
        """False when blocks are discarded (builders may then skip assembling them)."""
        ...

    def put(self, cid: bytes, block: bytes) -> None: ...

    def put_many(self, blocks: Iterable[tuple[bytes, bytes]]) -> None: ...


@runtime_checkable
class BlockSource(Protocol):
    """Gives blocks back by binary CID, each one checked against its CID."""

    def get(self, cid: bytes) -> bytes:
        """Return the block; raise BlockNotFound or BlockCorrupt."""
        ...

    def has(self, cid: bytes) -> bool: ...


class NullSink:
    """Discards every block (``dpip-import add -n``)."""

    stores_blocks = False

    def put(self, cid: bytes, block: bytes) -> None:
        return None

    def put_many(self, blocks: Iterable[tuple[bytes, bytes]]) -> None:
        for _ in blocks:
            pass


class MemorySink:
    """Keeps blocks in a dict, in first-put order; also a :class:`BlockSource`."""

    stores_blocks = True

    def __init__(self) -> None:
        self.blocks: dict[bytes, bytes] = {}

    def put(self, cid: bytes, block: bytes) -> None:
        self.blocks.setdefault(cid, block)

    def put_many(self, blocks: Iterable[tuple[bytes, bytes]]) -> None:
        for cid, block in blocks:
            self.blocks.setdefault(cid, block)

    def get(self, cid: bytes) -> bytes:
        from ..dag.cid import block_matches, format_cid
        from ..errors import BlockCorrupt, BlockNotFound

        try:
            block = self.blocks[cid]
        except KeyError:
            raise BlockNotFound(format_cid(cid), "memory") from None
        if not block_matches(cid, block):
            raise BlockCorrupt(format_cid(cid), "memory", "another digest")
        return block

    def has(self, cid: bytes) -> bool:
        return cid in self.blocks

    def __iter__(self) -> Iterator[tuple[bytes, bytes]]:
        return iter(self.blocks.items())
