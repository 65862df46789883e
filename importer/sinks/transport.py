"""HTTP to IPFS nodes and gateways: where they are, connections with deadlines, bounded answers.

The Kubo RPC client (:mod:`importer.sinks.node`) uses this for the calls ``ipfshttpclient`` cannot
stream (``dag/import`` of a CAR generated while it is sent, ``dag/export`` read as it arrives),
and the gateway client (:mod:`importer.sinks.gateway`) for everything. It is the standard
library's ``http.client`` with three additions:

* :class:`Endpoint`: one parsed address, from a URL (``http://127.0.0.1:8080``) or a multiaddr as
  Kubo takes it (``/ip4/127.0.0.1/tcp/5001``, ``/dns/host/tcp/443/https``, ``/unix/run/ipfs.sock``);
* :class:`Answer`: a response read under a deadline. ``--timeout`` bounds every wait (connecting,
  and each read of the answer), and a whole answer must arrive within it too unless the caller
  moves the deadline on as it makes progress (a CAR moves it at every block), so a source that
  stops sending, or sends a byte now and then, fails within ``--timeout``;
* every failure becomes one :class:`RemoteError` naming the source.
"""

from __future__ import annotations

import io
import socket
import time
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Final, Self

from ..errors import InvalidOption, RemoteDataError, RemoteError

# http.client and ssl cost ~15 ms to import: only commands that reach the network pay for them.
if TYPE_CHECKING:
    import http.client

#: Default of ``--timeout``: a node answers a call or a gateway a block in well under a second on
#: a LAN; 60 s leaves room for a slow public gateway, and is what a hung source costs at most.
DEFAULT_TIMEOUT: Final = 60.0
#: Read size of a streamed answer: 256 KiB is one default UnixFS leaf, large enough that the
#: per-call cost of a read is lost in the copy, small enough to bound what one read holds.
READ_SIZE: Final = 256 * 1024


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where an HTTP service is: ``scheme`` ``http``/``https``, a host and port or a Unix socket.

    ``base`` is a URL path prefix (``/api/v0`` is added by the node client, not kept here);
    ``label`` is the address as the user gave it, for messages.
    """

    scheme: str
    host: str
    port: int
    unix_path: str | None = None
    base: str = ""
    label: str = ""

    @property
    def url(self) -> str:
        """``http://host:port/base`` (``http://localhost/base`` for a Unix socket)."""
        host = "localhost" if self.unix_path else (f"[{self.host}]" if ":" in self.host else self.host)
        port = "" if self.unix_path or self.port == (443 if self.scheme == "https" else 80) else f":{self.port}"
        return f"{self.scheme}://{host}{port}{self.base}"

    @property
    def multiaddr(self) -> str:
        """The multiaddr ``ipfshttpclient`` takes for this endpoint."""
        if self.unix_path:
            return f"/unix{self.unix_path}"
        proto = "ip6" if ":" in self.host else ("ip4" if _is_ipv4(self.host) else "dns")
        return f"/{proto}/{self.host}/tcp/{self.port}/{self.scheme}"


def _is_ipv4(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET, host)
    except OSError:
        return False
    return True


def parse_endpoint(text: str, what: str) -> Endpoint:
    """A URL (``http[s]://host[:port][/base]``) or a multiaddr; ``what`` names the option in errors."""
    text = text.strip()
    if text.startswith("/"):
        return _parse_multiaddr(text, what)
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidOption(f"{what} {text!r}: not an http(s) URL or a multiaddr such as /ip4/127.0.0.1/tcp/5001")
    if parts.query or parts.fragment:
        raise InvalidOption(f"{what} {text!r}: a query or fragment has no place in the address")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as e:
        raise InvalidOption(f"{what} {text!r}: {e}") from None
    return Endpoint(parts.scheme, parts.hostname, port, None, parts.path.rstrip("/"), text)


