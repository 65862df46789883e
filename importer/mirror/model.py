"""The index model: a project page and its files, everything PEP 503/691/592/658/700/714 says of a file.

One model, two renderings (:mod:`.render`), as bandersnatch does. A :class:`FileEntry` carries
what the upstream index said (sha256, size, upload time, requires-python, yanked and its reason)
and what the mirror adds (the archive's root CID, its core metadata file and, with ``--plain``,
the archive as a plain UnixFS file). Page JSON written by :mod:`.render` parses back into the same
entries (:func:`entry_from_json`), which is how the server reads an index tree it did not build.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

#: The Simple API version the pages declare: 1.1 adds PEP 700's ``versions``, ``size`` and
#: ``upload-time``.
API_VERSION: Final = "1.1"
#: PEP 691 reserves keys that start with an underscore for the index's private use; the mirror's
#: own facts about a file live under these.
KEY_ROOT: Final = "_dpip-root"
KEY_METADATA_CID: Final = "_dpip-metadata"
KEY_PLAIN: Final = "_dpip-plain"


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One distribution file of a project page.

    ``yanked``: None when not yanked, else the reason (``""`` when none was given; PEP 592).
    ``core_metadata``: the sha256 (hex) of the wheel's METADATA file when it is published beside
    the wheel as ``<filename>.metadata`` (PEP 658/714), ``metadata_cid`` that file's CID; ``plain_cid``
    the archive as a plain UnixFS file (``--plain``); CIDs as text.
    """

    filename: str
    sha256: str
    size: int
    upload_time: str | None = None
    requires_python: str | None = None
    yanked: str | None = None
    core_metadata: str | None = None
    root: str | None = None
    metadata_cid: str | None = None
    plain_cid: str | None = None


@dataclass(frozen=True, slots=True)
class ProjectPage:
    """A project (normalized name), its files sorted by file name and its versions (PEP 700)."""

    name: str
    files: tuple[FileEntry, ...]
    versions: tuple[str, ...]


def make_page(name: str, files: Sequence[FileEntry], versions: Sequence[str]) -> ProjectPage:
    """A page in canonical order (files by name, versions as given, deduplicated), so that the same
    files always render to the same bytes."""
    return ProjectPage(name, tuple(sorted(files, key=lambda f: f.filename)), tuple(dict.fromkeys(versions)))


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def entry_from_json(data: dict[str, Any]) -> FileEntry:
    """A file entry of a PEP 691 page (one written by :mod:`.render`, or any index's); KeyError,
    TypeError or ValueError if a required key is missing or mistyped."""
    filename = data["filename"]
    sha256 = data["hashes"]["sha256"]
    if not isinstance(filename, str) or not isinstance(sha256, str):
        raise TypeError("filename and hashes.sha256 must be strings")
    yanked = data.get("yanked", False)
    reason = None if yanked is False or yanked is None else ("" if yanked is True else str(yanked))
    metadata = data.get("core-metadata", data.get("dist-info-metadata"))
    core = metadata.get("sha256") if isinstance(metadata, dict) else None
    size = data.get("size", -1)
    return FileEntry(
        filename=filename, sha256=sha256.lower(), size=int(size) if isinstance(size, int) else -1,
        upload_time=_text(data.get("upload-time")), requires_python=_text(data.get("requires-python")),
        yanked=reason, core_metadata=_text(core), root=_text(data.get(KEY_ROOT)),
        metadata_cid=_text(data.get(KEY_METADATA_CID)), plain_cid=_text(data.get(KEY_PLAIN)),
    )
