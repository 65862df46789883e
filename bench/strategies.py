"""The dedup strategies of the benchmark: one registry where every strategy is named and documented.

A strategy turns one archive into IPFS blocks and hands them to a sink; it never writes them
anywhere (the benchmark's sink only counts CIDs and sizes, see :mod:`bench.metrics`). Each
archive is decoded once (:func:`bench.decoded.decode_archive`) and the decoded form is shared by
all strategies; the ``delta-zstd`` patches are made in :mod:`bench.delta_zstd`.

The strategies, by family (the names are what ``--strategies`` takes):

``whole``
    One block per archive: the archive bytes, CIDv1 raw, however big. The baseline a plain
    file mirror gets (only byte-identical archives dedup).
``fixed-262144``, ``fixed-1048576``
    Kubo's fixed-size chunker on the archive bytes, with the two IPIP-499 profiles:
    ``unixfs-v0-2015`` (256 KiB, CIDv0, dag-pb leaves) and ``unixfs-v1-2025`` (1 MiB, CIDv1, raw
    leaves, 1024 links).
``rabin``, ``buzhash``, ``fastcdc-MIN-AVG-MAX``
    Content-defined chunking of the archive bytes (Kubo's rabin and buzhash, and FastCDC at a
    few averages), laid out with ``unixfs-v1-2025`` (raw leaves, so a leaf is exactly a chunk).
    Compressed archives hide their changes: one changed member shifts every deflate/gzip bit
    after it, so these mostly show how little CDC finds in compressed bytes.
``structural``, ``structural-v1``
    The archive importer's layout (:mod:`importer.archive.importer`): every member file a UnixFS
    file in a tree, the rest (headers, central directory, compressor settings) in a recipe.
    ``structural`` uses ``unixfs-v0-2015``, ``structural-v1`` uses ``unixfs-v1-2025``.
``structural+buzhash``, ``structural+rabin``, ``structural+fastcdc``
    The structural layout with CDC inside member files (``unixfs-v1-2025`` with the chunker
    swapped), so an edited big file shares its unchanged stretches too.
``stream-buzhash``
    casync-like: the decompressed body (for a tar the tar stream itself; for a zip the local
    headers, uncompressed contents and central directory in file order) chunked with buzhash as
    one stream, ``unixfs-v1-2025`` layout. Headers stay inline, so only compressor settings would
    still be needed as a recipe (not counted: a few dozen bytes).
``delta-zstd``, ``delta-zstd-9``
    The bound: the decompressed body of each version compressed with zstd using the previous
    version's body (same project, same kind: sdist after sdist, wheel after wheel) as reference
    (``zstd -19 --long=31 --patch-from``, the CLI); the first version is compressed alone.
    ``delta-zstd-9`` is the same at level 9, the looser bound of earlier reports. One
    "block" per archive: the patch, or the archive itself when that is smaller (incompressible
    content), so it is never above ``whole``. It is what a user holding the previous version
    downloads.

``structural+nested``, ``structural+nested+buzhash``
    The structural layout with ``--open-nested``: a member whose name ends like an archive
    (:data:`importer.archive.nested.NESTED_SUFFIXES`) and that parses as one (a plain ``.gz``
    as a one-member "raw" archive) becomes a directory of its decoded contents in the tree, with
    its own skeleton frame, recipe and root as the source of the parent's member entry, down to
    :data:`~importer.archive.nested.MAX_NESTING_DEPTH` levels. ``+buzhash`` cuts member files
    with buzhash (``unixfs-v1-2025``), ``structural+nested`` uses ``unixfs-v0-2015`` like
    ``structural``.

Approximation in the structural strategies (documented here, the one place): the benchmark does
not run the compressor search (it decides nothing about dedup, only how to re-deflate). Every
deflated zip member is taken as replayed with one shared parameter set, and a compressed tar's
stream likewise, so the recipe has the exact member table, skeleton frame, outer items and
``extra`` list of a real import, and a params table of one typical entry. A real import whose
search fails keeps that member's compressed bytes as an extra file (more bytes than counted here).
For the nested strategies the same holds one level down: every nested member that parses is
taken as opened (a real import keeps it a plain file when its streams are not reproduced, or when
a nested member is verbatim, which the benchmark does follow), and the nested decoded archive is
built in memory from the member's bytes (the importer spills it to a temporary file: same blocks).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO, Final

from importer.adder import Adder
from importer.archive.nested import MAX_NESTING_DEPTH
from importer.archive.recipe import (
    VERBATIM,
    ArchiveRoot,
    MemberEntry,
    OuterStream,
    Recipe,
    body_of_format,
    write_recipe,
    write_root,
)
from importer.archive.tree import TreeBuilder
from importer.chunkers.fixed import FixedChunker
from importer.compress import CompressorParams
from importer.dag.cid import RAW, cid_of_block
from importer.dag.directory import build_symlink
from importer.layout.builder import DagNode
from importer.profiles import ImportSettings, resolve_settings
from importer.sinks.base import BlockSink
from importer.sources.base import METHOD_DEFLATED

from .decoded import DecodedArchive, open_nested
from .delta_zstd import DELTA_FAST_LEVEL, DELTA_LEVEL, DELTA_WINDOW_LOG, delta_patch

#: The one compressor parameter set the recipe approximation records (zlib level 6, raw deflate:
#: what Python's zipfile and most wheel builders use).
TYPICAL_PARAMS: Final = CompressorParams("zlib", "zlib-1", 6, mem_level=8, wbits=-15).to_dict()

V0: Final = resolve_settings(profile="unixfs-v0-2015")
V1: Final = resolve_settings(profile="unixfs-v1-2025")


#: ``store(archive, previous archive of the same chain or None, sink) -> root CID``.
StoreFn = Callable[[DecodedArchive, DecodedArchive | None, BlockSink], bytes]


@dataclass(frozen=True, slots=True)
class Strategy:
    """A named way of storing archives; ``family`` groups them in tables and figures."""

    name: str
    family: str
    summary: str
    store: StoreFn


STRATEGIES: dict[str, Strategy] = {}


def register(strategy: Strategy) -> Strategy:
    if strategy.name in STRATEGIES:
        raise ValueError(f"strategy {strategy.name!r} is registered twice")
    STRATEGIES[strategy.name] = strategy
    return strategy


def get_strategies(names: Iterable[str] | None = None) -> list[Strategy]:
    """The strategies named (all, in registry order, for None); unknown names are an error."""
    if names is None:
        return list(STRATEGIES.values())
    out = []
    for name in names:
        if name not in STRATEGIES:
            raise KeyError(f"unknown strategy {name!r} (known: {', '.join(STRATEGIES)})")
        out.append(STRATEGIES[name])
    return out


@dataclass(frozen=True, slots=True)
class InMemoryChunker:
    """A CDC chunker over inputs already in memory: one kernel call, no 8 MiB read buffer per file.

    The streaming path allocates its read buffer per stream, which dominates for the thousands of
    small member files of an archive; the cut points are the same (the chunkers guarantee that
    they do not depend on how the input is split into reads; a test checks it here too).
    """

    inner: Any

    @property
    def spec(self) -> str:
        return str(self.inner.spec)

    def chunks(self, stream: BinaryIO) -> Iterator[bytes]:
        data = stream.read()
        start = 0
        for end in self.inner.cut_points(data):
            yield data[start:end]
            start = end


def make_adder(settings: ImportSettings, sink: BlockSink) -> Adder:
    """An Adder whose CDC chunker (if any) cuts in-memory inputs in one call."""
    adder = Adder(settings, sink)
    if not isinstance(adder.chunker, FixedChunker):
        adder.chunker = InMemoryChunker(adder.chunker)
    return adder


def _whole(archive: DecodedArchive, previous: DecodedArchive | None, sink: BlockSink) -> bytes:
    cid = cid_of_block(1, RAW, archive.data)
    sink.put(cid, archive.data)
    return cid


def _archive_bytes(settings: ImportSettings) -> StoreFn:
    def store(archive: DecodedArchive, previous: DecodedArchive | None, sink: BlockSink) -> bytes:
        return make_adder(settings, sink).add_stream(io.BytesIO(archive.data)).cid
    return store


def _stream(settings: ImportSettings) -> StoreFn:
    def store(archive: DecodedArchive, previous: DecodedArchive | None, sink: BlockSink) -> bytes:
        return make_adder(settings, sink).add_stream(io.BytesIO(archive.body)).cid
    return store


def _structural(settings: ImportSettings, *, nested: bool = False) -> StoreFn:
    def store(archive: DecodedArchive, previous: DecodedArchive | None, sink: BlockSink) -> bytes:
        return store_structural(archive, settings, sink, open_nested=nested)
    return store


def store_structural(archive: DecodedArchive, settings: ImportSettings, sink: BlockSink, *,
                     open_nested: bool = False) -> bytes:
    """The archive importer's blocks: tree of member files, skeleton frame, recipe, root."""
    return _store_structural(archive, settings, sink, open_nested, 0)[0]


