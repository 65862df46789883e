"""``get``'s writer: a UnixFS file, directory or symlink written out, nothing ever outside the target.

The node is built under a part name beside the output (``.NAME.<hex>.part``) and renamed into
place when complete, so a failure leaves nothing behind. The walk is a loop over a stack of
directory listings, so a tree of any depth is written without recursion. Inside it:

* every entry name is one plain path component (no ``/``, NUL, ``.`` or ``..``), at most once
  per directory, and nothing is written through a name that exists: files are opened with
  ``O_EXCL | O_NOFOLLOW``, directories are made by ``mkdir`` (which never follows a link);
* every symlink is judged as CPython's tarfile ``data`` filter (PEP 706) judges one: an absolute
  target is refused, and a relative one is resolved from the link's directory through the links
  already written; if it lands outside the output, the link is refused. Because a link written
  early can be re-aimed by a link written after it (``l2 -> ok/l1/..`` before ``ok/l1 -> ..``
  exists), every link is resolved again once the whole tree is written, before the rename;
* files get the usual permissions (0o666 less the umask, from ``open``), directories 0o777 less
  the umask; a stored UnixFS mode replaces them (setuid/setgid dropped).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from ..dag.cid import format_cid
from ..dag.reader import Entry, Kind, Node, iter_directory, iter_file, stat
from ..dag.unixfs import Mtime
from ..errors import InvalidBlock, OutputError
from ..sinks.base import BlockSource
from ..sinks.partfile import part_name, refuse_existing

#: Permission bits ``get`` applies from a stored mode: rwx for all three classes and the sticky
#: bit (0o1777). setuid/setgid (0o6000) are dropped: a downloaded tree should never carry them.
APPLIED_MODE_BITS: Final = 0o1777


@dataclass(frozen=True, slots=True)
class _Link:
    """A symlink written, kept for the final check: where it is, its CID, its target."""

    path: Path
    cid: bytes
    target: bytes


def extract(store: BlockSource, cid: bytes, output: Path, *, force: bool = False) -> None:
    """Write the node ``cid`` to ``output``, atomically: built under a part name, then renamed.

    Anything already at ``output`` is replaced only with ``force``, and a directory never.
    """
    node = stat(store, cid)
    refuse_existing(output, force)
    parent = output.parent
    if not parent.is_dir():
        raise OutputError(str(parent), "no such directory")
    tmp = parent / part_name(output.name)
    links: list[_Link] = []
    try:
        # The output's own directory bounds a top-level symlink; a tree bounds its own links.
        if node.kind is Kind.DIRECTORY:
            directories = _write_tree(store, node, tmp, links)
            for link in links:
                _check_link(link, tmp, final=True)
            # Directory modes and times last: a stored 0o000 must not hide a link from the check
            # above, and writing into a directory would change its time. Children come first.
            for directory, path in directories:
                _apply_attributes(directory, path)
        else:
            _write_leaf(store, node, tmp, links)
            if links:
                _check_link(links[0], parent, final=True, shown=output)
        if force and node.kind is Kind.DIRECTORY and os.path.lexists(output):
            os.unlink(output)  # a file or a link (never a directory): rename(2) cannot put a directory there
        os.replace(tmp, output)
    except BaseException:
        remove_tree(tmp)
        raise


def _write_tree(store: BlockSource, root: Node, path: Path, links: list[_Link]) -> list[tuple[Node, Path]]:
    """Write the directory ``root`` at ``path``, depth first, with a stack instead of recursion;
    return the directories written, children before their parents."""
    os.mkdir(path, 0o700)  # owner-only while filling it; the final modes are applied by the caller
    done: list[tuple[Node, Path]] = []
    stack: list[tuple[Node, Path, Iterator[Entry]]] = [(root, path, iter_directory(store, root.cid))]
    while stack:
        node, here, entries = stack[-1]
        entry = next(entries, None)
        if entry is None:
            stack.pop()
            done.append((node, here))
            continue
        child = here / check_name(node.cid, entry.name)
        if os.path.lexists(child):
            raise InvalidBlock(format_cid(node.cid), f"directory has two entries named {entry.name!r}")
        child_node = stat(store, entry.cid)
        if child_node.kind is Kind.DIRECTORY:
            os.mkdir(child, 0o700)
            stack.append((child_node, child, iter_directory(store, child_node.cid)))
        else:
            _write_leaf(store, child_node, child, links)
            if child_node.kind is Kind.SYMLINK:
                _check_link(links[-1], path, final=False)
    return done


def _write_leaf(store: BlockSource, node: Node, path: Path, links: list[_Link]) -> None:
    """Create the file or symlink ``path`` (which must not exist) from ``node``."""
    if node.kind is Kind.FILE:
        # O_EXCL | O_NOFOLLOW: fail rather than write through anything already at this name.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
        with os.fdopen(fd, "wb") as f:
            for chunk in iter_file(store, node.cid):
                f.write(chunk)
    else:
        assert node.target is not None
        if b"\0" in node.target or not node.target:
            raise InvalidBlock(format_cid(node.cid), "symlink target is empty or holds a NUL byte")
        os.symlink(node.target, os.fsencode(path))
        links.append(_Link(path, node.cid, node.target))
    _apply_attributes(node, path)


def _check_link(link: _Link, root: Path, *, final: bool, shown: Path | None = None) -> None:
    """Refuse a link whose target is absolute or resolves outside ``root`` (PEP 706's rule)."""
    target = os.fsdecode(link.target)
    where = shown if shown is not None else link.path.relative_to(root)
    if os.path.isabs(target):
        raise InvalidBlock(format_cid(link.cid), f"symlink {str(where)!r} -> {target!r} is absolute")
    real_root = os.path.realpath(root)
    # Once every link exists, resolving the link itself is what the kernel will do; while the
    # tree is being written, its target is resolved from its directory as it stands.
    resolved = os.path.realpath(link.path if final else os.path.join(link.path.parent, target))
    if os.path.commonpath([resolved, real_root]) != real_root:
        raise InvalidBlock(format_cid(link.cid), f"symlink {str(where)!r} -> {target!r} leads outside the "
                                                 "output directory")


def remove_tree(path: Path) -> None:
    """Remove what a failed ``get`` left, however deep: a loop over a stack of directories (as
    ``os.walk`` and ``shutil.rmtree`` recurse before Python 3.12), each made writable first
    (a stored mode like 0o555 would block the removal); links are removed, never followed."""
    if not os.path.lexists(path):
        return
    if not path.is_dir() or path.is_symlink():
        os.unlink(path)
        return
    stack: list[tuple[Path, bool]] = [(path, False)]
    while stack:
        here, emptied = stack.pop()
        if emptied:
            os.rmdir(here)
            continue
        os.chmod(here, 0o700)
        stack.append((here, True))
        with os.scandir(here) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append((Path(entry.path), False))
                else:
                    os.unlink(entry.path)


def check_name(cid: bytes, name: str) -> str:
    """Refuse entry names that could escape the output directory or that no file system allows."""
    if name in ("", ".", "..") or "/" in name or "\0" in name:
        raise InvalidBlock(format_cid(cid), f"directory entry name {name!r} is not a safe file name")
    return name


def _apply_attributes(node: Node, path: Path) -> None:
    is_link = node.kind is Kind.SYMLINK
    if node.kind is Kind.DIRECTORY and node.mode is None:
        os.chmod(path, 0o777 & ~_umask())
    elif node.mode is not None and not is_link:
        os.chmod(path, node.mode & APPLIED_MODE_BITS)
    if node.mtime is not None:
        ns = _mtime_ns(node.mtime)
        if is_link and os.utime not in os.supports_follow_symlinks:
            return
        os.utime(path, ns=(ns, ns), follow_symlinks=not is_link)


def _mtime_ns(mtime: Mtime) -> int:
    return mtime.seconds * 1_000_000_000 + mtime.nanos


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
