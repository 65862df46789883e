"""``dpip-import push`` and ``serve-blocks``: the embedded store to an IPFS node, and as a trustless gateway.

``push ROOT|NAME... --api ADDR`` sends each DAG to the node as one CAR, pins the roots and
records them for the node's peer ID, so the next push subtracts what the node holds
(:mod:`importer.sinks.push`); ``wheel|sdist|auto --push`` does the same right after importing.
``serve-blocks`` answers ``/ipfs/{cid}?format=raw|car`` from the store (:mod:`importer.gateway`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from ..dag.cid import format_cid
from ..errors import InvalidOption
from .options import add_store_option
from .source import add_node_options

if TYPE_CHECKING:
    from ..sinks.node import NodeClient
    from ..sinks.store import BlockStore


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("push", help="send DAGs from the store to an IPFS node, pin them and record them",
                       description="Stream the complete DAG of each archive (or any CID) to an IPFS node as one "
                                   "CARv1 (dag/import), minus the blocks of roots already pushed to that node, "
                                   "then pin the roots recursively and record them for the node's peer ID.")
    p.add_argument("roots", nargs="+", metavar="ROOT|NAME",
                   help="a CID, or an archive of the store's index by file name or sha256")
    add_push_options(p)
    add_store_option(p)
    p.set_defaults(handler=run_push)

    from ..gateway import DEFAULT_HOST, DEFAULT_PORT

    p = sub.add_parser("serve-blocks", help="serve the store as a trustless HTTP gateway (?format=raw|car)",
                       description="Answer GET|HEAD /ipfs/{cid}?format=raw and ?format=car (IPIP-402) from the "
                                   "embedded store, so a verifying IPFS client can fetch its blocks over HTTP.")
    add_store_option(p)
    p.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any free one)")
    p.add_argument("--verbose", action="store_true", help="log every request to stderr")
    p.set_defaults(handler=run_serve_blocks)


def add_push_options(parser: argparse.ArgumentParser, *, after_import: bool = False) -> None:
    """``--api``, ``--api-auth``, ``--timeout``, ``--mfs`` (and ``--push`` for the import commands)."""
    if after_import:
        g = parser.add_argument_group("pushing to an IPFS node")
        g.add_argument("--push", action="store_true",
                       help="push each imported archive to an IPFS node (--api, else a running daemon's api file)")
    add_node_options(parser)
    add_pin_add_option(parser)
    parser.add_argument("--mfs", metavar="PATH",
                        help="also link each archive's tree into the node's MFS as PATH/<project>/<file name>")


def add_pin_add_option(parser: argparse._ActionsContainer) -> None:
    """``--pin-add``: pin with ``pin/add`` rather than ``dag/import``'s ``pin-roots`` (IPFS Cluster)."""
    parser.add_argument("--pin-add", action="store_true",
                        help="pin with a pin/add call after the import instead of dag/import's pin-roots: through "
                             "an IPFS Cluster proxy API only pin/add makes a cluster pin")


def open_node(args: argparse.Namespace) -> NodeClient:
    """The node ``--api`` (or a running daemon's api file) names, with ``--api-auth`` and ``--timeout``."""
    from ..sinks.node import NodeClient, find_api

    if not args.timeout > 0:
        raise InvalidOption(f"--timeout must be more than 0 seconds, got {args.timeout}")
    return NodeClient(find_api(args.api), auth=args.api_auth, timeout=args.timeout)


@contextmanager
def progress_bar(label: str) -> Iterator[object]:
    """A tqdm byte counter on stderr when it is a terminal, else nothing."""
    if not sys.stderr.isatty():
        yield None
        return
    from tqdm import tqdm  # type: ignore[import-untyped,unused-ignore]

    with tqdm(desc=label, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr, leave=False) as bar:
        yield bar


def push_roots(args: argparse.Namespace, store: BlockStore, roots: Sequence[bytes]) -> None:
    """Push ``roots`` as the options say and print what was done."""
    from ..sinks.push import push

    node = open_node(args)
    names = {record.root: record.name for record in store.iter_archives()}
    try:
        with progress_bar("push") as bar:
            report = push(store, node, roots, mfs=args.mfs, progress=getattr(bar, "update", None),
                          pin_add=args.pin_add, names=names)
    finally:
        node.close()
    out = sys.stdout
    for root in report.roots:
        out.write(f"pinned {format_cid(root)} {names.get(root, '')}".rstrip() + "\n")
    for path in report.mfs_paths:
        out.write(f"mfs {path}\n")
    out.write(f"pushed {len(report.roots)} roots to {report.peer}: {report.blocks} blocks, {report.block_bytes:,d} "
              f"bytes of blocks ({report.car_bytes:,d} CAR bytes) in {report.seconds:.2f} s "
              f"(dag/import {report.upload_seconds:.2f} s); "
              f"{report.bases} roots already there subtracted\n")


def run_push(args: argparse.Namespace) -> int:
    from ..sinks.store import BlockStore, default_store_path
    from .lookup import resolve_archive

    with BlockStore(default_store_path(args.store), create=False) as store:
        push_roots(args, store, [resolve_archive(store, text) for text in args.roots])
    return 0


def run_serve_blocks(args: argparse.Namespace) -> int:
    from ..gateway.server import GatewayServer, announce
    from ..sinks.store import default_store_path

    try:
        server = GatewayServer(default_store_path(args.store), args.host, args.port, verbose=args.verbose)
    except OSError as e:
        raise InvalidOption(f"cannot listen on {args.host}:{args.port}: {e.strerror or e}") from None
    announce(server)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
