"""Which files of a project page the mirror keeps: the filters bandersnatch and ``pip download`` know.

Applied in this order, each a field of :class:`Filters`:

* **kind** (pip's ``--only-binary``/``--no-binary``, names or ``:all:``): drop sdists of projects
  that must be binary, wheels of projects that must be built;
* **python** (``--python-version X.Y``, repeatable): a wheel is kept when one of its tags has an
  interpreter/ABI pair that CPython X.Y accepts (``packaging.tags``, pip's own tag lists), and
  any file when its requires-python admits X.Y;
* **platform** (``--platform``, repeatable, pip's spelling): pure ``any`` wheels are always kept;
  a manylinux/musllinux target takes wheels of the same architecture built for an older or
  equal glibc/musl (``manylinux2014_x86_64`` = ``manylinux_2_17_x86_64`` takes ``manylinux1``
  too), a macOS target those for an older or equal macOS of a compatible architecture
  (``universal2`` runs on both), anything else must match exactly;
* **releases**: final releases only (pre-releases when a project has nothing else), those whose
  first upload is at or after ``since``, the newest ``versions`` of them; a release counts only
  if a file not yanked is left, but its yanked files are mirrored too, flagged (PEP 592);
* **one wheel per platform** (``per_platform``): of the wheels of one release for one platform
  tag, only the one for the newest interpreter (cpXY before abi3 before py3).

The result lists releases oldest first, the sdist before the wheels, so that each archive is
imported after its predecessor (the store's deltas are made against the previous release).
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.version import Version

from ..errors import InvalidOption
from .errors import UnsafeFileName
from .names import DistName, parse_dist_filename
from .upstream import UpstreamFile

ALL: Final = ":all:"
NONE: Final = ":none:"
#: Placeholder platform used to list the interpreter/ABI pairs a Python version accepts.
_ANY_PLATFORM: Final = "dpip_any_platform"
#: pip's legacy manylinux names and the glibc each stands for (PEP 600).
_LEGACY_MANYLINUX: Final = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
_LINUX_RE: Final = re.compile(r"^(manylinux|musllinux)_(\d+)_(\d+)_(.+)$")
_LEGACY_RE: Final = re.compile(r"^(manylinux1|manylinux2010|manylinux2014)_(.+)$")
_MACOS_RE: Final = re.compile(r"^macosx_(\d+)_(\d+)_(.+)$")
#: The macOS architectures a wheel's architecture field runs on (packaging.tags.mac_platforms).
_MAC_ARCHES: Final = {
    "arm64": {"arm64"}, "x86_64": {"x86_64"}, "universal2": {"arm64", "x86_64"},
    "intel": {"x86_64", "i386"}, "fat64": {"x86_64", "ppc64"}, "fat3": {"x86_64", "i386", "ppc"},
    "universal": {"x86_64", "i386", "ppc", "ppc64"}, "fat32": {"i386", "ppc"}, "i386": {"i386"},
}


@dataclass(frozen=True, slots=True)
class Filters:
    """What a sync keeps; the defaults keep every file of every final release."""

    versions: int | None = None
    since: datetime.datetime | None = None
    platforms: tuple[str, ...] = ()
    python_versions: tuple[str, ...] = ()
    only_binary: frozenset[str] = field(default_factory=frozenset)
    no_binary: frozenset[str] = field(default_factory=frozenset)
    per_platform: bool = False

    def __post_init__(self) -> None:
        if self.versions is not None and self.versions < 1:
            raise InvalidOption(f"--versions must be at least 1, got {self.versions}")
        if ALL in self.only_binary and ALL in self.no_binary:
            raise InvalidOption("--only-binary :all: and --no-binary :all: leave nothing to mirror")
        for text in self.python_versions:
            if not re.fullmatch(r"\d+\.\d+", text):
                raise InvalidOption(f"--python-version must be MAJOR.MINOR, got {text!r}")

    def wants_sdist(self, project: str) -> bool:
        if project in self.no_binary:
            return True
        return not (project in self.only_binary or ALL in self.only_binary)

    def wants_wheels(self, project: str) -> bool:
        if project in self.only_binary:
            return True
        return not (project in self.no_binary or ALL in self.no_binary)


def parse_name_list(values: Sequence[str]) -> frozenset[str]:
    """pip's ``--only-binary``/``--no-binary`` values: comma-separated names, ``:all:`` or ``:none:``."""
    from .names import normalize

    out: set[str] = set()
    for value in values:
        for item in value.split(","):
            item = item.strip()
            if item == NONE:
                out.clear()
            elif item == ALL:
                out.add(ALL)
            elif item:
                out.add(normalize(item))
    return frozenset(out)


def parse_since(text: str) -> datetime.datetime:
    """``--since``: an ISO 8601 date or date-time (UTC unless it says otherwise)."""
    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise InvalidOption(f"--since must be an ISO 8601 date (2024-01-31), got {text!r}") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=datetime.UTC)


def _upload_time(text: str | None) -> datetime.datetime | None:
    if not text:
        return None
    try:
        when = datetime.datetime.fromisoformat(text)  # Python 3.11 reads a trailing Z
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=datetime.UTC)


def _python_pairs(version: str) -> frozenset[tuple[str, str]]:
    """The (interpreter, ABI) pairs CPython ``version`` installs, as pip lists them."""
    major, minor = (int(p) for p in version.split("."))
    tags: list[Tag] = list(cpython_tags((major, minor), platforms=[_ANY_PLATFORM]))
    tags += compatible_tags((major, minor), f"cp{major}{minor}", platforms=[_ANY_PLATFORM])
    return frozenset((t.interpreter, t.abi) for t in tags)


