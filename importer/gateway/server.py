"""``dpip-import serve-blocks``: the trustless gateway on a threaded HTTP/1.1 server.

One thread per connection (:class:`http.server.ThreadingHTTPServer`), each with its own
connection to the embedded store, opened at its first request and closed with the connection:
a :class:`~importer.sinks.store.BlockStore` is used by one thread only. Answers of unknown
length (CARs) are sent with chunked transfer encoding, so a client can tell a complete CAR from
one cut short when a block turns out to be missing mid-stream (the connection is then closed
without the final chunk). Keep-alive lets a verifying client fetch block after block on one
connection.
"""

from __future__ import annotations

import http.server
import os
import socket
import sys
import threading
from pathlib import Path

from ..errors import ImporterError
from ..sinks.base import BlockSource
from ..sinks.store import BlockStore
from . import DEFAULT_HOST, DEFAULT_PORT
from .trustless import Response, TrustlessGateway


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "dpip-import-serve-blocks"
    server: GatewayServer

    def setup(self) -> None:
        super().setup()
        self._store: BlockStore | None = None

    def _source(self) -> BlockSource:
        if self._store is None:
            self._store = BlockStore(self.server.store_path, create=False)
        return self._store

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            if self._store is not None:
                self._store.abort()  # read-only: nothing to commit
                self._store = None

    def _answer(self, method: str) -> None:
        gateway = TrustlessGateway(self._source)
        try:
            response = gateway.handle(method, self.path, {k.lower(): v for k, v in self.headers.items()})
        except ImporterError as e:  # a damaged store, a block that fails its check
            response = Response(500, {"Content-Type": "text/plain; charset=utf-8"}, iter([f"{e}\n".encode()]))
        self._send(method, response)

    def _send(self, method: str, response: Response) -> None:
        self.send_response(response.status)
        headers = dict(response.headers)
        chunked = response.body is not None and "Content-Length" not in headers
        if chunked:
            headers["Transfer-Encoding"] = "chunked"
        elif response.body is None and "Content-Length" not in headers and method != "HEAD":
            headers["Content-Length"] = "0"
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if response.body is None or method == "HEAD":
            return
        try:
            for chunk in response.body:
                if chunked:
                    self.wfile.write(b"%X\r\n%s\r\n" % (len(chunk), chunk))
                else:
                    self.wfile.write(chunk)
        except ImporterError as e:
            # Mid-stream (a block missing or damaged): the status is sent, so end the connection
            # without the final chunk; the client sees a truncated answer.
            self.log_error("%s", f"CAR cut short: {e}")
            self.close_connection = True
            return
        if chunked:
            self.wfile.write(b"0\r\n\r\n")

    def do_GET(self) -> None:
        self._answer("GET")

    def do_HEAD(self) -> None:
        self._answer("HEAD")

    def do_POST(self) -> None:
        self._answer("POST")

    def log_message(self, format: str, *args: object) -> None:
        if self.server.verbose:
            super().log_message(format, *args)


class GatewayServer(http.server.ThreadingHTTPServer):
    """The gateway on ``(host, port)`` over the store at ``store_path``; ``port`` 0 picks a free one."""

    daemon_threads = True

    def __init__(self, store_path: str | os.PathLike[str], host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                 *, verbose: bool = False) -> None:
        self.store_path = Path(store_path)
        self.verbose = verbose
        BlockStore(self.store_path, create=False).abort()  # fail now, not at the first request
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else host
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve_in_thread(server: GatewayServer) -> threading.Thread:
    """Run ``server`` in a daemon thread (tests, embedding); stop it with ``server.shutdown()``."""
    thread = threading.Thread(target=server.serve_forever, name="serve-blocks", daemon=True)
    thread.start()
    return thread


def announce(server: GatewayServer) -> None:
    print(f"serving blocks of {server.store_path} at {server.url}/ipfs/{{cid}}?format=raw|car", file=sys.stderr,
          flush=True)
