"""Reachability over the store's roots: ``store gc`` (mark and sweep) and the DAG half of ``store verify``.

The roots are the archive index (every recorded archive's DAG-CBOR root) and the pins. A block
is *live* if a chain of links leads to it from a root: dag-pb links, DAG-CBOR tag-42 links
(an archive root links its tree and recipe, a recipe its skeleton, pages and extra files, a
page the roots of nested archives), none from a raw block.

Collection (:func:`collect_garbage`) holds the collector lock exclusive
(:mod:`importer.sinks.lock`), so no import commits blocks it has not rooted yet while it runs:

1. **mark**: walk every root's DAG (iteratively: a stack of CIDs, never recursion), reading
   each live non-raw block for its links (DAG-CBOR by its heads alone,
   :mod:`importer.dag.cbor_links`: 14x faster on link-heavy nodes); a raw block is only looked
   up, never read. A block
   that is missing is noted (its DAG is incomplete: ``store verify`` names the archive) and
   has nothing to follow. A live block that cannot be read or decoded stops the collection
   before anything is removed: what it links to is unknown, and removing it could break a
   DAG that a re-import would otherwise complete.
2. **sweep**: every committed block not marked is removed through
   :meth:`~importer.sinks.store.BlockStore.delete_many` (thousands per transaction; deltas
   first, so no delta is rewritten plain only to be removed after its reference), then the
   freed pages go back to the file system where the store allows it (``auto_vacuum``).

``--dry-run`` stops after listing what the sweep would remove. The marked set is a Python set
of CIDs: about 110 bytes per live block, 110 MB for a million blocks.

:func:`check_store` is ``store verify``: one pass over every block in the order stored (the
store re-hashes each; the links of every sound block are kept), then every root's DAG is walked
over those links in memory, so a block is read once whatever the number of archives sharing it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final

from ..dag.cbor_links import cbor_links
from ..dag.cid import DAG_CBOR, IDENTITY, RAW, cid_codec, format_cid, split_cid
from ..errors import BlockCorrupt, BlockNotFound, InvalidBlock, StoreError
from .atrest import ENCODING_DELTA
from .car import iter_links
from .lock import LockBusy
from .store import BlockStore

#: Missing or damaged blocks named per root in a :class:`RootCheck` (the count is always exact).
NAMED_PROBLEMS: Final = 5


@dataclass(frozen=True, slots=True)
class Root:
    """Something that keeps a DAG alive: an archive of the index or a pin."""

    kind: str  # "archive" or "pin"
    name: str
    cid: bytes

    def describe(self) -> str:
        cid = format_cid(self.cid)
        return f"{self.kind} {cid}" if self.name == cid else f"{self.kind} {self.name} ({cid})"


def links_of_block(cid: bytes, block: bytes) -> list[bytes]:
    """The CIDs ``block`` links to; DAG-CBOR read by its heads alone (:mod:`importer.dag.cbor_links`)."""
    if cid_codec(cid) == DAG_CBOR:
        return cbor_links(block, format_cid(cid))
    return iter_links(cid, block)


def iter_roots(store: BlockStore) -> list[Root]:
    """The archive index, then the pins."""
    return ([Root("archive", r.name, r.root) for r in store.iter_archives()]
            + [Root("pin", p.name, p.root) for p in store.iter_pins()])


# -- collection --------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class GcReport:
    """What a collection found and removed (or, dry, would remove)."""

    roots: int
    live: int
    missing: int
    removed: int
    logical_bytes: int
    payload_bytes: int
    rewritten: int
    file_bytes_before: int
    file_bytes_after: int
    dry_run: bool


class UnfollowableBlock(Exception):
    """A live block whose links cannot be read (corrupt, or not decodable as its codec)."""

    def __init__(self, root: Root, cid: bytes, what: str) -> None:
        super().__init__(f"block {format_cid(cid)} of {root.describe()} {what}")
        self.root = root
        self.cid = cid
        self.what = what


def mark(store: BlockStore, roots: Iterable[Root]) -> tuple[set[bytes], set[bytes]]:
    """``(live, missing)``: every CID the roots reach, and those of them the store does not hold.

    Raises :class:`UnfollowableBlock` at the first live block whose links cannot be read.
    """
    live: set[bytes] = set()
    missing: set[bytes] = set()
    for root in roots:
        def links_of(cid: bytes, root: Root = root) -> Iterable[bytes]:
            if cid_codec(cid) == RAW:  # no links: only whether it is there
                if not store.has(cid) and split_cid(cid)[2] != IDENTITY:
                    missing.add(cid)
                return ()
            try:
                block = store.get(cid)
            except BlockNotFound:
                missing.add(cid)
                return ()
            except BlockCorrupt as e:
                raise UnfollowableBlock(root, cid, f"is corrupt (its bytes hash to {e.actual})") from None
            try:
                return links_of_block(cid, block)
            except InvalidBlock as e:
                raise UnfollowableBlock(root, cid, f"does not decode ({e.reason})") from None

        walk(root.cid, live, links_of)
    return live, missing


def walk(root: bytes, seen: set[bytes], links_of: Callable[[bytes], Iterable[bytes]]) -> None:
    """Visit every CID ``root`` reaches that is not in ``seen`` yet (adding it), depth first.

    A stack of CIDs, never recursion: a DAG of any depth costs memory, not Python frames.
    """
    stack = [root]
    while stack:
        cid = stack.pop()
        if cid in seen:
            continue
        seen.add(cid)
        stack.extend(links_of(cid))


def collect_garbage(store: BlockStore, *, dry_run: bool = False, wait: float | None = None,
                    on_wait: Callable[[], None] | None = None) -> GcReport:
    """Remove every block no root reaches (module docstring); with ``dry_run`` only count them.

    ``wait``: seconds to wait for writers in other processes to close the store (None: as long
    as it takes); ``on_wait`` runs once if they are there at first.
    """
    store.flush()
    lock = store.collector_lock()
    try:
        lock.exclusive(wait, on_wait)
    except LockBusy as e:
        raise StoreError(str(store.path), f"cannot collect garbage now: {e}") from None
    except OSError as e:
        raise StoreError(str(store.path), f"cannot lock {lock.path.name}: {e.strerror or e}") from None
    try:
        before = store.page_stats().file_bytes
        roots = iter_roots(store)
        try:
            live, missing = mark(store, roots)
        except UnfollowableBlock as e:
            raise StoreError(str(store.path), f"{e}, so what it links to is unknown: nothing was removed "
                                              "(`dpip-import store verify` lists the damage; `dpip-import delete` "
                                              "or `pin rm` drops the root)") from None
        doomed = [row for row in store.iter_rows() if row.cid not in live]
        logical = sum(row.size for row in doomed)
        payload = sum(row.stored for row in doomed)
        if dry_run:
            return GcReport(len(roots), len(live) - len(missing), len(missing), len(doomed), logical, payload, 0,
                            before, before, True)
        # Deltas first: their references may be doomed too, and must not be rewritten plain for nothing.
        doomed.sort(key=lambda row: row.encoding != ENCODING_DELTA)
        removed = store.delete_many(row.cid for row in doomed)
        return GcReport(len(roots), len(live) - len(missing), len(missing), removed.blocks, removed.logical_bytes,
                        removed.payload_bytes, removed.rewritten, before, store.page_stats().file_bytes, False)
    finally:
        lock.release()


# -- verification ------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class RootCheck:
    """Whether one root's DAG is whole: every block it reaches present and sound."""

    root: Root
    blocks: int
    missing: int
    damaged: int
    #: The first :data:`NAMED_PROBLEMS` problems, ``(cid, "missing" | "damaged")``.
    examples: tuple[tuple[bytes, str], ...] = ()

    @property
    def complete(self) -> bool:
        return not self.missing and not self.damaged


