"""One IPFS node over the Kubo RPC API (``/api/v0``): a place blocks go to and come from.

It speaks to Kubo, to js-ipfs (same API), and to an IPFS Cluster's proxy API, which takes the
same calls and turns ``pin/add`` into a cluster pin that then replicates to its peers.

Which client carries which call, and why:

* ``ipfshttpclient`` (the client the product names) carries ``pin/add|rm``, ``files/mkdir|stat|rm|
  cp|mv``, ``key/list|gen`` and ``name/publish|resolve``. Its ``connect()`` refuses daemons of
  version 0.8 and later, so :class:`ipfshttpclient.Client` is built directly, and urllib3's
  ``FutureWarning`` about ``strict`` that it triggers on every request is kept from users (it
  breaks on urllib3 3, hence ``urllib3<3`` in the dependencies). It is imported on the first
  call that needs it: importing it (and ``requests``, ``multiaddr``) costs ~0.2 s, a fifth of a
  50 MB push, so ``push`` never does.
* Direct HTTP (:mod:`importer.sinks.transport`) carries what must stream or be bounded, and the
  calls of ``push``'s own path. ``dag/import`` takes a CAR as a multipart file; ipfshttpclient's
  multipart encoder reads files or byte strings, while :mod:`importer.sinks.push` generates the
  CAR block by block as it is sent (chunked transfer encoding), never holding the DAG; it pins
  the CAR's roots itself (``pin-roots``), which saves a ``pin/add`` round trip and walk.
  ``dag/export`` is read as it arrives, each block checked before the next is read, under a
  deadline that moves on with every block (:mod:`importer.sinks.remote`). ``block/get`` is read
  with a bound of :data:`MAX_BLOCK`: ipfshttpclient reads a whole answer in one piece even when
  streaming (``chunk_size=None``), so a hostile node could make it hold any amount. ``id`` and
  ``pin/ls`` are small JSON answers on ``push``'s path (above); ``pin/ls --stream`` of every pin
  is read line by line; ``files/flush`` is missing from ipfshttpclient.

The node is named as Kubo's ``--api`` takes it: a multiaddr (``/ip4/127.0.0.1/tcp/5001``,
``/dns/host/tcp/443/https``, ``/unix/path``) or an ``http(s)://`` URL; without ``--api``, the
address a running daemon wrote to ``$IPFS_PATH/api`` (default ``~/.ipfs/api``). ``--api-auth``
takes a secret of Kubo's ``API.Authorizations``: ``basic:USER:PASS``, ``basic:BASE64``,
``bearer:TOKEN`` or a bare token (bearer).
"""

from __future__ import annotations

import base64
import json
import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from ..dag.cid import format_cid
from ..errors import InvalidOption, RemoteError
from .transport import DEFAULT_TIMEOUT, READ_SIZE, Answer, Endpoint, Session, describe, parse_endpoint

#: Largest block accepted from any node or gateway: twice Kubo's 1 MiB block limit (``block put``
#: and ``dag import`` refuse larger blocks without ``--allow-big-block``). No block we write
#: exceeds 1 MiB and a few bytes (the unixfs-v1-2025 profile's chunks), so a larger one is refused
#: before it is read whole.
MAX_BLOCK: Final = 2 * 1024 * 1024
#: Bound on a JSON answer of the node (``id``, ``dag/import``'s roots and stats): kilobytes in
#: practice, so 1 MiB is plenty and still small.
MAX_JSON_ANSWER: Final = 1024 * 1024
#: Bound on ``pin/ls --stream`` of every recursive pin: a line is ~80 bytes (``{"Type":"recursive",
#: "Cid":"bafy..."}``), so 1 GiB is ~13 million pins, a whole-PyPI mirror's archive roots. Read
#: line by line, keeping only the CIDs' bytes.
MAX_PIN_LISTING: Final = 1024 * 1024 * 1024
#: Key type of the IPNS keys ``key/gen`` makes: Kubo's default since 0.8, small records, fast.
KEY_TYPE: Final = "ed25519"
#: Path of the RPC API below the node's address.
API_BASE: Final = "/api/v0"
#: File a running daemon writes its API address to, in its repo (``$IPFS_PATH``, default ``~/.ipfs``).
API_FILE: Final = "api"
#: Multipart boundary of ``dag/import``: it cannot occur inside the part's bytes by chance only if
#: long and random-looking; a CAR is read by its lengths anyway, the boundary only ends the part.
_BOUNDARY: Final = "dpip-import-car-2b1f07c4e8a94d5f9b3c6a0e1d7f2c85"

