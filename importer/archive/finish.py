"""The end of an archive import: the tree, the skeleton frame, the recipe and the root.

After the member pass (:mod:`.members`) every member has its content in the store and its
compressor search done or running. :class:`Finish` waits for them in member order, places each
member in the UnixFS tree (or, when its path cannot live there, links its content from the
recipe's ``extra`` list: see :mod:`importer.sources.names`), stores a stream that nothing
reproduces as it was, as its own leaf, compresses the skeleton into one zstd frame as it streams,
and writes the recipe and the archive root.
"""

from __future__ import annotations

import itertools
from typing import Final

import zstandard

from ..adder import Adder
from ..dag.directory import build_symlink
from ..layout import DagNode
from ..profiles import ImportSettings
from ..sinks.base import BlockSink
from ..sources.names import classify_members
from .members import MemberPass, PendingMember
from .recipe import VERBATIM, ArchiveRoot, MemberEntry, Recipe, body_of_format, write_recipe, write_root
from .report import MemberReport
from .search_window import search_result
from .streams import PIECE, PieceReader, pread_pieces
from .tree import TreeBuilder

#: zstd level of the skeleton frame: skeletons are small (tens of bytes per member) and written
#: once, so a slow, strong level costs little and every later version stores less. Level 19 runs
#: at about 0.5 MB/s, so above SKELETON_STRONG_LIMIT (0.5 s of it) level 12 is used: 100x faster
#: on the 12 MB skeleton of a 100,000-member zip, for a frame about 20% larger.
SKELETON_ZSTD_LEVEL: Final = 19
SKELETON_FAST_LEVEL: Final = 12
SKELETON_STRONG_LIMIT: Final = 256 * 1024
#: Member table source of a member with no stored bytes (directories, links, empty entries).
_NO_SOURCE: Final = -1


def skeleton_level(size: int) -> int:
    """The zstd level of a skeleton of ``size`` bytes (SKELETON_ZSTD_LEVEL, or FAST past the limit)."""
    return SKELETON_ZSTD_LEVEL if size <= SKELETON_STRONG_LIMIT else SKELETON_FAST_LEVEL


