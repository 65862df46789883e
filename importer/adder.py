"""``ipfs add`` for paths on disk: walks files and directories and builds their UnixFS DAGs.

This is the facade that wires the pipeline (boxo ``importer.go`` and kubo ``coreunix/add.go``):
a chunker from the settings, a layout, the directory builder, and a sink. It follows Kubo's
inclusion rules: hidden names (starting with ``.``) are skipped inside directories unless
``hidden``; a hidden path named explicitly is still added; empty directories are kept;
symlinks become Symlink nodes (never followed); anything else (FIFO, socket, device) is an
error. Directory entries are read in byte order of their names, like Go's ``os.ReadDir``.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from .chunkers import parse_chunker
from .dag.directory import DirEntry, build_directory, build_symlink
from .dag.unixfs import Mtime
from .errors import InputError
from .layout import DagBuilder, DagNode, FileAttributes, balanced_layout, trickle_layout
from .layout.builder import NO_ATTRIBUTES
from .profiles import ImportSettings
from .sinks.base import BlockSink


@dataclass(frozen=True, slots=True)
class AddedEntry:
    """One line of ``add`` output: the display path and the node made for it."""

    path: str
    node: DagNode
    is_dir: bool


Reporter = Callable[[AddedEntry], None]

_KIND_NAMES = {
    stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}


class Adder:
    """Adds files, byte streams and directory trees with one set of settings into one sink."""

    def __init__(self, settings: ImportSettings, sink: BlockSink, report: Reporter | None = None) -> None:
        self.settings = settings
        self.sink = sink
        self.chunker = parse_chunker(settings.chunker)
        self.builder = DagBuilder(sink, cid_version=settings.cid_version, raw_leaves=settings.raw_leaves,
                                  max_links=settings.max_file_links)
        self._layout = trickle_layout if settings.layout == "trickle" else balanced_layout
        self._report = report
        self._pending_dirs: list[AddedEntry] = []

    # -- streams ------------------------------------------------------------------------------

    def add_stream(self, stream: BinaryIO, attrs: FileAttributes = NO_ATTRIBUTES) -> DagNode:
        """Chunk and lay out one file's bytes; return its root."""
        return self._layout(self.builder, self.chunker.chunks(stream), attrs)

    def add_symlink(self, target: bytes, attrs: FileAttributes = NO_ATTRIBUTES) -> DagNode:
        return build_symlink(target, self.settings.cid_version, self.sink, attrs)

    def add_directory(self, entries: list[DirEntry], attrs: FileAttributes = NO_ATTRIBUTES) -> DagNode:
        return build_directory(entries, self.settings.directory, self.sink, attrs)

    # -- paths --------------------------------------------------------------------------------

    def add_path(self, path: str, *, recursive: bool) -> DagNode:
        """Add one command-line path; report every file and directory below it."""
        display = os.path.basename(os.path.normpath(os.path.abspath(path))) or path
        node = self._add(path, display, recursive=recursive, top=True)
        self.flush_reports()
        return node

    def flush_reports(self) -> None:
        """Report the directories collected so far (Kubo prints them after all files)."""
        if self._report is not None:
            for entry in self._pending_dirs:
                self._report(entry)
        self._pending_dirs.clear()

    def _attrs(self, st: os.stat_result) -> FileAttributes:
        mode = stat.S_IMODE(st.st_mode) if self.settings.preserve_mode else None
        mtime = None
        if self.settings.preserve_mtime:
            seconds, nanos = divmod(st.st_mtime_ns, 1_000_000_000)
            mtime = Mtime(seconds, nanos)
        return FileAttributes(mode=mode or None, mtime=mtime)

    def _add(self, path: str, display: str, *, recursive: bool, top: bool = False) -> DagNode:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            raise InputError(path, "no such file or directory") from None
        except OSError as e:
            raise InputError(path, e.strerror or str(e)) from None
        kind = stat.S_IFMT(st.st_mode)
        if kind == stat.S_IFREG:
            node = self._add_file(path, st)
            self._emit(AddedEntry(display, node, False))
            return node
        if kind == stat.S_IFLNK:
            try:
                target = os.readlink(os.fsencode(path))
            except OSError as e:
                raise InputError(path, e.strerror or str(e)) from None
            node = self.add_symlink(target, self._attrs(st))
            self._emit(AddedEntry(display, node, False))
            return node
        if kind == stat.S_IFDIR:
            if not recursive:
                raise InputError(path, "is a directory, use the '-r' flag to specify directories")
            return self._add_dir(path, display, st)
        raise InputError(path, f"is {_KIND_NAMES.get(kind, 'an unsupported file type')}; "
                               "only regular files, directories and symlinks can be added")

    def _add_file(self, path: str, st: os.stat_result) -> DagNode:
        try:
            with open(path, "rb", buffering=0) as f:
                return self.add_stream(f, self._attrs(st))
        except PermissionError:
            raise InputError(path, "permission denied") from None
        except IsADirectoryError:
            raise InputError(path, "is a directory") from None
        except OSError as e:
            raise InputError(path, e.strerror or str(e)) from None

    def _add_dir(self, path: str, display: str, st: os.stat_result) -> DagNode:
        try:
            names = sorted(os.listdir(os.fsencode(path)))
        except OSError as e:
            raise InputError(path, e.strerror or str(e)) from None
        entries: list[DirEntry] = []
        for name in names:
            if name.startswith(b".") and not self.settings.hidden:
                continue
            child_path = os.path.join(path, os.fsdecode(name))
            child_display = f"{display}/{os.fsdecode(name)}"
            entries.append(DirEntry(name, self._add(child_path, child_display, recursive=True)))
        node = self.add_directory(entries, self._attrs(st))
        self._pending_dirs.append(AddedEntry(display, node, True))
        return node

    def _emit(self, entry: AddedEntry) -> None:
        if self._report is not None:
            self._report(entry)
