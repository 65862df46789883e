"""The ``store`` command group: stats, verify, path, and the at-rest compression controls."""

from __future__ import annotations

import argparse
import json
import sys

from ..dag.cid import format_cid
from ..sinks.store import COMPRESSION_ENV, COMPRESSIONS, BlockStore, StoreStats, default_store_path
from .options import add_store_option


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = sub.add_parser("store", help="inspect the embedded block store")
    actions = group.add_subparsers(dest="store_command", metavar="ACTION", required=True)

    p = actions.add_parser("stats", help="blocks, logical bytes, bytes at rest, ratio, per-encoding counts")
    add_store_option(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=cmd_stats)

    p = actions.add_parser("verify", help="re-hash every block; list those that do not match their CID")
    add_store_option(p)
    p.set_defaults(handler=cmd_verify)

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
    p.add_argument("--vacuum", action="store_true", help="then rebuild the database file without free pages")
    p.add_argument("--level", type=int, default=0, choices=range(1, 23), metavar="N",
                   help="also recompress every pack at zstd level N (1-22; 19: about 8%% smaller than the "
                        "default, written at ~1-2 MB/s, read as fast)")
    p.set_defaults(handler=cmd_optimize)


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


def cmd_stats(args: argparse.Namespace) -> int:
    path = default_store_path(args.store)
    with BlockStore(path, create=False) as store:
        stats = store.stats()
    if args.json:
        print(json.dumps({"path": str(path), **stats_json(stats)}, indent=2))
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
    print(f"compression:   {stats.compression}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    checked = 0
    bad = 0
    with BlockStore(default_store_path(args.store), create=False) as store:
        for cid, problem in store.verify():
            checked += 1
            if problem is not None:
                bad += 1
                print(f"corrupt {format_cid(cid)}: {problem}")
    print(f"verified {checked} blocks: {checked - bad} ok, {bad} corrupt", file=sys.stderr)
    return 1 if bad else 0


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

    with BlockStore(default_store_path(args.store), create=False) as store:
        if store.compression == "none":
            print("compression is off for this store: nothing to do (`store compression zstd` turns it on)",
                  file=sys.stderr)
            return 1
        rewritten, saved = store.recompress()
        deltas = delta_store(store)
        compacted, freed = store.compact_packs(level=args.level)
        if args.vacuum:
            store.vacuum()
        stats = store.stats()
    print(f"rewrote {rewritten} blocks, {saved} bytes smaller; stored {deltas.rewritten} changed blocks as deltas "
          f"against the previous archive of their project, {deltas.saved} bytes smaller; compacted {compacted} packs, "
          f"{freed} bytes smaller; ratio now {stats.ratio:.3f}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    with BlockStore(default_store_path(args.store), create=False) as store:
        made = store.train()
    if made is None:
        print("too few small blocks to train a dictionary from", file=sys.stderr)
        return 1
    print(f"dictionary {made.id}: {len(made.data)} bytes from {made.samples} blocks")
    return 0
