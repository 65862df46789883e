"""The benchmark's download cache: fetch locked files in parallel, resume, and hand out only verified paths.

Files live flat under :func:`cache_dir` by file name (PyPI never reuses a file name). Each one is
fetched by the mirror's downloader (:func:`importer.mirror.download.download`): streamed into
``<name>.part``, resumed with an HTTP ``Range`` request, moved to its final name only after its
size and sha256 match the lock, and a file already in the cache is hashed again before it is
handed out, so no path returned was left unchecked. What this module adds is the benchmark's
side: many files on a thread pool, one progress bar, and a file that still fails after the
downloader's retries is reported (logged and listed in :attr:`Downloads.failed`), never raised,
so a benchmark run goes on.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Final

from importer.mirror.download import ATTEMPTS, Downloadable, download
from importer.mirror.errors import DownloadError

log = logging.getLogger(__name__)

#: The benchmark names itself to PyPI apart from the mirror (``dpip-import/... (mirror)``).
USER_AGENT: Final = "dpip-bench/0.1 (urllib)"


class Downloads(dict[str, Path]):
    """File name -> verified local path; entries that could not be fetched are in ``failed``."""

    def __init__(self) -> None:
        super().__init__()
        self.failed: dict[str, str] = {}  # file name -> last reason
        self.bytes_fetched = 0
        self.seconds = 0.0


def cache_dir() -> Path:
    """``$DPIP_BENCH_CACHE``, else ``~/.cache/dpip-bench``: outside the repo, shared by every run."""
    env = os.environ.get("DPIP_BENCH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "dpip-bench"


class _Progress:
    """A thread-safe byte counter behind an optional tqdm bar on stderr."""

    def __init__(self, total: int, enabled: bool) -> None:
        self._lock = threading.Lock()
        self.done = 0
        self._bar: Callable[[int], object] | None = None
        self._close: Callable[[], object] | None = None
        if enabled and total > 0:
            try:
                from tqdm import tqdm  # type: ignore[import-untyped,unused-ignore]
            except ImportError:  # the `bench` extra is not installed: no bar, a summary only
                return
            bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr,
                       desc="download", dynamic_ncols=True)
            self._bar, self._close = bar.update, bar.close

    def add(self, n: int) -> None:
        with self._lock:
            self.done += n
            if self._bar is not None:
                self._bar(n)

    def close(self) -> None:
        if self._close is not None:
            self._close()


def _ensure_one(entry: Downloadable, root: Path, progress: _Progress) -> tuple[Path | None, str, int]:
    """(verified path or None, reason of the last failure, bytes fetched) for one entry."""
    if entry.filename in ("", ".", "..") or os.path.basename(entry.filename) != entry.filename:
        return None, f"unsafe file name {entry.filename!r}", 0  # the cache is flat: no paths
    fetched = 0

    def on_bytes(n: int) -> None:
        nonlocal fetched
        fetched += n
        progress.add(n)

    try:
        return download(entry, root, on_bytes=on_bytes, user_agent=USER_AGENT), "", fetched
    except DownloadError as e:
        return None, e.reason, fetched


def ensure_downloaded(entries: Iterable[Downloadable], jobs: int = 8, progress: bool = True) -> Downloads:
    """Make every entry present and verified in :func:`cache_dir`; see the module docstring.

    Returns file name -> path for the entries that verified; the others are in ``.failed``.
    """
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    unique = list({e.filename: e for e in entries}.values())
    missing = sum(max(e.size, 0) for e in unique if not (root / e.filename).exists())
    result = Downloads()
    bar = _Progress(missing, progress)
    start = time.perf_counter()
    try:
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            outcomes = list(pool.map(lambda e: _ensure_one(e, root, bar), unique))
    finally:
        bar.close()
    result.seconds = time.perf_counter() - start
    for entry, (path, reason, fetched) in zip(unique, outcomes):
        result.bytes_fetched += fetched
        if path is None:
            result.failed[entry.filename] = reason
            log.error("%s: giving up after %d attempts: %s", entry.filename, ATTEMPTS, reason)
        else:
            result[entry.filename] = path
    return result
