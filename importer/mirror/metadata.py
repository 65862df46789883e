"""Core metadata read from inside an imported archive: the file PEP 658 publishes, and its Requires-Python.

A wheel's ``<name>-<version>.dist-info/METADATA`` is already a file of the archive's UnixFS tree;
the index tree links that very file (same CID, no new block) as ``<wheel>.metadata``, with the
sha256 of its bytes in the pages. An sdist's ``PKG-INFO`` gives the Requires-Python of archives
imported without an index page. Reads go through the reader (every block checked) and are
capped at :data:`MAX_METADATA_BYTES`.
"""

from __future__ import annotations

import email.parser
import hashlib
from typing import Final

from ..archive.recipe import read_root
from ..dag.reader import Entry, iter_directory, iter_file, lookup
from ..errors import ImporterError
from ..layout import DagNode
from ..sinks.base import BlockSource
from .state import ArchiveFacts

#: A METADATA file is a few KB (long descriptions make some ~100 KB); 16 MiB bounds a hostile one.
MAX_METADATA_BYTES: Final = 16 * 1024 * 1024


def _read_small(source: BlockSource, cid: bytes) -> bytes | None:
    out = bytearray()
    for piece in iter_file(source, cid):
        out += piece
        if len(out) > MAX_METADATA_BYTES:
            return None
    return bytes(out)


def _requires_python(text: bytes) -> str | None:
    headers = email.parser.BytesHeaderParser().parsebytes(text)
    value = headers.get("Requires-Python")
    return " ".join(str(value).split()) or None if value is not None else None


def _metadata_entry(source: BlockSource, tree: bytes, filename: str) -> Entry | None:
    """The METADATA file of a wheel's tree: in the ``.dist-info`` directory its file name names,
    else in the only ``.dist-info`` directory there is."""
    stem = "-".join(filename[: -len(".whl")].split("-")[:2]) + ".dist-info"
    candidates = [e for e in iter_directory(source, tree) if e.name.endswith(".dist-info")]
    chosen = next((e for e in candidates if e.name == stem), None)
    if chosen is None and len(candidates) == 1:
        chosen = candidates[0]
    if chosen is None:
        return None
    try:
        return lookup(source, chosen.cid, "METADATA")
    except ImporterError:
        return None  # the .dist-info name is a file, not a directory


def _pkg_info_entry(source: BlockSource, tree: bytes) -> Entry | None:
    tops = list(iter_directory(source, tree))
    if len(tops) != 1:
        return None
    try:
        return lookup(source, tops[0].cid, "PKG-INFO")
    except ImporterError:
        return None


def read_archive_facts(source: BlockSource, root_cid: bytes, filename: str) -> ArchiveFacts:
    """What the index needs from the archive ``root_cid``: its METADATA file (wheels) and Requires-Python."""
    root = read_root(source, root_cid)
    wheel = filename.endswith(".whl")
    entry = _metadata_entry(source, root.tree, filename) if wheel else _pkg_info_entry(source, root.tree)
    if entry is None:
        return ArchiveFacts(root_cid, None, None, None)
    data = _read_small(source, entry.cid)
    if data is None:
        return ArchiveFacts(root_cid, None, None, None)
    requires = _requires_python(data)
    if not wheel:
        return ArchiveFacts(root_cid, None, None, requires)
    return ArchiveFacts(root_cid, DagNode(entry.cid, entry.tsize, len(data)), hashlib.sha256(data).hexdigest(),
                        requires)