class Finish:
    """Turns what the member pass left into blocks; counts replayed and verbatim bytes per member."""

    def __init__(self, run: MemberPass, settings: ImportSettings, sink: BlockSink) -> None:
        self.run = run
        self.settings = settings
        self.sink = sink
        self.adder: Adder = run.adder
        self.tables = run.tables
        self.reports: list[MemberReport] = []
        self.replayed_bytes = 0
        self.verbatim_bytes = 0
        self.tree_tsize = 0

    def write(self, name: str, size: int, sha256: bytes) -> tuple[bytes, bytes]:
        """Write the tree, skeleton, recipe and root of the archive; return (root, tree) CIDs."""
        run = self.run
        for pending in run.members:
            if pending.nested is not None:
                run.nested.resolve(pending.nested)
        placements = classify_members(p.member for p in run.members)
        tree = TreeBuilder(name)
        entries = [self._entry(pending, placement.path, placement.reason, tree)
                   for pending, placement in zip(run.members, placements, strict=True)]
        tree_node = tree.build(self.settings.directory, self.sink)
        self.tree_tsize = tree_node.tsize
        recipe = Recipe(
            body=body_of_format(run.opened.format), outer=tuple(run.outer),
            skeleton=self._skeleton().cid, skeleton_size=run.outer_skeleton.size + run.body_skeleton.size,
            params=tuple(self.tables.params), extra=tuple(self.tables.extra), members=tuple(entries), tail=run.tail,
        )
        recipe_cid = write_recipe(recipe, self.sink)
        root = write_root(ArchiveRoot(name, size, sha256, tree_node.cid, recipe_cid), self.sink)
        return root, tree_node.cid

    def _skeleton(self) -> DagNode:
        """The outer skeleton runs, then the body's, as one zstd frame compressed as it streams."""
        run = self.run
        total = run.outer_skeleton.size + run.body_skeleton.size
        blob = PieceReader(itertools.chain(run.outer_skeleton.pieces(), run.body_skeleton.pieces()))
        frame = zstandard.ZstdCompressor(level=skeleton_level(total)).read_to_iter(
            blob, size=total, read_size=PIECE, write_size=PIECE)  # type: ignore[arg-type]
        return self.adder.add_stream(PieceReader(frame))  # type: ignore[arg-type]  # reads like a BinaryIO

    def _entry(self, pending: PendingMember, path: str | None, reason: str | None, tree: TreeBuilder) -> MemberEntry:
        member = pending.member
        label = member.label
        nested = pending.nested
        if nested is not None and nested.root is not None and nested.tree is not None:
            return self._nested_entry(pending, nested.root, nested.tree, path, reason, tree)
        content = nested.leaf if nested is not None else pending.content
        if path is not None:
            if member.kind == "dir":
                tree.add_dir(path)
            elif member.kind == "symlink":
                tree.add_file(path, build_symlink(member.link_target or b"", self.settings.cid_version, self.sink))
            elif content is not None:
                tree.add_file(path, content)
        if content is None or member.data_length == 0 and content.size == 0 and member.kind != "file":
            self.reports.append(MemberReport(member.index, label, 0, member.data_length, "empty", None, path, reason))
            return MemberEntry(pending.skeleton_before, _NO_SOURCE, VERBATIM)
        source_is_tree = path is not None and member.kind == "file"
        size = content.size  # the member's uncompressed bytes (a raw .gz member has no size field)
        cid = content.cid

        def content_source() -> str | int:
            if source_is_tree and path is not None:
                return path
            return self.tables.add_extra(cid)

        if pending.search is None:
            # Stored as-is: zip method 0, tar contents, verbatim members (their stored bytes).
            how = "verbatim" if member.verbatim else "stored"
            if member.verbatim or self.run.outer_verbatim:
                self.verbatim_bytes += size
            else:
                self.replayed_bytes += size
            source = content_source() if not member.verbatim else self.tables.add_extra(cid)
            self.reports.append(MemberReport(member.index, label, size, member.data_length, how, None, path,
                                             member.verbatim_reason or reason))
            return MemberEntry(pending.skeleton_before, source, VERBATIM)
        result = search_result(pending.search)
        if result.params is not None:
            self.replayed_bytes += size
            index = self.tables.add_params(result.params)
            self.reports.append(MemberReport(member.index, label, size, member.data_length, "replayed",
                                             result.params.label, path, reason))
            return MemberEntry(pending.skeleton_before, content_source(), index)
        # Nothing reproduces the stream: keep the original compressed bytes as their own leaf.
        return self._kept_stream(pending, size, path, result.reason)

    def _nested_entry(self, pending: PendingMember, root: bytes, nested_tree: DagNode, path: str | None,
                      reason: str | None, tree: TreeBuilder) -> MemberEntry:
        """A member opened as an archive: its tree is a directory in ours, its root the source."""
        member = pending.member
        if path is not None:
            tree.add_file(path, nested_tree)
        params = VERBATIM
        label = None
        if pending.search is not None:
            result = search_result(pending.search)
            if result.params is None:
                # The member's own stream is not reproducible: keep it whole, as without nesting.
                return self._kept_stream(pending, member.size, path, result.reason)
            params = self.tables.add_params(result.params)
            label = result.params.label
        size = pending.content.size if pending.content is not None else member.size
        self.replayed_bytes += size
        self.reports.append(MemberReport(member.index, member.label, size, member.data_length, "nested", label,
                                         path, reason))
        return MemberEntry(pending.skeleton_before, root, params)

    def _kept_stream(self, pending: PendingMember, size: int, path: str | None, reason: str | None) -> MemberEntry:
        """A member whose stored stream nothing reproduces: its stored bytes as their own leaf."""
        member = pending.member
        pieces = pread_pieces(self.run.read_at, member.data_offset, member.data_length)
        raw = self.adder.add_stream(PieceReader(pieces))  # type: ignore[arg-type]  # reads like a BinaryIO
        self.verbatim_bytes += size
        self.reports.append(MemberReport(member.index, member.label, size, member.data_length, "verbatim", None,
                                         path, reason))
        return MemberEntry(pending.skeleton_before, self.tables.add_extra(raw.cid), VERBATIM)
