"""``dpip-import mirror sync|index|publish``: mirror projects from an index into the store, write the store as an
index tree, and publish that tree and its archives to an IPFS node under an IPNS name."""

from __future__ import annotations

import argparse
import sys
import threading
import time
from typing import TYPE_CHECKING

from ..dag.cid import format_cid
from .options import add_import_options, add_store_option, settings_from_args

if TYPE_CHECKING:
    from ..mirror.publish import PublishReport
    from ..mirror.sync import SyncReport
    from ..mirror.tree import BuiltIndex
    from ..sinks.node import NodeClient


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
    s.add_argument("--publish", action="store_true",
                   help="after the index, publish it to an IPFS node as `mirror publish` does (--api, --key, --mfs)")
    s.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                   help="progress bar on stderr when it is a terminal (default: on)")
    s.add_argument("--delta", action=argparse.BooleanOptionalAction, default=True,
                   help="store changed leaves as deltas against the project's previous archive (default: on)")
    add_import_options(s)
    add_store_option(s)
    add_publish_options(s.add_argument_group("publishing (with --publish)"))
    s.set_defaults(handler=run_sync)

    i = msub.add_parser("index", help="write the store's archives as a PEP 503/691 index tree (UnixFS)",
                        description="Write every archive of the store as a deterministic UnixFS tree: "
                                    "simple/index.html|json and simple/<project>/index.html|json with each wheel's "
                                    "METADATA as <wheel>.metadata; prints the root CID.")
    i.add_argument("--plain", action="store_true",
                   help="also put every archive in the tree as a plain UnixFS file, so any gateway serves pip")
    add_store_option(i)
    i.set_defaults(handler=run_index)

    b = msub.add_parser("publish", help="push the index tree and its archives to an IPFS node, in MFS and under IPNS",
                        description="Write the index tree (as `mirror index`), push it and every archive it names "
                                    "to an IPFS node (only blocks the node lacks), pin them, put the index root in "
                                    "the node's MFS (--mfs) and publish it under an IPNS key (--key, made if "
                                    "missing); prints the /ipns/ name and the root.")
    b.add_argument("--plain", action="store_true",
                   help="index with every archive also as a plain UnixFS file, so any gateway serves pip")
    add_store_option(b)
    add_publish_options(b)
    b.set_defaults(handler=run_publish)


def add_publish_options(parser: argparse._ActionsContainer) -> None:
    """The node (``--api``, ``--api-auth``, ``--timeout``), ``--key``, ``--mfs``, ``--lifetime``, ``--pin-add``."""
    from ..mirror.publish import DEFAULT_KEY, DEFAULT_LIFETIME, DEFAULT_MFS
    from .node import add_pin_add_option
    from .source import add_node_options

    add_node_options(parser)
    parser.add_argument("--key", default=DEFAULT_KEY, metavar="NAME",
                        help=f"IPNS key to publish under, made (ed25519) if the node lacks it (default {DEFAULT_KEY})")
    parser.add_argument("--mfs", default=DEFAULT_MFS, metavar="PATH",
                        help=f"MFS path that names the index root, replaced at each publish (default {DEFAULT_MFS})")
    parser.add_argument("--lifetime", default=DEFAULT_LIFETIME, metavar="DURATION",
                        help=f"how long the IPNS record is valid (name/publish --lifetime, default {DEFAULT_LIFETIME})")
    add_pin_add_option(parser)


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


def _print_index(built: BuiltIndex, hint: bool = True) -> None:
    print(f"index {format_cid(built.root)}: {len(built.projects)} projects, {built.files} files, "
          f"{len(built.rebuilt)} project pages rebuilt" + (", plain archives" if built.plain else ""), flush=True)
    if not hint:
        return
    print(f"  pip install --index-url <gateway>/ipfs/{format_cid(built.root)}/simple/ ..."
          if built.plain else f"  dpip-import serve --index {format_cid(built.root)}", flush=True)
    for name in built.skipped:
        print(f"  not listed (not a distribution file name): {name}", flush=True)


