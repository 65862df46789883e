"""What a distribution's file name says (project, version, kind, wheel tags) and the checks every name from outside passes.

A file name comes from an index (hostile input): before it becomes a path in the download
directory or a name in the index tree it must be a plain name (no separator, no NUL, no leading
dot, at most :data:`MAX_FILENAME` bytes) and parse as a distribution of the project whose page
listed it: a wheel (PEP 427: ``name-version(-build)?-py-abi-platform.whl``) or an sdist
(PEP 625 ``.tar.gz``, and the legacy extensions older releases used). Names are compared in
their PEP 503 normalized form. Versions and tags are parsed by ``packaging``, pip's own parser.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

from packaging.tags import Tag
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from .errors import UnsafeFileName

#: Sdist extensions in order of preference (PEP 625 allows only ``.tar.gz``; older releases used
#: the others, sometimes next to a ``.tar.gz``).
SDIST_EXTENSIONS: Final = (".tar.gz", ".zip", ".tar.bz2", ".tgz", ".tar.xz", ".tar")
#: Longest file name accepted: 255 bytes is the NAME_MAX of every common filesystem, and the
#: download directory writes ``<name>.part``, so 5 bytes are kept for that suffix.
MAX_FILENAME: Final = 250
#: A PEP 503 normalized project name (PEP 508 names: letters, digits, ``-``; no leading or
#: trailing separator).
_NORMALIZED_RE: Final = re.compile(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$")

Kind = Literal["sdist", "wheel"]


def normalize(name: str) -> str:
    """PEP 503 normalized project name.

    >>> normalize("Typing_Extensions"), normalize("zope.interface")
    ('typing-extensions', 'zope-interface')
    """
    return str(canonicalize_name(name))


def is_normalized(name: str) -> bool:
    """True for a name that is its own PEP 503 normal form and safe as a path component.

    >>> is_normalized("six"), is_normalized("Six"), is_normalized("../x"), is_normalized("a--b")
    (True, False, False, False)
    """
    return bool(_NORMALIZED_RE.match(name)) and "--" not in name


@dataclass(frozen=True, slots=True)
class DistName:
    """What a distribution's file name says."""

    filename: str
    project: str  # normalized
    version: Version
    kind: Kind
    tags: frozenset[Tag]  # empty for an sdist

    @property
    def is_final(self) -> bool:
        """A final or post-release (no pre-, dev- or local segment)."""
        return not (self.version.is_prerelease or self.version.is_devrelease or self.version.local)


def check_plain_name(filename: str, project: str) -> None:
    """Refuse a name that could leave the directory it is written to or hide in it."""
    if not filename or filename in (".", ".."):
        raise UnsafeFileName(filename, project, "empty or a dot name")
    if "/" in filename or "\\" in filename or "\x00" in filename:
        raise UnsafeFileName(filename, project, "contains a path separator or NUL")
    if filename.startswith("."):
        raise UnsafeFileName(filename, project, "starts with a dot")
    if any(ord(c) < 0x20 or c == "\x7f" for c in filename):
        raise UnsafeFileName(filename, project, "contains a control character")
    if len(filename.encode("utf-8", "surrogatepass")) > MAX_FILENAME:
        raise UnsafeFileName(filename, project, f"longer than {MAX_FILENAME} bytes")


def _sdist_split(stem: str, project: str) -> str | None:
    """The version part of an sdist stem whose name part normalizes to ``project`` (legacy names
    may carry hyphens in the project part, so every split point is tried, longest name first)."""
    for i in range(len(stem) - 1, 0, -1):
        if stem[i] == "-" and normalize(stem[:i]) == project:
            return stem[i + 1:]
    return None


def parse_dist_filename(filename: str, project: str) -> DistName:
    """The distribution ``filename`` names, checked to belong to ``project``; UnsafeFileName otherwise.

    >>> d = parse_dist_filename("six-1.16.0-py2.py3-none-any.whl", "six")
    >>> d.kind, str(d.version), sorted(str(t) for t in d.tags)
    ('wheel', '1.16.0', ['py2-none-any', 'py3-none-any'])
    >>> parse_dist_filename("python-dateutil-2.8.2.tar.gz", "python-dateutil").kind
    'sdist'
    >>> parse_dist_filename("evil-1.0.tar.gz", "six")
    Traceback (most recent call last):
    ...
    importer.mirror.errors.UnsafeFileName: six: file name 'evil-1.0.tar.gz' refused: names project 'evil', not 'six'
    """
    check_plain_name(filename, project)
    if filename.endswith(".whl"):
        try:
            name, version, _build, tags = parse_wheel_filename(filename)
        except (InvalidWheelFilename, InvalidVersion) as e:
            raise UnsafeFileName(filename, project, f"not a valid wheel name ({e})") from None
        if normalize(str(name)) != project:
            raise UnsafeFileName(filename, project, f"names project {normalize(str(name))!r}, not {project!r}")
        return DistName(filename, project, version, "wheel", frozenset(tags))
    for ext in SDIST_EXTENSIONS:
        if filename.endswith(ext):
            stem = filename[: -len(ext)]
            text = _sdist_split(stem, project)
            if text is None:
                other = normalize(stem.rsplit("-", 1)[0]) if "-" in stem else stem
                raise UnsafeFileName(filename, project, f"names project {other!r}, not {project!r}")
            try:
                version = Version(text)
            except InvalidVersion:
                raise UnsafeFileName(filename, project, f"version {text!r} is not a PEP 440 version") from None
            return DistName(filename, project, version, "sdist", frozenset())
    raise UnsafeFileName(filename, project, "neither a wheel nor an sdist (" + ", ".join(SDIST_EXTENSIONS) + ")")


def guess_project(filename: str) -> str | None:
    """The normalized project a file name most likely belongs to (for archives imported without
    an index page: ``dpip-import auto``); None if it is no distribution name.

    >>> guess_project("Foo_Bar-1.0-py3-none-any.whl"), guess_project("python-dateutil-2.8.2.tar.gz")
    ('foo-bar', 'python-dateutil')
    """
    if filename.endswith(".whl"):
        try:
            return normalize(str(parse_wheel_filename(filename)[0]))
        except (InvalidWheelFilename, InvalidVersion):
            return None
    for ext in SDIST_EXTENSIONS:
        if filename.endswith(ext):
            stem = filename[: -len(ext)]
            # The version is the last hyphen-separated part that parses as a version.
            for i in range(len(stem) - 1, 0, -1):
                if stem[i] == "-":
                    try:
                        Version(stem[i + 1:])
                    except InvalidVersion:
                        continue
                    name = normalize(stem[:i])
                    return name if is_normalized(name) else None
            return None
    return None
