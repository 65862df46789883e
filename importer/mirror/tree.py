"""The mirror as a UnixFS directory DAG: a PEP 503/691 repository that any IPFS gateway can serve.

Layout (every name below ``simple/`` is what pip asks a gateway for)::

    <root>/
      simple/
        index.html                     PEP 503 list of projects
        index.json                     the same as PEP 691 JSON
        <project>/                     PEP 503 normalized name
          index.html                   the project page, PEP 503 (+ PEP 592/658/714 attributes)
          index.json                   the same as PEP 691 JSON (API 1.1: size, upload-time, versions)
          <wheel>.metadata             PEP 658: the wheel's METADATA, the same file (CID) as in its tree
          <file>                       --plain only: the archive itself, as ``ipfs add`` makes it

File URLs in the pages are relative (``<file>#sha256=...``), so the same bytes work from
``dpip-import serve`` (which rebuilds ``<file>`` from blocks) and, with ``--plain``, from any
gateway: ``pip install --index-url http://<gateway>/ipfs/<root>/simple/ ...``. A gateway answers
a directory with its ``index.html``, i.e. PEP 503 HTML, which pip accepts; ``index.json`` is
there for clients that read it by name. Every file entry of the JSON names the archive's root
CID (``_dpip-root``), from which ``serve`` or ``dpip-import fetch`` rebuilds it.

Everything is built with the importer's own ``add`` settings (Kubo's defaults: CIDv0, 256 KiB
chunks, directories sharded as HAMTs above 256 KiB of links), so the tree's CID is what
``ipfs add -r`` of the same files gives, and it depends only on the mirror's content (pages
hold no build time). A project directory is rebuilt only when the digest of its page changed
(``project_nodes`` in the state), so adding one release rewrites that project's pages, its
directory, and the nodes on the way to the root; everything else keeps its CID.
"""

from __future__ import annotations

import hashlib
import io
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Final

from packaging.version import InvalidVersion, Version

from ..adder import Adder
from ..archive.rebuild import iter_archive
from ..archive.streams import PieceReader
from ..dag.cid import format_cid
from ..dag.directory import DirEntry
from ..errors import RecipeMismatch
from ..layout import DagNode
from ..profiles import ImportSettings, resolve_settings
from ..sinks.store import BlockStore
from .errors import UnsafeFileName
from .metadata import read_archive_facts
from .model import FileEntry, ProjectPage, make_page
from .names import check_plain_name, guess_project, is_normalized
from .render import project_html, project_json, root_html, root_json
from .state import ArchiveFacts, FileRecord, IndexRoot, MirrorState

#: Name under which the index root is pinned in the store (when the store has pins).
PIN_NAME: Final = "mirror-index"
#: The index pages are small: the digest names the format too, so a change of this module's
#: rendering (bump it) rebuilds every project once instead of reusing stale directories.
PAGE_FORMAT: Final = b"dpip-index-1"


@dataclass(frozen=True, slots=True)
class IndexedArchive:
    """One archive the index lists: the store's record plus what the index said of it, if anything."""

    project: str
    filename: str
    root: bytes
    sha256: str
    size: int
    record: FileRecord | None


@dataclass(frozen=True, slots=True)
class BuiltIndex:
    """The tree: its root, the ``simple/`` directory, each project's directory; what was rebuilt."""

    root: bytes
    simple: bytes
    projects: dict[str, bytes]
    files: int
    rebuilt: tuple[str, ...]
    plain: bool
    skipped: tuple[str, ...]


def index_settings() -> ImportSettings:
    """Kubo's ``ipfs add`` defaults: what a gateway-served tree and ``--plain`` files are built with."""
    return resolve_settings()


def collect_archives(store: BlockStore, state: MirrorState) -> tuple[dict[str, list[IndexedArchive]], list[str]]:
    """Every archive of the store by project (the newest record of a file name wins), each with the
    sync's record of it when the sha256 agrees; and the names left out (not distributions)."""
    latest: dict[str, tuple[bytes, bytes, int]] = {}
    for held in store.iter_archives():
        latest[held.name] = (held.root, held.sha256, held.size)
    synced = {r.filename: r for r in state.files()}
    projects: dict[str, list[IndexedArchive]] = {}
    skipped: list[str] = []
    for name, (root, sha256, size) in sorted(latest.items()):
        record = synced.get(name)
        if record is not None and record.sha256 != sha256.hex():
            record = None
        project = record.project if record is not None else guess_project(name)
        try:
            check_plain_name(name, project or "?")
        except UnsafeFileName:
            project = None
        if project is None or not is_normalized(project):
            skipped.append(name)
            continue
        projects.setdefault(project, []).append(IndexedArchive(project, name, root, sha256.hex(), size, record))
    return projects, skipped


def _version_key(filename: str, project: str) -> tuple[int, Version | str]:
    from .names import parse_dist_filename

    try:
        return 0, parse_dist_filename(filename, project).version
    except (UnsafeFileName, InvalidVersion):
        return 1, filename


