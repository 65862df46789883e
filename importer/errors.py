"""The importer's error hierarchy: every failure a user can cause is one of these.

Each error carries the fields a caller needs to react (path, member, offset, CID) and renders as
one line; the CLI prints that line and exits non-zero, tracebacks only with ``--debug``.
"""

from __future__ import annotations


class ImporterError(Exception):
    """Root of every error the importer raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InputError(ImporterError, OSError):
    """A path given to ``add`` cannot be imported (missing, unreadable, FIFO, device...)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class InvalidChunkerSpec(ImporterError, ValueError):
    """A ``--chunker`` string that no chunker accepts; ``reason`` uses Kubo's wording."""

    def __init__(self, spec: str, reason: str) -> None:
        super().__init__(f"invalid chunker {spec!r}: {reason}")
        self.spec = spec
        self.reason = reason


class InvalidOption(ImporterError, ValueError):
    """A combination of options that Kubo rejects (e.g. ``--raw-leaves`` with ``--preserve-mode``)."""


class InvalidCid(ImporterError, ValueError):
    """A string or byte sequence that is not a CID this importer understands."""

    def __init__(self, text: str, reason: str) -> None:
        super().__init__(f"invalid CID {text!r}: {reason}")
        self.text = text
        self.reason = reason


class InvalidBlock(ImporterError, ValueError):
    """Block bytes that do not decode as the codec their CID names."""

    def __init__(self, cid: str, reason: str, offset: int | None = None) -> None:
        where = f" at byte {offset}" if offset is not None else ""
        super().__init__(f"block {cid}: {reason}{where}")
        self.cid = cid
        self.reason = reason
        self.offset = offset


class BlockNotFound(ImporterError, KeyError):
    """A CID that the block source does not hold."""

    def __init__(self, cid: str, where: str) -> None:
        super().__init__(f"block {cid} not found in {where}")
        self.cid = cid
        self.where = where


class BlockCorrupt(ImporterError, ValueError):
    """A stored block whose bytes do not hash to its CID: the store is damaged."""

    def __init__(self, cid: str, where: str, actual: str) -> None:
        super().__init__(f"block {cid} in {where} is corrupt: its bytes hash to {actual}")
        self.cid = cid
        self.where = where
        self.actual = actual


class InvalidCar(ImporterError, ValueError):
    """A CAR file that does not parse; ``offset`` is the byte where reading failed."""

    def __init__(self, path: str, reason: str, offset: int) -> None:
        super().__init__(f"{path}: invalid CAR at byte {offset}: {reason}")
        self.path = path
        self.reason = reason
        self.offset = offset


class StoreError(ImporterError):
    """The embedded block store cannot be opened or written."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"store {path}: {reason}")
        self.path = path
        self.reason = reason


class InvalidArchive(ImporterError, ValueError):
    """An archive that cannot be imported; names the file, the member and the byte offset."""

    def __init__(self, archive: str, reason: str, member: str | None = None, offset: int | None = None) -> None:
        parts = [archive]
        if member is not None:
            parts.append(f"member {member!r}")
        if offset is not None:
            parts.append(f"offset {offset}")
        super().__init__(f"{': '.join(parts)}: {reason}")
        self.archive = archive
        self.reason = reason
        self.member = member
        self.offset = offset


class LimitExceeded(InvalidArchive):
    """An archive refused because it passes an import limit; ``limit`` names the flag and its value
    (``--max-ratio 100``...), so a caller can tell a bomb from a broken archive."""

    def __init__(self, archive: str, reason: str, member: str | None = None, offset: int | None = None, *,
                 limit: str) -> None:
        super().__init__(archive, reason, member, offset)
        self.limit = limit


class RecipeMismatch(ImporterError, ValueError):
    """A rebuilt archive differs from the one recorded; names the first differing offset."""

    def __init__(self, archive: str, reason: str, offset: int | None = None) -> None:
        where = f" (first difference at byte {offset})" if offset is not None else ""
        super().__init__(f"{archive}: rebuild does not match: {reason}{where}")
        self.archive = archive
        self.reason = reason
        self.offset = offset


class OversizeBlock(ImporterError, ValueError):
    """A block larger than the bound every IPFS transport accepts (``importer.sinks.guard``)."""

    def __init__(self, cid: str, size: int, limit: int) -> None:
        super().__init__(f"block {cid} is {size:,d} bytes, over the {limit:,d}-byte block limit")
        self.cid = cid
        self.size = size
        self.limit = limit


class OutputError(ImporterError, OSError):
    """A place to write a result that is refused: a name from data that is no safe file name, an
    existing file without ``--force``, a directory where a file must go."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class RebuildLimit(ImporterError, ValueError):
    """A root whose rebuild would pass a bound: its declared sizes, nesting depth or total work,
    or output beyond what it declared; ``root`` is the CID of the archive (or nested archive)."""

    def __init__(self, root: str, reason: str) -> None:
        super().__init__(f"archive {root}: {reason}")
        self.root = root
        self.reason = reason


class Terminated(BaseException):
    """SIGTERM or SIGHUP, raised in the main thread by the CLI's handler so that every ``finally``
    runs (part files removed) before the process exits; a BaseException, as KeyboardInterrupt
    is, so that no ``except Exception`` swallows it."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"terminated by signal {signum}")
        self.signum = signum


# -- naming an archive of the store's index (importer.cli.lookup) -----------------------------

class ArchiveNotFound(ImporterError, LookupError):
    """An argument that names no archive: not a CID, and no file name or sha256 of the index matches."""

    def __init__(self, text: str, reason: str) -> None:
        super().__init__(f"{text!r}: {reason}")
        self.text = text
        self.reason = reason


class AmbiguousArchive(ImporterError, LookupError):
    """An argument that matches several archives; ``candidates`` are ``(file name, root CID)`` pairs."""

    def __init__(self, text: str, candidates: list[tuple[str, str]]) -> None:
        listed = ", ".join(f"{name} ({root})" for name, root in candidates)
        super().__init__(f"{text!r} matches {len(candidates)} archives: {listed}; name one by its root CID")
        self.text = text
        self.candidates = candidates


# -- IPFS nodes and gateways (importer.sinks.node, importer.sinks.gateway, importer.sinks.remote) --

class RemoteError(ImporterError):
    """A node or gateway failed us: unreachable, too slow, refused a call, or sent bad data.

    ``source`` names it as the user gave it (``node /ip4/127.0.0.1/tcp/5001``, ``gateway
    http://...``); ``cid`` is the block or DAG concerned, when there is one.
    """

    def __init__(self, source: str, reason: str, cid: str | None = None) -> None:
        about = f"{cid}: " if cid else ""
        super().__init__(f"{source}: {about}{reason}")
        self.source = source
        self.reason = reason
        self.cid = cid


class RemoteDataError(RemoteError, ValueError):
    """A node or gateway sent data that fails verification: a block that does not hash to its CID,
    a truncated CAR, a CAR with blocks outside the DAG asked for or without some of its blocks."""
