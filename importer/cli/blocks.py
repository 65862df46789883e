"""The read-side commands: ``cat``, ``get``, ``ls``, ``export`` and ``import-car``.

Each reads from (or, for ``import-car``, writes to) the embedded block store named by
``--store``, ``$DPIP_STORE`` or the user data directory. Every block read is verified against
its CID by the store; ``get`` writes through :mod:`importer.cli.extract`, which lets nothing
land outside the output path; no command replaces an existing file without ``--force``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..dag.cid import DAG_PB, RAW, cid_codec, format_cid, parse_cid
from ..dag.path import resolve_path, unixfs_node
from ..dag.reader import Kind, PathError, iter_directory, iter_file, stat
from ..errors import OutputError
from ..sinks.base import BlockSource
from ..sinks.store import BlockStore, default_store_path
from .extract import extract
from .options import add_go_bool, add_store_option
from .source import add_source_options, open_block_source, read_whole_dags

#: ``--force``, worded alike in every command that writes a file (get, export, fetch).
FORCE_HELP = "replace an existing file at the output path (never a directory)"


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
    p.add_argument("--force", action="store_true", help=FORCE_HELP)
    add_source_options(p)
    p.set_defaults(handler=cmd_get)

    p = sub.add_parser("ls", help="list a directory as `ipfs ls` does: CID, size, name (an archive root: its files)")
    p.add_argument("paths", nargs="+", metavar="CID[/PATH]", help=PATH_HELP)
    add_source_options(p)
    p.set_defaults(handler=cmd_ls)

    p = sub.add_parser("export", help="write the DAG under a CID to a CARv1 file (ipfs dag export)")
    p.add_argument("path", metavar="CID[/PATH]", help=PATH_HELP)
    p.add_argument("-o", "--output", metavar="FILE.car", required=True,
                   help="the CAR file to write (`ipfs dag export` writes to stdout; a CAR is binary)")
    p.add_argument("--force", action="store_true", help=FORCE_HELP)
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
        read_whole_dags(store)
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
    if args.output == "":
        raise OutputError("''", "-o needs a path")
    output = Path(args.output or default_name)
    with open_block_source(args) as store:
        cid, note = unixfs_node(store, resolve_path(store, root, path), args.path)
        if note is not None:  # an archive root: its files
            print(f"dpip-import get: {note}", file=sys.stderr)
        read_whole_dags(store)
        extract(store, cid, output, force=args.force)
    print(f"Saving file(s) to {output}", file=sys.stderr)
    return 0


# -- export / import-car -----------------------------------------------------------------------

def cmd_export(args: argparse.Namespace) -> int:
    parse_target(args.path)
    from ..sinks.car import export_car

    if args.output == "":
        raise OutputError("''", "-o needs a file")
    with open_block_source(args) as store:
        cid = _resolve(store, args.path)
        read_whole_dags(store)
        export_car(store, cid, args.output, force=args.force)
    return 0


def cmd_import_car(args: argparse.Namespace) -> int:
    """Put every CAR's blocks in the store; print each root. A root that is in neither the CAR
    nor the store is reported, and the exit code is then 1 (the DAG cannot be read)."""
    from ..sinks.car import CarReader

    missing = 0
    with BlockStore(default_store_path(args.store), create=True) as store:
        for car in args.cars:
            with CarReader(car) as reader:
                store.put_many(reader)
                store.flush()
                for root in reader.roots:
                    if not store.has(root):
                        missing += 1
                        print(f"dpip-import import-car: {car}: root {format_cid(root)} is not in the CAR "
                              "or the store", file=sys.stderr)
                    elif args.pin_roots:
                        store.pin(root)
                    print(format_cid(root))
    return 1 if missing else 0
