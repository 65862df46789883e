"""``mirror sync``: bring a set of projects from an index into the store, incrementally.

One sync, under the store's :class:`~importer.mirror.lock.SyncLock`:

1. read every project's page (PEP 691 JSON, else HTML) on a small thread pool;
2. keep the files the :class:`~importer.mirror.select.Filters` choose;
3. a file the mirror already recorded with the same sha256, and that the store still lists, is
   neither downloaded nor imported; only what the index now says of it (yanked,
   requires-python...) is updated. A file the store already holds (``dpip-import auto`` of the
   same bytes) is recorded without a download; one deleted from the store is fetched again;
4. the rest is downloaded on the pool (resumable, size-capped, sha256-checked:
   :mod:`.download`) while the main thread imports finished downloads in order, oldest release
   first, each into the store (the importer's own :class:`ArchiveImporter`), checked against the
   index's sha256 once more, recorded in the store's archive list, delta-encoded against the
   project's previous archive, and only then recorded in the mirror state.

A sync killed at any point leaves: committed blocks (harmless), perhaps an archive recorded in
the store but not in the state (the next sync records it without a download), perhaps a
verified download or a ``.part`` (the next sync uses or resumes it). Nothing is half-recorded.
A ``stop`` event (SIGTERM in the daemon) ends the sync after the archive being imported.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from ..archive.importer import ArchiveImporter
from ..errors import ImporterError
from ..profiles import ImportSettings, resolve_settings
from ..sinks.store import ArchiveRecord, BlockStore
from .download import DEFAULT_MAX_FILE_SIZE, download
from .errors import DownloadError, IndexReadError
from .lock import SyncLock
from .names import normalize
from .progress import Progress
from .select import Chosen, Filters, select_files
from .state import FileRecord, MirrorState
from .upstream import ProjectNotFound, UpstreamFile, UpstreamPage, fetch_page

#: Downloads (and page reads) at once: enough to hide per-request latency on a CDN, few enough
#: not to be throttled, and bounded disk use (at most 2x this many finished downloads wait).
DEFAULT_JOBS: Final = 4
#: Downloads directory inside the store directory (``.part`` files live here between syncs).
DOWNLOADS_DIR: Final = "mirror-downloads"


@dataclass(frozen=True, slots=True)
class SyncOptions:
    index_url: str
    filters: Filters = field(default_factory=Filters)
    jobs: int = DEFAULT_JOBS
    max_file_size: int = DEFAULT_MAX_FILE_SIZE
    settings: ImportSettings = field(default_factory=resolve_settings)
    delta: bool = True
    progress: bool = True


@dataclass(slots=True)
class SyncReport:
    projects: int = 0
    chosen: int = 0
    already: int = 0
    updated: int = 0
    adopted: int = 0
    downloaded: int = 0
    downloaded_bytes: int = 0
    imported: int = 0
    new_bytes: int = 0
    missing: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    stopped: bool = False
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed and not self.missing


def read_project_list(items: Sequence[str], datasets_dir: Path | None = None) -> list[str]:
    """``--packages``: each item a list file (one name a line, ``#`` comments), a dataset name
    (``datasets/<name>.txt``) or a project name; normalized, first occurrence kept."""
    if datasets_dir is None:
        datasets_dir = Path(__file__).resolve().parents[2] / "datasets"
    names: list[str] = []
    for item in items:
        path = Path(item)
        if not path.is_file() and "/" not in item and (datasets_dir / f"{item}.txt").is_file():
            path = datasets_dir / f"{item}.txt"
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                line = line.split("#", 1)[0].strip()
                if line:
                    names.append(normalize(line))
        else:
            names.append(normalize(item))
    return list(dict.fromkeys(names))


def _record(chosen: Chosen, root: bytes | None, size: int | None = None) -> FileRecord:
    """The state row of a chosen file; ``size`` when known from the file itself (HTML pages give none)."""
    f = chosen.file
    return FileRecord(f.filename, chosen.dist.project, str(chosen.dist.version), chosen.dist.kind, f.sha256,
                      f.size if size is None else size, f.upload_time, f.requires_python, f.yanked, f.core_metadata,
                      f.url, root, time.time())


def _same_facts(a: FileRecord, f: UpstreamFile) -> bool:
    return (a.upload_time, a.requires_python, a.yanked, a.core_metadata, a.url) == \
        (f.upload_time, f.requires_python, f.yanked, f.core_metadata, f.url)


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class Syncer:
    """One sync of one store (see the module docstring)."""

    def __init__(self, store_dir: Path, options: SyncOptions, stop: threading.Event | None = None) -> None:
        self.store_dir = store_dir
        self.options = options
        self.stop = stop or threading.Event()
        self.report = SyncReport()
        self.downloads = store_dir / DOWNLOADS_DIR

    def run(self, projects: Sequence[str]) -> SyncReport:
        start = time.perf_counter()
        with SyncLock(self.store_dir), BlockStore(self.store_dir) as store, MirrorState(self.store_dir) as state:
            pages = self._read_pages(projects)
            todo = self._plan(store, state, pages)
            if todo and not self.stop.is_set():
                self.downloads.mkdir(parents=True, exist_ok=True)
                self._fetch_and_import(store, state, todo)
        self.report.seconds = time.perf_counter() - start
        return self.report

    def _read_pages(self, projects: Sequence[str]) -> list[UpstreamPage]:
        def one(project: str) -> UpstreamPage | str:
            try:
                return fetch_page(self.options.index_url, project)
            except ProjectNotFound:
                return f"{project}: not found at {self.options.index_url}"
            except IndexReadError as e:
                return str(e)

        with ThreadPoolExecutor(max(1, self.options.jobs)) as pool:
            results = list(pool.map(one, projects))
        pages = []
        for result in results:
            if isinstance(result, str):
                self.report.missing.append(result)
                _say(f"dpip-import mirror sync: {result}")
            else:
                pages.append(result)
        self.report.projects = len(pages)
        return pages

    def _plan(self, store: BlockStore, state: MirrorState, pages: list[UpstreamPage]) -> list[Chosen]:
        held = {r.name: r for r in store.iter_archives()}
        todo: list[Chosen] = []
        for page in pages:
            chosen, refused = select_files(page.project, page.files, self.options.filters)
            for r in refused:
                self.report.refused.append(f"{page.project}: {r.filename}: {r.reason}")
            self.report.chosen += len(chosen)
            chosen_names = {c.file.filename for c in chosen}
            for f in page.files:  # what the index now says of files mirrored earlier (yanked...)
                known = state.get_file(f.filename) if f.filename not in chosen_names else None
                if known is not None and known.sha256 == f.sha256 and not _same_facts(known, f):
                    state.record_file(FileRecord(known.filename, known.project, known.version, known.kind, f.sha256,
                                                 known.size, f.upload_time, f.requires_python, f.yanked,
                                                 f.core_metadata, f.url, known.root, time.time()))
                    self.report.updated += 1
            for c in chosen:
                known = state.get_file(c.file.filename)
                record = held.get(c.file.filename)
                in_store = record is not None and record.sha256.hex() == c.file.sha256
                if known is not None and known.root is not None and known.sha256 == c.file.sha256 and in_store \
                        and record is not None and record.root == known.root:
                    self.report.already += 1
                    if not _same_facts(known, c.file):
                        state.record_file(_record(c, known.root, known.size))
                        self.report.updated += 1
                    continue
                if in_store and record is not None and store.has(record.root):
                    state.record_file(_record(c, record.root, record.size))  # imported earlier (or by a killed sync)
                    self.report.adopted += 1
                    continue
                todo.append(c)
        return todo

    def _fetch_and_import(self, store: BlockStore, state: MirrorState, todo: list[Chosen]) -> None:
        total = sum(max(c.file.size, 0) for c in todo)
        progress = Progress(total, len(todo), "mirror sync", sys.stderr) if self.options.progress else None
        on_bytes: Callable[[int], None] = (lambda n: progress.add(n)) if progress else (lambda n: None)
        importer = _Importer(store, state, self.options)
        window = max(1, self.options.jobs) * 2
        pending: deque[tuple[Chosen, Future[Path]]] = deque()
        queue = deque(todo)
        with ThreadPoolExecutor(max(1, self.options.jobs)) as pool:
            try:
                while queue or pending:
                    while queue and len(pending) < window and not self.stop.is_set():
                        c = queue.popleft()
                        pending.append((c, pool.submit(self._download, c, on_bytes)))
                    if not pending:
                        break
                    chosen, future = pending.popleft()
                    try:
                        path = future.result()
                    except DownloadError as e:
                        self._fail(chosen, str(e))
                        continue
                    self.report.downloaded += 1
                    self.report.downloaded_bytes += path.stat().st_size
                    try:
                        importer.import_one(chosen, path)
                        self.report.imported += 1
                        self.report.new_bytes += importer.last_new_bytes
                    except ImporterError as e:
                        self._fail(chosen, str(e))
                    finally:
                        path.unlink(missing_ok=True)
                    if progress:
                        progress.add(files=1)
                    if self.stop.is_set():
                        self.report.stopped = True
                        break
            finally:
                for _, future in pending:
                    future.cancel()
                if progress:
                    progress.close()
                importer.close()

    def _download(self, chosen: Chosen, on_bytes: Callable[[int], None]) -> Path:
        return download(chosen.file, self.downloads, max_size=self.options.max_file_size, on_bytes=on_bytes)

    def _fail(self, chosen: Chosen, reason: str) -> None:
        self.report.failed.append(reason)
        _say(f"dpip-import mirror sync: {reason}")


class _Importer:
    """Imports verified downloads into the store and records them (main thread only: the store's
    connection belongs to it)."""

    def __init__(self, store: BlockStore, state: MirrorState, options: SyncOptions) -> None:
        from ..compress.memo import MEMO_ENTRIES
        from ..compress.search import load_spawned_attempts, take_spawned_attempts

        self.store, self.state, self.options = store, state, options
        self.last_new_bytes = 0
        take_spawned_attempts()
        try:
            load_spawned_attempts(store.load_attempts(MEMO_ENTRIES))
        except ImporterError:
            pass  # the memo only saves time

    def import_one(self, chosen: Chosen, path: Path) -> None:
        from ..archive.delta import delta_against_previous
        from ..errors import InvalidArchive
        from ..sinks.counting import CountingSink

        counting = CountingSink(self.store)
        report = ArchiveImporter(self.options.settings, counting).import_file(str(path))
        if report.sha256 != chosen.file.sha256:
            raise InvalidArchive(chosen.file.filename, f"imported sha256 {report.sha256} differs from the index's "
                                                       f"{chosen.file.sha256}")
        self.last_new_bytes = counting.new_bytes
        self.store.record_archive(ArchiveRecord(chosen.file.filename, report.root, bytes.fromhex(report.sha256),
                                                report.size, time.time()))
        self._record_attempts()
        if self.options.delta:
            delta_against_previous(self.store, chosen.file.filename, report.root)
        self.state.record_file(_record(chosen, report.root, report.size))

    def _record_attempts(self) -> None:
        from ..compress.memo import MEMO_ENTRIES
        from ..compress.search import take_spawned_attempts

        rows = take_spawned_attempts()
        if rows:
            try:
                self.store.record_attempts(rows, MEMO_ENTRIES)
            except ImporterError:
                pass

    def close(self) -> None:
        self.store.flush()


def sync(store_dir: str | os.PathLike[str], projects: Sequence[str], options: SyncOptions,
         stop: threading.Event | None = None) -> SyncReport:
    """Run one sync of ``projects`` into the store at ``store_dir``; see the module docstring."""
    return Syncer(Path(store_dir), options, stop).run(projects)