def _glibc_like(platform: str) -> tuple[str, int, int, str] | None:
    """(family, major, minor, arch) of a manylinux/musllinux platform tag, legacy names included."""
    m = _LINUX_RE.match(platform)
    if m:
        return m[1], int(m[2]), int(m[3]), m[4]
    m = _LEGACY_RE.match(platform)
    if m:
        major, minor = _LEGACY_MANYLINUX[m[1]]
        return "manylinux", major, minor, m[2]
    return None


def platform_accepts(target: str, wheel_platform: str) -> bool:
    """Does a machine of platform ``target`` install a wheel built for ``wheel_platform``?

    >>> platform_accepts("manylinux2014_x86_64", "manylinux1_x86_64")
    True
    >>> platform_accepts("manylinux_2_17_x86_64", "manylinux_2_28_x86_64")
    False
    >>> platform_accepts("macosx_14_0_arm64", "macosx_11_0_universal2"), platform_accepts("win_amd64", "win32")
    (True, False)
    """
    if wheel_platform == "any" or target == wheel_platform:
        return True
    want, have = _glibc_like(target), _glibc_like(wheel_platform)
    if want is not None and have is not None:
        return want[0] == have[0] and want[3] == have[3] and (have[1], have[2]) <= (want[1], want[2])
    mw, mh = _MACOS_RE.match(target), _MACOS_RE.match(wheel_platform)
    if mw and mh:
        if (int(mh[1]), int(mh[2])) > (int(mw[1]), int(mw[2])):
            return False
        return bool(_MAC_ARCHES.get(mw[3], {mw[3]}) & _MAC_ARCHES.get(mh[3], {mh[3]}))
    return False


def _requires_python_admits(spec: str | None, versions: Sequence[str]) -> bool:
    if not spec or not versions:
        return True
    try:
        specifier = SpecifierSet(spec)
    except InvalidSpecifier:
        return True  # pip ignores a requires-python it cannot parse; so does the mirror
    return any(specifier.contains(f"{v}.0", prereleases=True) for v in versions)


@dataclass(frozen=True, slots=True)
class Chosen:
    """A file the filters keep, with what its name says."""

    file: UpstreamFile
    dist: DistName


@dataclass(frozen=True, slots=True)
class Refused:
    """A file left out because its name is unsafe or does not belong to the project."""

    filename: str
    reason: str


def _interpreter_rank(tag: Tag) -> tuple[int, int]:
    """Higher is preferred: the newest interpreter, then cpXY over abi3 over pyX."""
    digits = re.sub(r"\D", "", tag.interpreter)
    version = int(digits[1:] or 0) if len(digits) > 1 else 0
    kind = 2 if tag.interpreter.startswith("cp") and tag.abi.startswith("cp") else 1 if tag.abi == "abi3" else 0
    return version, kind


def _one_per_platform(wheels: list[Chosen]) -> list[Chosen]:
    best: dict[str, Chosen] = {}
    for chosen in sorted(wheels, key=lambda c: c.dist.filename):
        platforms = ".".join(sorted({t.platform for t in chosen.dist.tags}))
        rank = max(_interpreter_rank(t) for t in chosen.dist.tags)
        current = best.get(platforms)
        if current is None or rank > max(_interpreter_rank(t) for t in current.dist.tags):
            best[platforms] = chosen
    return list(best.values())


def select_files(project: str, files: Sequence[UpstreamFile], filters: Filters) -> tuple[list[Chosen], list[Refused]]:
    """The files of ``project`` (normalized) the filters keep, oldest release first; and those refused."""
    chosen: list[Chosen] = []
    refused: list[Refused] = []
    pairs = frozenset().union(*(_python_pairs(v) for v in filters.python_versions)) if filters.python_versions else None
    for f in files:
        try:
            dist = parse_dist_filename(f.filename, project)
        except UnsafeFileName as e:
            refused.append(Refused(f.filename, e.reason))
            continue
        if dist.kind == "sdist" and not filters.wants_sdist(project):
            continue
        if dist.kind == "wheel":
            if not filters.wants_wheels(project):
                continue
            if pairs is not None and not any((t.interpreter, t.abi) in pairs for t in dist.tags):
                continue
            if filters.platforms and not any(platform_accepts(p, t.platform)
                                             for p in filters.platforms for t in dist.tags):
                continue
        if not _requires_python_admits(f.requires_python, filters.python_versions):
            continue
        chosen.append(Chosen(f, dist))
    by_version: dict[Version, list[Chosen]] = {}
    for c in chosen:
        by_version.setdefault(c.dist.version, []).append(c)
    live = {v: cs for v, cs in by_version.items() if any(c.file.yanked is None for c in cs)}
    finals = {v: cs for v, cs in live.items() if not (v.is_prerelease or v.is_devrelease)}
    releases = finals or live
    if filters.since is not None:
        since = filters.since
        releases = {v: cs for v, cs in releases.items()
                    if (first := min((t for c in cs if (t := _upload_time(c.file.upload_time)) is not None),
                                     default=None)) is None or first >= since}
    newest = sorted(releases, reverse=True)
    if filters.versions is not None:
        newest = newest[: filters.versions]
    out: list[Chosen] = []
    for version in sorted(newest):
        release = by_version[version]
        sdists = sorted((c for c in release if c.dist.kind == "sdist"), key=lambda c: c.dist.filename)
        wheels = sorted((c for c in release if c.dist.kind == "wheel"), key=lambda c: c.dist.filename)
        if filters.per_platform:
            wheels = sorted(_one_per_platform(wheels), key=lambda c: c.dist.filename)
        out += sdists + wheels
    return out, refused
