"""How a command argument names an archive: its root CID, its file name, or its sha256.

Every command that takes an archive (``fetch``, ``verify``, ``inspect``, ``delete``, and
``push``) resolves its argument here, against the store's archive index:

1. a CID (the root an import printed), which needs no index entry: a root from a CAR works too;
2. a file name recorded in the index (``requests-2.32.3-py3-none-any.whl``);
3. a sha256, as 64 hex digits or a prefix of at least :data:`MIN_SHA256_PREFIX` of them,
   optionally written ``sha256:HEX`` as pip writes hashes.

The three cannot be confused: a file name has a dot and an archive suffix, which no CID has,
and no string of 8 to 64 hex digits decodes as a CID of a supported codec and hash (a base16
CID is ``f`` and at least 70 more digits).

A name or sha256 that matches archives with different roots (the same file imported with
different settings, or a short prefix shared by two files) is an error listing them; a CID
always names exactly one root.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from ..dag.cid import format_cid, parse_cid
from ..errors import AmbiguousArchive, ArchiveNotFound, InvalidCid
from ..sinks.store import ArchiveRecord, BlockStore
from .output import ARCHIVE_SUFFIXES as OUTPUT_ARCHIVE_SUFFIXES

#: Shortest sha256 prefix accepted: 8 hex digits are 32 bits, so two archives of an index of
#: 10,000 share one by chance with probability about 10,000^2 / 2^33 = 1.2% (and are then
#: reported as ambiguous, never confused); git's short hashes start at 7 digits.
MIN_SHA256_PREFIX: Final = 8
_HEX: Final = re.compile(r"[0-9a-fA-F]+")
#: What an archive's file name ends with (the names ``fetch`` writes: a wheel or an sdist form); an
#: unknown name with one of these is reported as a name. From :mod:`.output`, which every command's
#: parser loads anyway: the archive modules (and dag_cbor, multiformats) stay off a push's start-up.
ARCHIVE_SUFFIXES: Final = OUTPUT_ARCHIVE_SUFFIXES

#: Help text for an argument that names an archive.
ARCHIVE_ARG_HELP: Final = (f"the archive: its root CID, its file name in the store's index, or its sha256 "
                           f"(hex, or a unique prefix of {MIN_SHA256_PREFIX}+ digits)")


@dataclass(frozen=True, slots=True)
class ArchiveMatch:
    """What an argument named: ``how`` (``name``, ``sha256`` or ``root``), the index rows, the root if one."""

    how: str
    records: tuple[ArchiveRecord, ...]
    root: bytes | None


def match_archives(store: BlockStore, text: str) -> ArchiveMatch:
    """The index rows ``text`` names (module docstring); ArchiveNotFound if it names nothing.

    For a CID, ``root`` is set whether or not the index has it; for a name or sha256, ``root``
    is set only when every matching row has the same root.
    """
    stripped = text.strip().removeprefix("/ipfs/")
    try:
        root = parse_cid(stripped)
    except InvalidCid as e:
        cid_error = e
    else:
        return ArchiveMatch("root", tuple(store.find_archives(root=root)), root)
    records = store.find_archives(name=stripped)
    if records:
        return _match("name", records)
    hex_text = stripped[len("sha256:"):] if stripped.lower().startswith("sha256:") else stripped
    if _HEX.fullmatch(hex_text) and MIN_SHA256_PREFIX <= len(hex_text) <= 64:
        records = store.find_archives(sha256_prefix=hex_text)
        if records:
            return _match("sha256", records)
    raise _not_found(stripped, hex_text, cid_error)


def _match(how: str, records: list[ArchiveRecord]) -> ArchiveMatch:
    roots = {r.root for r in records}
    return ArchiveMatch(how, tuple(records), roots.pop() if len(roots) == 1 else None)


def _not_found(text: str, hex_text: str, cid_error: InvalidCid) -> ArchiveNotFound:
    if text.lower().endswith(ARCHIVE_SUFFIXES):
        return ArchiveNotFound(text, "no archive of that name in the store's index (`dpip-import list` shows them)")
    if text.lower().startswith("sha256:") or _HEX.fullmatch(hex_text) and len(hex_text) <= 64:
        if len(hex_text) < MIN_SHA256_PREFIX:
            return ArchiveNotFound(text, f"a sha256 prefix needs at least {MIN_SHA256_PREFIX} hex digits")
        return ArchiveNotFound(text, "no archive in the store's index has a sha256 starting with it")
    return ArchiveNotFound(text, f"not a CID ({cid_error.reason}), nor a file name or sha256 in the store's index")


def resolve_archive(store: BlockStore, text: str) -> bytes:
    """The one archive root ``text`` names; AmbiguousArchive if it names several, ArchiveNotFound if none."""
    match = match_archives(store, text)
    if match.root is None:
        raise AmbiguousArchive(text, [(r.name, format_cid(r.root)) for r in match.records])
    return match.root
