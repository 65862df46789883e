"""Blocks from the network behind the embedded store: a node or a gateway, every block checked.

:class:`LayeredSource` is the :class:`~importer.sinks.base.BlockSource` the read commands use with
``--api`` or ``--gateway``: a block is taken from the embedded store if it is there, else from
the remote, checked against its CID before anything uses it, and kept in a cache (the embedded
store itself, or a throw-away store with ``--no-cache``). In ``whole_dags`` mode a missing block
brings its whole DAG in one request (a node's ``dag/export``, a gateway's ``?format=car``) when
the remote can; otherwise blocks come one request each (``block/get``, ``?format=raw``).

What a hostile remote can make us do is bounded: a block is at most
:data:`~importer.sinks.node.MAX_BLOCK` bytes (longer answers and CAR sections are refused before
they are read whole), and :func:`read_dag` accepts from a CAR only blocks of the DAG asked for,
each once, each after a block that links to it, so an answer can never carry more than that DAG,
and one that stops short of it is an error. Every wait is bounded by ``--timeout``.
"""

from __future__ import annotations

import io
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from ..dag.cid import IDENTITY, block_matches, format_cid, split_cid
from ..errors import BlockNotFound, InvalidCar, RemoteDataError
from .car import CarReader, iter_links
from .gateway import CAR_TYPE, content_type_params
from .node import MAX_BLOCK
from .store import BlockStore
from .transport import READ_SIZE, Answer

#: Largest CAR section accepted from a remote: one block of MAX_BLOCK plus its CID (a CIDv1 with a
#: 64-byte digest and varints is under 80 bytes; 1 KiB is a generous margin).
MAX_REMOTE_SECTION = MAX_BLOCK + 1024


class RemoteSource(Protocol):
    """What :class:`LayeredSource` needs of a node or gateway client."""

    source: str

    def fetch_block(self, cid: bytes) -> bytes:
        """The bytes the remote returns for ``cid``, at most MAX_BLOCK, not yet checked."""
        ...

    def open_dag(self, cid: bytes) -> Answer | None:
        """A CAR stream of the DAG under ``cid``, or None when this remote cannot send one."""
        ...

    def close(self) -> None: ...


def _is_identity(cid: bytes) -> bool:
    return split_cid(cid)[2] == IDENTITY


def checked_block(source: str, cid: bytes, block: bytes) -> bytes:
    """``block`` if it hashes to ``cid``; else the error that names the source and the CID."""
    if not block_matches(cid, block):
        import hashlib

        raise RemoteDataError(source, f"sent {len(block)} bytes that hash to sha2-256 "
                                      f"{hashlib.sha256(block).hexdigest()}, not to this CID", format_cid(cid))
    return block


def read_dag(answer: Answer, root: bytes, source: str) -> Iterator[tuple[bytes, bytes]]:
    """Every block of the CAR ``answer`` holds, checked to be exactly the DAG under ``root``.

    Each block must hash to its CID (:class:`CarReader`) and be linked from ``root`` or from a
    block already read (a depth-first CAR, as ``dag export`` and gateways write, always is); a
    block sent twice is refused unless the answer says ``dups=y``. When the CAR ends, every link
    read must have had its block. Identity-hash CIDs carry their bytes and need no block.
    """
    name = format_cid(root)
    _, params = content_type_params(answer.header("Content-Type") or CAR_TYPE)
    dups = params.get("dups") == "y"
    stream = io.BufferedReader(answer, READ_SIZE)

    def fail(reason: str) -> RemoteDataError:
        return RemoteDataError(source, reason, name)

    try:
        reader = CarReader.from_stream(stream, f"{source}: CAR of {name}", max_section=MAX_REMOTE_SECTION)
        if reader.version != 1:
            raise fail(f"sent a CARv{reader.version}, not the CARv1 asked for")
        expected = {root}
        seen: set[bytes] = set()
        for cid, block in reader:
            answer.extend_deadline()
            if _is_identity(cid):
                continue
            if cid in seen:
                if dups:
                    continue
                raise fail(f"CAR holds block {format_cid(cid)} twice")
            if cid not in expected:
                raise fail(f"CAR holds block {format_cid(cid)}, which is not linked from the blocks before it "
                           "(not in the DAG asked for)")
            expected.discard(cid)
            seen.add(cid)
            for link in iter_links(cid, block):
                if link not in seen and not _is_identity(link):
                    expected.add(link)
            yield cid, block
    except InvalidCar as e:
        reason = e.reason.replace("truncated", "truncated (CAR cut short)") if "truncated" in e.reason else e.reason
        raise fail(f"invalid CAR at byte {e.offset}: {reason}") from None
    if expected:
        missing = format_cid(min(expected))
        raise fail(f"CAR ended without block {missing}" + (f" and {len(expected) - 1} more blocks of the DAG"
                                                           if len(expected) > 1 else ""))


class LayeredSource:
    """The embedded store first, then a remote; fetched blocks checked and kept in ``cache``.

    ``local`` is the user's store (None when there is none and ``--no-cache`` keeps us from
    creating it); ``cache`` receives what the remote sends: the same store, or with
    :meth:`scratch` a throw-away one deleted by :meth:`close`.
    """

    def __init__(self, local: BlockStore | None, cache: BlockStore, remote: RemoteSource, *,
                 whole_dags: bool = False, scratch_dir: Path | None = None) -> None:
        self.local = local
        self.cache = cache
        self.remote = remote
        #: When True, a missing block brings its whole DAG (one CAR request) if the remote can.
        self.whole_dags = whole_dags
        self._scratch_dir = scratch_dir
        self.fetched_blocks = 0
        self.fetched_bytes = 0

    @classmethod
    def scratch(cls, local: BlockStore | None, remote: RemoteSource, *, whole_dags: bool = False) -> LayeredSource:
        """A layered source whose fetched blocks go to a temporary store (``--no-cache``)."""
        folder = Path(tempfile.mkdtemp(prefix="dpip-no-cache-"))
        try:
            cache = BlockStore(folder / "store", compression="none")
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return cls(local, cache, remote, whole_dags=whole_dags, scratch_dir=folder)

    def _stores(self) -> list[BlockStore]:
        return [s for s in (self.local, self.cache if self.cache is not self.local else None) if s is not None]

    def _stored(self, cid: bytes) -> bytes | None:
        for store in self._stores():
            try:
                return store.get(cid)
            except BlockNotFound:
                continue
        return None

    def get(self, cid: bytes) -> bytes:
        block = self._stored(cid)
        if block is not None:
            return block
        if self.whole_dags and self._fetch_dag(cid):
            return self.cache.get(cid)
        block = checked_block(self.remote.source, cid, self.remote.fetch_block(cid))
        self._keep(cid, block)
        return block

    def _keep(self, cid: bytes, block: bytes) -> None:
        self.cache.put(cid, block)
        self.fetched_blocks += 1
        self.fetched_bytes += len(block)

    def _fetch_dag(self, cid: bytes) -> bool:
        """Bring the DAG under ``cid`` into the cache in one request; False if the remote cannot."""
        answer = self.remote.open_dag(cid)
        if answer is None:
            return False
        with answer:
            for child, block in read_dag(answer, cid, self.remote.source):
                self._keep(child, block)
        return True

    def has(self, cid: bytes) -> bool:
        return any(store.has(cid) for store in self._stores())

    def close(self) -> None:
        """With ``--no-cache``, drop the temporary store (the caller closes the remote and the store)."""
        if self._scratch_dir is not None:
            self.cache.abort()
            shutil.rmtree(self._scratch_dir, ignore_errors=True)
            self._scratch_dir = None
