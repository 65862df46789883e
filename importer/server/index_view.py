"""Read an index tree (as :mod:`importer.mirror.tree` writes it) from any block source.

The tree is immutable (it is named by its root CID), so what was read once is kept: the root
listing, and the most recently used project pages (:data:`PAGE_CACHE`), parsed into file entries.
Every read goes through the reader, so every block is checked against its CID by the source;
pages larger than :data:`~importer.mirror.upstream.MAX_PAGE_BYTES` are refused (a page of the tree
lists what an upstream page listed: the mirror's bound on those makes a bigger one hostile).
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

from ..dag.cid import format_cid, parse_cid
from ..dag.reader import iter_file, lookup, resolve
from ..errors import ImporterError, InvalidBlock
from ..mirror.model import FileEntry, entry_from_json
from ..mirror.upstream import MAX_PAGE_BYTES
from ..sinks.base import BlockSource

#: Project pages kept parsed in memory: a few MB of the most requested projects.
PAGE_CACHE: Final = 1024


@dataclass(frozen=True, slots=True)
class Page:
    """One page of the tree, both renderings and their CIDs (the ETags)."""

    html: bytes
    json: bytes
    html_cid: bytes
    json_cid: bytes


@dataclass(frozen=True, slots=True)
class ProjectView:
    name: str
    page: Page
    files: dict[str, FileEntry]
    metadata: dict[str, bytes]  # "<wheel>.metadata" -> METADATA file CID


def read_bytes(source: BlockSource, cid: bytes) -> bytes:
    out = bytearray()
    for piece in iter_file(source, cid):
        out += piece
        if len(out) > MAX_PAGE_BYTES:
            raise InvalidBlock(format_cid(cid), f"page larger than {MAX_PAGE_BYTES} bytes")
    return bytes(out)


class IndexView:
    """The index tree at ``root``; methods take the calling thread's block source."""

    def __init__(self, root: bytes) -> None:
        self.root = root
        self._lock = threading.Lock()
        self._pages: OrderedDict[str, ProjectView | None] = OrderedDict()
        self._root_page: Page | None = None
        self._simple: bytes | None = None

    def simple(self, source: BlockSource) -> bytes:
        if self._simple is None:
            self._simple = resolve(source, self.root, "simple")
        return self._simple

    def _page(self, source: BlockSource, directory: bytes) -> Page:
        html_entry = lookup(source, directory, "index.html")
        json_entry = lookup(source, directory, "index.json")
        if html_entry is None or json_entry is None:
            raise InvalidBlock(format_cid(directory), "index directory without index.html and index.json")
        return Page(read_bytes(source, html_entry.cid), read_bytes(source, json_entry.cid), html_entry.cid,
                    json_entry.cid)

    def root_page(self, source: BlockSource) -> Page:
        if self._root_page is None:
            self._root_page = self._page(source, self.simple(source))
        return self._root_page

    def project(self, source: BlockSource, name: str) -> ProjectView | None:
        """The project's page and files, or None if the index does not hold it."""
        with self._lock:
            if name in self._pages:
                self._pages.move_to_end(name)
                return self._pages[name]
        entry = lookup(source, self.simple(source), name) if name not in ("index.html", "index.json") else None
        view = None if entry is None else self._project(source, name, entry.cid)
        with self._lock:
            self._pages[name] = view
            while len(self._pages) > PAGE_CACHE:
                self._pages.popitem(last=False)
        return view

    def _project(self, source: BlockSource, name: str, directory: bytes) -> ProjectView:
        page = self._page(source, directory)
        try:
            data = json.loads(page.json)
            files = {e.filename: e for e in (entry_from_json(f) for f in data["files"])}
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise InvalidBlock(format_cid(page.json_cid), f"not a PEP 691 page: {e}") from None
        metadata: dict[str, bytes] = {}
        for entry in files.values():
            if entry.metadata_cid:
                try:
                    metadata[entry.filename + ".metadata"] = parse_cid(entry.metadata_cid)
                except ImporterError:
                    continue
        return ProjectView(name, page, files, metadata)