def _store_structural(archive: DecodedArchive, settings: ImportSettings, sink: BlockSink, nested: bool,
                      depth: int) -> tuple[bytes, DagNode]:
    """(root CID, tree node) of ``archive``; with ``nested`` its archive members opened up to the depth limit."""
    adder = make_adder(settings, sink)
    tree = TreeBuilder(archive.filename)
    extra: list[bytes] = []
    entries: list[MemberEntry] = []
    deflated = False
    for m in archive.members:
        member = m.member
        if member.kind == "symlink" and m.path is not None:
            tree.add_file(m.path, build_symlink(member.link_target or b"", settings.cid_version, sink))
        if member.kind != "file" and m.length == 0 and member.data_length == 0:
            # Directories, links and other entries without stored bytes: nothing to point at.
            if m.path is not None and member.kind == "dir":
                tree.add_dir(m.path)
            entries.append(MemberEntry(m.skeleton_before, -1, VERBATIM))
            continue
        replayed = archive.format == "zip" and member.method == METHOD_DEFLATED and not member.verbatim
        deflated = deflated or replayed
        inner = open_nested(archive, m) if nested and depth < MAX_NESTING_DEPTH else None
        if inner is not None:
            # Opened: its tree is a directory in ours, its root the member's source.
            root, inner_tree = _store_structural(inner, settings, sink, nested, depth + 1)
            if m.path is not None:
                tree.add_file(m.path, DagNode(inner_tree.cid, inner_tree.tsize, m.length))
            entries.append(MemberEntry(m.skeleton_before, root, 0 if replayed else VERBATIM))
            continue
        node = adder.add_stream(io.BytesIO(archive.content(m)))
        source: str | int
        if m.path is not None and member.kind == "file":
            tree.add_file(m.path, node)
            source = m.path
        else:
            extra.append(node.cid)
            source = len(extra) - 1
        entries.append(MemberEntry(m.skeleton_before, source, 0 if replayed else VERBATIM))
    tree_node = tree.build(settings.directory, sink)
    skeleton = adder.add_stream(io.BytesIO(archive.skeleton_frame))
    streams = any(isinstance(item, OuterStream) for item in archive.outer)
    recipe = Recipe(
        body=body_of_format(archive.format), outer=archive.outer, skeleton=skeleton.cid,
        skeleton_size=archive.skeleton_size, params=(TYPICAL_PARAMS,) if deflated or streams else (),
        extra=tuple(extra), members=tuple(entries), tail=archive.tail,
    )
    recipe_cid = write_recipe(recipe, sink)
    root = write_root(ArchiveRoot(archive.filename, len(archive.data), archive.sha256, tree_node.cid, recipe_cid),
                      sink)
    return root, tree_node


