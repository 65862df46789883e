"""Dedup accounting: per-chain block ledgers, the per-event rows, and the per-project/overall summary.

A :class:`Ledger` is one strategy's store for one project chain. Strategies put blocks into a
:class:`LedgerSink` (one per archive), which only records CIDs and sizes: a block is new the first
time the chain sees its CID, and each new block is also measured compressed with zstd (level 3,
kept raw when that is not smaller: what a store with zstd at rest would hold). For strategies
that build an archive tree (``deltas=True``: the structural family), the ledger then does what
the embedded store does after an import (:mod:`importer.archive.delta`): the leaves of files
changed since the project's previous archive (picked by the store's rule,
:func:`~importer.archive.delta.previous_archive`) are re-measured as zstd deltas against the old
leaves, with the store's payload format, depth limit and "never deepen a referenced block" rule;
the ``*_delta`` columns hold those sizes (equal to ``*_zstd`` for the other strategies). The
overall figures dedup again across projects from the per-project tables of unique blocks
(:func:`summarize`).

Column meanings (events table, one row per project, version, file and strategy):

* ``archive_bytes``: the archive as published; ``content_bytes``: its members uncompressed;
* ``blocks``/``block_bytes``: the archive's whole DAG (distinct blocks);
* ``new_blocks``/``new_bytes``/``new_bytes_zstd``: what the chain had not stored before;
* ``overhead_bytes``: the new bytes that carry no file content: dag-pb nodes with links (file
  roots, directories), dag-cbor recipe and root blocks;
* ``new_bytes_delta``/``cum_unique_bytes_delta``: the same with deltas at rest (see above); an
  archive's deltas can also shrink blocks an earlier archive of the chain added (a file the
  sdist brought, which the next wheel's planning turns into a delta): such savings count in the
  cumulative column and in the block table, and in this archive's ``new_bytes_delta`` (which
  can therefore be negative);
* ``cum_unique_bytes``/``cum_unique_bytes_zstd``: the chain's store after this archive;
* ``upgrade_bytes``: what a user holding the previous archive of the chain (by default the
  previous version's archive of the same kind, sdist or wheel; ``--chain`` in :mod:`bench.run`)
  fetches to get this one: the bytes of its blocks the previous DAG lacks (everything
  for a first version, ``has_previous`` false); ``upgrade_bytes_zstd`` the same blocks each
  compressed with zstd -3 (a transport that compresses blocks, as zstd at rest does);
* ``seconds``: this strategy on this archive; ``decode_seconds``: the shared decoding.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from importer.archive.delta import parse_archive_name, plan_deltas, previous_archive
from importer.dag.cid import DAG_PB, RAW, split_cid
from importer.sinks.atrest import BlockCodec
from importer.sinks.delta import MAX_DEPTH, encode_payload
from importer.sinks.store import ArchiveRecord

if TYPE_CHECKING:
    import pandas as pd  # type: ignore[import-untyped,unused-ignore]

#: dag-pb encodes Links (field 2, wire type 2: tag byte 0x12) before Data (field 1: 0x0a), so a
#: block whose first byte is 0x12 has links: a file root or a directory, not a leaf.
PB_LINKS_TAG: Final = 0x12

EVENT_COLUMNS: Final = (
    "package", "version", "file", "kind", "strategy", "family", "archive_bytes", "content_bytes", "blocks",
    "block_bytes", "new_blocks", "new_bytes", "new_bytes_zstd", "new_bytes_delta", "overhead_bytes",
    "cum_unique_bytes", "cum_unique_bytes_zstd", "cum_unique_bytes_delta", "upgrade_bytes", "upgrade_bytes_zstd",
    "has_previous", "seconds", "delta_seconds", "decode_seconds", "error",
)
BLOCK_COLUMNS: Final = ("package", "strategy", "key", "size", "size_zstd", "size_delta", "overhead")
SUMMARY_COLUMNS: Final = (
    "package", "strategy", "family", "versions", "files", "logical_bytes", "content_bytes", "unique_bytes",
    "unique_bytes_zstd", "unique_bytes_delta", "blocks", "dedup_ratio", "dedup_ratio_zstd", "dedup_ratio_delta",
    "overhead_bytes", "upgrade_bytes", "upgrade_bytes_zstd", "upgrade_archive_bytes", "seconds", "delta_seconds",
)
#: The ``package`` of the overall rows in the summary.
ALL: Final = "ALL"


def is_overhead(cid: bytes, block: bytes) -> bool:
    """True for blocks that hold structure rather than file content (see the module docstring)."""
    codec = split_cid(cid)[1]
    if codec == RAW:
        return False
    if codec == DAG_PB:
        return bool(block) and block[0] == PB_LINKS_TAG
    return True


def block_key(cid: bytes) -> int:
    """A signed 64-bit key for the overall dedup: the last 8 bytes of the CID's digest.

    Collisions among the few million blocks of a run have probability ~n**2 / 2**65, negligible.
    """
    return int.from_bytes(cid[-8:], "little", signed=True)


@dataclass(slots=True)
class Ledger:
    """One strategy's store for one project chain: which CIDs it holds and what they weigh.

    With ``deltas``, it also keeps the blocks of the newest archive of each kind and tags (the
    candidates :func:`~importer.archive.delta.previous_archive` picks from) and each stored
    block's delta depth and whether a delta references it, as the store's rows do.
    """

    package: str
    strategy: str
    deltas: bool = False
    seen: dict[bytes, int] = field(default_factory=dict)  # CID -> its size with zstd at rest
    at_rest_delta: dict[bytes, int] = field(default_factory=dict)  # CID -> size with deltas at rest
    unique_bytes: int = 0
    unique_bytes_zstd: int = 0
    unique_bytes_delta: int = 0
    new_rows: list[list[Any]] = field(default_factory=list)
    row_of: dict[bytes, int] = field(default_factory=dict)
    previous: dict[str, dict[bytes, int]] = field(default_factory=dict)
    archives: dict[str, tuple[ArchiveRecord, dict[bytes, bytes]]] = field(default_factory=dict)
    depth: dict[bytes, int] = field(default_factory=dict)
    referenced: set[bytes] = field(default_factory=set)
    _zstd: Any = None

    def sink(self) -> LedgerSink:
        return LedgerSink(self)

    def at_rest(self, block: bytes) -> int:
        """The block as the store's codec keeps it without a dictionary: a zstd -3 frame if that
        saves 1/32 and 8 bytes, else the block itself (:class:`importer.sinks.atrest.BlockCodec`)."""
        if self._zstd is None:
            self._zstd = BlockCodec(compress=True, load_dictionary=lambda _: None)
        return len(self._zstd.encode(block)[1])

    def block_rows(self) -> list[tuple[Any, ...]]:
        return [(self.package, self.strategy, *row) for row in self.new_rows]

    def shrink(self, cid: bytes, size: int) -> int:
        """Record that ``cid`` is now stored in ``size`` bytes with deltas; the bytes saved."""
        saved = self.at_rest_delta[cid] - size
        self.at_rest_delta[cid] = size
        self.unique_bytes_delta -= saved
        self.new_rows[self.row_of[cid]][3] = size
        return saved


class _Blocks:
    """A dict of blocks as a BlockSource for the delta planner (the strategies made them: no check)."""

    def __init__(self, *maps: dict[bytes, bytes]) -> None:
        self.maps = maps

    def get(self, cid: bytes) -> bytes:
        for blocks in self.maps:
            block = blocks.get(cid)
            if block is not None:
                return block
        raise KeyError(cid.hex())

    def has(self, cid: bytes) -> bool:
        return any(cid in blocks for blocks in self.maps)


class LedgerSink:
    """Counts one archive's blocks into a ledger; stores nothing (but keeps them for deltas)."""

    stores_blocks = True

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.blocks: dict[bytes, int] = {}
        self.data: dict[bytes, bytes] = {}
        self.new_blocks = 0
        self.new_bytes = 0
        self.new_bytes_zstd = 0
        self.new_bytes_delta = 0
        self.overhead_bytes = 0
        self.delta_seconds = 0.0

    def put(self, cid: bytes, block: bytes) -> None:
        if cid in self.blocks:
            return
        self.blocks[cid] = len(block)
        ledger = self.ledger
        if ledger.deltas:
            self.data[cid] = block
        if cid in ledger.seen:
            return
        packed = ledger.seen[cid] = ledger.at_rest_delta[cid] = ledger.at_rest(block)
        overhead = is_overhead(cid, block)
        self.new_blocks += 1
        self.new_bytes += len(block)
        self.new_bytes_zstd += packed
        self.new_bytes_delta += packed
        self.overhead_bytes += len(block) if overhead else 0
        ledger.unique_bytes += len(block)
        ledger.unique_bytes_zstd += packed
        ledger.unique_bytes_delta += packed
        ledger.row_of[cid] = len(ledger.new_rows)
        ledger.new_rows.append([block_key(cid), len(block), packed, packed, overhead])

    def put_many(self, blocks: Iterable[tuple[bytes, bytes]]) -> None:
        for cid, block in blocks:
            self.put(cid, block)

    def store_deltas(self, name: str, root: bytes) -> None:
        """What the store's ``--delta`` pass does after importing ``name``: see the module docstring."""
        ledger = self.ledger
        if not ledger.deltas:
            return
        start = time.perf_counter()
        previous = previous_archive([record for record, _ in ledger.archives.values()], name)
        old = ledger.archives[_archive_slot(previous.name)][1] if previous is not None else {}
        planned = (plan_deltas(_Blocks(self.data), root, _Blocks(old), previous.root) if previous is not None
                   else plan_deltas(_Blocks(self.data), root))  # siblings only
        for candidate in planned:
            size = self._delta_size(candidate.cid, candidate.refs, _Blocks(self.data, old))
            if size is not None:
                self.new_bytes_delta -= ledger.shrink(candidate.cid, size)
                ledger.referenced.update(candidate.refs)
        dist = parse_archive_name(name)
        if dist is not None:
            ledger.archives[_archive_slot(name)] = (ArchiveRecord(name, root, b"", 0, 0.0), self.data)
        self.delta_seconds = time.perf_counter() - start

    def _delta_size(self, cid: bytes, refs: tuple[bytes, ...], blocks: _Blocks) -> int | None:
        """The store's :meth:`~importer.sinks.store.BlockStore._delta_of` rules, on the ledger."""
        ledger = self.ledger
        if cid in refs or ledger.depth.get(cid, 0) > 0 or cid in ledger.referenced:
            return None
        depth = 1 + max(ledger.depth.get(ref, 0) for ref in refs)
        if depth > MAX_DEPTH:
            return None
        payload = len(encode_payload(blocks.get(cid), refs, [blocks.get(ref) for ref in refs], depth))
        if payload >= ledger.at_rest_delta[cid]:
            return None
        ledger.depth[cid] = depth
        return payload

    def finish(self, key: str) -> dict[str, Any]:
        """The metric columns of this archive; remembers its DAG as the previous one of chain ``key``.

        ``key`` names the chain the upgrade is measured along (the archive's kind by default; see
        ``--chain`` in :mod:`bench.run`).
        """
        previous = self.ledger.previous.get(key)
        fetched = [cid for cid in self.blocks if previous is None or cid not in previous]
        upgrade = sum(self.blocks[cid] for cid in fetched)
        upgrade_zstd = sum(self.ledger.seen[cid] for cid in fetched)
        self.ledger.previous[key] = self.blocks
        return {
            "blocks": len(self.blocks), "block_bytes": sum(self.blocks.values()), "new_blocks": self.new_blocks,
            "new_bytes": self.new_bytes, "new_bytes_zstd": self.new_bytes_zstd,
            "new_bytes_delta": self.new_bytes_delta,
            "overhead_bytes": self.overhead_bytes, "cum_unique_bytes": self.ledger.unique_bytes,
            "cum_unique_bytes_zstd": self.ledger.unique_bytes_zstd,
            "cum_unique_bytes_delta": self.ledger.unique_bytes_delta, "upgrade_bytes": upgrade,
            "upgrade_bytes_zstd": upgrade_zstd, "has_previous": previous is not None,
            "delta_seconds": self.delta_seconds,
        }


