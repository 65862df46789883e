"""Read a project's files from a PyPI Simple API in its JSON form (PEP 691) and pick a release sample.

Only the standard library talks HTTP. Versions and file names are parsed here (PEP 440 versions,
PEP 427 wheel and PEP 625 / legacy sdist file names) in the lenient way a benchmark sample wants
(an unparseable file is skipped, never an error); the index URL, the page retries, the sdist
extensions and PEP 503 names are the mirror's (:mod:`importer.mirror.upstream`,
:mod:`importer.mirror.names`). The selection rule the benchmark uses (:func:`select_releases`):

* the newest ``versions`` final releases (no pre-, dev- or yanked releases; post-releases count),
  returned oldest first; a project that has published only pre-releases (opentelemetry's
  ``0.N bM`` series) gets its newest pre-releases instead, as pip would install them;
* per release the sdist (``.tar.gz`` preferred over ``.zip`` and older formats) and one wheel:
  ``py3-none-any`` when there is one, else the wheel CPython 3.12 on manylinux x86_64 would
  install (``cp312-cp312`` before ``abi3``, lowest glibc first, so the choice is stable across
  releases), or every wheel with ``all_wheels``;
* a release without an sdist is skipped with a reason and the next older one is taken instead.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from importer.mirror.names import SDIST_EXTENSIONS
from importer.mirror.names import normalize as normalize_name
from importer.mirror.render import JSON_TYPE as SIMPLE_JSON
from importer.mirror.upstream import HTTP_TIMEOUT_S, PAGE_ATTEMPTS

from .download_cache import USER_AGENT

# PEP 440, Appendix B (the canonical regex), reduced to the parts we keep: pre/dev are only
# matched so such versions can be rejected.
_VERSION_RE = re.compile(
    r"""^\s*v?
    (?:(?P<epoch>[0-9]+)!)?
    (?P<release>[0-9]+(?:\.[0-9]+)*)
    (?P<pre>[-_.]?(?:a|b|c|rc|alpha|beta|pre|preview)[-_.]?[0-9]*)?
    (?P<post>(?:-[0-9]+)|(?:[-_.]?(?:post|rev|r)[-_.]?[0-9]*))?
    (?P<dev>[-_.]?dev[-_.]?[0-9]*)?
    (?:\+(?P<local>[a-z0-9]+(?:[-_.][a-z0-9]+)*))?
    \s*$""",
    re.VERBOSE | re.IGNORECASE,
)


#: Pre-release kinds in PEP 440 order, with their spellings.
_PRE_KINDS = {"a": 0, "alpha": 0, "b": 1, "beta": 1, "c": 2, "rc": 2, "pre": 2, "preview": 2}
_PRE_LETTER = ("a", "b", "rc")
#: Sorts a release without a pre segment after all of its pre-releases.
_NO_PRE = (3, 0)


@dataclass(frozen=True, slots=True, order=True)
class Version:
    """A PEP 440 final, post- or pre-release (dev and local versions are never taken); orders as PEP 440."""

    epoch: int
    release: tuple[int, ...]  # trailing zeros stripped, so 1.0 == 1.0.0
    pre: tuple[int, int]  # (kind, number), or _NO_PRE
    post: int  # -1 when there is no post segment
    text: str = field(compare=False)  # normalized spelling, e.g. "2.0.0.post1"

    @property
    def is_final(self) -> bool:
        return self.pre == _NO_PRE

    def __str__(self) -> str:
        return self.text


def parse_version(text: str) -> Version | None:
    """The release ``text`` names, or None for dev, local or unparseable versions.

    >>> str(parse_version("v1.02.0-1")), str(parse_version("0.48B0")), parse_version("1.0b2").is_final
    ('1.2.0.post1', '0.48b0', False)
    >>> parse_version("1.0") == parse_version("1.0.0") < parse_version("1.0.post0")
    True
    >>> parse_version("1.0.dev3") is None, parse_version("1.0+ubuntu1") is None
    (True, True)
    """
    m = _VERSION_RE.match(text)
    if m is None or m["dev"] or m["local"]:
        return None
    epoch = int(m["epoch"] or 0)
    parts = tuple(int(p) for p in m["release"].split("."))
    spelled = (f"{epoch}!" if epoch else "") + ".".join(str(p) for p in parts)
    pre = _NO_PRE
    if m["pre"]:
        kind = re.sub(r"[-_.\d]", "", m["pre"]).lower()
        pre = (_PRE_KINDS[kind], int(re.sub(r"\D", "", m["pre"]) or 0))
        spelled += f"{_PRE_LETTER[pre[0]]}{pre[1]}"
    post = -1
    if m["post"]:
        post = int(re.sub(r"\D", "", m["post"]) or 0)
        spelled += f".post{post}"
    release = parts
    while len(release) > 1 and release[-1] == 0:
        release = release[:-1]
    return Version(epoch, release, pre, post, spelled)


@dataclass(frozen=True, slots=True)
class IndexFile:
    """One file of a project page, with what its name says."""

    filename: str
    url: str  # absolute
    sha256: str
    size: int
    upload_time: str
    kind: Literal["sdist", "wheel"]
    version: Version
    tags: frozenset[tuple[str, str, str]]  # (python, abi, platform); empty for sdists


def parse_filename(filename: str, project: str) -> tuple[Literal["sdist", "wheel"], str, str] | None:
    """``(kind, version text, tag string)`` of a distribution of ``project``, or None if it is not one.

    Legacy sdist names may carry hyphens in the project part, so every split point is tried.

    >>> parse_filename("python-dateutil-2.8.2.tar.gz", "python-dateutil")
    ('sdist', '2.8.2', '')
    >>> parse_filename("six-1.16.0-py2.py3-none-any.whl", "six")
    ('wheel', '1.16.0', 'py2.py3-none-any')
    >>> parse_filename("six-1.16.0.win32.exe", "six") is None
    True
    """
    if filename.endswith(".whl"):
        parts = filename[: -len(".whl")].split("-")
        if len(parts) not in (5, 6) or normalize_name(parts[0]) != project:
            return None
        return "wheel", parts[1], "-".join(parts[-3:])
    for ext in SDIST_EXTENSIONS:
        if filename.endswith(ext):
            stem = filename[: -len(ext)]
            for i, ch in enumerate(stem):
                if ch == "-" and normalize_name(stem[:i]) == project:
                    return "sdist", stem[i + 1 :], ""
            return None
    return None


def expand_tags(tag_string: str) -> frozenset[tuple[str, str, str]]:
    """The tag triples a compressed wheel tag set stands for (PEP 425).

    >>> sorted(expand_tags("py2.py3-none-any"))
    [('py2', 'none', 'any'), ('py3', 'none', 'any')]
    """
    py, abi, plat = tag_string.split("-")
    return frozenset((p, a, s) for p in py.split(".") for a in abi.split(".") for s in plat.split("."))


def parse_project_page(page: dict[str, Any], project: str, page_url: str) -> list[IndexFile]:
    """The non-yanked distributions of final and pre-releases listed on a PEP 691 project page."""
    out: list[IndexFile] = []
    for f in page.get("files", []):
        if f.get("yanked"):  # False, or True / a reason string (PEP 592)
            continue
        sha256 = f.get("hashes", {}).get("sha256")
        parsed = parse_filename(f["filename"], project)
        if sha256 is None or parsed is None:
            continue
        kind, version_text, tag_string = parsed
        version = parse_version(version_text)
        if version is None:
            continue
        out.append(
            IndexFile(
                filename=f["filename"],
                url=urllib.parse.urljoin(page_url, f["url"]),  # PEP 691 allows relative URLs
                sha256=sha256.lower(),
                size=int(f.get("size", -1)),
                upload_time=f.get("upload-time") or "",
                kind=kind,
                version=version,
                tags=expand_tags(tag_string) if kind == "wheel" else frozenset(),
            )
        )
    return out


# -- choosing files --------------------------------------------------------------------------------

_MANYLINUX_RE = re.compile(r"^manylinux_(\d+)_(\d+)_x86_64$")
#: The legacy manylinux aliases and the glibc each stands for (PEP 600).
_LEGACY_MANYLINUX = {"manylinux1_x86_64": (2, 5), "manylinux2010_x86_64": (2, 12), "manylinux2014_x86_64": (2, 17)}


def _glibc(platform: str) -> tuple[int, int] | None:
    m = _MANYLINUX_RE.match(platform)
    return (int(m[1]), int(m[2])) if m else _LEGACY_MANYLINUX.get(platform)


def _cp312_rank(tags: frozenset[tuple[str, str, str]]) -> tuple[int, int, int] | None:
    """Sort key of a wheel CPython 3.12 on manylinux x86_64 installs; lower is preferred, None = no."""
    best: tuple[int, int, int] | None = None
    for py, abi, plat in tags:
        glibc = _glibc(plat)
        if glibc is None:
            continue
        if py == "cp312" and abi == "cp312":
            rank = 0
        elif py.startswith("cp3") and abi == "abi3" and py[3:].isdigit() and int(py[3:]) <= 12:
            rank = 1  # the stable ABI: a cp3X-abi3 wheel runs on every CPython >= 3.X
        elif py in ("py3", "py312") and abi == "none":
            rank = 2
        else:
            continue
        key = (rank, glibc[0], glibc[1])
        best = key if best is None or key < best else best
    return best


def pick_wheels(wheels: Sequence[IndexFile], all_wheels: bool) -> list[IndexFile]:
    """The wheel(s) of one release the benchmark takes (see the module docstring)."""
    if all_wheels:
        return sorted(wheels, key=lambda w: w.filename)
    pure = [w for w in wheels if any(py == "py3" and abi == "none" and p == "any" for py, abi, p in w.tags)]
    if pure:
        return [min(pure, key=lambda w: w.filename)]
    ranked = [(rank, w.filename, w) for w in wheels if (rank := _cp312_rank(w.tags)) is not None]
    return [min(ranked, key=lambda r: (r[0], r[1]))[2]] if ranked else []


def pick_sdist(sdists: Sequence[IndexFile]) -> IndexFile | None:
    """The release's sdist, ``.tar.gz`` first when a release uploaded several formats."""
    def rank(f: IndexFile) -> tuple[int, str]:
        return next(i for i, ext in enumerate(SDIST_EXTENSIONS) if f.filename.endswith(ext)), f.filename

    return min(sdists, key=rank) if sdists else None