def _delta(level: int) -> StoreFn:
    def store(archive: DecodedArchive, previous: DecodedArchive | None, sink: BlockSink) -> bytes:
        patch = delta_patch(previous, archive, level)
        if len(patch) >= len(archive.data):
            patch = archive.data  # a delta store ships the archive itself when no patch is smaller
        cid = cid_of_block(1, RAW, patch)
        sink.put(cid, patch)
        return cid
    return store


def _with(profile: ImportSettings, chunker: str) -> ImportSettings:
    return resolve_settings(profile=profile.profile, chunker=chunker)


#: FastCDC averages: 16 KiB (fine, restic/casync-like), 64 KiB, 256 KiB (Kubo's default block size);
#: MIN = AVG/4 and MAX = AVG*4 as in the FastCDC paper's normalised setting.
FASTCDC_AVERAGES: Final = (16384, 65536, 262144)
#: The CDC used inside member files: 64 KiB average, most member files are far smaller and stay whole.
STRUCTURAL_FASTCDC: Final = "fastcdc-16384-65536-262144"

register(Strategy("whole", "whole", "one raw block per archive", _whole))
register(Strategy("fixed-262144", "archive", "Kubo fixed 256 KiB, unixfs-v0-2015",
                  _archive_bytes(_with(V0, "size-262144"))))
