"""The store's reports: statistics of its blocks and pages, a block's row, what a delete removed."""

from __future__ import annotations

from dataclasses import dataclass

from .schema import DEFAULT_COMPRESSION


@dataclass(frozen=True, slots=True)
class EncodingStats:
    """Blocks of one encoding: how many, their logical bytes and their stored payload bytes."""

    name: str
    blocks: int
    logical_bytes: int
    stored_bytes: int


@dataclass(frozen=True, slots=True)
class StoreStats:
    """Totals of a store: blocks, logical bytes, payload bytes, the database files' size, and more.

    ``stored_bytes`` sums the payloads as stored (rows' payloads and whole packs, dead parts
    included: ``dead_bytes`` of the packs belong to no block any more); :attr:`at_rest_bytes`
    adds the dictionaries, which is what the blocks cost before SQLite's pages; ``disk_bytes``
    is the database files' size. A packed encoding's ``stored_bytes`` counts its segments, a
    block sharing a frame with others for its share of the frame by size.
    """

    blocks: int
    logical_bytes: int
    stored_bytes: int
    disk_bytes: int
    encodings: tuple[EncodingStats, ...] = ()
    dictionaries: int = 0
    dictionary_bytes: int = 0
    compression: str = DEFAULT_COMPRESSION
    packs: int = 0
    pack_bytes: int = 0
    dead_bytes: int = 0

    @property
    def at_rest_bytes(self) -> int:
        return self.stored_bytes + self.dictionary_bytes

    @property
    def ratio(self) -> float:
        """Logical bytes per byte at rest (1.0 for an empty store)."""
        return self.logical_bytes / self.at_rest_bytes if self.at_rest_bytes else 1.0

    @property
    def disk_ratio(self) -> float:
        """The files on disk per byte at rest: what SQLite's pages add (1.0 for an empty store)."""
        return self.disk_bytes / self.at_rest_bytes if self.at_rest_bytes else 1.0


@dataclass(frozen=True, slots=True)
class PageStats:
    """The database file as SQLite sees it: pages in use and free, and how free pages go back.

    ``auto_vacuum`` is ``"incremental"`` for stores created since schema 5 (free pages are
    returned after deletes), ``"none"`` for older ones until ``store vacuum`` converts them.
    """

    page_size: int
    pages: int
    free_pages: int
    auto_vacuum: str

    @property
    def file_bytes(self) -> int:
        """Size of the database as of its last commit (the WAL included, whether checkpointed or not)."""
        return self.pages * self.page_size

    @property
    def free_bytes(self) -> int:
        return self.free_pages * self.page_size


@dataclass(frozen=True, slots=True)
class BlockRow:
    """What the store keeps about one block besides its bytes."""

    cid: bytes
    encoding: int
    size: int
    stored: int


@dataclass(frozen=True, slots=True)
class DeleteReport:
    """What :meth:`BlockStore.delete_many` removed: blocks, their logical and payload bytes, and the
    deltas it rewrote plain because a block they referenced went."""

    blocks: int = 0
    logical_bytes: int = 0
    payload_bytes: int = 0
    rewritten: int = 0

    def __add__(self, other: DeleteReport) -> DeleteReport:
        return DeleteReport(self.blocks + other.blocks, self.logical_bytes + other.logical_bytes,
                            self.payload_bytes + other.payload_bytes, self.rewritten + other.rewritten)


