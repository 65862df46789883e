"""The ``store`` command group: stats, verify, gc, vacuum, path, and the at-rest compression controls."""

from __future__ import annotations

import argparse
import json
import sys

from ..dag.cid import format_cid
from ..sinks.packs import COLD_FRAME_BYTES, cold_frame_bytes
from ..sinks.store import COMPRESSION_ENV, COMPRESSIONS, BlockStore, PageStats, StoreStats, default_store_path
from .options import add_json_option, add_store_option


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = sub.add_parser("store", help="inspect and maintain the embedded block store (stats, verify, gc, vacuum...)",
                           description="The embedded block store (--store DIR; `store path` prints the one in use): "
                                       "what it holds, checks of it, and its space given back.")
    actions = group.add_subparsers(dest="store_command", metavar="ACTION", required=True)

    p = actions.add_parser("stats", help="blocks, logical bytes, bytes at rest, ratio, per-encoding counts, free pages")
    add_store_option(p)
    add_json_option(p, "print one JSON object")
    p.set_defaults(handler=cmd_stats)

    p = actions.add_parser("verify", help="re-hash every block and check that every archive and pin is complete",
                           description="Prints each corrupt block, each archive or pin whose DAG misses or has a "
                                       "damaged block, and a summary, on stdout; exits 1 if there is any.")
    add_store_option(p)
    p.set_defaults(handler=cmd_verify)

    p = actions.add_parser("gc", help="remove every block that no archive of the index and no pin reaches",
                           description="Mark and sweep: keeps the DAG of every archive in the index (`list`) and of "
                                       "every pin (`pin ls`), removes every other block (what `delete`, `pin rm` or "
                                       "an interrupted import left), then gives the freed pages back to the file "
                                       "system. Waits for imports running in other processes to finish.")
    add_store_option(p)
    p.add_argument("--dry-run", action="store_true", help="only say what would be removed")
    p.add_argument("--wait", type=float, metavar="SECONDS",
                   help="give up if other processes still write to the store after this long (default: wait)")
    add_json_option(p, "print one JSON object")
    p.set_defaults(handler=cmd_gc)

    p = actions.add_parser("vacuum", help="rebuild the database file without free pages; convert an old store to "
                                          "reclaim them by itself",
                           description="A full SQLite VACUUM: needs the store to itself and free disk space of the "
                                       "file's size. Stores created before schema 5 are converted to "
                                       "auto_vacuum=incremental on the way, after which gc and delta "
                                       "rewrites give free pages back without it.")
    add_store_option(p)
    p.set_defaults(handler=cmd_vacuum)

    p = actions.add_parser("path", help="print the store directory in use")
    add_store_option(p)
    p.set_defaults(handler=cmd_path)

    p = actions.add_parser("compression", help="show or set how new blocks are stored (zstd or none)",
                           description="Blocks already stored keep their encoding and always read. "
                                       f"${COMPRESSION_ENV} overrides the setting for one run.")
    add_store_option(p)
    p.add_argument("setting", nargs="?", choices=COMPRESSIONS, help="the new setting (omit to print it)")
    p.set_defaults(handler=cmd_compression)

    p = actions.add_parser("train", help="train a zstd dictionary on the newest small blocks now",
                           description="New small blocks are compressed with the newest dictionary. "
                                       "The store also trains one by itself as small blocks accumulate.")
    add_store_option(p)
    p.set_defaults(handler=cmd_train)

    p = actions.add_parser("optimize", help="compress blocks stored before compression was on; move small blocks to the newest "
                                            "dictionary; store changed blocks as deltas; compact half-empty packs",
                           description="Rows are rewritten only when they shrink; the file itself shrinks "
                                       "only with --vacuum (which needs the store to itself and twice its size).")
    add_store_option(p)
    p.add_argument("--vacuum", action="store_true", help="then rebuild the database file without free pages "
                                                          "(as `store vacuum`)")
    p.add_argument("--level", type=int, default=0, choices=range(1, 23), metavar="N",
                   help="also recompress every pack at zstd level N (1-22; 19: about 8%% smaller than the "
                        "default, written at ~1-2 MB/s, read as fast)")
    p.add_argument("--frame-size", type=frame_size_arg, default=COLD_FRAME_BYTES, metavar="SIZE",
                   help="with --level: group the packs' blocks into zstd frames of SIZE (128KiB-8MiB; default "
                        "1MiB): larger frames store less, a random read of one block decodes more; above 2MiB "
                        "the store needs dpip-importer with schema 9 to read it")
    p.set_defaults(handler=cmd_optimize)


