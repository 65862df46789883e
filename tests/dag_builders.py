"""Hand-built UnixFS DAGs for the reader, CAR and CLI tests, independent of the importer's layouts.

Built straight from ``importer.dag.dagpb`` and ``importer.dag.unixfs`` following the spec
(balanced file trees grouped ``width`` links at a time, sorted directories, symlinks), so the
read side is tested against blocks the add side did not make. ``test_reader`` checks them
against Kubo's CIDs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from importer.dag.cid import DAG_PB, RAW, cid_of_block
from importer.dag.dagpb import PBLink, encode_node
from importer.dag.unixfs import Mtime, NodeType, UnixFSData, encode_unixfs
from importer.sinks.base import MemorySink

#: Kubo's defaults: 256 KiB chunks, 174 links per file node.
CHUNK = 256 * 1024
WIDTH = 174


@dataclass(frozen=True, slots=True)
class Link:
    """What a parent needs of a child: CID, cumulative size (Tsize) and file bytes below it."""

    cid: bytes
    tsize: int
    size: int


class DagBuilder:
    """Puts hand-encoded blocks into a :class:`MemorySink` (also a BlockSource)."""

    def __init__(self) -> None:
        self.sink = MemorySink()

    def put(self, version: int, codec: int, block: bytes) -> bytes:
        cid = cid_of_block(version, codec, block)
        self.sink.put(cid, block)
        return cid

    def node(self, links: list[PBLink], data: UnixFSData, version: int = 0) -> Link:
        block = encode_node(links, encode_unixfs(data))
        cid = self.put(version, DAG_PB, block)
        return Link(cid, len(block) + sum(link.tsize for link in links), data.filesize or 0)

    def file(self, data: bytes, *, chunk: int = CHUNK, width: int = WIDTH, raw_leaves: bool = False,
             version: int = 0, mode: int | None = None, mtime: Mtime | None = None) -> Link:
        """A balanced file DAG as Kubo's default layout builds it."""
        chunks = [data[i:i + chunk] for i in range(0, len(data), chunk)] or [b""]
        if len(chunks) == 1 and (mode is not None or mtime is not None):
            raw_leaves = False  # Kubo turns raw leaves off when mode/mtime are stored
        level = [self._leaf(c, raw_leaves, version, mode if len(chunks) == 1 else None,
                            mtime if len(chunks) == 1 else None) for c in chunks]
        while len(level) > 1:
            groups = [level[i:i + width] for i in range(0, len(level), width)]
            top = len(groups) == 1
            level = [self.node(
                [PBLink(child.cid, b"", child.tsize) for child in group],
                UnixFSData(NodeType.FILE, filesize=sum(c.size for c in group),
                           blocksizes=tuple(c.size for c in group),
                           mode=mode if top else None, mtime=mtime if top else None),
                version) for group in groups]
        return level[0]

    def _leaf(self, chunk: bytes, raw: bool, version: int, mode: int | None, mtime: Mtime | None) -> Link:
        if raw:
            return Link(self.put(1, RAW, chunk), len(chunk), len(chunk))
        return self.node([], UnixFSData(NodeType.FILE, data=chunk or None, filesize=len(chunk),
                                        mode=mode, mtime=mtime), version)

    def symlink(self, target: bytes, *, version: int = 0, mtime: Mtime | None = None) -> Link:
        return self.node([], UnixFSData(NodeType.SYMLINK, data=target, mtime=mtime), version)

    def directory(self, entries: Mapping[str, Link], *, version: int = 0, mode: int | None = None,
                  mtime: Mtime | None = None) -> Link:
        links = [PBLink(child.cid, name.encode(), child.tsize) for name, child in entries.items()]
        return self.node(links, UnixFSData(NodeType.DIRECTORY, mode=mode, mtime=mtime), version)
