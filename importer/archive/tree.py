"""Assembles the UnixFS directory of an archive's files, as ``add -r --hidden`` of it extracted.

Members arrive in archive order with relative, already-vetted paths; this module places them in
a nested map and, at the end, builds every directory bottom-up with the same directory builder
as ``add`` (so empty directories, HAMT sharding and CIDs are identical). Parent directories that
the archive never lists are created implicitly, as an extractor would.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from ..dag.directory import DirectorySettings, DirEntry, build_directory
from ..errors import InvalidArchive
from ..layout import DagNode
from ..sinks.base import BlockSink


@dataclass(slots=True)
class _Dir:
    children: dict[str, _Dir | DagNode] = field(default_factory=dict)


class TreeBuilder:
    """Collects files, symlinks and directories by path; :meth:`build` returns the root."""

    def __init__(self, archive: str) -> None:
        self.archive = archive
        self.root = _Dir()

    def _parent(self, parts: list[str], member: str) -> _Dir:
        node = self.root
        for part in parts:
            child = node.children.get(part)
            if child is None:
                child = node.children[part] = _Dir()
            if not isinstance(child, _Dir):
                raise InvalidArchive(self.archive, f"{part!r} is both a file and a directory", member)
            node = child
        return node

    def can_place(self, path: str, is_dir: bool) -> bool:
        """True when ``path`` fits: no file where a directory is needed, and no taken name."""
        node = self.root
        parts = path.split("/")
        for part in parts[:-1]:
            child = node.children.get(part)
            if child is None:
                return True
            if not isinstance(child, _Dir):
                return False
            node = child
        existing = node.children.get(parts[-1])
        if existing is None:
            return True
        return is_dir and isinstance(existing, _Dir)

    def add_file(self, path: str, node: DagNode) -> None:
        parts = path.split("/")
        self._parent(parts[:-1], path).children[parts[-1]] = node

    def add_dir(self, path: str) -> None:
        self._parent(path.split("/"), path)

    def paths(self) -> set[str]:
        """Every file and symlink path placed so far."""
        out: set[str] = set()
        stack: list[tuple[str, _Dir]] = [("", self.root)]
        while stack:
            prefix, node = stack.pop()
            for name, child in node.children.items():
                path = f"{prefix}{name}"
                if isinstance(child, _Dir):
                    stack.append((path + "/", child))
                else:
                    out.add(path)
        return out

    def build(self, settings: DirectorySettings, sink: BlockSink) -> DagNode:
        """Build every directory bottom-up, children in insertion order, with a stack instead of
        recursion (an archive may nest directories thousands deep)."""
        stack: list[tuple[str, Iterator[tuple[str, _Dir | DagNode]], list[DirEntry]]] = [
            ("", iter(self.root.children.items()), [])]
        while True:
            name, children, entries = stack[-1]
            item = next(children, None)
            if item is None:
                stack.pop()
                built = build_directory(entries, settings, sink)
                if not stack:
                    return built
                stack[-1][2].append(DirEntry(name.encode("utf-8"), built))
                continue
            child_name, child = item
            if isinstance(child, _Dir):
                stack.append((child_name, iter(child.children.items()), []))
            else:
                entries.append(DirEntry(child_name.encode("utf-8"), child))
