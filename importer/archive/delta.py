"""Which earlier archive, and which of its files, a new archive's blocks are delta-encoded against.

After an archive is imported into a compressing store (before its blocks are committed, so a
delta is what is first written), :func:`plan_deltas` pairs every file of its tree with the file
at the same place in the *previous* archive of the same project (see :func:`previous_archive`)
and, for each leaf of a changed file, names the old file's leaves around the same position
(:func:`importer.sinks.delta.reference_span`). The structure of the release is paired too, each
block with its one counterpart: every changed directory node with the directory at the same
place, a changed multi-leaf file's root node with the old file's, the recipe and its member
table's pages with the old recipe's (on requests' 10-archive chain that took the store from
199,765 to 190,256 bytes at rest: small releases change little but these). The store then keeps
such a block as a zstd frame made against those references when that is smaller
(:meth:`importer.sinks.store.BlockStore.delta_encode`). The benchmark's ledgers use the same
plan, so the figures in REPORT.md are those of this rule (siblings, below, from stop 21 on: the
ledgers of runs made before have none; a ledger holds every block until the archive ends, so it
also pairs siblings the store, past one batch, leaves alone).

"The same place": the path in the tree with the archive's version replaced where a release
puts it (an sdist's top directory ``pkg-1.2/`` and a wheel's ``pkg-1.2.dist-info/`` change name
every release: :func:`match_key`) and
with the 8-hex-digit hash auditwheel puts into the names of the libraries it grafts
(``numpy.libs/libscipy_openblas64_-4b78795a.so``) removed; a file left unpaired is then paired
with the one old file, if there is exactly one, whose path differs only in its numbers
(:func:`loose_key`: ``libarrow.so.2500`` and ``libarrow.so.2600``).

*Siblings*: a large file of the new archive that no earlier release pairs (it is new, or the
archive is the project's first) is paired with the file before it in the same directory whose
name differs only in its version numbers (:func:`sibling_key`): virtualenv ships
``pip-26.0.1-py3-none-any.whl`` beside ``pip-26.3-py3-none-any.whl`` and two setuptools wheels
(the table at :data:`SIBLING_MIN`). Each of its leaves is encoded against the sibling's leaves
around the same position, as against an old file; the sibling may be new in this archive too
(the store then decides the delta before either is written).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Final

import dag_cbor
from dag_cbor.decoding import CBORDecodingError
from multiformats import CID

from ..dag.reader import LeafSpan, file_leaves, iter_tree
from ..errors import ImporterError
from ..sinks.base import BlockSource
from ..sinks.delta import reference_span
from ..sinks.packs import GROUP_BELOW
from ..sinks.store import ArchiveRecord, BlockStore
from .recipe import read_root

#: Archive suffixes of sdists (wheels end in ``.whl``), longest first so ``.tar.gz`` wins over ``.gz``.
SDIST_SUFFIXES: Final = (".tar.gz", ".tar.bz2", ".tar.xz", ".tgz", ".tar", ".zip")
#: auditwheel's grafted-library hash: ``-`` and 8 hex digits before the ``.so``/``.dylib``/``.dll``.
_GRAFT_HASH: Final = re.compile(r"-[0-9a-f]{8}(?=\.)")
#: What may follow ``NAME-VERSION`` in a path component that carries the release's version.
_VERSIONED_SUFFIXES: Final = r"\.dist-info|\.data|\.egg-info"
_DIGITS: Final = re.compile(r"[0-9]+")
#: A version in a file name: runs of digits joined by ``.``, ``_`` or ``-`` (``26.0.1``, ``86_64``).
_VERSION_RUN: Final = re.compile(r"[0-9]+(?:[._-][0-9]+)*")
#: Files smaller than this are not paired with siblings: they are smaller than one leaf, and the
#: store groups such blocks into shared frames (:data:`~importer.sinks.packs.GROUP_BELOW`), where
#: their neighbours give zstd the context a sibling would; a leaf of 256 KiB is compressed alone.
#: The first releases of unseen7 (``/work/tmp`` prototype, 2026-12-08: every sdist, and the
#: wheels of pandas, grpcio, aiohttp and virtualenv; every file of 16 KiB or more against the one
#: before it with the same :func:`sibling_key`, zstd -19 whole file against file, pairs that gain
#: 10% or more): virtualenv's second pip and setuptools wheels, 1.95 and 0.88 MB, take 1,846,926
#: and 816,731 B alone, 1,188,013 and 426,348 B against the first; grpcio's 32 (boringssl's
#: generated assembly, 18-154 KB each, all under this size) 170,614 -> 131,706 B; the others none.
#: In the store: virtualenv's 10-archive chain as imported 5.94 -> 4.83 MiB (REPORT.md, "Siblings").
SIBLING_MIN: Final = GROUP_BELOW


@dataclass(frozen=True, slots=True)
class Distribution:
    """What an archive file name says: the project (normalized, PEP 503), version, kind and tags."""

    project: str
    version: str
    kind: str
    tags: str


@dataclass(frozen=True, slots=True)
class DeltaCandidate:
    """A leaf of the new archive and the leaves of the old one to encode it against."""

    cid: bytes
    refs: tuple[bytes, ...]
    #: Against a sibling in the same archive (module docstring): encoded only while the block is
    #: still buffered (:func:`delta_against_previous`).
    sibling: bool = False


def parse_archive_name(name: str) -> Distribution | None:
    """Project, version, kind and tags from a wheel or sdist file name; None if it is neither."""
    if name.endswith(".whl"):
        parts = name[:-len(".whl")].split("-")
        if len(parts) not in (5, 6):
            return None
        return Distribution(_normalize(parts[0]), parts[1], "wheel", "-".join(parts[-3:]))
    for suffix in SDIST_SUFFIXES:
        if name.lower().endswith(suffix):
            stem = name[:-len(suffix)]
            project, dash, version = stem.rpartition("-")
            if not dash or not project or not version:
                return None
            return Distribution(_normalize(project), version, "sdist", "")
    return None


def _normalize(project: str) -> str:
    return re.sub(r"[-_.]+", "-", project).lower()


def previous_archive(records: Iterable[ArchiveRecord], name: str) -> ArchiveRecord | None:
    """The archive ``name`` is delta-encoded against: the newest-imported other archive of its project and kind.

    For a wheel, one with the same tags (the same platform's previous build) is preferred over
    any other wheel of the project. ``records`` is the store's index, oldest import first.
    """
    this = parse_archive_name(name)
    if this is None:
        return None
    best: ArchiveRecord | None = None
    best_same_tags = False
    for record in records:
        other = parse_archive_name(record.name)
        if (other is None or record.name == name or other.project != this.project or other.kind != this.kind
                or other.version == this.version and other.tags == this.tags):
            continue
        same_tags = other.tags == this.tags
        if same_tags or not best_same_tags:
            best, best_same_tags = record, same_tags
    return best


def match_key(path: str, version: str) -> str:
    """``path`` with the parts that change every release taken out (module docstring).

    The version is replaced only where a release puts it: a directory or file named
    ``NAME-VERSION`` with nothing or ``.dist-info``, ``.data`` or ``.egg-info`` after it (an
    sdist's top directory, a wheel's metadata directories); elsewhere a version such as ``1``
    would also rewrite unrelated digits (``cpython-311``).
    """
    if version:
        versioned = re.compile(rf"^(.+)-{re.escape(version)}({_VERSIONED_SUFFIXES})?$")
        path = "/".join(versioned.sub("\\1-\0\\2", part) for part in path.split("/"))
    return _GRAFT_HASH.sub("", path)


def loose_key(key: str) -> str:
    """A :func:`match_key` with every run of digits made alike, for files that exact keys leave unpaired.

    pyarrow renames its libraries with every major release (``libarrow.so.2500`` ->
    ``libarrow.so.2600``, 48 MB each): paired this way when exactly one old file has the same
    loose key.
    """
    return _DIGITS.sub("#", key)


def sibling_key(path: str) -> str:
    """``path`` with every version in its file name made alike (module docstring, "Siblings"):
    ``pip-26.0.1-py3-none-any.whl`` and ``pip-26.3-py3-none-any.whl`` in one directory share it."""
    directory, _, name = path.rpartition("/")
    return f"{directory}/{_VERSION_RUN.sub('#', name)}"


def plan_deltas(new_source: BlockSource, new_root: bytes, old_source: BlockSource | None = None,
                old_root: bytes | None = None) -> list[DeltaCandidate]:
    """Every leaf of ``new_root``'s changed files with the leaves of ``old_root`` to delta it against,
    and the leaves of its large new files with their siblings' (module docstring).

    A leaf the old file also has (unchanged) is not a candidate; a file with no counterpart in
    the old archive neither, unless it has a sibling. Each leaf is named once, with the
    references of its first place. Without ``old_root`` (a project's first archive) only
    siblings are paired.
    """
    new = read_root(new_source, new_root)
    old = read_root(old_source, old_root) if old_source is not None and old_root is not None else None
    new_dist = parse_archive_name(new.name)
    new_version = new_dist.version if new_dist else ""
    old_files: dict[str, bytes] = {}
    old_dirs: dict[str, bytes] = {}
    planned: dict[bytes, tuple[bytes, ...]] = {}
    if old_source is not None and old is not None:
        old_dist = parse_archive_name(old.name)
        old_version = old_dist.version if old_dist else ""
        for path, cid, is_dir, _ in _walk(old_source, old.tree):
            (old_dirs if is_dir else old_files)[match_key(path, old_version)] = cid
        # The structure of a release changes a little with every release: a directory node gains
        # or loses a link, the recipe's member table a few sizes. Each is stored against its counterpart.
        for new_block, old_block in zip(_recipe_blocks(new_source, new.recipe),
                                        _recipe_blocks(old_source, old.recipe)):
            if new_block != old_block:
                planned.setdefault(new_block, (old_block,))
    loose: dict[str, bytes | None] = {}
    for key, cid in old_files.items():
        loose[loose_key(key)] = None if loose_key(key) in loose else cid  # None: not unique, no pair
    files = []
    for path, cid, is_dir, size in _walk(new_source, new.tree):
        if is_dir:
            old_dir = old_dirs.get(match_key(path, new_version))
            if old_dir is not None and old_dir != cid:
                planned.setdefault(cid, (old_dir,))
        else:
            files.append((path, cid, size))
    siblings: dict[str, bytes] = {}  # sibling key -> the last large file that has it
    siblings_planned: set[bytes] = set()
    for path, cid, size in files:
        key = match_key(path, new_version)
        old_cid = old_files.get(key)
        if old_cid is None:
            old_cid = loose.get(loose_key(key))
        sibling = None
        if size >= SIBLING_MIN:
            family = sibling_key(path)
            sibling = siblings.get(family)
            siblings[family] = cid
        if old_cid is not None and old_source is not None and old_cid != cid:
            size, leaves = file_leaves(new_source, cid)
            old_size, old_leaves = file_leaves(old_source, old_cid)
            if len(leaves) > 1 and len(old_leaves) > 1:
                planned.setdefault(cid, (old_cid,))  # the file's root node: a list of its leaves' links
            _plan_leaves(planned, leaves, size, old_leaves, old_size)
        elif old_cid is None and sibling is not None and sibling != cid:
            size, leaves = file_leaves(new_source, cid)
            sibling_size, sibling_leaves = file_leaves(new_source, sibling)
            _plan_leaves(planned, leaves, size, sibling_leaves, sibling_size, siblings_planned)
    return [DeltaCandidate(cid, refs, cid in siblings_planned) for cid, refs in planned.items()]


def _plan_leaves(planned: dict[bytes, tuple[bytes, ...]], leaves: list[LeafSpan], size: int,
                 ref_leaves: list[LeafSpan], ref_size: int, mark: set[bytes] | None = None) -> None:
    """Plan each of a file's ``leaves`` against the leaves of the file it resembles (module
    docstring); ``mark`` collects the leaves planned."""
    unchanged = {leaf.cid for leaf in ref_leaves}
    for leaf in leaves:
        if leaf.cid in unchanged or leaf.cid in planned:
            continue
        refs = reference_span(leaf.offset, leaf.length, size, ref_leaves, ref_size)
        if refs:
            planned[leaf.cid] = tuple(refs)
            if mark is not None:
                mark.add(leaf.cid)


def _walk(source: BlockSource, tree: bytes) -> Iterator[tuple[str, bytes, bool, int]]:
    """``(path, CID, is a directory, size)`` of the tree itself (``""``) and everything under it
    (:func:`~importer.dag.reader.iter_tree`: no recursion, an sdist may nest directories
    thousands deep, ``tests/hostile/test_deep_dags.py``)."""
    yield "", tree, True, 0
    yield from iter_tree(source, tree)


def _recipe_blocks(source: BlockSource, recipe: bytes) -> list[bytes]:
    """The recipe node and its member table's pages, in order (an unreadable recipe: none)."""
    try:
        node = dag_cbor.decode(source.get(recipe))
        pages = node["pages"] if isinstance(node, dict) else []
        return [recipe, *(bytes(page) for page in pages if isinstance(page, CID))] if isinstance(pages, list) else []
    except (CBORDecodingError, ValueError, KeyError, TypeError):
        return []


@dataclass(frozen=True, slots=True)
class DeltaReport:
    """What :func:`delta_against_previous` did for one archive."""

    previous: str | None
    candidates: int
    rewritten: int
    saved: int
    #: Why the previous archive could not be compared (a damaged or partly deleted DAG), if so.
    skipped: str | None = None


def delta_against_previous(store: BlockStore, name: str, root: bytes,
                           records: Iterable[ArchiveRecord] | None = None) -> DeltaReport:
    """Store the changed blocks (leaves, file and directory nodes, recipe) of the archive ``name`` (root
    ``root``) as deltas against its previous archive, and its large new files' leaves against their
    siblings' (:func:`plan_deltas`; without a previous archive, only those).

    ``records``: the archives it may be compared with (default: the store's whole index).
    """
    previous = previous_archive(store.iter_archives() if records is None else records, name)
    if previous is not None and not store.has(previous.root):
        previous = None
    against = previous.name if previous is not None else None
    try:
        candidates = plan_deltas(store, root, store, previous.root) if previous is not None else plan_deltas(store, root)
    except ImporterError as e:
        # Deltas only save space: an archive whose previous DAG is damaged or partly deleted is
        # kept as it is (already committed and recorded), and the caller says why.
        return DeltaReport(against, 0, 0, 0, skipped=str(e))
    # A sibling delta pays only before its block's first write: rewriting a committed block (the
    # part of an archive past one batch, or `store optimize`) leaves its old segment dead in a
    # pack that mostly stays over half live. sqlalchemy 2.1.5's sdist (68 MB, one batch and a
    # bit): its 21 changelog leaves took 58,897 B less as sibling deltas and left 725,655 B dead.
    only_buffered = {c.cid for c in candidates if c.sibling}
    rewritten, saved = store.delta_encode(((c.cid, c.refs) for c in candidates), only_buffered=only_buffered)
    return DeltaReport(against, len(candidates), rewritten, saved)


def delta_store(store: BlockStore) -> DeltaReport:
    """Every archive of the index against its previous one in import order (``store optimize``)."""
    records = list(store.iter_archives())
    candidates = rewritten = saved = 0
    for i, record in enumerate(records):
        report = delta_against_previous(store, record.name, record.root, records[:i])
        candidates += report.candidates
        rewritten += report.rewritten
        saved += report.saved
    return DeltaReport(None, candidates, rewritten, saved)