def _parse_multiaddr(text: str, what: str) -> Endpoint:
    """The multiaddrs Kubo listens on: ``/ip4|ip6|dns|dns4|dns6/HOST/tcp/PORT[/http|/https]``, ``/unix/PATH``."""
    def bad(reason: str) -> InvalidOption:
        return InvalidOption(f"{what} {text!r}: {reason}")

    if text.startswith("/unix/"):
        path = text[len("/unix"):]
        if path == "/":
            raise bad("/unix needs a socket path")
        return Endpoint("http", "localhost", 80, path, "", text)
    parts = text.split("/")[1:]
    if len(parts) not in (4, 5) or parts[0] not in ("ip4", "ip6", "dns", "dns4", "dns6") or parts[2] != "tcp":
        raise bad("expected /ip4|ip6|dns/HOST/tcp/PORT[/http|/https] or /unix/PATH")
    host, port_text = parts[1], parts[3]
    scheme = parts[4] if len(parts) == 5 else "http"
    if scheme not in ("http", "https"):
        raise bad(f"/{scheme} is not /http or /https")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise bad(f"port {port_text!r} is not a number from 1 to 65535")
    if parts[0] == "ip4" and not _is_ipv4(host):
        raise bad(f"{host!r} is not an IPv4 address")
    return Endpoint(scheme, host, int(port_text), None, "", text)


def open_connection(endpoint: Endpoint, timeout: float) -> http.client.HTTPConnection:
    import http.client

    if endpoint.unix_path:
        unix_path = endpoint.unix_path

        class UnixConnection(http.client.HTTPConnection):
            """HTTP over a Unix domain socket (Kubo's ``/unix/...`` API address)."""

            def connect(self) -> None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(self.timeout)
                try:
                    sock.connect(unix_path)
                except BaseException:
                    sock.close()
                    raise
                self.sock = sock

        return UnixConnection("localhost", timeout=timeout)
    if endpoint.scheme == "https":
        import ssl

        return http.client.HTTPSConnection(endpoint.host, endpoint.port, timeout=timeout,
                                           context=ssl.create_default_context())
    return http.client.HTTPConnection(endpoint.host, endpoint.port, timeout=timeout)


def describe(error: BaseException, timeout: float) -> str:
    """A network failure in a few words."""
    import http.client
    import ssl

    if isinstance(error, TimeoutError | socket.timeout):
        return f"no answer within {timeout:g} s (--timeout)"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused (is it running, at this address?)"
    if isinstance(error, http.client.IncompleteRead):
        return f"connection closed after {len(error.partial)} bytes of an answer"
    if isinstance(error, http.client.RemoteDisconnected | ConnectionResetError | BrokenPipeError):
        return "connection closed by the other side"
    if isinstance(error, ssl.SSLError):
        return f"TLS: {error.reason or error}"
    if isinstance(error, OSError):
        return error.strerror or str(error) or type(error).__name__
    return str(error) or type(error).__name__


