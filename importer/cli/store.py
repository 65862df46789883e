"""The ``store`` command group: ``store stats``, ``store verify`` and ``store path``."""

from __future__ import annotations

import argparse
import sys

from ..dag.cid import format_cid
from ..sinks.store import BlockStore, default_store_path
from .options import add_store_option


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = sub.add_parser("store", help="inspect the embedded block store")
    actions = group.add_subparsers(dest="store_command", metavar="ACTION", required=True)

    p = actions.add_parser("stats", help="blocks, logical bytes, stored bytes and bytes on disk")
    add_store_option(p)
    p.set_defaults(handler=cmd_stats)

    p = actions.add_parser("verify", help="re-hash every block; list those that do not match their CID")
    add_store_option(p)
    p.set_defaults(handler=cmd_verify)

    p = actions.add_parser("path", help="print the store directory in use")
    add_store_option(p)
    p.set_defaults(handler=cmd_path)


def cmd_stats(args: argparse.Namespace) -> int:
    path = default_store_path(args.store)
    with BlockStore(path, create=False) as store:
        stats = store.stats()
    print(f"path:          {path}")
    print(f"blocks:        {stats.blocks}")
    print(f"logical bytes: {stats.logical_bytes}")
    print(f"stored bytes:  {stats.stored_bytes}")
    print(f"on-disk bytes: {stats.disk_bytes}")
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
