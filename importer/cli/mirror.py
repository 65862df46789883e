"""``dpip-import mirror sync|index``: mirror projects from an index into the store, and write the store as an index tree."""

from __future__ import annotations

import argparse
import sys
import threading
import time
from typing import TYPE_CHECKING

from ..dag.cid import format_cid
from .options import add_import_options, add_store_option, settings_from_args

if TYPE_CHECKING:
    from ..mirror.sync import SyncReport
    from ..mirror.tree import BuiltIndex


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("mirror", help="mirror projects from a PyPI-like index and publish the store as an index tree",
                       description="Mirror projects from a PEP 691/503 index into the store (sync) and write the "
                                   "store's archives as a PEP 503/691 repository tree (index).")
    msub = p.add_subparsers(dest="mirror_command", metavar="SUBCOMMAND", required=True)

    s = msub.add_parser("sync", help="download and import the chosen files of some projects, incrementally",
                        description="Resolve projects through the index's PEP 691 JSON (or HTML) pages, download the "
                                    "files the filters keep (parallel, resumable, sha256-checked), import them into "
                                    "the store and record what the index says of each; files already mirrored are "
                                    "skipped. Then write the index tree (unless --no-index).")
    s.add_argument("--packages", nargs="+", required=True, metavar="ITEM",
                   help="project names, files listing one project a line, or dataset names (datasets/NAME.txt)")
    s.add_argument("--index-url", metavar="URL", help="Simple API to read (default: $PIP_INDEX_URL, else PyPI)")
    g = s.add_argument_group("filters (as bandersnatch and pip download know them)")
    g.add_argument("--versions", type=int, metavar="N", help="only the newest N final releases of each project")
    g.add_argument("--since", metavar="DATE", help="only releases first uploaded at or after DATE (ISO 8601)")
    g.add_argument("--platform", action="append", default=[], metavar="TAG",
                   help="only wheels a machine of this platform installs (pip's spelling, repeatable; "
                        "pure 'any' wheels are always kept)")
    g.add_argument("--python-version", action="append", default=[], metavar="X.Y",
                   help="only files CPython X.Y installs: wheel tags and requires-python (repeatable)")
    g.add_argument("--only-binary", action="append", default=[], metavar="NAMES",
                   help="no sdists for these projects (comma-separated, or :all:)")
    g.add_argument("--no-binary", action="append", default=[], metavar="NAMES",
                   help="no wheels for these projects (comma-separated, or :all:)")
    g.add_argument("--one-wheel-per-platform", action="store_true",
                   help="of a release's wheels for one platform, only the one for the newest interpreter")
    s.add_argument("-j", "--jobs", type=int, metavar="N", help="downloads at once (default 4)")
    s.add_argument("--max-file-size", type=int, metavar="BYTES", help="refuse files larger than this (default 4 GiB)")
    s.add_argument("--every", metavar="DURATION",
                   help="keep running: sync again every DURATION (30s, 15m, 1h), until SIGTERM")
    s.add_argument("--index", action=argparse.BooleanOptionalAction, default=True,
                   help="write the index tree after the sync (default: on)")
    s.add_argument("--plain", action="store_true", help="with the index: also add every archive as a plain file")
    s.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                   help="progress bar on stderr when it is a terminal (default: on)")
    s.add_argument("--delta", action=argparse.BooleanOptionalAction, default=True,
                   help="store changed leaves as deltas against the project's previous archive (default: on)")
    add_import_options(s)
    add_store_option(s)
    s.set_defaults(handler=run_sync)

    i = msub.add_parser("index", help="write the store's archives as a PEP 503/691 index tree (UnixFS)",
                        description="Write every archive of the store as a deterministic UnixFS tree: "
                                    "simple/index.html|json and simple/<project>/index.html|json with each wheel's "
                                    "METADATA as <wheel>.metadata; prints the root CID.")
    i.add_argument("--plain", action="store_true",
                   help="also put every archive in the tree as a plain UnixFS file, so any gateway serves pip")
    add_store_option(i)
    i.set_defaults(handler=run_index)


