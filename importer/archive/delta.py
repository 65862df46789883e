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
plan, so the figures in REPORT.md are those of this rule.

"The same place": the path in the tree with the archive's version replaced where a release
puts it (an sdist's top directory ``pkg-1.2/`` and a wheel's ``pkg-1.2.dist-info/`` change name
every release: :func:`match_key`) and
with the 8-hex-digit hash auditwheel puts into the names of the libraries it grafts
(``numpy.libs/libscipy_openblas64_-4b78795a.so``) removed; a file left unpaired is then paired
with the one old file, if there is exactly one, whose path differs only in its numbers
(:func:`loose_key`: ``libarrow.so.2500`` and ``libarrow.so.2600``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Final

import dag_cbor
from dag_cbor.decoding import CBORDecodingError
from multiformats import CID

from ..dag.cid import RAW, cid_codec
from ..dag.reader import Kind, file_leaves, iter_directory, stat
from ..errors import ImporterError
from ..sinks.base import BlockSource
from ..sinks.delta import reference_span
from ..sinks.store import ArchiveRecord, BlockStore
from .recipe import read_root

#: Archive suffixes of sdists (wheels end in ``.whl``), longest first so ``.tar.gz`` wins over ``.gz``.
SDIST_SUFFIXES: Final = (".tar.gz", ".tar.bz2", ".tar.xz", ".tgz", ".tar", ".zip")
#: auditwheel's grafted-library hash: ``-`` and 8 hex digits before the ``.so``/``.dylib``/``.dll``.
_GRAFT_HASH: Final = re.compile(r"-[0-9a-f]{8}(?=\.)")
#: What may follow ``NAME-VERSION`` in a path component that carries the release's version.
_VERSIONED_SUFFIXES: Final = r"\.dist-info|\.data|\.egg-info"
_DIGITS: Final = re.compile(r"[0-9]+")


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


def plan_deltas(new_source: BlockSource, new_root: bytes, old_source: BlockSource,
                old_root: bytes) -> list[DeltaCandidate]:
    """Every leaf of ``new_root``'s changed files with the leaves of ``old_root`` to delta it against.

    A leaf the old file also has (unchanged) is not a candidate; a file with no counterpart in
    the old archive neither. Each leaf is named once, with the references of its first place.
    """
    new, old = read_root(new_source, new_root), read_root(old_source, old_root)
    new_dist, old_dist = parse_archive_name(new.name), parse_archive_name(old.name)
    new_version = new_dist.version if new_dist else ""
    old_version = old_dist.version if old_dist else ""
    old_files: dict[str, bytes] = {}
    old_dirs: dict[str, bytes] = {}
    for path, cid, is_dir in _walk(old_source, old.tree):
        (old_dirs if is_dir else old_files)[match_key(path, old_version)] = cid
    loose: dict[str, bytes | None] = {}
    for key, cid in old_files.items():
        loose[loose_key(key)] = None if loose_key(key) in loose else cid  # None: not unique, no pair
    planned: dict[bytes, tuple[bytes, ...]] = {}
    # The structure of a release changes a little with every release: a directory node gains or
    # loses a link, the recipe's member table a few sizes. Each is stored against its counterpart.
    for new_block, old_block in zip(_recipe_blocks(new_source, new.recipe), _recipe_blocks(old_source, old.recipe)):
        if new_block != old_block:
            planned.setdefault(new_block, (old_block,))
    files = []
    for path, cid, is_dir in _walk(new_source, new.tree):
        if is_dir:
            old_dir = old_dirs.get(match_key(path, new_version))
            if old_dir is not None and old_dir != cid:
                planned.setdefault(cid, (old_dir,))
        else:
            files.append((path, cid))
    for path, cid in files:
        key = match_key(path, new_version)
        old_cid = old_files.get(key)
        if old_cid is None:
            old_cid = loose.get(loose_key(key))
        if old_cid is None or old_cid == cid:
            continue
        size, leaves = file_leaves(new_source, cid)
        old_size, old_leaves = file_leaves(old_source, old_cid)
        if len(leaves) > 1 and len(old_leaves) > 1:
            planned.setdefault(cid, (old_cid,))  # the file's root node: a list of its leaves' links
        unchanged = {leaf.cid for leaf in old_leaves}
        for leaf in leaves:
            if leaf.cid in unchanged or leaf.cid in planned:
                continue
            refs = reference_span(leaf.offset, leaf.length, size, old_leaves, old_size)
            if refs:
                planned[leaf.cid] = tuple(refs)
    return [DeltaCandidate(cid, refs) for cid, refs in planned.items()]


def _walk(source: BlockSource, tree: bytes, prefix: str = "") -> Iterator[tuple[str, bytes, bool]]:
    """``(path, CID, is a directory)`` of the tree's directories (``""`` for the tree itself) and
    files, depth first in entry order; symlinks are skipped, a raw-leaf entry is a file unread."""
    yield prefix.rstrip("/"), tree, True
    for entry in iter_directory(source, tree):
        path = f"{prefix}{entry.name}"
        if cid_codec(entry.cid) == RAW:
            yield path, entry.cid, False
            continue
        node = stat(source, entry.cid)
        if node.kind is Kind.DIRECTORY:
            yield from _walk(source, entry.cid, path + "/")
        elif node.kind is Kind.FILE:
            yield path, entry.cid, False


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
    """Store the changed blocks (leaves, file and directory nodes, recipe) of the archive ``name`` (root ``root``) as deltas against its previous archive.

    ``records``: the archives it may be compared with (default: the store's whole index).
    """
    previous = previous_archive(store.iter_archives() if records is None else records, name)
    if previous is None or not store.has(previous.root):
        return DeltaReport(None, 0, 0, 0)
    try:
        candidates = plan_deltas(store, root, store, previous.root)
    except ImporterError as e:
        # Deltas only save space: an archive whose previous DAG is damaged or partly deleted is
        # kept as it is (already committed and recorded), and the caller says why.
        return DeltaReport(previous.name, 0, 0, 0, skipped=str(e))
    rewritten, saved = store.delta_encode((c.cid, c.refs) for c in candidates)
    return DeltaReport(previous.name, len(candidates), rewritten, saved)


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
