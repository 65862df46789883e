"""Projects the index does not hold: proxy their pages from ``--fallback``, optionally pulling the files through.

Without ``--pull-through`` the upstream page is relayed in the representation the client asked
for, its file URLs made absolute (JSON ``url`` keys joined with the page URL, a ``<base>`` added
to HTML), so the client downloads the files from upstream directly.

With ``--pull-through`` the page is read (PEP 691 JSON or HTML, :mod:`importer.mirror.upstream`),
files whose names do not belong to the project are dropped, and the page is rendered by the
mirror's own renderer with relative URLs, so downloads come back here: the server fetches each
file once (sha256-checked, :mod:`importer.mirror.download`) into the file cache, serves it from
there, and a background thread imports it into the store and records it in the mirror state;
the next ``mirror index`` lists it. The importer thread owns its own store connection.
"""

from __future__ import annotations

import json
import queue
import re
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from ..mirror.download import DEFAULT_MAX_FILE_SIZE, download
from ..mirror.errors import IndexReadError, UnsafeFileName
from ..mirror.model import FileEntry, make_page
from ..mirror.names import DistName, parse_dist_filename
from ..mirror.render import JSON_TYPE, project_html, project_json
from ..mirror.upstream import MAX_PAGE_BYTES, USER_AGENT, ProjectNotFound, UpstreamFile, fetch_page
from ..profiles import ImportSettings, resolve_settings
from .cache import FileCache

#: Seconds to wait for the upstream index before answering 502.
UPSTREAM_TIMEOUT_S: Final = 30.0


@dataclass(frozen=True, slots=True)
class Relayed:
    status: int
    content_type: str
    body: bytes


def _absolute_json(body: bytes, base: str) -> bytes:
    page = json.loads(body)
    for f in page.get("files", []):
        if isinstance(f, dict) and isinstance(f.get("url"), str):
            f["url"] = urllib.parse.urljoin(base, f["url"])
    return json.dumps(page).encode()


def _with_base(body: bytes, base: str) -> bytes:
    tag = f'<base href="{base}">'.encode()
    match = re.search(rb"<head[^>]*>", body, re.IGNORECASE)
    if match is None:
        return tag + body
    return body[: match.end()] + tag + body[match.end():]


class Fallback:
    """The upstream index for projects the tree does not hold."""

    def __init__(self, url: str, pull_through: PullThrough | None = None) -> None:
        self.url = url if url.endswith("/") else url + "/"
        self.pull = pull_through

    def page(self, project: str, accept: str, chosen: str) -> Relayed | None:
        """The upstream page of ``project`` for a client that accepts ``accept`` (``chosen``: the type
        negotiation picked, used when pulling through); None when upstream has no such project."""
        if self.pull is not None:
            return self.pull.page(self.url, project, chosen)
        url = urllib.parse.urljoin(self.url, urllib.parse.quote(project) + "/")
        request = urllib.request.Request(url, headers={"Accept": accept or "text/html", "User-Agent": USER_AGENT})
        try:
            with urllib.request.urlopen(request, timeout=UPSTREAM_TIMEOUT_S) as response:
                body = response.read(MAX_PAGE_BYTES + 1)
                ctype = response.headers.get_content_type()
                final = response.geturl()
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            return Relayed(502, "text/plain", f"fallback {url}: HTTP {e.code}\n".encode())
        except (urllib.error.URLError, OSError) as e:
            return Relayed(502, "text/plain", f"fallback {url}: {getattr(e, 'reason', e)}\n".encode())
        if len(body) > MAX_PAGE_BYTES:
            return Relayed(502, "text/plain", f"fallback {url}: page too large\n".encode())
        try:
            body = _absolute_json(body, final) if ctype.endswith("json") else _with_base(body, final)
        except (ValueError, AttributeError):
            return Relayed(502, "text/plain", f"fallback {url}: unreadable page\n".encode())
        return Relayed(200, ctype, body)


@dataclass(frozen=True, slots=True)
class Pulled:
    file: UpstreamFile
    dist: DistName


