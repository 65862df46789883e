"""Where the read commands (``cat``, ``get``, ``ls``, ``export``, ``fetch``, ``verify``, ``inspect``)
take their blocks from, and the options that choose it.

Today that is the embedded store named by ``--store``; every read command opens its blocks
through :func:`open_block_source`, so a new place blocks can come from (an IPFS node, a
gateway) is added here once, not in each command.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager

from ..sinks.store import BlockStore, default_store_path
from .options import add_store_option


def add_source_options(parser: argparse.ArgumentParser) -> None:
    """The options that say where a read command finds its blocks."""
    add_store_option(parser)


@contextmanager
def open_block_source(args: argparse.Namespace, *, create: bool = False) -> Iterator[BlockStore]:
    """The block source the options name; ``create`` makes an empty store where there is none."""
    with BlockStore(default_store_path(args.store), create=create) as store:
        yield store
