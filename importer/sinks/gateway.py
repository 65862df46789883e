"""A trustless HTTP gateway (IPIP-402, the IPFS "Trustless Gateway" spec) as a place blocks come from.

Two requests, both verifiable whatever the gateway is:

* ``GET /ipfs/{cid}?format=raw`` (``Accept: application/vnd.ipld.raw``): one block;
* ``GET /ipfs/{cid}?format=car`` (``Accept: application/vnd.ipld.car; version=1; order=dfs;
  dups=n``): the whole DAG under ``cid`` (``dag-scope=all``) in one answer, which
  :mod:`importer.sinks.remote` checks block by block as it arrives.

Kubo's gateway, boxo-based gateways and ``dpip-import serve-blocks`` answer both; a path-only
gateway (js-ipfs's) or one that refuses CARs answers the CAR request with another status or
content type, after which this client asks for blocks one at a time (support is detected on the
first CAR request and remembered).
"""

from __future__ import annotations

from typing import Final

from ..dag.cid import format_cid
from ..errors import RemoteError
from .node import MAX_BLOCK
from .transport import DEFAULT_TIMEOUT, Answer, Session, parse_endpoint

RAW_TYPE: Final = "application/vnd.ipld.raw"
CAR_TYPE: Final = "application/vnd.ipld.car"
#: What a CAR request accepts (IPIP-412): CARv1, depth-first, each block once, so that every
#: block arrives after the block linking to it and a repeated block is an error.
CAR_ACCEPT: Final = f"{CAR_TYPE}; version=1; order=dfs; dups=n"
#: Answers to a CAR request that mean "this gateway does not do CARs" rather than "no such DAG":
#: 400 Bad Request, 406 Not Acceptable, 415 Unsupported Media Type, 501 Not Implemented.
_NO_CAR_STATUSES: Final = frozenset({400, 406, 415, 501})
#: Bound on an error answer's body that is read to quote it.
_MAX_ERROR_BODY: Final = 64 * 1024


def content_type_params(value: str) -> tuple[str, dict[str, str]]:
    """``application/vnd.ipld.car; version=1; order=dfs`` -> the media type and its parameters.

    >>> content_type_params("application/vnd.ipld.car; version=1;order=dfs; dups=n")
    ('application/vnd.ipld.car', {'version': '1', 'order': 'dfs', 'dups': 'n'})
    """
    kind, *params = value.split(";")
    out: dict[str, str] = {}
    for param in params:
        key, _, val = param.strip().partition("=")
        if key:
            out[key.strip().lower()] = val.strip().strip('"')
    return kind.strip().lower(), out


class GatewayClient:
    """Blocks and DAGs from one trustless gateway; every failure is one :class:`RemoteError`."""

    def __init__(self, url: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        endpoint = parse_endpoint(url, "--gateway")
        self.source = f"gateway {endpoint.label}"
        self._session = Session(endpoint, source=self.source, timeout=timeout)
        #: None until the first CAR request tells whether this gateway answers them.
        self.car_supported: bool | None = None

    def _error(self, answer: Answer, name: str) -> RemoteError:
        with answer:
            answer.limit = _MAX_ERROR_BODY
            try:
                body = answer.read_all().decode("utf-8", "replace").strip().splitlines()
            except RemoteError:
                body = []
        detail = f": {body[0][:200]}" if body else ""
        if answer.status == 404:
            return RemoteError(self.source, f"no such block (HTTP 404){detail}", name)
        return RemoteError(self.source, f"HTTP {answer.status}{detail}", name)

    def fetch_block(self, cid: bytes) -> bytes:
        """The bytes the gateway returns for ``cid`` (not yet checked: the caller hashes them)."""
        name = format_cid(cid)
        answer = self._session.request("GET", f"/ipfs/{name}?format=raw", what=name,
                                       headers={"Accept": RAW_TYPE}, limit=MAX_BLOCK)
        if answer.status != 200:
            raise self._error(answer, name)
        with answer:
            kind, _ = content_type_params(answer.header("Content-Type"))
            if kind != RAW_TYPE:
                raise RemoteError(self.source, f"answered a block request with {kind or 'no content type'}, "
                                               f"not {RAW_TYPE}: not a trustless gateway", name)
            return answer.read_all()

    def open_dag(self, cid: bytes) -> Answer | None:
        """The CAR of the whole DAG under ``cid``, or None when this gateway does not serve CARs."""
        if self.car_supported is False:
            return None
        name = format_cid(cid)
        answer = self._session.request("GET", f"/ipfs/{name}?format=car&dag-scope=all", what=name,
                                       headers={"Accept": CAR_ACCEPT})
        kind, params = content_type_params(answer.header("Content-Type"))
        if answer.status == 200 and kind == CAR_TYPE and params.get("version", "1") == "1":
            self.car_supported = True
            return answer
        if answer.status in _NO_CAR_STATUSES or answer.status == 200:
            answer.close()
            self.car_supported = False
            return None
        raise self._error(answer, name)

    def close(self) -> None:
        self._session.close()
