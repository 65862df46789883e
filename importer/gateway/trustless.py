"""The answers of a trustless gateway (IPFS Trustless Gateway spec, IPIP-402), independent of any server.

:class:`TrustlessGateway` turns one request (method, target, headers) into a :class:`Response`
whose body is produced lazily, so any HTTP server can send it: ``dpip-import serve-blocks``
(:mod:`importer.gateway.server`) does, and the mirror's pip-facing server can route ``/ipfs/``
here. What it answers, from a :class:`~importer.sinks.base.BlockSource` (every block read is
checked against its CID by the source):

* ``GET|HEAD /ipfs/{cid}?format=raw`` (or ``Accept: application/vnd.ipld.raw``): the block;
* ``GET|HEAD /ipfs/{cid}[/{path}]?format=car`` (or ``Accept: application/vnd.ipld.car``): a
  CARv1 of the blocks that resolve ``path`` (through DAG-CBOR fields and UnixFS directories,
  ``ROOT/tree/pkg/mod.py``, by :func:`importer.dag.path.resolve_path`, whose shortcut
  ``ROOT/pkg/mod.py`` below an archive root also works), then of the DAG at its end, by ``dag-scope``: ``all`` (default,
  the whole DAG, in ``ipfs dag export`` order), ``entity`` (a file's whole DAG, a directory's
  own blocks) or ``block``. Each block is sent once (``dups=n``), identity CIDs never; the
  content type says ``version=1; order=dfs; dups=n``.

Errors: 400 for a bad CID or request, 404 when the CID (the root block) is not here, 406 for a
format this gateway does not serve (it never deserializes), 405 for other methods, 304 for an
``If-None-Match`` that matches. ``bafkqaaa`` (the empty identity CID) answers the spec's probes.
A block missing in the middle of a CAR ends the stream early: the status was sent already,
and the client, which must check CARs, sees a truncated one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import parse_qs, unquote, urlsplit

from ..dag.cid import DAG_PB, IDENTITY, RAW, cid_codec, format_cid, parse_cid, split_cid
from ..dag.path import resolve_path
from ..dag.reader import Kind, PathError, stat
from ..errors import BlockNotFound, ImporterError, InvalidBlock
from ..sinks.base import BlockSource
from ..sinks.car import encode_car_header, encode_section, iter_dag
from ..sinks.gateway import CAR_TYPE, RAW_TYPE

CAR_CONTENT_TYPE: Final = f"{CAR_TYPE}; version=1; order=dfs; dups=n"
#: Blocks are immutable: caches may keep them for a year (Kubo's value for /ipfs/ answers, 29030400 s
#: = 336 days, which is what path gateways send).
IMMUTABLE: Final = "public, max-age=29030400, immutable"
#: CAR bytes per body chunk: 256 KiB, one default leaf, so a chunk holds at most a block or two.
CHUNK_BYTES: Final = 256 * 1024
SCOPES: Final = ("all", "entity", "block")
#: The identity CID of empty bytes, ``bafkqaaa``: the spec's probe path.
PROBE_CID: Final = bytes.fromhex("01550000")


@dataclass(frozen=True, slots=True)
class Response:
    """Status, headers, and a body produced as it is sent (None for HEAD and errors' empty bodies)."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: Iterator[bytes] | None = None


def _error(status: int, message: str) -> Response:
    data = (message + "\n").encode()
    return Response(status, {"Content-Type": "text/plain; charset=utf-8", "Content-Length": str(len(data)),
                             "X-Content-Type-Options": "nosniff"}, iter([data]))


def _wanted_format(query: Mapping[str, list[str]], accept: str) -> str | None:
    """``raw``, ``car``, another name from ``?format=``, or None when the request names none."""
    formats = query.get("format")
    if formats:
        return formats[-1]
    for item in accept.split(","):
        kind = item.split(";")[0].strip().lower()
        if kind == RAW_TYPE:
            return "raw"
        if kind == CAR_TYPE:
            return "car"
    return None


class _Recorder:
    """A block source that remembers which CIDs were read, in order (the blocks of a path)."""

    def __init__(self, inner: BlockSource) -> None:
        self.inner = inner
        self.read: list[bytes] = []

    def get(self, cid: bytes) -> bytes:
        block = self.inner.get(cid)
        self.read.append(cid)
        return block

    def has(self, cid: bytes) -> bool:
        return self.inner.has(cid)


class TrustlessGateway:
    """Answers trustless gateway requests from the block source ``open_source()`` returns.

    ``open_source`` is called once per request, so a server can hand each thread its own store.
    """

    def __init__(self, open_source: Callable[[], BlockSource]) -> None:
        self.open_source = open_source

    def handle(self, method: str, target: str, headers: Mapping[str, str]) -> Response:
        """The answer to one request; ``headers`` are the request's, names in lower case."""
        if method not in ("GET", "HEAD"):
            response = _error(405, f"{method} is not supported: this gateway only reads")
            response.headers["Allow"] = "GET, HEAD"
            return response
        url = urlsplit(target)
        parts = url.path.split("/")
        if len(parts) < 3 or parts[0] != "" or parts[1] != "ipfs" or not parts[2]:
            return _error(404, "not found: this gateway answers /ipfs/{cid} only")
        query = parse_qs(url.query)
        try:
            root = parse_cid(unquote(parts[2]))
        except ImporterError as e:
            return _error(400, str(e))
        segments = [unquote(p) for p in parts[3:] if p]
        fmt = _wanted_format(query, headers.get("accept", ""))
        if fmt is None:
            return _error(400, "this is a trustless gateway: ask for ?format=raw or ?format=car "
                               f"(Accept: {RAW_TYPE} or {CAR_TYPE})")
        if fmt not in ("raw", "car"):
            return _error(406, f"format {fmt!r} is not served here: only raw blocks and CARs (trustless)")
        scope = (query.get("dag-scope") or ["all"])[-1]
        if scope not in SCOPES:
            return _error(400, f"dag-scope {scope!r} is not one of {', '.join(SCOPES)}")
        if fmt == "raw" and segments:
            return _error(400, "a raw block is asked for by CID alone, without a path")
        source = self.open_source()
        if fmt == "raw":
            return self._raw(source, root, method, headers)
        return self._car(source, root, segments, scope, method, headers)

    def _common(self, root: bytes, etag: str, content_type: str, filename: str) -> dict[str, str]:
        name = format_cid(root)
        return {"Content-Type": content_type, "Content-Disposition": f'attachment; filename="{filename}"',
                "X-Content-Type-Options": "nosniff", "Cache-Control": IMMUTABLE, "ETag": etag, "Vary": "Accept",
                "X-Ipfs-Path": f"/ipfs/{name}", "X-Ipfs-Roots": name}

    def _raw(self, source: BlockSource, root: bytes, method: str, headers: Mapping[str, str]) -> Response:
        name = format_cid(root)
        try:
            block = split_cid(root)[3] if split_cid(root)[2] == IDENTITY else source.get(root)
        except BlockNotFound:
            return _error(404, f"block {name} is not in this gateway's store")
        etag = f'"{name}.raw"'
        out = self._common(root, etag, RAW_TYPE, f"{name}.bin")
        if etag in headers.get("if-none-match", ""):
            return Response(304, out)
        out["Content-Length"] = str(len(block))
        return Response(200, out, None if method == "HEAD" else iter([block]))

    def _car(self, source: BlockSource, root: bytes, segments: list[str], scope: str, method: str,
             headers: Mapping[str, str]) -> Response:
        name = format_cid(root)
        recorder = _Recorder(source)
        try:
            if split_cid(root)[2] != IDENTITY and not source.has(root):
                return _error(404, f"block {name} is not in this gateway's store")
            target = resolve_path(recorder, root, "/".join(segments)) if segments else root
        except PathError as e:
            return _error(404, str(e))
        except (BlockNotFound, InvalidBlock) as e:
            return _error(502 if isinstance(e, InvalidBlock) else 404, str(e))
        path = "/".join(segments)
        suffix = f"{path}.{scope}" if path else scope
        etag = f'"{name}.car.{_short_hash(suffix)}"'
        out = self._common(root, etag, CAR_CONTENT_TYPE, f"{name}.car")
        if path:
            out["X-Ipfs-Path"] += "/" + path
        if etag in headers.get("if-none-match", ""):
            return Response(304, out)
        if method == "HEAD":
            return Response(200, out)
        return Response(200, out, _car_body(source, root, recorder.read, target, scope))


def _short_hash(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _car_body(source: BlockSource, root: bytes, path_blocks: list[bytes], target: bytes,
              scope: str) -> Iterator[bytes]:
    """The CAR: header (root: the CID asked for), path blocks, then the target's blocks by scope."""
    buffer = bytearray(encode_car_header([root]))
    seen: set[bytes] = set()
    for cid, block in _scope_blocks(source, path_blocks, target, scope, seen):
        if split_cid(cid)[2] == IDENTITY:
            continue
        buffer += encode_section(cid, block)
        if len(buffer) >= CHUNK_BYTES:
            yield bytes(buffer)
            buffer = bytearray()
    if buffer:
        yield bytes(buffer)


def _scope_blocks(source: BlockSource, path_blocks: list[bytes], target: bytes, scope: str,
                  seen: set[bytes]) -> Iterator[tuple[bytes, bytes]]:
    for cid in path_blocks:
        if cid not in seen:
            seen.add(cid)
            yield cid, source.get(cid)
    if scope == "all" or (scope == "entity" and _is_file(source, target)):
        yield from iter_dag(source, target, seen)
    elif target not in seen:
        # block, or the entity of a directory: its own block, and a HAMT's shard blocks
        seen.add(target)
        block = source.get(target)
        yield target, block
        if scope == "entity" and cid_codec(target) == DAG_PB:
            yield from _shards(source, target, block, seen)


def _is_file(source: BlockSource, cid: bytes) -> bool:
    codec = cid_codec(cid)
    return codec == RAW or (codec == DAG_PB and stat(source, cid).kind is not Kind.DIRECTORY)


def _shards(source: BlockSource, cid: bytes, block: bytes, seen: set[bytes]) -> Iterator[tuple[bytes, bytes]]:
    """The sub-shard blocks of a HAMT directory: links whose name is only the bucket prefix
    (``len("%X" % (fanout - 1))`` characters), not a prefix followed by an entry's name."""
    from ..dag.dagpb import decode_node
    from ..dag.unixfs import NodeType, decode_unixfs

    node = decode_node(block)
    fs = decode_unixfs(node.data) if node.data is not None else None
    if fs is None or fs.type != NodeType.HAMT_SHARD or not fs.fanout:
        return
    width = len(f"{fs.fanout - 1:X}")
    for link in node.links:
        if len(link.name) == width and link.cid not in seen and cid_codec(link.cid) == DAG_PB:
            seen.add(link.cid)
            child = source.get(link.cid)
            yield link.cid, child
            yield from _shards(source, link.cid, child, seen)
