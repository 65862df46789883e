"""``dpip-import serve``: a PEP 503/691 index for pip and uv, its files rebuilt from the store's blocks."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from .source import add_source_options

if TYPE_CHECKING:
    from ..server.ipns import IpnsIndex


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from ..server.cache import DEFAULT_CACHE_BYTES
    from ..server.ipns import DEFAULT_REFRESH_S
    from ..server.launch import DEFAULT_PORT

    p = sub.add_parser("serve", help="serve the store's mirror to pip (PEP 503/691), files rebuilt from blocks",
                       description="Serve an index tree over HTTP: PEP 503 HTML and PEP 691 JSON by content "
                                   "negotiation, PEP 658 metadata, archives rebuilt from blocks and checked against "
                                   "their sha256 as they stream. Point pip at it: pip install --index-url "
                                   "http://HOST:PORT/simple/ ...")
    add_source_options(p)  # --store, and whatever else the read commands take their blocks from
    p.add_argument("--index", metavar="ROOT|/ipns/NAME",
                   help="index tree to serve: a root CID, or an IPNS name resolved through the node (--api) at "
                        "start and every --refresh (default: the store's mirror, indexed now)")
    p.add_argument("--refresh", metavar="DURATION", default=f"{DEFAULT_REFRESH_S:g}s",
                   help=f"with --index /ipns/NAME: resolve the name again this often (default {DEFAULT_REFRESH_S:g}s)")
    p.add_argument("--plain", action="store_true", help="when indexing the store now, add plain archive files too")
    p.add_argument("--fallback", metavar="URL", help="Simple API for projects the index does not hold")
    p.add_argument("--pull-through", action="store_true",
                   help="with --fallback: serve fallback files through this server and import them into the store")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any free port)")
    p.add_argument("--cache-dir", metavar="DIR", help="cache of rebuilt files (default: <store>/serve-cache)")
    p.add_argument("--cache-size", type=int, metavar="BYTES", default=DEFAULT_CACHE_BYTES,
                   help="cache cap, least recently used files evicted first; 0 disables it (default 2 GiB)")
    p.add_argument("--access-log", metavar="FILE", default="-", help="access log file ('-': stderr, the default)")
    p.set_defaults(handler=run_serve)


class _ThreadSource:
    """The read commands' block source (:func:`open_block_source`), opened for one server thread
    and closed with its connection: a node or gateway added there serves here too."""

    def __init__(self, args: argparse.Namespace) -> None:
        from contextlib import ExitStack

        from .source import open_block_source

        self._stack = ExitStack()
        self._source = self._stack.enter_context(open_block_source(args))

    def get(self, cid: bytes) -> bytes:
        return self._source.get(cid)

    def has(self, cid: bytes) -> bool:
        return self._source.has(cid)

    def close(self) -> None:
        self._stack.close()


def _ipns_index(args: argparse.Namespace) -> IpnsIndex | None:
    """``--index /ipns/NAME``: the name to follow through the node that ``--api`` (or a running
    daemon's api file) names, which then serves the blocks too; None for any other ``--index``."""
    from ..errors import InvalidOption
    from ..mirror.daemon import parse_duration
    from ..server.ipns import IPNS_PREFIX, IpnsIndex, parse_ipns_index
    from ..sinks.node import NodeClient, find_api

    if args.index is None or not args.index.startswith(IPNS_PREFIX):
        return None
    name = parse_ipns_index(args.index)
    if args.gateway is not None:
        raise InvalidOption("--index /ipns/NAME is resolved by an IPFS node: give --api ADDR, not --gateway")
    endpoint = find_api(args.api)
    args.api = endpoint.label  # the blocks come from the node that resolves the name
    timeout = float(args.timeout)
    if not timeout > 0:
        raise InvalidOption(f"--timeout must be more than 0 seconds, got {args.timeout}")
    refresh = parse_duration(args.refresh, "--refresh")
    return IpnsIndex(name, lambda: NodeClient(endpoint, auth=args.api_auth, timeout=timeout), refresh)


def run_serve(args: argparse.Namespace) -> int:
    from ..dag.cid import format_cid, parse_cid
    from ..server.launch import ServeOptions, start
    from ..sinks.store import default_store_path

    ipns = _ipns_index(args)
    root = parse_cid(args.index.removeprefix("/ipfs/")) if args.index and ipns is None else None
    log = sys.stderr if args.access_log == "-" else open(args.access_log, "a", buffering=1)  # noqa: SIM115
    options = ServeOptions(store_dir=default_store_path(args.store), index_root=root, fallback=args.fallback,
                           pull_through=args.pull_through, host=args.host, port=args.port,
                           cache_dir=Path(args.cache_dir) if args.cache_dir else None, cache_size=args.cache_size,
                           plain=args.plain, source_factory=lambda: _ThreadSource(args), ipns=ipns)
    try:
        running = start(options, log)
    except BaseException:
        if log is not sys.stderr:
            log.close()
        raise
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    served = f"{ipns.path} ({format_cid(running.config.index_root)})" if ipns else format_cid(running.config.index_root)
    print(f"serving index {served} at {running.url}", flush=True)
    try:
        stop.wait()
    finally:
        running.stop()
        if log is not sys.stderr:
            log.close()
    return 0
