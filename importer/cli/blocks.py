"""The read-side commands: ``cat``, ``get``, ``ls``, ``export`` and ``import-car``.

Each reads from (or, for ``import-car``, writes to) the embedded block store named by
``--store``, ``$DPIP_STORE`` or the user data directory. Every block read is verified against
its CID by the store; every name written by ``get`` is checked so that nothing lands outside
the output path.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import sys
from pathlib import Path

from ..dag.cid import DAG_PB, RAW, cid_codec, format_cid, parse_cid
from ..dag.path import resolve_path, unixfs_node
from ..dag.reader import Kind, Node, PathError, iter_directory, iter_file, stat
from ..dag.unixfs import Mtime
from ..errors import InputError, InvalidBlock
from ..sinks.base import BlockSource
from ..sinks.store import BlockStore, default_store_path
from .options import add_go_bool, add_store_option
from .source import add_source_options, open_block_source

#: Permission bits ``get`` applies from a stored mode: rwx for all three classes and the sticky
#: bit (0o1777). setuid/setgid (0o6000) are dropped: a downloaded tree should never carry them.
APPLIED_MODE_BITS = 0o1777


#: Help of a ``CID[/PATH]`` argument (the path syntax of :mod:`importer.dag.path`).
PATH_HELP = ("a CID, optionally followed by /names below it; below an archive root, ROOT/PATH is a file of its "
             "tree (as ROOT/tree/PATH)")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("cat", help="write a file's bytes to stdout")
    p.add_argument("path", metavar="CID[/PATH]", help=PATH_HELP)
    add_source_options(p)
    p.set_defaults(handler=cmd_cat)

    p = sub.add_parser("get", help="write a file, directory or symlink out of the store")
    p.add_argument("path", metavar="CID[/PATH]", help=PATH_HELP)
    p.add_argument("-o", "--output", metavar="PATH",
                   help="where to write it (default: the last path name, else the CID)")
    add_source_options(p)
    p.set_defaults(handler=cmd_get)

    p = sub.add_parser("ls", help="list a directory as `ipfs ls` does: CID, size, name (an archive root: its files)")
    p.add_argument("paths", nargs="+", metavar="CID[/PATH]", help=PATH_HELP)
    add_source_options(p)
    p.set_defaults(handler=cmd_ls)

    p = sub.add_parser("export", help="write the DAG under a CID to a CARv1 file (ipfs dag export)")
    p.add_argument("path", metavar="CID[/PATH]", help=PATH_HELP)
    p.add_argument("-o", "--output", metavar="FILE.car", required=True)
    add_source_options(p)
    p.set_defaults(handler=cmd_export)

    p = sub.add_parser("import-car", help="verify the blocks of CAR files and put them in the store (ipfs dag import)")
    p.add_argument("cars", nargs="+", metavar="FILE.car", help="CARv1 or CARv2 files")
    add_go_bool(p, "--pin-roots", "pin the roots of each CAR so that `store gc` keeps them (default; "
                                  "--pin-roots=false to leave them unpinned)", True)
    add_store_option(p)
    p.set_defaults(handler=cmd_import_car)


def parse_target(text: str) -> tuple[bytes, str]:
    """Split ``[/ipfs/]CID[/PATH]`` into the binary CID and the path below it."""
    stripped = text.strip()
    stripped = stripped.removeprefix("/ipfs/")
    cid_text, _, path = stripped.partition("/")
    return parse_cid(cid_text), path


def _resolve(store: BlockSource, text: str) -> bytes:
    root, path = parse_target(text)
    return resolve_path(store, root, path)


# -- cat ---------------------------------------------------------------------------------------

def cmd_cat(args: argparse.Namespace) -> int:
    parse_target(args.path)  # a bad CID is the user's error, reported before the store is opened
    with open_block_source(args) as store:
        cid = _resolve(store, args.path)
        cid, note = unixfs_node(store, cid, args.path)
        if note is not None:
            raise PathError(args.path, "is an archive root: `dpip-import fetch` rebuilds the archive, "
                                       "`dpip-import cat ROOT/PATH` writes one of its files")
        out = sys.stdout.buffer
        for chunk in iter_file(store, cid):
            out.write(chunk)
        out.flush()
    return 0


# -- ls ----------------------------------------------------------------------------------------

def _ls_row(store: BlockSource, name: str, cid: bytes, tsize: int) -> tuple[str, str, str]:
    """One ``ipfs ls`` row, sized as Kubo's ``processLink`` does (raw: Tsize; dag-pb: filesize)."""
    codec = cid_codec(cid)
    if codec == RAW:
        return format_cid(cid), str(tsize), name
    if codec != DAG_PB:
        return format_cid(cid), "0", name
    node = stat(store, cid)
    if node.kind is Kind.DIRECTORY:
        return format_cid(cid), "-", name + "/"
    assert node.unixfs is not None
    # Go's FSNode.FileSize() is the filesize field, 0 when unset (symlinks).
    return format_cid(cid), str(node.unixfs.filesize or 0), name