class PullThrough:
    """Files of fallback projects fetched once into the cache and imported into the store in the background."""

    def __init__(self, store_dir: Path, cache: FileCache, *, settings: ImportSettings | None = None,
                 max_file_size: int = DEFAULT_MAX_FILE_SIZE) -> None:
        if not cache.enabled:
            raise ValueError("pull-through needs the file cache (--cache-size above 0)")
        self.store_dir = store_dir
        self.cache = cache
        self.settings = settings or resolve_settings()
        self.max_file_size = max_file_size
        self._lock = threading.Lock()
        self._files: dict[tuple[str, str], Pulled] = {}
        self._queue: queue.Queue[Pulled | None] = queue.Queue()
        self._worker = threading.Thread(target=self._import_loop, name="pull-through import", daemon=True)
        self._worker.start()
        self.imported: list[str] = []

    def page(self, index_url: str, project: str, chosen: str) -> Relayed | None:
        try:
            upstream = fetch_page(index_url, project, timeout=UPSTREAM_TIMEOUT_S)
        except ProjectNotFound:
            return None
        except IndexReadError as e:
            return Relayed(502, "text/plain", f"fallback: {e}\n".encode())
        entries = []
        with self._lock:
            for f in upstream.files:
                try:
                    dist = parse_dist_filename(f.filename, project)
                except UnsafeFileName:
                    continue
                self._files[project, f.filename] = Pulled(f, dist)
                entries.append(FileEntry(f.filename, f.sha256, f.size, f.upload_time, f.requires_python, f.yanked))
        page = make_page(project, entries, upstream.versions)
        return Relayed(200, chosen, project_json(page) if chosen == JSON_TYPE else project_html(page))

    def lookup(self, project: str, filename: str) -> Pulled | None:
        with self._lock:
            return self._files.get((project, filename))

    def fetch(self, pulled: Pulled) -> Path:
        """The file, downloaded and verified once into the cache (DownloadError otherwise)."""
        sha = pulled.file.sha256
        with self.cache.building(sha):
            cached = self.cache.get(sha)
            if cached is not None:
                return cached
            staging = self.cache.dir / ".pull"
            staging.mkdir(parents=True, exist_ok=True)
            path = download(pulled.file, staging, max_size=self.max_file_size)
            with open(path, "rb") as f, self.cache.temporary(sha) as temp:
                while piece := f.read(1 << 20):
                    temp.write(piece)
                cached = self.cache.admit(sha, temp)
            path.unlink(missing_ok=True)
        self._queue.put(pulled)
        return cached

    def _import_loop(self) -> None:
        from ..archive.importer import ArchiveImporter
        from ..errors import ImporterError
        from ..mirror.state import FileRecord, MirrorState
        from ..sinks.store import ArchiveRecord, BlockStore

        while (job := self._queue.get()) is not None:
            f = job.file
            try:
                path = self.cache.get(f.sha256)
                if path is None:
                    continue
                with BlockStore(self.store_dir) as store, MirrorState(self.store_dir) as state:
                    report = ArchiveImporter(self.settings, store).import_file(str(path))
                    if report.sha256 != f.sha256:
                        continue
                    store.record_archive(ArchiveRecord(f.filename, report.root, bytes.fromhex(report.sha256),
                                                       report.size, time.time()))
                    state.record_file(FileRecord(f.filename, job.dist.project, str(job.dist.version), job.dist.kind,
                                                 f.sha256, report.size, f.upload_time, f.requires_python, f.yanked,
                                                 f.core_metadata, f.url, report.root, time.time()))
                self.imported.append(f.filename)
            except ImporterError as e:
                print(f"dpip-import serve: pull-through import of {f.filename} failed: {e}", file=sys.stderr)
            finally:
                self._queue.task_done()
        self._queue.task_done()

    def join(self) -> None:
        """Wait until every queued import is done (tests, shutdown)."""
        self._queue.join()

    def close(self) -> None:
        self._queue.put(None)
        self._worker.join(timeout=60)