def _archive_slot(name: str) -> str:
    """Which archive a newer one replaces in :attr:`Ledger.archives`: one per kind and tags."""
    dist = parse_archive_name(name)
    return f"{dist.kind}:{dist.tags}" if dist is not None else name


# -- summary -----------------------------------------------------------------------------------


def summarize(events: pd.DataFrame, blocks: pd.DataFrame) -> pd.DataFrame:
    """One row per (package, strategy), then the ``ALL`` rows deduplicated across packages."""
    import pandas as pd  # type: ignore[import-untyped,unused-ignore]

    ok = events[events["error"].isna() | (events["error"] == "")]
    ok = ok[ok["strategy"] != ""]
    upgrades = ok[ok["has_previous"]]
    keys = ["package", "strategy"]
    per = ok.groupby(keys, sort=False).agg(
        family=("family", "first"), versions=("version", "nunique"), files=("file", "nunique"),
        logical_bytes=("archive_bytes", "sum"), content_bytes=("content_bytes", "sum"),
        unique_bytes=("new_bytes", "sum"), unique_bytes_zstd=("new_bytes_zstd", "sum"),
        unique_bytes_delta=("new_bytes_delta", "sum"),
        blocks=("new_blocks", "sum"), overhead_bytes=("overhead_bytes", "sum"), seconds=("seconds", "sum"),
        delta_seconds=("delta_seconds", "sum"),
    )
    up = upgrades.groupby(keys, sort=False).agg(
        upgrade_bytes=("upgrade_bytes", "sum"), upgrade_bytes_zstd=("upgrade_bytes_zstd", "sum"),
        upgrade_archive_bytes=("archive_bytes", "sum"))
    per = per.join(up, how="left").fillna(
        {"upgrade_bytes": 0, "upgrade_bytes_zstd": 0, "upgrade_archive_bytes": 0}).reset_index()

    overall = ok.groupby("strategy", sort=False).agg(
        family=("family", "first"), versions=("version", "size"), files=("file", "size"),
        logical_bytes=("archive_bytes", "sum"), content_bytes=("content_bytes", "sum"),
        overhead_bytes=("overhead_bytes", "sum"), seconds=("seconds", "sum"),
        delta_seconds=("delta_seconds", "sum"),
    )
    overall["versions"] = ok.drop_duplicates(["strategy", "package", "version"]).groupby("strategy").size()
    overall["files"] = ok.drop_duplicates(["strategy", "package", "file"]).groupby("strategy").size()
    distinct = blocks.drop_duplicates(["strategy", "key"]).groupby("strategy", sort=False).agg(
        unique_bytes=("size", "sum"), unique_bytes_zstd=("size_zstd", "sum"),
        unique_bytes_delta=("size_delta", "sum"), blocks=("key", "size"))
    overall = overall.join(distinct, how="left")
    overall = overall.join(upgrades.groupby("strategy").agg(
        upgrade_bytes=("upgrade_bytes", "sum"), upgrade_bytes_zstd=("upgrade_bytes_zstd", "sum"),
        upgrade_archive_bytes=("archive_bytes", "sum")), how="left")
    overall = overall.fillna(0).reset_index()
    overall.insert(0, "package", ALL)

    out = pd.concat([per, overall], ignore_index=True)
    for column in ("unique_bytes", "unique_bytes_zstd", "unique_bytes_delta", "blocks", "upgrade_bytes", "upgrade_bytes_zstd",
                   "upgrade_archive_bytes"):
        out[column] = out[column].astype("int64")
    out["dedup_ratio"] = out["logical_bytes"] / out["unique_bytes"].where(out["unique_bytes"] > 0)
    out["dedup_ratio_zstd"] = out["logical_bytes"] / out["unique_bytes_zstd"].where(out["unique_bytes_zstd"] > 0)
    out["dedup_ratio_delta"] = out["logical_bytes"] / out["unique_bytes_delta"].where(out["unique_bytes_delta"] > 0)
    return out[list(SUMMARY_COLUMNS)]
