"""Decide which archive members can live in the UnixFS tree, and why the others stay recipe-only.

A member goes into the tree under a normalised relative path when its name is valid UTF-8,
relative (no leading ``/``, no drive letter), free of backslashes, NULs, ``..`` and empty
components, not already taken, not below a non-directory, and it is a regular file, a
directory or a symlink whose target stays inside the archive root (and has no backslash).
Everything else (hardlinks, devices, fifos, verbatim members, escaping symlinks, duplicates) is
still rebuilt exactly from the recipe; :class:`Placement` records the reason. Leading ``./``
and inner ``.`` components are dropped, as ``tar`` itself does when it extracts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .base import Member


@dataclass(frozen=True, slots=True)
class Placement:
    """Where member ``index`` goes: ``path`` in the tree, or None with ``reason`` (recipe-only)."""

    index: int
    path: str | None
    reason: str | None = None

    @property
    def in_tree(self) -> bool:
        return self.path is not None


@dataclass(slots=True)
class _Node:
    kind: str  # "dir" or the member kind that claimed the path
    index: int | None  # None for a directory only implied by deeper names


def split_path(name: str, is_dir: bool) -> list[str] | str:
    """The path components of ``name``, or the reason it cannot be a tree path.

    >>> split_path("./pkg/mod.py", False)
    ['pkg', 'mod.py']
    >>> split_path("pkg/../../etc/passwd", False)
    "'..' component"
    """
    if "\x00" in name:
        return "name contains a NUL byte"
    if name.startswith("/"):
        return "absolute path"
    if "\\" in name:
        # Zip names use forward slashes only (APPNOTE 4.4.17); a backslash is a separator to a
        # Windows extractor, so "..\\x" would escape there: such names stay in the recipe.
        return "name contains a backslash"
    if len(name) > 1 and name[1] == ":" and name[0].isascii() and name[0].isalpha():
        return "absolute path (drive letter)"
    if is_dir and name.endswith("/"):
        name = name[:-1]
    parts = name.split("/")
    if "" in parts:
        return "empty path component"
    if ".." in parts:
        return "'..' component"
    parts = [part for part in parts if part != "."]
    if not parts:
        return "names the archive root"
    return parts


def target_escapes(parent: list[str], target: str) -> bool:
    """True if a symlink in directory ``parent`` pointing at ``target`` leaves the archive root.

    >>> target_escapes(["pkg"], "../README")
    False
    >>> target_escapes(["pkg"], "../../etc/passwd")
    True
    """
    if target.startswith("/") or "\\" in target or target[1:2] == ":":
        return True  # absolute, or a path that a Windows extractor reads otherwise
    depth = len(parent)
    for part in target.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        elif part not in ("", "."):
            depth += 1
    return False


def classify_members(members: Iterable[Member]) -> list[Placement]:
    """One :class:`Placement` per member, in order; earlier members win name conflicts."""
    nodes: dict[str, _Node] = {}
    placements: list[Placement] = []
    for member in members:
        reason = _member_reason(member)
        parts: list[str] | str = reason or split_path(member.name or "", member.kind == "dir")
        if isinstance(parts, str):
            placements.append(Placement(member.index, None, parts))
            continue
        if member.kind == "symlink":
            target = (member.link_target or b"").decode("utf-8", "replace")
            if target_escapes(parts[:-1], target):
                placements.append(Placement(member.index, None, "symlink target escapes the archive root"))
                continue
        conflict = _claim(nodes, parts, member)
        path = "/".join(parts)
        placements.append(Placement(member.index, None, conflict) if conflict else Placement(member.index, path))
    return placements


def _member_reason(member: Member) -> str | None:
    """Reasons that do not depend on the other members."""
    if member.name is None:
        return "name is not valid UTF-8"
    if member.verbatim:
        return f"kept verbatim: {member.verbatim_reason}"
    if member.kind == "hardlink":
        return "hardlink"
    if member.kind == "other":
        return "device, fifo or other special file"
    if member.kind == "symlink":
        if member.link_target is None:
            return "symlink target unknown"
        try:
            member.link_target.decode("utf-8")
        except UnicodeDecodeError:
            return "symlink target is not valid UTF-8"
    return None


def _claim(nodes: dict[str, _Node], parts: list[str], member: Member) -> str | None:
    """Register ``parts`` (and its implied parents) for ``member``; return a conflict reason or None."""
    for depth in range(1, len(parts)):
        prefix = "/".join(parts[:depth])
        node = nodes.get(prefix)
        if node is not None and node.kind != "dir":
            return f"parent {prefix!r} is a {node.kind} (member #{node.index})"
    path = "/".join(parts)
    existing = nodes.get(path)
    if existing is not None:
        if existing.index is None and member.kind == "dir":
            existing.index = member.index  # an explicit entry for a directory already implied
            return None
        if existing.index is None:
            return f"{member.kind} where other members need a directory"
        if existing.kind != member.kind:
            return f"{member.kind} where member #{existing.index} is a {existing.kind}"
        return f"duplicate of member #{existing.index}"
    for depth in range(1, len(parts)):
        nodes.setdefault("/".join(parts[:depth]), _Node("dir", None))
    nodes[path] = _Node(member.kind, member.index)
    return None
