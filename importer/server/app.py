"""The pip-facing HTTP server: an index tree's pages, and its archives rebuilt from blocks, verified as they stream.

URL space (the same as the index tree's, so pages are served as stored)::

    /simple/                          root listing (PEP 503 HTML or PEP 691 JSON, negotiated)
    /simple/<project>/                project page (negotiated; a non-normalized name redirects)
    /simple/<project>/<file>          the archive, rebuilt from its root CID (or from the cache)
    /simple/<project>/<file>.metadata PEP 658 core metadata (the wheel's METADATA file)
    /simple/<project>/index.html|json the stored pages by name, as a static gateway has them

A file is answered with its Content-Length and ETag (``"sha256:<hex>"``) up front, then streamed
through :func:`~importer.server.verified.send_verified`: if the rebuild (or the block source)
fails or the bytes do not match the index's sha256, the connection is closed before the last
piece, so the client never holds the whole wrong file. Rebuilt files go to the
:class:`~importer.server.cache.FileCache`; cached files serve Range requests (and are re-hashed
before each use: a damaged cache is caught like a damaged store). HEAD answers from the page alone.

Threads: one per connection (``ThreadingHTTPServer``), each with its own block source from
``source_factory`` (the embedded store's connection belongs to the thread that opened it),
closed when the connection ends. An access log line per request records the method, path,
status, bytes, the content type chosen and whether the file came from the cache.
"""

from __future__ import annotations

import hashlib
import http.server
import os
import socketserver
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, Final, TextIO

from ..archive.rebuild import iter_archive
from ..dag.cid import format_cid, parse_cid
from ..dag.reader import iter_file
from ..errors import ImporterError
from ..mirror.download import sha256_file
from ..mirror.metadata import MAX_METADATA_BYTES
from ..mirror.names import is_normalized, normalize
from ..mirror.render import JSON_TYPE, TEXT_HTML
from ..sinks.base import BlockSource
from .cache import FileCache
from .fallback import Fallback
from .index_view import IndexView, Page
from .negotiate import choose
from .verified import PIECE, VerificationFailed, send_verified

SERVER_NAME: Final = "dpip-serve"

#: A file is named by its sha256 (the ETag): its bytes never change, so clients may keep them.
IMMUTABLE: Final = "public, max-age=31536000, immutable"

SourceFactory = Callable[[], BlockSource]


@dataclass(slots=True)
class ServerConfig:
    """What a server serves and from where."""

    index_root: bytes
    source_factory: SourceFactory
    cache: FileCache
    fallback: Fallback | None = None
    access_log: TextIO | None = None
    view: IndexView = field(init=False)

    def __post_init__(self) -> None:
        self.view = IndexView(self.index_root)

    def set_index(self, root: bytes) -> None:
        """Serve the index tree ``root`` from now on (``--index /ipns/NAME`` moved); a request reads
        ``view`` once, so one under way finishes on the tree it started with."""
        self.view = IndexView(root)
        self.index_root = root