register(Strategy("fixed-1048576", "archive", "Kubo fixed 1 MiB, unixfs-v1-2025",
                  _archive_bytes(_with(V1, "size-1048576"))))
register(Strategy("rabin", "archive", "Kubo rabin on archive bytes", _archive_bytes(_with(V1, "rabin"))))
register(Strategy("buzhash", "archive", "Kubo buzhash on archive bytes", _archive_bytes(_with(V1, "buzhash"))))
for _avg in FASTCDC_AVERAGES:
    _spec = f"fastcdc-{_avg // 4}-{_avg}-{_avg * 4}"
    register(Strategy(_spec, "archive", f"FastCDC avg {_avg // 1024} KiB on archive bytes",
                      _archive_bytes(_with(V1, _spec))))
register(Strategy("structural", "structural", "archive importer, unixfs-v0-2015", _structural(V0)))
register(Strategy("structural-v1", "structural", "archive importer, unixfs-v1-2025", _structural(V1)))
register(Strategy("structural+buzhash", "structural", "archive importer, buzhash in member files",
                  _structural(_with(V1, "buzhash"))))
register(Strategy("structural+rabin", "structural", "archive importer, rabin in member files",
                  _structural(_with(V1, "rabin"))))
register(Strategy("structural+fastcdc", "structural", f"archive importer, {STRUCTURAL_FASTCDC} in member files",
                  _structural(_with(V1, STRUCTURAL_FASTCDC))))
register(Strategy("structural+nested", "structural", "archive importer --open-nested, unixfs-v0-2015",
                  _structural(V0, nested=True)))
register(Strategy("structural+nested+buzhash", "structural", "archive importer --open-nested, buzhash in member files",
                  _structural(_with(V1, "buzhash"), nested=True)))
register(Strategy("stream-buzhash", "stream", "casync-like: buzhash over the decompressed body",
                  _stream(_with(V1, "buzhash"))))
register(Strategy("delta-zstd", "delta",
                  f"zstd -{DELTA_LEVEL} --long={DELTA_WINDOW_LOG} --patch-from previous version (bound)",
                  _delta(DELTA_LEVEL)))
register(Strategy("delta-zstd-9", "delta",
                  f"zstd -{DELTA_FAST_LEVEL} --long={DELTA_WINDOW_LOG} --patch-from previous version (the older, looser bound)",
                  _delta(DELTA_FAST_LEVEL)))