#: urllib3's warning about the ``strict`` parameter ipfshttpclient passes on every request.
_STRICT_WARNING: Final = r"The 'strict' parameter is no longer needed"


def find_api(cli_value: str | None) -> Endpoint:
    """The node's address: ``--api``, else the ``api`` file of ``$IPFS_PATH`` (or ``~/.ipfs``)."""
    if cli_value:
        return parse_endpoint(cli_value, "--api")
    repo = Path(os.environ.get("IPFS_PATH") or Path.home() / ".ipfs")
    try:
        text = (repo / API_FILE).read_text(encoding="utf-8").strip()
    except OSError:
        raise InvalidOption(f"no IPFS node: give --api ADDR (no running daemon wrote {repo / API_FILE})") from None
    return parse_endpoint(text, f"{repo / API_FILE}:")


def parse_api_auth(secret: str) -> str:
    """The ``Authorization`` header for a Kubo ``AuthSecret`` (``basic:user:pass``, ``bearer:token``...)."""
    kind, colon, value = secret.partition(":")
    if colon and kind == "basic":
        if not value:
            raise InvalidOption("--api-auth basic: needs USER:PASS or their base64")
        encoded = base64.b64encode(value.encode()).decode() if ":" in value else value
        return f"Basic {encoded}"
    token = value if colon and kind == "bearer" else secret
    if not token:
        raise InvalidOption("--api-auth: empty token")
    return f"Bearer {token}"


@dataclass(frozen=True, slots=True)
class ImportAnswer:
    """What ``dag/import`` said: the roots it saw and, when the node counts them, its block stats."""

    roots: tuple[str, ...]
    blocks: int | None
    bytes: int | None


