"""Download one file as the index described it: resumable, size-capped, sha256-checked before anyone uses it.

A download streams into ``<dir>/<filename>.part``; an interrupted one (a dropped connection, a
killed sync) is resumed with an HTTP ``Range`` request, and a server that ignores Range (200
instead of 206) simply restarts it. Bytes are never accepted past the size the index declared
(or :data:`DEFAULT_MAX_FILE_SIZE` when it declared none), so a hostile server cannot fill the
disk. The file gets its final name only after its size and sha256 match; a mismatch deletes the
bytes and tries again, up to :data:`ATTEMPTS` times, then raises :class:`DownloadError`.
Only ``http`` and ``https`` URLs are fetched (an index cannot point the mirror at local files).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Final, Protocol

from .errors import DownloadError
from .upstream import USER_AGENT

#: Largest file fetched unless ``--max-file-size`` says otherwise: PyPI's own upload limit is
#: 100 MB by default, raised per project up to a few GB (the largest wheels are ~2 GB CUDA
#: builds); 4 GiB is also what the importer accepts for one member.
DEFAULT_MAX_FILE_SIZE: Final = 4 * 1024**3
#: Seconds a stalled connection is given before the attempt counts as failed (and is resumed).
HTTP_TIMEOUT_S: Final = 60.0
#: One try plus three retries.
ATTEMPTS: Final = 4
#: Pause before retry n is RETRY_DELAY_S * n seconds.
RETRY_DELAY_S: Final = 1.0
#: Read and hash in 1 MiB pieces: large enough that hashlib releases the GIL, small for memory.
PIECE: Final = 1 << 20
#: Client errors worth another try: 408 Request Timeout, 416 (the .part was dropped), 429.
RETRY_HTTP: Final = (408, 416, 429)

OnBytes = Callable[[int], None]


class Downloadable(Protocol):
    """What a download needs to know of a file: an index's :class:`~.upstream.UpstreamFile`, a
    benchmark lock entry. ``size`` is -1 when the index does not say."""

    @property
    def filename(self) -> str: ...
    @property
    def url(self) -> str: ...
    @property
    def sha256(self) -> str: ...
    @property
    def size(self) -> int: ...


def sha256_file(path: str | os.PathLike[str]) -> tuple[str, int]:
    """(sha256 hex, size) of a file, read in pieces."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while piece := f.read(PIECE):
            digest.update(piece)
            size += len(piece)
    return digest.hexdigest(), size


def _fetch_once(file: Downloadable, part: Path, limit: int, on_bytes: OnBytes, user_agent: str) -> None:
    """Bring ``part`` towards the whole file, resuming from what it holds; never past ``limit`` bytes."""
    have = part.stat().st_size if part.exists() else 0
    if have > limit:
        part.unlink()
        have = 0
    if have and have == file.size:
        return
    headers = {"User-Agent": user_agent, "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(file.url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S)
    except urllib.error.HTTPError as e:
        if e.code == 416:  # Range Not Satisfiable: the prefix is unusable, start over next time
            part.unlink(missing_ok=True)
        raise
    with response:
        resumed = bool(have) and response.status == 206
        if resumed:
            content_range = response.headers.get("Content-Range", "")
            if not content_range.startswith(f"bytes {have}-"):
                part.unlink(missing_ok=True)  # a range we did not ask for: trust nothing of it
                raise DownloadError(file.filename, file.url, f"server answered range {content_range!r}")
        written = have if resumed else 0
        # Unbuffered, and read1 (what has arrived, up to PIECE): a sync killed mid-way leaves in
        # the .part everything received so far, for the next one to resume from.
        with open(part, "ab" if resumed else "wb", buffering=0) as out:
            while piece := response.read1(PIECE):
                written += len(piece)
                if written > limit:
                    out.truncate(0)
                    raise DownloadError(file.filename, file.url, f"more than the {limit:,d} bytes expected")
                out.write(piece)
                on_bytes(len(piece))


def download(file: Downloadable, directory: Path, *, max_size: int = DEFAULT_MAX_FILE_SIZE,
             on_bytes: OnBytes = lambda n: None, user_agent: str = USER_AGENT) -> Path:
    """``directory/<filename>``, downloaded and verified (see the module docstring); ``on_bytes(n)``
    is called as bytes arrive, an interrupted attempt's included."""
    scheme = urllib.parse.urlsplit(file.url).scheme
    if scheme not in ("http", "https"):
        raise DownloadError(file.filename, file.url, f"refusing a {scheme or 'relative'!s} URL (http and https only)")
    if file.size > max_size:
        raise DownloadError(file.filename, file.url, f"the index says {file.size:,d} bytes, above the "
                                                     f"{max_size:,d}-byte limit (--max-file-size)")
    limit = file.size if file.size >= 0 else max_size
    final = directory / file.filename
    part = directory / (file.filename + ".part")
    if final.exists():  # verified by a sync that was stopped before importing it: check it again
        digest, size = sha256_file(final)
        if digest == file.sha256 and (file.size < 0 or size == file.size):
            return final
        final.unlink()
    reason = ""
    for attempt in range(ATTEMPTS):
        if attempt:
            time.sleep(RETRY_DELAY_S * attempt)
        try:
            _fetch_once(file, part, limit, on_bytes, user_agent)
        except urllib.error.HTTPError as e:
            reason = f"HTTP {e.code} {e.reason}"
            if 400 <= e.code < 500 and e.code not in RETRY_HTTP:
                break  # the server says the file is not there for us: asking again will not help
            continue
        except DownloadError as e:
            reason = e.reason
            continue
        except (OSError, ValueError, http.client.HTTPException) as e:  # URLError is an OSError
            reason = str(getattr(e, "reason", None) or e)
            continue  # keep the .part: the next attempt resumes it
        digest, size = sha256_file(part)
        if file.size >= 0 and size < file.size:
            reason = f"connection closed after {size:,d} of {file.size:,d} bytes"
            continue
        if digest == file.sha256 and (file.size < 0 or size == file.size):
            os.replace(part, final)
            return final
        reason = f"sha256 mismatch: got {digest} ({size:,d} bytes), the index says {file.sha256}"
        part.unlink()  # never keep, resume from, or return bytes that failed the check
    raise DownloadError(file.filename, file.url, reason)