class IndexBuilder:
    """Builds the index tree of one store into that store (one instance per build)."""

    def __init__(self, store: BlockStore, state: MirrorState, *, plain: bool = False,
                 settings: ImportSettings | None = None, log: bool = False) -> None:
        self.store = store
        self.state = state
        self.plain = plain
        self.settings = settings or index_settings()
        self.adder = Adder(self.settings, store)
        self.log = log

    def _say(self, text: str) -> None:
        if self.log:
            print(text, file=sys.stderr, flush=True)

    def facts(self, archive: IndexedArchive) -> ArchiveFacts:
        """The archive's METADATA and Requires-Python (and plain file with ``--plain``), computed once."""
        facts = self.state.archive_facts(archive.root)
        changed = False
        if facts is None:
            facts = read_archive_facts(self.store, archive.root, archive.filename)
            changed = True
        if self.plain and (facts.plain is None or not self.store.has(facts.plain.cid)):  # none yet, or collected
            facts = replace(facts, plain=self.add_plain(archive))
            changed = True
        if changed:
            self.state.record_archive_facts(facts)
        return facts

    def add_plain(self, archive: IndexedArchive) -> DagNode:
        """Rebuild the archive and ``add`` it as one file; its sha256 is checked on the way."""
        self._say(f"adding {archive.filename} as a plain file")
        _, pieces = iter_archive(self.store, archive.root)
        digest = hashlib.sha256()
        size = 0

        def counted() -> Iterator[bytes]:
            nonlocal size
            for piece in pieces:
                digest.update(piece)
                size += len(piece)
                yield piece

        node = self.adder.add_stream(PieceReader(counted()))  # type: ignore[arg-type]  # reads like a BinaryIO
        if digest.hexdigest() != archive.sha256 or size != archive.size:
            raise RecipeMismatch(archive.filename, f"rebuilt {size} bytes with sha256 {digest.hexdigest()}, "
                                                   f"expected {archive.size} with {archive.sha256}")
        return node

    def page(self, project: str, archives: list[IndexedArchive]) -> tuple[ProjectPage, dict[str, DagNode]]:
        """The project's page and the extra files of its directory (``.metadata``, plain archives)."""
        entries: list[FileEntry] = []
        links: dict[str, DagNode] = {}
        for a in archives:
            facts = self.facts(a)
            r = a.record
            entries.append(FileEntry(
                filename=a.filename, sha256=a.sha256, size=a.size,
                upload_time=r.upload_time if r else None,
                requires_python=(r.requires_python if r else None) or facts.requires_python,
                yanked=r.yanked if r else None,
                core_metadata=facts.metadata_sha256 if facts.metadata else None,
                root=format_cid(a.root),
                metadata_cid=format_cid(facts.metadata.cid) if facts.metadata else None,
                plain_cid=format_cid(facts.plain.cid) if self.plain and facts.plain else None,
            ))
            if facts.metadata is not None:
                links[a.filename + ".metadata"] = facts.metadata
            if self.plain and facts.plain is not None:
                links[a.filename] = facts.plain
        ordered = sorted(archives, key=lambda a: _version_key(a.filename, project))
        versions = [str(k[1]) for a in ordered if (k := _version_key(a.filename, project))[0] == 0]
        return make_page(project, entries, versions), links

    def _file(self, data: bytes) -> DagNode:
        return self.adder.add_stream(io.BytesIO(data))

    def project_directory(self, project: str, archives: list[IndexedArchive]) -> tuple[bytes, DagNode | None]:
        """(digest of the page, the directory if it had to be built now, else None: reuse the recorded one)."""
        page, links = self.page(project, archives)
        json_page = project_json(page)
        # The settings decide the directory's bytes as much as the page does.
        digest = hashlib.sha256(PAGE_FORMAT + b"\0" + repr(self.settings).encode() + b"\0" + json_page).digest()
        existing = self.state.project_node(project, digest)
        if existing is not None and self.store.has(existing.cid):
            return digest, None
        entries = [DirEntry(b"index.html", self._file(project_html(page))), DirEntry(b"index.json", self._file(json_page))]
        entries += [DirEntry(name.encode("utf-8"), node) for name, node in sorted(links.items())]
        return digest, self.adder.add_directory(entries)

    def build(self) -> BuiltIndex:
        projects, skipped = collect_archives(self.store, self.state)
        nodes: dict[str, DagNode] = {}
        rebuilt: list[tuple[str, bytes, DagNode]] = []
        for project, archives in sorted(projects.items()):
            digest, node = self.project_directory(project, archives)
            if node is None:
                reused = self.state.project_node(project, digest)
                assert reused is not None
                nodes[project] = reused
            else:
                nodes[project] = node
                rebuilt.append((project, digest, node))
        names = sorted(nodes)
        simple_entries = [DirEntry(name.encode("ascii"), node) for name, node in nodes.items()]
        simple_entries += [DirEntry(b"index.html", self._file(root_html(names))),
                           DirEntry(b"index.json", self._file(root_json(names)))]
        simple = self.adder.add_directory(simple_entries)
        root = self.adder.add_directory([DirEntry(b"simple", simple)])
        self.store.flush()
        if rebuilt:
            self.state.record_project_nodes(rebuilt)
        files = sum(len(a) for a in projects.values())
        self.state.record_index_root(IndexRoot(root.cid, self.plain, len(names), files, time.time()))
        return BuiltIndex(root.cid, simple.cid, {p: n.cid for p, n in nodes.items()}, files,
                          tuple(p for p, _, _ in rebuilt), self.plain, tuple(skipped))


def build_index(store: BlockStore, state: MirrorState, *, plain: bool = False,
                settings: ImportSettings | None = None, log: bool = False) -> BuiltIndex:
    """Write the store's mirror as an index tree into the store; see the module docstring."""
    return IndexBuilder(store, state, plain=plain, settings=settings, log=log).build()


def pin_index(store: BlockStore, root: bytes) -> bool:
    """Pin ``root`` under :data:`PIN_NAME` so ``store gc`` keeps the tree; False when this store has no pins."""
    pin = getattr(store, "pin", None)
    if pin is None:
        return False
    pin(root, PIN_NAME)
    return True


def build_store_index(store_dir: str, plain: bool = False) -> BuiltIndex:
    """Build the index of the store at ``store_dir`` and pin it (when the store keeps pins)."""
    with BlockStore(store_dir) as store, MirrorState(store_dir) as state:
        built = build_index(store, state, plain=plain)
        pin_index(store, built.root)
    return built
