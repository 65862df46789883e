"""Where the read commands (``cat``, ``get``, ``ls``, ``export``, ``fetch``, ``verify``, ``inspect``)
take their blocks from, and the options that choose it.

Without ``--api`` or ``--gateway`` that is the embedded store named by ``--store``. With one of
them, blocks missing from the store come from that IPFS node (``block/get``, whole DAGs by
``dag/export``) or trustless gateway (``?format=raw``, whole DAGs by ``?format=car``), each
checked against its CID, and are kept in the store unless ``--no-cache``
(:class:`~importer.sinks.remote.LayeredSource`). Every read command opens its blocks through
:func:`open_block_source`, so this is the one place that knows about remotes.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from ..errors import InvalidOption
from ..sinks.base import BlockSource
from ..sinks.store import DB_NAME, BlockStore, default_store_path
from ..sinks.transport import DEFAULT_TIMEOUT
from .options import add_store_option


def add_node_options(parser: argparse._ActionsContainer) -> None:
    """``--api``, ``--api-auth`` and ``--timeout``, as Kubo's CLI names them."""
    parser.add_argument("--api", metavar="ADDR",
                        help="IPFS node RPC API: a multiaddr (/ip4/127.0.0.1/tcp/5001, /dns/HOST/tcp/443/https, "
                             "/unix/PATH) or an http(s) URL (default: the api file of a daemon in $IPFS_PATH or ~/.ipfs)")
    parser.add_argument("--api-auth", metavar="SECRET",
                        help="a secret of the node's API.Authorizations: basic:USER:PASS or bearer:TOKEN")
    add_timeout_option(parser)


def add_timeout_option(parser: argparse._ActionsContainer) -> None:
    parser.add_argument("--timeout", type=float, metavar="SECONDS", default=DEFAULT_TIMEOUT,
                        help=f"longest wait for a node or gateway, per request and per block of a stream "
                             f"(default {DEFAULT_TIMEOUT:g})")


def add_source_options(parser: argparse.ArgumentParser) -> None:
    """The options that say where a read command finds its blocks."""
    add_store_option(parser)
    g = parser.add_argument_group("blocks missing from the store (IPFS nodes and gateways)")
    remote = g.add_mutually_exclusive_group()
    remote.add_argument("--api", metavar="ADDR",
                        help="fetch them from this IPFS node's RPC API: a multiaddr (/ip4/127.0.0.1/tcp/5001) "
                             "or an http(s) URL")
    remote.add_argument("--gateway", metavar="URL",
                        help="fetch them from this trustless HTTP gateway (IPIP-402: ?format=car, else ?format=raw)")
    g.add_argument("--api-auth", metavar="SECRET",
                   help="with --api: a secret of the node's API.Authorizations (basic:USER:PASS, bearer:TOKEN)")
    g.add_argument("--no-cache", action="store_true",
                   help="do not keep fetched blocks in the store (they go to a temporary one)")
    add_timeout_option(g)


def _check_timeout(args: argparse.Namespace) -> float:
    timeout = float(args.timeout)
    if not timeout > 0:
        raise InvalidOption(f"--timeout must be more than 0 seconds, got {args.timeout}")
    return timeout


@contextmanager
def open_block_source(args: argparse.Namespace, *, create: bool = False,
                      whole_dags: bool = False) -> Iterator[BlockSource]:
    """The block source the options name; ``create`` makes an empty store where there is none.

    ``whole_dags``: with a remote, a missing block brings its whole DAG in one request (for
    commands that read every block under a root: ``fetch``, ``verify``, ``export``).
    """
    api, gateway = getattr(args, "api", None), getattr(args, "gateway", None)
    if api is None and gateway is None:
        if getattr(args, "api_auth", None) or getattr(args, "no_cache", False):
            raise InvalidOption("--api-auth and --no-cache go with --api or --gateway")
        with BlockStore(default_store_path(args.store), create=create) as store:
            yield store
        return
    from ..sinks.remote import LayeredSource, RemoteSource

    timeout = _check_timeout(args)
    remote: RemoteSource
    if api is not None:
        from ..sinks.node import NodeClient, find_api

        remote = NodeClient(find_api(api), auth=args.api_auth, timeout=timeout)
    else:
        from ..sinks.gateway import GatewayClient

        if args.api_auth:
            raise InvalidOption("--api-auth goes with --api, not --gateway")
        remote = GatewayClient(str(gateway), timeout=timeout)
    with ExitStack() as stack:  # unwound in reverse: the store first (aborted on an error), the remote last
        stack.callback(remote.close)
        path = default_store_path(args.store)
        source: LayeredSource
        if args.no_cache:
            local = stack.enter_context(BlockStore(path, create=False)) if (path / DB_NAME).exists() else None
            source = LayeredSource.scratch(local, remote, whole_dags=whole_dags)
            stack.callback(source.close)
        else:
            store = stack.enter_context(BlockStore(path, create=True))
            source = LayeredSource(store, store, remote, whole_dags=whole_dags)
        yield source


def archive_index(source: BlockSource) -> BlockStore:
    """The store whose archive index names archives for this source (``fetch NAME --gateway URL``):
    the embedded store, or with ``--no-cache`` and no store, the empty temporary one."""
    from ..sinks.remote import LayeredSource

    if isinstance(source, LayeredSource):
        return source.local if source.local is not None else source.cache
    assert isinstance(source, BlockStore)
    return source


def read_whole_dags(source: BlockSource) -> None:
    """From now on, a block missing locally brings its whole DAG (after a path was resolved block by block)."""
    from ..sinks.remote import LayeredSource

    if isinstance(source, LayeredSource):
        source.whole_dags = True