@dataclass(slots=True)
class StoreCheck:
    """``store verify``: every block re-hashed, every root's DAG checked."""

    blocks: int = 0
    corrupt: int = 0
    roots: list[RootCheck] = field(default_factory=list)

    @property
    def incomplete(self) -> list[RootCheck]:
        return [r for r in self.roots if not r.complete]

    @property
    def ok(self) -> bool:
        return not self.corrupt and not self.incomplete


def check_store(store: BlockStore, on_corrupt: Callable[[bytes, str], None] | None = None) -> StoreCheck:
    """Re-hash every block (``on_corrupt(cid, reason)`` for each bad one), then check every root's DAG."""
    check = StoreCheck()
    links: dict[bytes, tuple[bytes, ...]] = {}
    sound: set[bytes] = set()
    bad: dict[bytes, str] = {}

    def keep_links(cid: bytes, block: bytes) -> None:
        sound.add(cid)
        if cid_codec(cid) == RAW:
            return
        try:
            found = links_of_block(cid, block)
        except InvalidBlock as e:
            bad[cid] = f"does not decode: {e.reason}"
            return
        if found:
            links[cid] = tuple(found)

    for cid, problem in store.verify(on_sound=keep_links):
        check.blocks += 1
        if problem is not None:
            check.corrupt += 1
            bad[cid] = problem
            if on_corrupt is not None:
                on_corrupt(cid, problem)
    for cid, reason in bad.items():
        if cid in sound and on_corrupt is not None:  # hashes right but its links do not decode
            on_corrupt(cid, reason)
    check.corrupt = len(bad)
    for root in iter_roots(store):
        check.roots.append(_check_root(store, root, links, sound, bad))
    return check


def _check_root(store: BlockStore, root: Root, links: dict[bytes, tuple[bytes, ...]], sound: set[bytes],
                bad: dict[bytes, str]) -> RootCheck:
    seen: set[bytes] = set()
    problems: list[tuple[bytes, str]] = []

    def links_of(cid: bytes) -> Iterable[bytes]:
        if cid in bad:  # its reason was printed with the block pass
            problems.append((cid, "damaged"))
        elif cid in sound:
            return links.get(cid, ())
        elif split_cid(cid)[2] == IDENTITY:  # an inlined block: its bytes are the CID's
            if cid_codec(cid) != RAW:
                try:
                    return links_of_block(cid, split_cid(cid)[3])
                except InvalidBlock:
                    problems.append((cid, "damaged"))
        elif not store.has(cid):  # (one that is there was committed after the block pass)
            problems.append((cid, "missing"))
        return ()

    walk(root.cid, seen, links_of)
    missing = sum(1 for _, problem in problems if problem == "missing")
    return RootCheck(root, len(seen), missing, len(problems) - missing, tuple(problems[:NAMED_PROBLEMS]))
