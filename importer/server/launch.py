"""Start a server for a store or an index root: what ``dpip-import serve`` and ``dpip`` share.

Without an index root the store's own mirror is served: its index tree is (re)built first, which
is incremental and cheap when nothing changed (:mod:`importer.mirror.tree`); with ``ipns``, the
root an IPNS name resolves to, followed as it moves (:mod:`importer.server.ipns`). Blocks come
from the embedded store, one connection per server thread; ``source_factory`` is where a node or
a gateway source plugs in instead.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, TextIO

from .cache import DEFAULT_CACHE_BYTES

# The CLI reads this module's defaults when it builds its parser; the server itself is imported
# when one starts, so that no other command pays for it at start-up.
if TYPE_CHECKING:
    from .app import Server, ServerConfig, SourceFactory
    from .fallback import PullThrough
    from .ipns import IpnsIndex

#: devpi's port: a local package index people already expect there.
DEFAULT_PORT: Final = 3141
#: The file cache lives in the store directory unless ``--cache-dir`` says otherwise.
CACHE_DIR_NAME: Final = "serve-cache"


@dataclass(frozen=True, slots=True)
class ServeOptions:
    store_dir: Path
    index_root: bytes | None = None
    fallback: str | None = None
    pull_through: bool = False
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    cache_dir: Path | None = None
    cache_size: int = DEFAULT_CACHE_BYTES
    plain: bool = False
    source_factory: SourceFactory | None = None
    #: ``--index /ipns/NAME``: resolved at start (``index_root`` is then ignored) and followed.
    ipns: IpnsIndex | None = None


@dataclass(slots=True)
class Running:
    server: Server
    thread: threading.Thread
    config: ServerConfig
    pull: PullThrough | None
    ipns: IpnsIndex | None = None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/simple/"

    def stop(self) -> None:
        if self.ipns is not None:
            self.ipns.stop()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)
        if self.pull is not None:
            self.pull.close()


def store_source(store_dir: Path) -> SourceFactory:
    from ..sinks.base import BlockSource
    from ..sinks.store import BlockStore

    def open_store() -> BlockSource:
        return BlockStore(store_dir, create=False)

    return open_store


def start(options: ServeOptions, access_log: TextIO | None = None) -> Running:
    """Build (or take, or resolve) the index root, bind the server and serve it on a thread."""
    from .app import ServerConfig, make_server, serve_in_thread
    from .cache import FileCache
    from .fallback import Fallback, PullThrough

    root = options.ipns.resolve() if options.ipns is not None else options.index_root
    if root is None:
        from ..mirror.tree import build_store_index

        root = build_store_index(str(options.store_dir), options.plain).root
    cache = FileCache(options.cache_dir or options.store_dir / CACHE_DIR_NAME, options.cache_size)
    pull = PullThrough(options.store_dir, cache) if options.pull_through else None
    fallback = Fallback(options.fallback, pull) if options.fallback else None
    if pull is not None and fallback is None:
        pull.close()
        from ..errors import InvalidOption

        raise InvalidOption("--pull-through needs --fallback URL")
    config = ServerConfig(root, options.source_factory or store_source(options.store_dir), cache, fallback, access_log)
    server = make_server(config, options.host, options.port)
    running = Running(server, serve_in_thread(server), config, pull, options.ipns)
    if options.ipns is not None:
        options.ipns.follow(config.set_index)
    return running