def run_sync(args: argparse.Namespace) -> int:
    from ..errors import ImporterError, InvalidOption
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
    node = None
    if args.publish:
        from ..mirror.publish import check_key_name, check_mfs_path
        from .node import open_node

        if not args.index:
            raise InvalidOption("--publish publishes the index tree: not with --no-index")
        check_mfs_path(args.mfs)
        check_key_name(args.key)
        node = open_node(args)

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
        if args.index and not report.stopped and node is not None:
            try:
                _publish(args, store_dir, node)
            except ImporterError as e:
                if interval is None:
                    raise
                print(f"dpip-import mirror sync: {e}", file=sys.stderr, flush=True)  # the next refresh retries
        elif args.index and not report.stopped:
            from ..mirror.tree import build_store_index

            _print_index(build_store_index(store_dir, args.plain))
        if not report.ok:
            outcome["rc"] = 1
            print(f"dpip-import mirror sync: {len(report.failed)} files failed, {len(report.missing)} projects "
                  f"not read", file=sys.stderr, flush=True)

    try:
        if interval is None:
            refresh(threading.Event())
            return outcome["rc"]
        return run_every(interval, refresh)
    finally:
        if node is not None:
            node.close()


def _existing_store(args: argparse.Namespace) -> str:
    from ..sinks.store import DB_NAME, default_store_path

    store_dir = default_store_path(args.store)
    if not (store_dir / DB_NAME).exists():
        from ..errors import StoreError

        raise StoreError(str(store_dir), "no block store here (nothing has been added to it yet)")
    return str(store_dir)


def run_index(args: argparse.Namespace) -> int:
    from ..mirror.tree import build_store_index

    _print_index(build_store_index(_existing_store(args), args.plain))
    return 0


def _print_publish(report: PublishReport, built: BuiltIndex, api: str | None) -> None:
    root = format_cid(report.root)
    index = " and the index" if any(report.root in p.roots for p in report.pushes) else ", not the index (there)"
    notes = [f"{report.forgotten} records of roots the node dropped forgotten"] if report.forgotten else []
    notes += [f"{report.unpinned} earlier index roots unpinned"] if report.unpinned else []
    print(f"pushed {report.archives - report.already} of {report.archives} archives{index} to {report.peer}: "
          f"{report.blocks} blocks, {report.block_bytes:,d} bytes of blocks ({report.car_bytes:,d} CAR bytes)"
          + "".join(f"; {note}" for note in notes), flush=True)
    print(f"mfs {report.mfs} {root}", flush=True)
    print(f"published /ipns/{report.name} /ipfs/{root} (key {report.key}"
          + (", made now" if report.key_made else "") + f") in {report.seconds:.2f} s", flush=True)
    print(f"  pip install --index-url <gateway>/ipns/{report.name}/simple/ ..." if built.plain else
          f"  dpip-import serve --index /ipns/{report.name}" + (f" --api {api}" if api else ""), flush=True)


def _publish(args: argparse.Namespace, store_dir: str, node: NodeClient) -> None:
    from ..mirror.publish import publish_store
    from .node import progress_bar

    def say(line: str) -> None:
        print(f"  {line}", file=sys.stderr, flush=True)

    with progress_bar("publish") as bar:
        built, report = publish_store(store_dir, node, plain=args.plain, key=args.key, mfs=args.mfs,
                                      lifetime=args.lifetime, pin_add=args.pin_add,
                                      progress=getattr(bar, "update", None), say=say if bar is not None else None)
    _print_index(built, hint=False)
    _print_publish(report, built, args.api)


def run_publish(args: argparse.Namespace) -> int:
    from ..mirror.publish import check_key_name, check_mfs_path
    from .node import open_node

    store_dir = _existing_store(args)
    check_mfs_path(args.mfs)
    check_key_name(args.key)
    node = open_node(args)
    try:
        _publish(args, store_dir, node)
    finally:
        node.close()
    return 0
