"""Read a project's page from a Simple Repository API: PEP 691 JSON when the index offers it, PEP 503 HTML otherwise.

The request asks for JSON first and accepts HTML, as pip does; whichever comes back is parsed
into :class:`UpstreamFile` records with absolute URLs. Everything on the page is hostile input:
the body is read up to :data:`MAX_PAGE_BYTES`, a file without a sha256 is dropped (the mirror
verifies every download against one), and names are checked later, by the sync
(:func:`importer.mirror.names.parse_dist_filename`), against the project the page is for.
"""

from __future__ import annotations

import html.parser
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any, Final

from .. import __version__
from .errors import IndexReadError
from .model import entry_from_json
from .render import HTML_TYPE, JSON_TYPE, TEXT_HTML

#: Where projects are resolved unless ``--index-url`` or ``$PIP_INDEX_URL`` says otherwise.
DEFAULT_INDEX_URL: Final = "https://pypi.org/simple/"
#: pip's own Accept header (``pip/_internal/index/collector.py``): JSON preferred, HTML accepted.
ACCEPT: Final = f"{JSON_TYPE}, {HTML_TYPE}; q=0.1, {TEXT_HTML}; q=0.01"
USER_AGENT: Final = f"dpip-import/{__version__} (mirror)"
#: Seconds before a silent connection is given up; boto3's JSON page is several MB.
HTTP_TIMEOUT_S: Final = 60.0
#: Largest page read: PyPI's biggest project pages (thousands of releases, dozens of wheels each)
#: are tens of MB of JSON; 128 MiB leaves room while a hostile endless page costs bounded memory.
MAX_PAGE_BYTES: Final = 128 * 1024 * 1024
#: Attempts per page on errors other than 404 (a 404 is an answer: the project is not there).
PAGE_ATTEMPTS: Final = 3


def index_url_from_env(cli_value: str | None) -> str:
    """``--index-url``, else ``$PIP_INDEX_URL`` (pip's own variable), else PyPI; always ending in ``/``."""
    url = cli_value or os.environ.get("PIP_INDEX_URL") or DEFAULT_INDEX_URL
    return url if url.endswith("/") else url + "/"


@dataclass(frozen=True, slots=True)
class UpstreamFile:
    """One file as the upstream index lists it (URL absolute; yanked: None or the reason)."""

    filename: str
    url: str
    sha256: str
    size: int  # -1 when the index does not say (HTML pages, PEP 691 1.0)
    upload_time: str | None
    requires_python: str | None
    yanked: str | None
    core_metadata: str | None


@dataclass(frozen=True, slots=True)
class UpstreamPage:
    project: str
    url: str
    files: tuple[UpstreamFile, ...]
    versions: tuple[str, ...]  # PEP 700; empty for HTML pages
    content_type: str


class ProjectNotFound(LookupError):
    """The index answered 404 for the project page."""


class _AnchorParser(html.parser.HTMLParser):
    """Collects ``<a>`` attributes and a ``<base href>`` of a PEP 503 page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.anchors: list[dict[str, str | None]] = []
        self.base: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.anchors.append(dict(attrs))
        elif tag == "base" and self.base is None:
            self.base = dict(attrs).get("href")


def parse_html_page(body: bytes, page_url: str) -> list[UpstreamFile]:
    """The files of a PEP 503 page: anchors whose URL has a ``#sha256=`` fragment."""
    parser = _AnchorParser()
    parser.feed(body.decode("utf-8", "replace"))
    parser.close()
    base = urllib.parse.urljoin(page_url, parser.base) if parser.base else page_url
    out: list[UpstreamFile] = []
    for a in parser.anchors:
        href = a.get("href")
        if not href:
            continue
        url, _, fragment = urllib.parse.urljoin(base, href).partition("#")
        algo, _, digest = fragment.partition("=")
        if algo != "sha256" or not digest:
            continue
        filename = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])
        metadata = a.get("data-core-metadata") or a.get("data-dist-info-metadata")
        core = metadata.partition("=")[2] if metadata and metadata.startswith("sha256=") else None
        yanked = a.get("data-yanked")
        out.append(UpstreamFile(filename, url, digest.lower(), -1, None, a.get("data-requires-python"),
                                ("" if yanked is None else yanked) if "data-yanked" in a else None, core))
    return out


def parse_json_page(page: dict[str, Any], page_url: str) -> tuple[list[UpstreamFile], list[str]]:
    """The files (those with a sha256) and versions of a PEP 691 page."""
    out: list[UpstreamFile] = []
    files = page.get("files")
    if not isinstance(files, list):
        raise TypeError("no 'files' list")
    for data in files:
        try:
            entry = entry_from_json(data)
            url = data["url"]
            if not isinstance(url, str):
                raise TypeError("url")
        except (KeyError, TypeError, ValueError, AttributeError):
            continue  # no sha256 (or a malformed entry): the mirror cannot verify it
        out.append(UpstreamFile(entry.filename, urllib.parse.urljoin(page_url, url), entry.sha256, entry.size,
                                entry.upload_time, entry.requires_python, entry.yanked, entry.core_metadata))
    versions = page.get("versions")
    return out, [v for v in versions if isinstance(v, str)] if isinstance(versions, list) else []


def _read_capped(response: Any, url: str) -> bytes:
    pieces: list[bytes] = []
    total = 0
    while piece := response.read(1 << 20):
        total += len(piece)
        if total > MAX_PAGE_BYTES:
            raise IndexReadError(url, f"page larger than {MAX_PAGE_BYTES} bytes")
        pieces.append(piece)
    return b"".join(pieces)


def fetch_page(index_url: str, project: str, *, timeout: float = HTTP_TIMEOUT_S) -> UpstreamPage:
    """The page of ``project`` (normalized) at ``index_url``; ProjectNotFound on 404, IndexReadError otherwise."""
    url = urllib.parse.urljoin(index_url, f"{urllib.parse.quote(project)}/")
    request = urllib.request.Request(url, headers={"Accept": ACCEPT, "User-Agent": USER_AGENT})
    reason = ""
    for attempt in range(PAGE_ATTEMPTS):
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                content_type = response.headers.get_content_type()
                body = _read_capped(response, url)
                final_url = response.geturl()
        except urllib.error.HTTPError as e:
            if e.code == 404:
                raise ProjectNotFound(project) from None
            reason = f"HTTP {e.code} {e.reason}"
            if e.code < 500:
                break
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as e:
            reason = str(getattr(e, "reason", None) or e)
        else:
            return _parse(project, final_url, content_type, body)
        if attempt + 1 < PAGE_ATTEMPTS:
            time.sleep(0.5 * (attempt + 1))  # a short, growing pause before asking a struggling server again
    raise IndexReadError(url, reason)


def _parse(project: str, url: str, content_type: str, body: bytes) -> UpstreamPage:
    if content_type == JSON_TYPE or content_type == "application/vnd.pypi.simple.latest+json":
        try:
            files, versions = parse_json_page(json.loads(body), url)
        except (ValueError, TypeError, AttributeError) as e:
            raise IndexReadError(url, f"not a PEP 691 JSON page: {e}") from None
        return UpstreamPage(project, url, tuple(files), tuple(versions), content_type)
    if content_type in (HTML_TYPE, TEXT_HTML, "application/vnd.pypi.simple.latest+html"):
        return UpstreamPage(project, url, tuple(parse_html_page(body, url)), (), content_type)
    raise IndexReadError(url, f"the index answered {content_type}, neither PEP 691 JSON nor HTML")