@dataclass(frozen=True, slots=True)
class Skip:
    """A project or release left out of a lock, and why."""

    project: str
    version: str
    reason: str


def select_releases(
    files: Sequence[IndexFile], versions: int, all_wheels: bool, project: str, listed: Sequence[str] = ()
) -> tuple[list[list[IndexFile]], list[Skip]]:
    """Per chosen release (oldest first) its files, sdist first; and the releases skipped.

    ``listed`` are the version strings of the page's PEP 700 ``versions`` key, so a release whose
    every file is yanked is reported rather than silently missing. Pre-releases are candidates only
    when no final release has a file left.
    """
    by_version: dict[Version, list[IndexFile]] = {}
    for f in files:
        by_version.setdefault(f.version, []).append(f)
    for text in listed:
        v = parse_version(text)
        if v is not None:
            by_version.setdefault(v, [])
    if any(v.is_final and fs for v, fs in by_version.items()):
        by_version = {v: fs for v, fs in by_version.items() if v.is_final}
    chosen: list[list[IndexFile]] = []
    skipped: list[Skip] = []
    for version in sorted(by_version, reverse=True):
        if len(chosen) == versions:
            break
        release = by_version[version]
        sdist = pick_sdist([f for f in release if f.kind == "sdist"])
        if sdist is None:
            why = "no sdist" if release else "every file yanked"
            skipped.append(Skip(project, str(version), why))
            continue
        chosen.append([sdist, *pick_wheels([f for f in release if f.kind == "wheel"], all_wheels)])
    chosen.reverse()
    return chosen, skipped