class NodeClient:
    """The calls dpip-import makes to one node; every failure is one :class:`RemoteError`."""

    def __init__(self, endpoint: Endpoint, *, auth: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.endpoint = endpoint
        self.source = f"node {endpoint.label or endpoint.url}"
        self.timeout = timeout
        self._headers = {"Authorization": parse_api_auth(auth)} if auth else {}
        api = Endpoint(endpoint.scheme, endpoint.host, endpoint.port, endpoint.unix_path,
                       endpoint.base + API_BASE, endpoint.label)
        self._session = Session(api, source=self.source, timeout=timeout, headers=self._headers)
        self._rpc: Any = None

    # -- ipfshttpclient ------------------------------------------------------------------------

    def _client(self) -> Any:
        if self._rpc is None:
            import ipfshttpclient

            # Not ipfshttpclient.connect(): it refuses daemons of version 0.8 and later.
            self._rpc = ipfshttpclient.Client(self.endpoint.multiaddr, base=self.endpoint.base + API_BASE,
                                              headers=self._headers, timeout=self.timeout, session=True)
        return self._rpc

    def _call(self, call: str, cid: str | None, fn: Callable[[], Any], *,
              absent: Callable[[str], bool] | None = None) -> Any:
        """Run one ipfshttpclient call; its exceptions become one RemoteError naming the call, except
        an error answer that ``absent`` recognizes as "no such thing", which gives None."""
        from ipfshttpclient import exceptions

        try:
            with warnings.catch_warnings():  # users must not see urllib3's warning (module docstring)
                warnings.filterwarnings("ignore", message=_STRICT_WARNING, category=FutureWarning)
                return fn()
        except exceptions.ErrorResponse as e:
            message = str(e.args[0] if e.args else e)
            if absent is not None and absent(message):
                return None
            raise RemoteError(self.source, f"{call}: {message}", cid) from None
        except exceptions.TimeoutError:
            raise RemoteError(self.source, f"{call}: {describe(TimeoutError(), self.timeout)}", cid) from None
        except exceptions.StatusError as e:
            status = getattr(getattr(e.original, "response", None), "status_code", None)
            raise RemoteError(self.source, f"{call}: HTTP {status}", cid) from None
        except exceptions.ConnectionError as e:
            cause = e.original if isinstance(e.original, BaseException) else e
            while cause.__context__ is not None and not isinstance(cause, ConnectionRefusedError):
                cause = cause.__context__
            raise RemoteError(self.source, f"{call}: {describe(cause, self.timeout)}", cid) from None
        except exceptions.Error as e:
            raise RemoteError(self.source, f"{call}: {e}", cid) from None

    def pin_add(self, cids: Iterable[bytes]) -> None:
        """Pin each CID recursively (``pin/add``): through a Cluster proxy, a cluster-wide pin."""
        names = [format_cid(cid) for cid in cids]
        if names:
            self._call("pin/add", names[0] if len(names) == 1 else None,
                       lambda: self._client().pin.add(*names, recursive=True))

    def pin_rm(self, cids: Iterable[bytes]) -> None:
        """Remove the recursive pins of each CID (``pin/rm``): the node may then collect their blocks."""
        names = [format_cid(cid) for cid in cids]
        if names:
            self._call("pin/rm", names[0] if len(names) == 1 else None,
                       lambda: self._client().pin.rm(*names, recursive=True))

    def files_mkdir(self, path: str) -> None:
        self._call("files/mkdir", path, lambda: self._client().files.mkdir(path, parents=True))

    def files_stat(self, path: str) -> str | None:
        """The CID at an MFS path (``files/stat``), None when nothing is there."""
        answer = self._call("files/stat", path, lambda: self._client().files.stat(path),
                            absent=lambda message: "does not exist" in message)
        value = _field(answer, "Hash")
        return value if isinstance(value, str) else None

    def files_rm(self, path: str) -> None:
        self._call("files/rm", path, lambda: self._client().files.rm(path, recursive=True))

    def files_cp(self, source: str, path: str) -> None:
        self._call("files/cp", path, lambda: self._client().files.cp(source, path))

    def files_mv(self, source: str, path: str) -> None:
        """Rename ``source`` to ``path`` (``files/mv``; an existing directory ``path`` would receive it)."""
        self._call("files/mv", path, lambda: self._client().files.mv(source, path))

    def key_list(self) -> dict[str, str]:
        """The node's IPNS keys (``key/list``): name -> IPNS name (its ``Id``)."""
        answer = self._call("key/list", None, lambda: self._client().key.list())
        keys: dict[str, str] = {}
        for item in _field(answer, "Keys") or []:
            name, ident = _field(item, "Name"), _field(item, "Id")
            if isinstance(name, str) and isinstance(ident, str) and ident:
                keys[name] = ident
        return keys

    def key_gen(self, name: str) -> str:
        """Make the IPNS key ``name`` (``key/gen``, :data:`KEY_TYPE`); its IPNS name."""
        answer = self._call("key/gen", name, lambda: self._client().key.gen(name, KEY_TYPE))
        ident = _field(answer, "Id")
        if not isinstance(ident, str) or not ident:
            raise RemoteError(self.source, "key/gen: the answer names no key Id", name)
        return ident

    def name_publish(self, path: str, key: str, *, lifetime: str) -> str:
        """Publish ``path`` under ``key`` (``name/publish --allow-offline``); the IPNS name it went to.

        ``allow-offline``: a node without peers (or run ``--offline``) keeps the record and
        announces it once it has peers, instead of refusing; a node with peers publishes as usual.
        """
        answer = self._call("name/publish", key, lambda: self._client().name.publish(
            path, key=key, lifetime=lifetime, allow_offline=True))
        name = _field(answer, "Name")
        if not isinstance(name, str) or not name:
            raise RemoteError(self.source, "name/publish: the answer names no IPNS name", key)
        return name

    def name_resolve(self, name: str) -> str:
        """The path the IPNS ``name`` points to now (``name/resolve``), e.g. ``/ipfs/bafy...``."""
        answer = self._call("name/resolve", name, lambda: self._client().name.resolve(name))
        path = _field(answer, "Path")
        if not isinstance(path, str) or not path:
            raise RemoteError(self.source, "name/resolve: the answer names no path", name)
        return path

    # -- direct HTTP -------------------------------------------------------------------------

    def _json_lines(self, call: str, *args: str, what: str | None = None, limit: int = MAX_JSON_ANSWER,
                    absent: Callable[[str], bool] | None = None, **params: str) -> Iterator[dict[str, Any]]:
        """``POST /api/v0/CALL?arg=...`` and each JSON object of the answer (one, or one a line as
        ``--stream`` gives); an error answer is one RemoteError naming the call, unless ``absent``
        recognizes its message as "no such thing", which ends the answer with nothing."""
        import io
        import urllib.parse

        query = urllib.parse.urlencode([("arg", a) for a in args] + list(params.items()))
        with self._session.request("POST", f"/{call}" + (f"?{query}" if query else ""), what=what, call=call,
                                   limit=limit) as answer:
            if answer.status != 200:
                answer.limit = MAX_JSON_ANSWER
                message = _error_message(answer.read_all())
                if absent is not None and absent(message):
                    return
                raise answer.fail(message if message else f"HTTP {answer.status}")
            for line in io.BufferedReader(answer, READ_SIZE):
                answer.extend_deadline()
                if not line.strip():
                    continue
                try:
                    item = json.loads(line)
                except ValueError:
                    raise answer.fail(f"unreadable answer {line[:200]!r}") from None
                if isinstance(item, dict):
                    yield item

    def peer_id(self) -> str:
        """The node's peer ID (``id``): the key under which pushed roots are recorded."""
        answers = list(self._json_lines("id"))  # read to its end, so the connection is kept for the next call
        peer = answers[0].get("ID") if answers else None
        if not isinstance(peer, str) or not peer:
            raise RemoteError(self.source, "id: the answer names no peer ID")
        return peer

    def is_pinned(self, cid: bytes) -> bool:
        """True if ``cid`` is pinned recursively on the node (``pin/ls --type=recursive``)."""
        name = format_cid(cid)
        # "not pinned": Kubo and js-ipfs answer an error for a CID that is not
        answers = list(self._json_lines("pin/ls", name, what=name, type="recursive",
                                        absent=lambda message: "not pinned" in message))
        return any(item.get("Keys") for item in answers)

    def pinned_roots(self) -> set[bytes]:
        """Every CID pinned recursively on the node (``pin/ls --type=recursive --stream``), as
        :func:`pin_key` keys, so a CIDv0 and its CIDv1 are one pin as they are to the node."""
        from ..dag.cid import parse_cid
        from ..errors import InvalidCid

        pins: set[bytes] = set()
        for item in self._json_lines("pin/ls", type="recursive", stream="true", limit=MAX_PIN_LISTING):
            for text in [item.get("Cid"), *(item.get("Keys") or {})]:  # --stream lines; or one Keys map
                if isinstance(text, str):
                    try:
                        pins.add(pin_key(parse_cid(text)))
                    except InvalidCid:
                        continue  # a codec or hash we never push: not one of ours
        return pins

    def files_flush(self, path: str = "/") -> None:
        """Write MFS down to ``path`` to the node's blockstore (``files/flush``; not in ipfshttpclient)."""
        for _ in self._json_lines("files/flush", path, what=path):
            pass

    def dag_import(self, car: Iterable[bytes], *, pin_roots: bool = True) -> ImportAnswer:
        """Send a CARv1, produced piece by piece by ``car``, to ``dag/import``; with ``pin_roots``
        the node pins the CAR's roots recursively once every block is in (an IPFS Cluster proxy
        passes this to its node: only ``pin/add`` makes a cluster pin)."""
        head = (f"--{_BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"dpip.car\"\r\n"
                "Content-Type: application/vnd.ipld.car\r\n\r\n").encode()

        def body() -> Iterator[bytes]:
            yield head
            yield from car
            yield f"\r\n--{_BOUNDARY}--\r\n".encode()

        pin = "true" if pin_roots else "false"
        with self._session.request("POST", f"/dag/import?pin-roots={pin}&stats=true", body=body(), call="dag/import",
                                   headers={"Content-Type": f"multipart/form-data; boundary={_BOUNDARY}"},
                                   limit=MAX_JSON_ANSWER) as answer:
            text = answer.read_all().decode("utf-8", "replace")
            status = answer.status
        return self._import_answer(status, text)

    def _import_answer(self, status: int, text: str) -> ImportAnswer:
        roots: list[str] = []
        blocks = size = None
        for line in text.splitlines():
            try:
                item = json.loads(line)
            except ValueError:
                if status != 200:
                    break
                raise RemoteError(self.source, f"dag/import: unreadable answer {line[:200]!r}") from None
            if not isinstance(item, dict):
                continue
            if item.get("Type") == "error" or "Message" in item:
                raise RemoteError(self.source, f"dag/import: {item.get('Message')}")
            root = item.get("Root")
            if isinstance(root, dict):
                cid = root.get("Cid")
                roots.append(str(cid.get("/") if isinstance(cid, dict) else cid))
                if root.get("PinErrorMsg"):
                    raise RemoteError(self.source, f"dag/import: {root['PinErrorMsg']}", roots[-1])
            stats = item.get("Stats")
            if isinstance(stats, dict):
                blocks, size = int(stats.get("BlockCount", 0)), int(stats.get("BlockBytesCount", 0))
        if status != 200:
            raise RemoteError(self.source, f"dag/import: HTTP {status} {text.strip()[:200]}")
        return ImportAnswer(tuple(roots), blocks, size)

    def fetch_block(self, cid: bytes) -> bytes:
        """The bytes ``block/get`` returns for ``cid`` (not yet checked: the caller hashes them)."""
        name = format_cid(cid)
        with self._session.request("POST", f"/block/get?arg={name}", what=name, call="block/get",
                                   limit=MAX_BLOCK) as answer:
            if answer.status != 200:
                answer.limit = MAX_JSON_ANSWER
                raise answer.fail(_error_message(answer.read_all()))
            return answer.read_all()

    def open_dag(self, cid: bytes) -> Answer:
        """``dag/export`` of ``cid``: a CAR stream of its whole DAG, to be checked as it is read."""
        name = format_cid(cid)
        answer = self._session.request("POST", f"/dag/export?arg={name}&progress=false", what=name,
                                       call="dag/export")
        if answer.status != 200:
            with answer:
                answer.limit = MAX_JSON_ANSWER
                raise answer.fail(f"HTTP {answer.status} {_error_message(answer.read_all())}")
        return answer

    def close(self) -> None:
        self._session.close()
        if self._rpc is not None:
            self._rpc.close()
            self._rpc = None


def pin_key(cid: bytes) -> bytes:
    """What identifies a pin: the codec and multihash (CIDv1 bytes), whichever version named it."""
    from ..dag.cid import cid_v1, split_cid

    version, codec, _, digest = split_cid(cid)
    return cid_v1(codec, digest) if version == 0 else cid


def _field(answer: Any, key: str) -> Any:
    """``answer[key]`` of an ipfshttpclient answer (a mapping of its own type), None if absent."""
    try:
        return answer[key]
    except (KeyError, TypeError, IndexError):
        return None


def _error_message(body: bytes) -> str:
    """The ``Message`` of a Kubo error answer, else the start of the body."""
    text = body.decode("utf-8", "replace").strip()
    try:
        item = json.loads(text)
    except ValueError:
        return text[:200]
    return str(item.get("Message", text[:200])) if isinstance(item, dict) else text[:200]