def frame_size_arg(text: str) -> int:
    """``--frame-size``: bytes, or a whole number of KiB or MiB (``4MiB``)."""
    try:
        return cold_frame_bytes(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def stats_json(stats: StoreStats) -> dict[str, object]:
    return {
        "blocks": stats.blocks,
        "logical_bytes": stats.logical_bytes,
        "stored_bytes": stats.at_rest_bytes,
        "payload_bytes": stats.stored_bytes,
        "dictionary_bytes": stats.dictionary_bytes,
        "dictionaries": stats.dictionaries,
        "ratio": round(stats.ratio, 4),
        "file_bytes": stats.disk_bytes,
        "file_per_stored": round(stats.disk_ratio, 4),
        "packs": stats.packs,
        "pack_bytes": stats.pack_bytes,
        "dead_pack_bytes": stats.dead_bytes,
        "compression": stats.compression,
        "encodings": {e.name: {"blocks": e.blocks, "logical_bytes": e.logical_bytes, "stored_bytes": e.stored_bytes}
                      for e in stats.encodings},
    }


def pages_json(pages: PageStats) -> dict[str, object]:
    return {"page_size": pages.page_size, "pages": pages.pages, "free_pages": pages.free_pages,
            "free_bytes": pages.free_bytes, "auto_vacuum": pages.auto_vacuum}


def reclaim_hint(pages: PageStats) -> str:
    """How the free pages of this store go back to the file system."""
    if pages.auto_vacuum == "incremental":
        return "given back by gc and delta rewrites; `dpip-import store vacuum` rebuilds the file fully"
    return ("reused by later imports, never given back: `dpip-import store vacuum` returns them and makes this "
            "store give them back by itself from then on")


def cmd_stats(args: argparse.Namespace) -> int:
    path = default_store_path(args.store)
    with BlockStore(path, create=False) as store:
        stats = store.stats()
        pages = store.page_stats()
    if args.json:
        print(json.dumps({"path": str(path), **stats_json(stats), **pages_json(pages)}, indent=2))
        return 0
    print(f"path:          {path}")
    print(f"blocks:        {stats.blocks}")
    print(f"logical bytes: {stats.logical_bytes}")
    # Payloads plus the dictionaries they need: what the blocks cost at rest.
    print(f"stored bytes:  {stats.at_rest_bytes}")
    print(f"ratio:         {stats.ratio:.3f}")
    for e in stats.encodings:
        print(f"  {e.name + ':':<11} {e.blocks} blocks, {e.logical_bytes} logical, {e.stored_bytes} stored")
    print(f"  dictionaries: {stats.dictionaries} ({stats.dictionary_bytes} bytes)")
    print(f"  packs:      {stats.packs} ({stats.pack_bytes} bytes, {stats.dead_bytes} of them no block's)")
    # What the database files take on disk, against the bytes at rest: SQLite's pages around them.
    print(f"file bytes:    {stats.disk_bytes} ({stats.disk_ratio:.3f}x the stored bytes)")
    share = 100.0 * pages.free_pages / pages.pages if pages.pages else 0.0
    print(f"free pages:    {pages.free_pages} of {pages.pages} ({pages.free_bytes} bytes, {share:.1f}% of the file): "
          f"{reclaim_hint(pages)}")
    print(f"compression:   {stats.compression}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from ..sinks.gc import check_store

    def corrupt(cid: bytes, problem: str) -> None:
        print(f"corrupt {format_cid(cid)}: {problem}", flush=True)

    with BlockStore(default_store_path(args.store), create=False) as store:
        check = check_store(store, corrupt)
    for root in check.incomplete:
        parts = [f"{root.missing} of {root.blocks} blocks missing" if root.missing else "",
                 f"{root.damaged} damaged" if root.damaged else ""]
        named = ", ".join(f"{format_cid(cid)} {problem}" for cid, problem in root.examples)
        print(f"incomplete {root.root.describe()}: {', '.join(p for p in parts if p)} (first: {named})")
    complete = len(check.roots) - len(check.incomplete)
    print(f"verified {check.blocks} blocks: {check.blocks - check.corrupt} ok, {check.corrupt} corrupt; "
          f"{complete} of {len(check.roots)} archives and pins complete")
    return 0 if check.ok else 1


def cmd_gc(args: argparse.Namespace) -> int:
    from ..sinks.gc import collect_garbage

    def waiting() -> None:
        print("dpip-import store gc: waiting for imports in other processes to close the store", file=sys.stderr)

    with BlockStore(default_store_path(args.store), create=False) as store:
        report = collect_garbage(store, dry_run=args.dry_run, wait=args.wait, on_wait=waiting)
    if args.json:
        print(json.dumps({"dry_run": report.dry_run, "roots": report.roots, "live_blocks": report.live,
                          "missing_blocks": report.missing, "removed_blocks": report.removed,
                          "removed_logical_bytes": report.logical_bytes, "removed_payload_bytes": report.payload_bytes,
                          "rewritten_deltas": report.rewritten, "file_bytes_before": report.file_bytes_before,
                          "file_bytes_after": report.file_bytes_after}, indent=2))
        return 0
    verb = "would remove" if report.dry_run else "removed"
    print(f"{verb} {report.removed} blocks: {report.logical_bytes:,d} logical bytes, {report.payload_bytes:,d} bytes "
          f"at rest; kept {report.live} blocks of {report.roots} archives and pins")
    if not report.dry_run:
        print(f"store file {report.file_bytes_before:,d} -> {report.file_bytes_after:,d} bytes"
              + (f"; {report.rewritten} deltas rewritten without a removed reference" if report.rewritten else ""))
    if report.missing:
        print(f"dpip-import store gc: {report.missing} blocks that roots reach are missing: "
              "`dpip-import store verify` names the incomplete archives", file=sys.stderr)
    return 0


def cmd_vacuum(args: argparse.Namespace) -> int:
    with BlockStore(default_store_path(args.store), create=False) as store:
        before = store.page_stats()
        converted = store.vacuum()
        after = store.page_stats()
    print(f"store file {before.file_bytes:,d} -> {after.file_bytes:,d} bytes ({before.free_pages} free pages returned)")
    if converted:
        print("converted to auto_vacuum=incremental: gc and delta rewrites now give free pages back by "
              "themselves")
    return 0


def cmd_path(args: argparse.Namespace) -> int:
    print(default_store_path(args.store))
    return 0


def cmd_compression(args: argparse.Namespace) -> int:
    with BlockStore(default_store_path(args.store), create=args.setting is not None) as store:
        if args.setting is not None:
            store.set_compression(args.setting)
        print(store.compression)
    return 0


def cmd_optimize(args: argparse.Namespace) -> int:
    from ..archive.delta import delta_store

    if args.frame_size != COLD_FRAME_BYTES and not args.level:
        print("dpip-import store optimize: --frame-size applies to the cold packs of --level N: give a level",
              file=sys.stderr)
        return 2
    with BlockStore(default_store_path(args.store), create=False) as store:
        if store.compression == "none":
            print("dpip-import store optimize: compression is off for this store: nothing to do "
                  "(`store compression zstd` turns it on)", file=sys.stderr)
            return 1
        rewritten, saved = store.recompress()
        dictionaries = store.compress_dictionaries()
        deltas = delta_store(store)
        compacted, freed = store.compact_packs(level=args.level, frame_bytes=args.frame_size)
        converted = store.vacuum() if args.vacuum else False
        if not args.vacuum:
            store.reclaim_free_pages()  # what the rewrites freed (in a store with auto_vacuum=incremental)
        stats = store.stats()
    print(f"rewrote {rewritten} blocks, {saved} bytes smaller; dictionaries {dictionaries} bytes smaller; stored {deltas.rewritten} changed blocks as deltas "
          f"against the previous archive of their project or similar files of their archive, {deltas.saved} bytes smaller; compacted {compacted} packs, "
          f"{freed} bytes smaller; ratio now {stats.ratio:.3f}")
    if converted:
        print("converted to auto_vacuum=incremental: gc and delta rewrites now give free pages back by "
              "themselves")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    with BlockStore(default_store_path(args.store), create=False) as store:
        made = store.train()
    if made is None:
        print("dpip-import store train: too few small blocks to train a dictionary from", file=sys.stderr)
        return 1
    print(f"dictionary {made.id}: {len(made.data)} bytes from {made.samples} blocks")
    return 0
