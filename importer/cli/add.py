"""``dpip-import add``: Kubo's ``ipfs add`` for files and directories, same flags, same output."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterator

from ..adder import AddedEntry, Adder
from ..dag.cid import format_cid
from ..dag.directory import DirEntry
from ..errors import InputError, InvalidOption
from ..layout import DagNode
from ..sinks.base import BlockSink, NullSink
from .options import add_go_bool, add_import_options, add_store_option, settings_from_args

#: Completes a sink once the roots are known (writes the CAR, flushes the store).
Finisher = Callable[[list[bytes]], None]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("add", help="add files or directories, as `ipfs add` would",
                       description="Add files and directories as UnixFS, byte for byte as Kubo's `ipfs add`.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="files or directories to add")
    p.add_argument("-r", "--recursive", action="store_true", help="add directories recursively")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the CIDs")
    p.add_argument("-Q", "--quieter", action="store_true", help="print only the final root CID")
    p.add_argument("-n", "--only-hash", action="store_true", help="compute CIDs only; store nothing")
    p.add_argument("-w", "--wrap-with-directory", action="store_true", help="wrap the paths in a directory")
    add_import_options(p)
    add_store_option(p)
    p.add_argument("--car", metavar="FILE", help="write the blocks to this CARv1 file instead of the store")
    add_go_bool(p, "--pin", "pin the roots printed so that `store gc` keeps them (default; --pin=false as Kubo)", True)
    p.set_defaults(handler=run_add)


def _escape(name: str) -> str:
    # Kubo's EscNonPrint: names are printed with non-printable characters escaped.
    raw = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in raw)


def run_add(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    if args.only_hash and args.car:
        raise InvalidOption("--only-hash stores nothing; it cannot be combined with --car")
    for path in args.paths:
        if not os.path.lexists(path):
            raise InputError(path, "no such file or directory")
    out = sys.stdout

    def report(entry: AddedEntry) -> None:
        if args.quieter:
            return
        if args.quiet:
            out.write(format_cid(entry.node.cid) + "\n")
        else:
            out.write(f"added {format_cid(entry.node.cid)} {_escape(entry.path)}\n")

    with _open_sink(args) as (sink, finish):
        adder = Adder(settings, sink, report)
        roots: list[DagNode] = []
        if args.wrap_with_directory:
            entries: list[DirEntry] = []
            seen: set[bytes] = set()
            for path in args.paths:
                node = adder.add_path(path, recursive=args.recursive)
                name = os.fsencode(os.path.basename(os.path.normpath(os.path.abspath(path))))
                if name in seen:
                    raise InputError(path, "directory already has an entry by that name")
                seen.add(name)
                entries.append(DirEntry(name, node))
            wrapper = adder.add_directory(entries)
            report(AddedEntry("", wrapper, True))
            roots.append(wrapper)
        else:
            for path in args.paths:
                roots.append(adder.add_path(path, recursive=args.recursive))
        finish([root.cid for root in roots])
    if args.quieter:
        out.write(format_cid(roots[-1].cid) + "\n")
    out.flush()
    return 0


@contextlib.contextmanager
def _open_sink(args: argparse.Namespace) -> Iterator[tuple[BlockSink, Finisher]]:
    """Yield the sink for this run and a callback that completes it with the roots."""
    if args.only_hash:
        yield NullSink(), _no_finish
        return
    from ..sinks.store import BlockStore, default_store_path

    if args.car:
        from ..sinks.car import export_car

        # Blocks arrive bottom-up; a CAR wants them root-first (DFS pre-order), so they are
        # staged in a temporary store next to the CAR and written out once the roots are known.
        target_dir = os.path.dirname(os.path.abspath(args.car))
        with tempfile.TemporaryDirectory(prefix=".dpip-car-", dir=target_dir) as tmp, \
                BlockStore(os.path.join(tmp, "staging"), compression="none") as staging:
            def finish(roots: list[bytes]) -> None:
                staging.flush()
                export_car(staging, roots, args.car)
            yield staging, finish
        return
    with BlockStore(default_store_path(args.store)) as store:
        def finish_store(roots: list[bytes]) -> None:
            store.flush()
            if args.pin:  # as Kubo: the root of each path given (or the wrapping directory)
                for root in roots:
                    store.pin(root)
        yield store, finish_store


def _no_finish(roots: list[bytes]) -> None:
    return None
