"""The benchmark's download cache: fetch locked files in parallel, resume, and hand out only verified paths.

Files live flat under :func:`cache_dir` by file name (PyPI never reuses a file name). A download
streams into ``<name>.part``; an interrupted one is resumed with an HTTP ``Range`` request. A file
is moved to its final name only after its size and sha256 match the lock, and a file already in
the cache is hashed again before it is handed out, so no path returned was left unchecked. A
mismatch deletes the bytes and tries again; after :data:`ATTEMPTS` the entry is reported as failed
(logged and listed in :attr:`Downloads.failed`), never raised, so a benchmark run goes on.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

USER_AGENT = "dpip-bench/0.1 (urllib)"
#: Seconds a stalled connection is given before the attempt counts as failed (and is resumed).
HTTP_TIMEOUT_S = 60.0
#: One try plus three retries: a sha256 mismatch or a broken connection is retried three times.
ATTEMPTS = 4
#: Pause before retry n is RETRY_DELAY_S * n seconds (tests set it to 0).
RETRY_DELAY_S = 1.0
#: Read and hash in 1 MiB pieces: large enough that hashlib releases the GIL, small for memory.
PIECE = 1 << 20
#: Client errors worth another try: 408 Request Timeout, 416 (the .part was dropped), 429 Too Many Requests.
RETRY_HTTP = (408, 416, 429)


class Downloadable(Protocol):
    """What the cache needs of a lock entry."""

    @property
    def filename(self) -> str: ...
    @property
    def url(self) -> str: ...
    @property
    def sha256(self) -> str: ...
    @property
    def size(self) -> int: ...


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


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while piece := f.read(PIECE):
            h.update(piece)
    return h.hexdigest()


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


def _fetch_once(entry: Downloadable, part: Path, progress: _Progress, fetched: list[int]) -> None:
    """Bring ``part`` to the full length of ``entry``, resuming from what it already holds.

    Bytes received are added to ``fetched[0]`` as they arrive, so an interrupted attempt counts too.
    """
    have = part.stat().st_size if part.exists() else 0
    if have > entry.size >= 0:
        part.unlink()  # longer than the real file: cannot be a prefix of it
        have = 0
    if have == entry.size:
        return
    headers = {"User-Agent": USER_AGENT}
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(entry.url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S)
    except urllib.error.HTTPError as e:
        if e.code == 416:  # Range Not Satisfiable: the prefix is unusable, start over next time
            part.unlink(missing_ok=True)
        raise
    with response:
        mode = "ab" if have and response.status == 206 else "wb"  # 200: the server ignored Range
        with open(part, mode) as out:
            while piece := response.read(PIECE):
                out.write(piece)
                progress.add(len(piece))
                fetched[0] += len(piece)


def _ensure_one(entry: Downloadable, root: Path, progress: _Progress) -> tuple[Path | None, str, int]:
    """(verified path or None, reason of the last failure, bytes fetched) for one entry."""
    if entry.filename in ("", ".", "..") or os.path.basename(entry.filename) != entry.filename:
        return None, f"unsafe file name {entry.filename!r}", 0  # the cache is flat: no paths
    final = root / entry.filename
    part = root / (entry.filename + ".part")
    if final.exists():
        if sha256_file(final) == entry.sha256:
            return final, "", 0
        log.warning("%s: cached copy does not match the lock's sha256; fetching it again", entry.filename)
        final.unlink()
    reason = ""
    fetched = [0]
    for attempt in range(ATTEMPTS):
        if attempt:
            time.sleep(RETRY_DELAY_S * attempt)
        try:
            _fetch_once(entry, part, progress, fetched)
        except urllib.error.HTTPError as e:
            reason = f"download failed: HTTP {e.code} {e.reason}"
            if 400 <= e.code < 500 and e.code not in RETRY_HTTP:
                break  # the server says the file is not there for us: asking again will not help
            continue
        except (OSError, ValueError, http.client.HTTPException) as e:  # URLError is an OSError
            reason = f"download failed: {getattr(e, 'reason', None) or e}"
            continue  # keep the .part: the next attempt resumes it
        size = part.stat().st_size
        if size < entry.size:
            reason = f"connection closed after {size} of {entry.size} bytes"
            continue  # a short body is an interrupted download: resume it
        digest = sha256_file(part)
        if size == entry.size and digest == entry.sha256:
            os.replace(part, final)
            return final, "", fetched[0]
        reason = f"sha256 mismatch: got {digest} ({size} bytes), lock says {entry.sha256} ({entry.size} bytes)"
        log.warning("%s: %s (attempt %d of %d)", entry.filename, reason, attempt + 1, ATTEMPTS)
        part.unlink()  # never keep, resume from, or return bytes that failed the check
    return None, reason, fetched[0]


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