def _tabulate(rows: list[tuple[str, str, str]]) -> str:
    """Go's ``tabwriter.NewWriter(w, 1, 2, 1, ' ', 0)``: each column padded to its widest cell + 1."""
    if not rows:
        return ""
    w0 = max(len(r[0]) for r in rows) + 1
    w1 = max(len(r[1]) for r in rows) + 1
    return "".join(f"{a:<{w0}}{b:<{w1}}{c}\n" for a, b, c in rows)


def cmd_ls(args: argparse.Namespace) -> int:
    for text in args.paths:
        parse_target(text)
    with open_block_source(args) as store:
        out: list[str] = []
        for i, text in enumerate(args.paths):
            cid, note = unixfs_node(store, _resolve(store, text), text)
            if note is not None:
                print(f"dpip-import ls: {note}", file=sys.stderr)
            node = stat(store, cid)
            if node.kind is Kind.DIRECTORY:
                links = [(e.name, e.cid, e.tsize) for e in iter_directory(store, cid)]
            else:  # Kubo lists the raw links of anything that is not a directory (file chunks)
                links = [("", link.cid, link.tsize) for link in (node.pb.links if node.pb else ())]
            links.sort(key=lambda link: link[0].encode())  # Go sorts by name, bytewise
            if len(args.paths) > 1:
                out.append(("\n" if i else "") + f"{text}:\n")
            out.append(_tabulate([_ls_row(store, *link) for link in links]))
        sys.stdout.write("".join(out))
    return 0


# -- get ---------------------------------------------------------------------------------------

def cmd_get(args: argparse.Namespace) -> int:
    root, path = parse_target(args.path)
    default_name = next((p for p in reversed(path.split("/")) if p), None) or format_cid(root)
    output = Path(args.output or default_name)
    with open_block_source(args) as store:
        cid, note = unixfs_node(store, resolve_path(store, root, path), args.path)
        if note is not None:  # an archive root: its files
            print(f"dpip-import get: {note}", file=sys.stderr)
        extract(store, cid, output)
    print(f"Saving file(s) to {output}", file=sys.stderr)
    return 0


def extract(store: BlockSource, cid: bytes, output: Path) -> None:
    """Write the node ``cid`` to ``output``, atomically: built under a temporary name, renamed.

    A file may replace an existing file; a directory or symlink must not replace anything.
    """
    node = stat(store, cid)
    if os.path.lexists(output) and (node.kind is not Kind.FILE or not output.is_file()
                                    or output.is_symlink()):
        raise InputError(str(output), "already exists")
    parent = output.parent
    tmp = parent / f".{output.name}.dpip-{secrets.token_hex(4)}.tmp"
    try:
        _write_node(store, node, tmp)
        os.replace(tmp, output)
    except BaseException:
        _remove(tmp)
        raise


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        for root, dirs, _ in os.walk(path):  # a stored mode like 0o555 would block the removal
            for d in dirs:
                os.chmod(os.path.join(root, d), 0o700)
        os.chmod(path, 0o700)
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def check_name(cid: bytes, name: str) -> str:
    """Refuse entry names that could escape the output directory or that no file system allows."""
    if name in ("", ".", "..") or "/" in name or "\0" in name:
        raise InvalidBlock(format_cid(cid), f"directory entry name {name!r} is not a safe file name")
    return name


def _write_node(store: BlockSource, node: Node, path: Path) -> None:
    """Create ``path`` (which must not exist) from ``node``; never follows a symlink."""
    if node.kind is Kind.FILE:
        # O_EXCL | O_NOFOLLOW: fail rather than write through anything already at this name.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
        with os.fdopen(fd, "wb") as f:
            for chunk in iter_file(store, node.cid):
                f.write(chunk)
    elif node.kind is Kind.SYMLINK:
        assert node.target is not None
        if b"\0" in node.target:
            raise InvalidBlock(format_cid(node.cid), "symlink target contains a NUL byte")
        os.symlink(node.target, os.fsencode(path))
    else:
        os.mkdir(path, 0o700)  # owner-only while filling it; the final mode is applied after
        for entry in iter_directory(store, node.cid):
            child = path / check_name(node.cid, entry.name)
            if os.path.lexists(child):
                raise InvalidBlock(format_cid(node.cid), f"directory has two entries named {entry.name!r}")
            _write_node(store, stat(store, entry.cid), child)
    _apply_attributes(node, path)


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


# -- export / import-car -----------------------------------------------------------------------

def cmd_export(args: argparse.Namespace) -> int:
    parse_target(args.path)
    from ..sinks.car import export_car

    with open_block_source(args) as store:
        cid = _resolve(store, args.path)
        export_car(store, cid, args.output)
    return 0


def cmd_import_car(args: argparse.Namespace) -> int:
    from ..sinks.car import CarReader

    with BlockStore(default_store_path(args.store), create=True) as store:
        for car in args.cars:
            with CarReader(car) as reader:
                store.put_many(reader)
                store.flush()
                for root in reader.roots:
                    if not store.has(root):
                        print(f"dpip-import import-car: {car}: root {format_cid(root)} is not in the CAR "
                              "or the store", file=sys.stderr)
                    elif args.pin_roots:
                        store.pin(root)
                    print(format_cid(root))
    return 0

