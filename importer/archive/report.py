"""What one archive import reports: per member how it is stored, and the archive's totals."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..dag.cid import format_cid


@dataclass(frozen=True, slots=True)
class MemberReport:
    """How one member is stored: ``how`` is stored | replayed | verbatim | empty | nested."""

    index: int
    name: str
    size: int
    stored_size: int
    how: str
    params: str | None
    path: str | None
    note: str | None


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What ``dpip-import wheel|sdist|auto`` prints for one archive."""

    file: str
    format: str
    root: bytes
    tree: bytes
    sha256: str
    size: int
    members: int
    replayed_bytes: int
    verbatim_bytes: int
    producer: str | None
    outer: tuple[str, ...]
    member_reports: tuple[MemberReport, ...]
    seconds: float
    tree_tsize: int = 0
    nested: int = 0

    def summary(self) -> dict[str, Any]:
        return {
            "file": self.file, "root": format_cid(self.root), "tree": format_cid(self.tree),
            "sha256": self.sha256, "size": self.size, "format": self.format, "members": self.members,
            "replayed_bytes": self.replayed_bytes, "verbatim_bytes": self.verbatim_bytes,
            "producer": self.producer, "outer": list(self.outer), "seconds": round(self.seconds, 3),
            "nested": self.nested,
        }