def _filters(args: argparse.Namespace) -> object:
    from ..mirror.select import Filters, parse_name_list, parse_since

    return Filters(versions=args.versions, since=parse_since(args.since) if args.since else None,
                   platforms=tuple(args.platform), python_versions=tuple(args.python_version),
                   only_binary=parse_name_list(args.only_binary), no_binary=parse_name_list(args.no_binary),
                   per_platform=args.one_wheel_per_platform)


def _print_sync(report: SyncReport) -> None:
    mb = report.downloaded_bytes / 1e6
    print(f"synced {report.projects} projects: {report.chosen} files chosen, {report.already} already mirrored, "
          f"{report.adopted} found in the store, {report.downloaded} downloaded ({mb:,.1f} MB), "
          f"{report.imported} imported ({report.new_bytes:,d} new bytes), {report.updated} updated, "
          f"{len(report.failed)} failed, {report.seconds:.1f} s" + (" (stopped)" if report.stopped else ""), flush=True)
    for line in report.refused:
        print(f"  refused {line}", flush=True)


def _print_index(built: BuiltIndex) -> None:
    print(f"index {format_cid(built.root)}: {len(built.projects)} projects, {built.files} files, "
          f"{len(built.rebuilt)} project pages rebuilt" + (", plain archives" if built.plain else ""), flush=True)
    print(f"  pip install --index-url <gateway>/ipfs/{format_cid(built.root)}/simple/ ..."
          if built.plain else f"  dpip-import serve --index {format_cid(built.root)}", flush=True)
    for name in built.skipped:
        print(f"  not listed (not a distribution file name): {name}", flush=True)


def run_sync(args: argparse.Namespace) -> int:
    from ..errors import InvalidOption
    from ..mirror.daemon import parse_duration, run_every
    from ..mirror.download import DEFAULT_MAX_FILE_SIZE
    from ..mirror.errors import MirrorBusy
    from ..mirror.select import Filters
    from ..mirror.sync import DEFAULT_JOBS, SyncOptions, read_project_list, sync
    from ..mirror.upstream import index_url_from_env
    from ..sinks.store import default_store_path

    if args.preserve_mode or args.preserve_mtime:
        raise InvalidOption("--preserve-mode and --preserve-mtime apply to add only")
    filters = _filters(args)
    assert isinstance(filters, Filters)
    interval = parse_duration(args.every) if args.every else None
    options = SyncOptions(index_url=index_url_from_env(args.index_url), filters=filters,
                          jobs=args.jobs or DEFAULT_JOBS, max_file_size=args.max_file_size or DEFAULT_MAX_FILE_SIZE,
                          settings=settings_from_args(args), delta=args.delta, progress=args.progress)
    projects = read_project_list(args.packages)
    store_dir = str(default_store_path(args.store))
    outcome = {"rc": 0}

    def refresh(stop: threading.Event) -> None:
        if interval is not None:
            print(f"refresh at {time.strftime('%Y-%m-%dT%H:%M:%S%z')}", flush=True)
        try:
            report = sync(store_dir, projects, options, stop)
        except MirrorBusy as e:
            if interval is None:
                raise
            print(f"dpip-import mirror sync: {e}", file=sys.stderr, flush=True)
            return
        _print_sync(report)
        if args.index and not report.stopped:
            from ..mirror.tree import build_store_index

            _print_index(build_store_index(store_dir, args.plain))
        if not report.ok:
            outcome["rc"] = 1
            print(f"dpip-import mirror sync: {len(report.failed)} files failed, {len(report.missing)} projects "
                  f"not read", file=sys.stderr, flush=True)

    if interval is None:
        refresh(threading.Event())
        return outcome["rc"]
    return run_every(interval, refresh)


def run_index(args: argparse.Namespace) -> int:
    from ..sinks.store import default_store_path

    store_dir = default_store_path(args.store)
    if not (store_dir / "blocks.sqlite3").exists():
        from ..errors import StoreError

        raise StoreError(str(store_dir), "no block store here (nothing has been added to it yet)")
    from ..mirror.tree import build_store_index

    _print_index(build_store_index(str(store_dir), args.plain))
    return 0