class _Aborted(Exception):
    """The response was cut short on purpose (already logged)."""


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = SERVER_NAME
    protocol_version = "HTTP/1.1"
    config: ServerConfig  # set by make_server on a subclass

    # -- plumbing -----------------------------------------------------------------------------

    def setup(self) -> None:
        super().setup()
        self._source: BlockSource | None = None

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            close = getattr(self._source, "close", None)
            if callable(close):
                close()
            self._source = None

    @property
    def source(self) -> BlockSource:
        if self._source is None:
            self._source = self.config.source_factory()
        return self._source

    def log_message(self, format: str, *args: Any) -> None:
        return None  # the access log below replaces http.server's stderr lines

    def _log(self, status: int, nbytes: int, ctype: str = "-", note: str = "-") -> None:
        out = self.config.access_log
        if out is None:
            return
        ms = (time.perf_counter() - self._started) * 1000
        out.write(f'{self.client_address[0]} [{time.strftime("%Y-%m-%dT%H:%M:%S")}] "{self.command} {self.path}" '
                  f'{status} {nbytes} {ctype} {note} {ms:.1f}ms\n')
        out.flush()

    def _simple(self, status: int, text: str, headers: dict[str, str] | None = None) -> None:
        body = text.encode() + b"\n"
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self._log(status, len(body), note=text.replace(" ", "_")[:60])

    def _redirect(self, location: str) -> None:
        self._simple(301, f"moved to {location}", {"Location": location})

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_GET(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        self._started = time.perf_counter()
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        parts = [urllib.parse.unquote(p) for p in url.path.split("/")]
        try:
            if url.path in ("/", "/simple"):
                self._redirect("/simple/")
            elif len(parts) == 3 and parts[1] == "simple" and parts[2] == "":
                self._page(self.config.view.root_page(self.source), query)
            elif len(parts) == 3 and parts[1] == "simple":
                self._redirect(f"/simple/{urllib.parse.quote(parts[2])}/")
            elif len(parts) == 4 and parts[1] == "simple":
                self._project(parts[2], parts[3], query)
            else:
                self._simple(404, "not found")
        except _Aborted:
            self.close_connection = True
        except (ImporterError, OSError) as e:
            if isinstance(e, (BrokenPipeError, ConnectionResetError)):
                self.close_connection = True
                return
            self._simple(502, f"dpip-import serve: {e}")

    # -- pages ----------------------------------------------------------------------------------

    def _negotiate(self, query: dict[str, list[str]]) -> str | None:
        formats = query.get("format")
        return choose(self.headers.get("Accept"), formats[0] if formats else None)

    def _send_page(self, ctype: str, body: bytes, etag: str | None, note: str = "-") -> None:
        if etag is not None and self.headers.get("If-None-Match") == etag:
            self.send_response(304)
            self.send_header("ETag", etag)
            self.send_header("Vary", "Accept")
            self.send_header("Content-Length", "0")
            self.end_headers()
            self._log(304, 0, ctype, note)
            return
        self.send_response(200)
        self.send_header("Content-Type", ctype if ctype == JSON_TYPE else f"{ctype}; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Vary", "Accept")
        if etag is not None:
            self.send_header("ETag", etag)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self._log(200, len(body), ctype, note)

    def _page(self, page: Page, query: dict[str, list[str]]) -> None:
        ctype = self._negotiate(query)
        if ctype is None:
            self._simple(406, "acceptable: application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html, "
                              "text/html")
            return
        body, cid = (page.json, page.json_cid) if ctype == JSON_TYPE else (page.html, page.html_cid)
        self._send_page(ctype, body, f'"{format_cid(cid)}"')

    def _project(self, name: str, rest: str, query: dict[str, list[str]]) -> None:
        if not is_normalized(name):
            target = normalize(name)
            if not is_normalized(target):
                self._simple(404, "not a project name")
                return
            self._redirect(f"/simple/{target}/{urllib.parse.quote(rest)}")
            return
        view = self.config.view.project(self.source, name)
        if view is None:
            self._fallback(name, rest, query)
            return
        if rest == "":
            self._page(view.page, query)
        elif rest == "index.html":
            self._send_page(TEXT_HTML, view.page.html, f'"{format_cid(view.page.html_cid)}"')
        elif rest == "index.json":
            self._send_page(JSON_TYPE, view.page.json, f'"{format_cid(view.page.json_cid)}"')
        elif rest in view.metadata:
            entry = view.files[rest[: -len(".metadata")]]
            self._metadata(view.metadata[rest], entry.core_metadata)
        elif rest in view.files:
            entry = view.files[rest]
            if not entry.root:
                self._simple(404, "no archive root for this file")
                return
            self._file(entry.filename, entry.sha256, entry.size, lambda: self._rebuild(entry.root or ""))
        else:
            self._simple(404, "no such file")

    # -- files ----------------------------------------------------------------------------------

    def _metadata(self, cid: bytes, sha256: str | None) -> None:
        data = bytearray()
        for piece in iter_file(self.source, cid):
            data += piece
            if len(data) > MAX_METADATA_BYTES:
                self._simple(502, "metadata file too large")
                return
        if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
            self._simple(502, "metadata does not match its sha256")
            return
        self._send_page("text/plain", bytes(data), f'"sha256:{sha256}"' if sha256 else None)

    def _rebuild(self, root_text: str) -> Iterator[bytes]:
        _, pieces = iter_archive(self.source, parse_cid(root_text))
        return pieces

    def _file(self, filename: str, sha256: str, size: int, rebuild: Callable[[], Iterator[bytes]]) -> None:
        etag = f'"sha256:{sha256}"'
        cache = self.config.cache
        headers = {"ETag": etag, "Accept-Ranges": "bytes" if cache.enabled else "none",
                   "Content-Type": "application/octet-stream", "Cache-Control": IMMUTABLE,
                   "Content-Disposition": f"attachment; filename*=UTF-8''{urllib.parse.quote(filename)}"}
        if self.headers.get("If-None-Match") == etag:
            self.send_response(304)
            for k in ("ETag", "Accept-Ranges"):
                self.send_header(k, headers[k])
            self.send_header("Content-Length", "0")
            self.end_headers()
            self._log(304, 0, note="not-modified")
            return
        if self.command == "HEAD":
            self._head(size, headers)
            return
        cached = cache.get(sha256)
        wants_range = self.headers.get("Range") is not None and cache.enabled
        if cached is None and wants_range:
            with cache.building(sha256):  # Range needs the whole verified file first
                cached = cache.get(sha256) or self._fill_cache(filename, sha256, size, rebuild)
        if cached is not None:
            self._send_cached(cached, sha256, size, headers)
            return
        if cache.enabled:
            with cache.building(sha256):
                cached = cache.get(sha256)
                if cached is not None:
                    self._send_cached(cached, sha256, size, headers, note="cache-hit-after-wait")
                    return
                self._stream(filename, sha256, size, rebuild, headers, cache)
        else:
            self._stream(filename, sha256, size, rebuild, headers, None)

    def _head(self, size: int, headers: dict[str, str]) -> None:
        self.send_response(200)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(size))
        self.end_headers()
        self._log(200, 0, headers["Content-Type"], "head")

    def _start(self, status: int, length: int, headers: dict[str, str], extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in {**headers, **(extra or {})}.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def _stream(self, filename: str, sha256: str, size: int, rebuild: Callable[[], Iterator[bytes]],
                headers: dict[str, str], cache: FileCache | None) -> None:
        pieces = rebuild()  # reads the root and recipe now: a missing or bad root is a 502 before any byte
        temp: IO[bytes] | None = cache.temporary(sha256) if cache is not None else None
        self._start(200, size, headers)
        try:
            sent = send_verified(pieces, sha256, size, self.wfile.write, temp.write if temp is not None else None)
        except (VerificationFailed, ImporterError, OSError) as e:
            if temp is not None and cache is not None:
                cache.discard(temp)
            sent = e.sent if isinstance(e, VerificationFailed) else -1
            reason = e.reason if isinstance(e, VerificationFailed) else str(e)
            print(f"dpip-import serve: {filename}: aborted after {max(sent, 0):,d} of {size:,d} bytes: {reason}",
                  file=sys.stderr, flush=True)
            self._log(200, max(sent, 0), headers["Content-Type"], "aborted:" + reason.replace(" ", "_")[:80])
            raise _Aborted() from None
        if temp is not None and cache is not None:
            cache.admit(sha256, temp)
        self._log(200, sent, headers["Content-Type"], "rebuilt")

    def _fill_cache(self, filename: str, sha256: str, size: int, rebuild: Callable[[], Iterator[bytes]]) -> Any:
        cache = self.config.cache
        temp = cache.temporary(sha256)
        try:
            send_verified(rebuild(), sha256, size, temp.write)
        except (VerificationFailed, ImporterError) as e:
            cache.discard(temp)
            self._simple(502, f"dpip-import serve: {filename}: {getattr(e, 'reason', e)}")
            raise _Aborted() from None
        return cache.admit(sha256, temp)

    def _send_cached(self, path: Any, sha256: str, size: int, headers: dict[str, str], note: str = "cache-hit") -> None:
        start, end = 0, size - 1
        status = 200
        extra: dict[str, str] = {}
        rng = self.headers.get("Range")
        parsed = _parse_range(rng, size) if rng else None
        if rng and parsed is None:
            self._simple(416, "range not satisfiable", {"Content-Range": f"bytes */{size}"})
            return
        if parsed is not None and parsed != (0, size - 1):
            start, end = parsed
            status = 206
            extra["Content-Range"] = f"bytes {start}-{end}/{size}"
            _check_whole(path, sha256, size)  # a range cannot be verified on its own: check the file first
        with open(path, "rb") as f:
            self._start(status, end - start + 1, headers, extra)
            if status == 206:
                f.seek(start)
                left = end - start + 1
                while left > 0 and (piece := f.read(min(PIECE, left))):
                    self.wfile.write(piece)
                    left -= len(piece)
                self._log(206, end - start + 1, headers["Content-Type"], note + "-range")
                return
            try:
                sent = send_verified(iter(lambda: f.read(PIECE), b""), sha256, size, self.wfile.write)
            except VerificationFailed as e:
                os.unlink(path)  # a damaged cache entry: drop it, the next request rebuilds
                self._log(200, e.sent, headers["Content-Type"], "aborted:cache-damaged")
                raise _Aborted() from None
        self._log(200, sent, headers["Content-Type"], note)

    # -- fallback -------------------------------------------------------------------------------

    def _fallback(self, name: str, rest: str, query: dict[str, list[str]]) -> None:
        fallback = self.config.fallback
        if fallback is None:
            self._simple(404, f"project {name} is not in this index")
            return
        if rest == "":
            ctype = self._negotiate(query) or TEXT_HTML
            relayed = fallback.page(name, self.headers.get("Accept", ""), ctype)
            if relayed is None:
                self._simple(404, f"project {name} is neither in this index nor at the fallback")
                return
            if relayed.status != 200:
                self._simple(relayed.status, relayed.body.decode("utf-8", "replace").strip())
                return
            self._send_page(relayed.content_type, relayed.body, None, "fallback")
            return
        pulled = fallback.pull.lookup(name, rest) if fallback.pull is not None else None
        if pulled is None:
            self._simple(404, "no such file")
            return
        path = fallback.pull.fetch(pulled) if fallback.pull is not None else None
        self._file(rest, pulled.file.sha256, os.path.getsize(path or ""), lambda: iter(()))


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """One ``bytes=a-b`` / ``a-`` / ``-n`` range within ``size``; None if unsatisfiable or not one range."""
    if not header.startswith("bytes=") or "," in header:
        return None
    first, _, last = header[6:].strip().partition("-")
    try:
        if first == "":
            n = int(last)
            return (max(0, size - n), size - 1) if n > 0 else None
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        return None
    if start >= size or end < start:
        return None
    return start, min(end, size - 1)


def _check_whole(path: Any, sha256: str, size: int) -> None:
    digest, n = sha256_file(path)
    if n != size or digest != sha256:
        os.unlink(path)
        raise ImporterError(f"cached {os.path.basename(path)} is damaged; it will be rebuilt")


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    #: Pending connections: pip opens a handful, a busy CI many; 128 is the usual somaxconn floor.
    request_queue_size = 128


def make_server(config: ServerConfig, host: str = "127.0.0.1", port: int = 0) -> Server:
    """A server bound to (host, port) (0: a free port), not yet serving."""
    handler = type("BoundHandler", (Handler,), {"config": config})
    return Server((host, port), handler)


def serve_in_thread(server: Server) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, name="dpip-serve", daemon=True)
    thread.start()
    return thread
