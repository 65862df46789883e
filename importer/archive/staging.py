"""Blocks of a nested archive's import, held until the parent keeps them: in memory up to a bound, then on disk.

A nested import (``--open-nested``) runs on a worker thread and may be discarded (the member was
not an archive after all), so its blocks are staged, not written to the store, until the parent
resolves it. A nested ``.tar.gz`` of a few hundred megabytes stages as many bytes of blocks:
past STAGING_MEMORY they go to an unnamed temporary file (never more than the nested content and
its DAG nodes), so memory stays bounded whatever the nested archive's size.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from typing import IO, Final

from ..dag.cid import block_matches, format_cid
from ..errors import BlockCorrupt, BlockNotFound

#: Block bytes a staging sink keeps in memory; the rest is spilled. Nested imports run on two
#: workers, each up to three levels deep, each level with its own staging: six of these stay
#: well inside the 300 MB import target next to the search window (64 MiB).
STAGING_MEMORY: Final = 8 * 1024 * 1024


class StagingSink:
    """A BlockSink (and BlockSource) holding blocks in put order; :meth:`items` gives them back once."""

    stores_blocks = True

    def __init__(self, memory_limit: int = STAGING_MEMORY) -> None:
        self._limit = memory_limit
        self._memory: dict[bytes, bytes] = {}
        self._held = 0
        self._file: IO[bytes] | None = None
        self._spilled: dict[bytes, tuple[int, int]] = {}
        self._end = 0

    def put(self, cid: bytes, block: bytes) -> None:
        if cid in self._memory or cid in self._spilled:
            return
        if self._file is None and self._held + len(block) <= self._limit:
            self._memory[cid] = block
            self._held += len(block)
            return
        if self._file is None:
            self._file = tempfile.TemporaryFile()  # noqa: SIM115  (closed by close())
        os.pwrite(self._file.fileno(), block, self._end)
        self._spilled[cid] = (self._end, len(block))
        self._end += len(block)

    def put_many(self, blocks: Iterable[tuple[bytes, bytes]]) -> None:
        for cid, block in blocks:
            self.put(cid, block)

    def has(self, cid: bytes) -> bool:
        return cid in self._memory or cid in self._spilled

    def get(self, cid: bytes) -> bytes:
        block = self._memory.get(cid)
        if block is None:
            where = self._spilled.get(cid)
            if where is None or self._file is None:
                raise BlockNotFound(format_cid(cid), "a nested import's staging")
            block = os.pread(self._file.fileno(), where[1], where[0])
        if not block_matches(cid, block):
            raise BlockCorrupt(format_cid(cid), "a nested import's staging", "another digest")
        return block

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """Every block, in memory first and then read back from the file one at a time."""
        yield from self._memory.items()
        if self._file is not None:
            for cid, (offset, length) in self._spilled.items():
                yield cid, os.pread(self._file.fileno(), length, offset)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._memory, self._spilled = {}, {}
