"""``serve --index /ipns/NAME``: an index published under an IPNS name, followed as the name moves.

The name is resolved through the node (``name/resolve``) when the server starts, where a name
that does not resolve (or resolves to anything but ``/ipfs/<CID>``) is a one-line error, and then
every ``--refresh`` interval on a thread of its own. A new root replaces the served index at once
(a request already under way finishes on the tree it started with: each request reads the index
once); a refresh that fails keeps the index as it was, says so in one line and is tried again at
the next interval. Resolving never trusts the node with more than a root CID: every block of the
tree is still checked against its CID as it is read.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, TextIO

from ..dag.cid import format_cid, parse_cid
from ..errors import ImporterError, InvalidCid, InvalidOption, RemoteError

if TYPE_CHECKING:
    from ..sinks.node import NodeClient

#: Default ``--refresh``: a publisher's new root reaches pip within 5 minutes. Resolving a name
#: the node itself publishes costs milliseconds; a remote name costs the node a routing lookup,
#: unless it answers from its cache within the record's TTL (Kubo: ``name publish --ttl``, 1 h by
#: default since 0.24), which then bounds how soon a change is seen.
DEFAULT_REFRESH_S: Final = 300.0
#: Prefix of an IPNS path.
IPNS_PREFIX: Final = "/ipns/"


def parse_ipns_index(text: str) -> str:
    """The NAME of ``--index /ipns/NAME``; InvalidOption for an empty name or a path below it."""
    name = text.removeprefix(IPNS_PREFIX)
    name = name.rstrip("/")
    if not name or "/" in name:
        raise InvalidOption(f"--index {text!r}: expected /ipns/NAME (an IPNS name, no path below it)")
    return name


def root_of_path(path: str, name: str, source: str) -> bytes:
    """The CID of the ``/ipfs/<CID>`` an IPNS name resolved to; RemoteError for anything else."""
    cid_text = path[len("/ipfs/"):].rstrip("/") if path.startswith("/ipfs/") else ""
    try:
        if not cid_text or "/" in cid_text:
            raise InvalidCid(path, "not /ipfs/<CID>")
        return parse_cid(cid_text)
    except InvalidCid:
        raise RemoteError(source, f"name/resolve: points to {path[:200]!r}, not to an index root /ipfs/<CID>",
                          IPNS_PREFIX + name) from None


class IpnsIndex:
    """Follows ``/ipns/NAME`` through a node: :meth:`resolve` once, :meth:`follow` on a thread."""

    def __init__(self, name: str, node_factory: Callable[[], NodeClient], refresh: float = DEFAULT_REFRESH_S,
                 log: TextIO | None = None) -> None:
        self.name = name
        self.node_factory = node_factory
        self.refresh = refresh
        self.log = log if log is not None else sys.stderr
        self.root: bytes | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def path(self) -> str:
        return IPNS_PREFIX + self.name

    def resolve(self, node: NodeClient | None = None) -> bytes:
        """Resolve the name now; the root it names."""
        own = node is None
        client = self.node_factory() if node is None else node
        try:
            root = root_of_path(client.name_resolve(self.name), self.name, client.source)
        finally:
            if own:
                client.close()
        self.root = root
        return root

    def follow(self, on_change: Callable[[bytes], None]) -> None:
        """Resolve every ``refresh`` seconds on a thread; call ``on_change(root)`` when the root moves."""
        def run() -> None:
            node = self.node_factory()
            try:
                while not self._stop.wait(self.refresh):
                    before = self.root
                    try:
                        root = self.resolve(node)
                    except ImporterError as e:
                        self._say(f"refresh of {self.path} failed, still serving "
                                  f"{format_cid(before) if before else 'nothing'}: {e}")
                        continue
                    if root != before:
                        on_change(root)
                        self._say(f"{self.path} now names {format_cid(root)}: serving it")
            finally:
                node.close()

        self._thread = threading.Thread(target=run, name="dpip-serve-ipns", daemon=True)
        self._thread.start()

    def _say(self, line: str) -> None:
        self.log.write(f"dpip-import serve: {time.strftime('%Y-%m-%dT%H:%M:%S')} {line}\n")
        self.log.flush()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