# -- HTTP ------------------------------------------------------------------------------------------


class ProjectNotFound(LookupError):
    """The index answered 404 for the project page."""


def fetch_project_page(index_url: str, project: str) -> tuple[dict[str, Any], str]:
    """The decoded PEP 691 page of ``project`` and its URL; ProjectNotFound on 404, OSError otherwise."""
    url = urllib.parse.urljoin(index_url.rstrip("/") + "/", f"{project}/")
    request = urllib.request.Request(url, headers={"Accept": SIMPLE_JSON, "User-Agent": USER_AGENT})
    for attempt in range(PAGE_ATTEMPTS):
        try:
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
                content_type = response.headers.get_content_type()
                body = response.read()
                final_url = response.geturl()
        except urllib.error.HTTPError as e:
            if e.code == 404:
                raise ProjectNotFound(project) from None
            if attempt + 1 == PAGE_ATTEMPTS or e.code < 500:
                raise OSError(f"{url}: HTTP {e.code} {e.reason}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
            if attempt + 1 == PAGE_ATTEMPTS:
                raise OSError(f"{url}: {getattr(e, 'reason', e)}") from None
        else:
            if content_type != SIMPLE_JSON:
                raise OSError(f"{url}: the index answered {content_type}, not {SIMPLE_JSON} (PEP 691)")
            page: dict[str, Any] = json.loads(body)
            return page, final_url
        time.sleep(1.0 + attempt)  # a short, growing pause before asking a struggling server again
    raise AssertionError("unreachable")
