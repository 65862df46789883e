"""``dpip-import list`` and ``delete``: the store's archive index, as a person reads and prunes it."""

from __future__ import annotations

import argparse
import fnmatch
import json
import re
import sys
import time

from ..dag.cid import format_cid
from ..errors import ArchiveNotFound
from ..sinks.store import ArchiveRecord, BlockStore, default_store_path
from .options import add_json_option, add_store_option

#: Hex digits of the sha256 that ``list`` prints (``--json`` prints all 64): twice the shortest
#: prefix the commands accept, so a printed prefix can be pasted back as an argument.
SHORT_SHA256 = 16


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from .lookup import ARCHIVE_ARG_HELP

    p = sub.add_parser("list", help="list the archives in the store's index",
                       description="The archives recorded by wheel/sdist/auto: file name, size, sha256, root and "
                                   "import time (UTC), by project, then oldest import first.")
    p.add_argument("pattern", nargs="?", metavar="PATTERN",
                   help="only this project (normalized as PEP 503: Foo_Bar = foo-bar); shell wildcards allowed")
    add_json_option(p, "print a JSON array (full sha256, import time as ISO 8601 and Unix seconds)")
    add_store_option(p)
    p.set_defaults(handler=cmd_list)

    p = sub.add_parser("delete", help="remove archives from the store's index (then `store gc` frees their blocks)",
                       description="Each argument names archives by root CID, file name (every root recorded under "
                                   "it) or sha256. Their blocks stay until `dpip-import store gc` removes the blocks "
                                   "that no archive or pin reaches any more.")
    p.add_argument("archives", nargs="+", metavar="ARCHIVE", help=ARCHIVE_ARG_HELP)
    add_store_option(p)
    p.set_defaults(handler=cmd_delete)


def normalize_project(name: str) -> str:
    """PEP 503 normalization: runs of ``-``, ``_`` and ``.`` become one ``-``, lower case."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _project(record: ArchiveRecord) -> str | None:
    from ..archive.delta import parse_archive_name

    parsed = parse_archive_name(record.name)
    return parsed.project if parsed else None


def select_archives(records: list[ArchiveRecord], pattern: str | None) -> list[ArchiveRecord]:
    """The records whose project matches ``pattern`` (a file name that names no project: the name)."""
    keyed = [(_project(r) or r.name, r) for r in records]
    if pattern is not None:
        wanted = normalize_project(pattern)
        keyed = [(key, r) for key, r in keyed
                 if fnmatch.fnmatchcase(normalize_project(key), wanted) or fnmatch.fnmatchcase(r.name, pattern)]
    keyed.sort(key=lambda item: (item[0], item[1].imported_at))
    return [r for _, r in keyed]


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def cmd_list(args: argparse.Namespace) -> int:
    with BlockStore(default_store_path(args.store), create=False) as store:
        records = select_archives(list(store.iter_archives()), args.pattern)
    if args.json:
        print(json.dumps([{"name": r.name, "project": _project(r), "size": r.size, "sha256": r.sha256.hex(),
                           "root": format_cid(r.root), "imported_at": _iso(r.imported_at),
                           "imported_at_unix": r.imported_at} for r in records], indent=2))
        return 0
    if not records:
        what = f"no archive of project {args.pattern!r}" if args.pattern else "no archives"
        print(f"{what} in the index of {default_store_path(args.store)}", file=sys.stderr)
        return 0
    rows = [(_iso(r.imported_at).replace("T", " ").rstrip("Z"), f"{r.size:,d}", r.sha256.hex()[:SHORT_SHA256],
             format_cid(r.root), r.name) for r in records]
    header = ("IMPORTED (UTC)", "SIZE", "SHA256", "ROOT", "NAME")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(4)]
    for row in [header, *rows]:
        cells = [row[0].ljust(widths[0]), row[1].rjust(widths[1]), row[2].ljust(widths[2]), row[3].ljust(widths[3])]
        print("  ".join([*cells, row[4]]))
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    from .lookup import match_archives

    with BlockStore(default_store_path(args.store), create=False) as store:
        # Every argument is resolved before anything is deleted: one bad name deletes nothing.
        chosen: dict[tuple[str, bytes], ArchiveRecord] = {}
        for text in args.archives:
            match = match_archives(store, text)
            if not match.records:
                raise ArchiveNotFound(text, "no archive with this root in the store's index")
            chosen.update(((r.name, r.root), r) for r in match.records)
        store.delete_archives(chosen.values())
        pinned = {p.root: p.name for p in store.iter_pins()}
    for record in chosen.values():
        print(f"deleted {record.name} ({format_cid(record.root)}) from the index")
        if record.root in pinned:
            print(f"  still pinned as {pinned[record.root]!r}: `store gc` keeps its blocks "
                  "(`dpip-import pin rm` unpins it)", file=sys.stderr)
    print("blocks no other archive or pin reaches stay until `dpip-import store gc`", file=sys.stderr)
    return 0