class Answer(io.RawIOBase):
    """An HTTP answer read under a deadline, no more than ``limit`` bytes of it.

    A raw stream, so ``io.BufferedReader(answer)`` gives ``peek`` to the CAR reader. Closing it
    hands a connection whose answer was read to the end back to its :class:`Session` for the next
    request (HTTP keep-alive); any other connection is closed.
    """

    def __init__(self, session: Session, conn: http.client.HTTPConnection, response: http.client.HTTPResponse,
                 *, what: str | None, call: str | None = None, limit: int | None = None) -> None:
        super().__init__()
        self.session = session
        self.call = call
        self.conn = conn
        self.response = response
        self.source = session.source
        self.what = what
        self.timeout = session.timeout
        self.limit = limit
        self.received = 0
        self.deadline = time.monotonic() + self.timeout

    @property
    def status(self) -> int:
        return self.response.status

    def header(self, name: str) -> str:
        return self.response.getheader(name) or ""

    def extend_deadline(self) -> None:
        """Progress was made: the next part of the answer has ``timeout`` seconds again."""
        self.deadline = time.monotonic() + self.timeout

    def fail(self, reason: str, error: type[RemoteError] = RemoteError) -> RemoteError:
        """The error naming the source, the call (``block/get:``) if any, and the CID."""
        return error(self.source, _prefixed(self.call, reason), self.what)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise self.fail(describe(TimeoutError(), self.timeout))
        want = len(buffer)
        if self.limit is not None:
            if self.received >= self.limit:
                # One byte past the limit tells "longer than allowed" from "exactly the limit".
                if self._read(bytearray(1), remaining):
                    raise self.fail(f"answer longer than {self.limit} bytes", RemoteDataError)
                return 0
            want = min(want, self.limit - self.received)
        n = self._read(memoryview(buffer)[:want], remaining)
        self.received += n
        return n

    def _read(self, buffer: memoryview | bytearray, remaining: float) -> int:
        """One read of at most ``len(buffer)`` bytes, waiting at most ``remaining`` seconds.

        ``read1`` makes at most one read of the socket; ``readinto`` would loop until the buffer
        is full, so a source sending a byte now and then would never meet the deadline check.
        """
        import http.client

        sock = self.conn.sock
        if sock is not None:
            sock.settimeout(min(self.timeout, remaining))
        try:
            data = self.response.read1(len(buffer))
        except (OSError, http.client.HTTPException) as e:
            raise self.fail(describe(e, self.timeout)) from None
        buffer[:len(data)] = data
        return len(data)

    def read_all(self) -> bytes:
        """The whole answer (within ``limit``)."""
        chunks: list[bytes] = []
        while True:
            chunk = self.read(READ_SIZE)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)

    def close(self) -> None:
        if not self.closed:
            reusable = self.response.isclosed() and not self.response.will_close
            self.response.close()
            if reusable:
                self.session.release(self.conn)
            else:
                self.conn.close()
        super().close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class Session:
    """Requests to one endpoint, keeping one idle connection for the next (not thread-safe).

    ``source`` names the endpoint in errors (``gateway http://...``); ``headers`` go with every
    request (``Authorization``).
    """

    def __init__(self, endpoint: Endpoint, *, source: str, timeout: float = DEFAULT_TIMEOUT,
                 headers: Mapping[str, str] | None = None) -> None:
        self.endpoint = endpoint
        self.source = source
        self.timeout = timeout
        self.headers = {"User-Agent": "dpip-import", **(headers or {})}
        self._idle: http.client.HTTPConnection | None = None

    def release(self, conn: http.client.HTTPConnection) -> None:
        if self._idle is not None:
            self._idle.close()
        self._idle = conn

    def close(self) -> None:
        if self._idle is not None:
            self._idle.close()
            self._idle = None

    def request(self, method: str, target: str, *, what: str | None = None, call: str | None = None,
                headers: Mapping[str, str] | None = None, body: bytes | Iterable[bytes] | None = None,
                limit: int | None = None) -> Answer:
        """Send one request and return its answer, whatever its status (the caller decides).

        ``target`` is the path and query below ``endpoint.base``; ``what`` (a CID) and ``call``
        (``dag/export``) name the request in errors. An iterable ``body`` is sent
        with chunked transfer encoding as it is produced, so it is never held whole, and always
        on a new connection. A reused connection that the other side had closed meanwhile is
        replaced once (requests with a bytes body only: an iterable cannot be sent twice).
        """
        import http.client

        all_headers = {**self.headers, **(headers or {})}
        chunked = body is not None and not isinstance(body, bytes)
        conn, reused = (self._idle, True) if self._idle is not None and not chunked else (None, False)
        self._idle = None
        while True:
            if conn is None:
                conn = open_connection(self.endpoint, self.timeout)
            elif conn.sock is not None:
                conn.sock.settimeout(self.timeout)  # a streamed read may have shortened it
            try:
                conn.request(method, self.endpoint.base + target, body=body, headers=all_headers,
                             encode_chunked=chunked)
                response = conn.getresponse()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as e:
                conn.close()
                conn = None
                if reused:
                    reused = False
                    continue
                raise RemoteError(self.source, _prefixed(call, describe(e, self.timeout)), what) from None
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                raise RemoteError(self.source, _prefixed(call, describe(e, self.timeout)), what) from None
            except BaseException:
                conn.close()
                raise
            return Answer(self, conn, response, what=what, call=call, limit=limit)


def _prefixed(call: str | None, reason: str) -> str:
    return f"{call}: {reason}" if call else reason
