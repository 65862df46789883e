"""One IPFS node over the Kubo RPC API (``/api/v0``): a place blocks go to and come from.

It speaks to Kubo, to js-ipfs (same API), and to an IPFS Cluster's proxy API, which takes the
same calls and turns ``pin/add`` into a cluster pin that then replicates to its peers.

Which client carries which call, and why:

* ``ipfshttpclient`` (the client the product names) carries ``id``, ``pin/add``, ``pin/ls`` and
  ``files/mkdir|stat|rm|cp``. Its ``connect()`` refuses daemons of version 0.8 and later, so
  :class:`ipfshttpclient.Client` is built directly, and urllib3's ``FutureWarning`` about
  ``strict`` that it triggers on every request is kept from users (it breaks on urllib3 3,
  hence ``urllib3<3`` in the dependencies).
* Direct HTTP (:mod:`importer.sinks.transport`) carries what must stream or be bounded.
  ``dag/import`` takes a CAR as a multipart file; ipfshttpclient's multipart encoder reads files
  or byte strings, while :mod:`importer.sinks.push` generates the CAR block by block as it is
  sent (chunked transfer encoding), never holding the DAG. ``dag/export`` is read as it arrives,
  each block checked before the next is read, under a deadline that moves on with every block
  (:mod:`importer.sinks.remote`). ``block/get`` is read with a bound of :data:`MAX_BLOCK`:
  ipfshttpclient reads a whole answer in one piece even when streaming (``chunk_size=None``),
  so a hostile node could make it hold any amount.

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
from .transport import DEFAULT_TIMEOUT, Answer, Endpoint, Session, describe, parse_endpoint

#: Largest block accepted from any node or gateway: twice Kubo's 1 MiB block limit (``block put``
#: and ``dag import`` refuse larger blocks without ``--allow-big-block``). No block we write
#: exceeds 1 MiB and a few bytes (the unixfs-v1-2025 profile's chunks), so a larger one is refused
#: before it is read whole.
MAX_BLOCK: Final = 2 * 1024 * 1024
#: Bound on a JSON answer of the node (``id``, ``dag/import``'s roots and stats): kilobytes in
#: practice, so 1 MiB is plenty and still small.
MAX_JSON_ANSWER: Final = 1024 * 1024
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

    def peer_id(self) -> str:
        """The node's peer ID (``id``): the key under which pushed roots are recorded."""
        answer = self._call("id", None, lambda: self._client().id())
        peer = _field(answer, "ID")
        if not isinstance(peer, str) or not peer:
            raise RemoteError(self.source, "id: the answer names no peer ID")
        return peer

    def pin_add(self, cids: Iterable[bytes]) -> None:
        """Pin each CID recursively (``pin/add``): through a Cluster proxy, a cluster-wide pin."""
        names = [format_cid(cid) for cid in cids]
        if names:
            self._call("pin/add", names[0] if len(names) == 1 else None,
                       lambda: self._client().pin.add(*names, recursive=True))

    def is_pinned(self, cid: bytes) -> bool:
        """True if ``cid`` is pinned recursively on the node (``pin/ls --type=recursive``)."""
        name = format_cid(cid)
        # "not pinned": Kubo and js-ipfs answer an error for a CID that is not
        answer = self._call("pin/ls", name, lambda: self._client().pin.ls(name, type="recursive"),
                            absent=lambda message: "not pinned" in message)
        keys = _field(answer, "Keys")
        return keys is not None and len(keys) > 0

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

    # -- direct HTTP -------------------------------------------------------------------------

    def dag_import(self, car: Iterable[bytes]) -> ImportAnswer:
        """Send a CARv1, produced piece by piece by ``car``, to ``dag/import`` (roots not pinned:
        the caller pins them, which a Cluster proxy turns into cluster pins)."""
        head = (f"--{_BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"dpip.car\"\r\n"
                "Content-Type: application/vnd.ipld.car\r\n\r\n").encode()

        def body() -> Iterator[bytes]:
            yield head
            yield from car
            yield f"\r\n--{_BOUNDARY}--\r\n".encode()

        with self._session.request("POST", "/dag/import?pin-roots=false&stats=true", body=body(), call="dag/import",
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
