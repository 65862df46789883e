"""``dpip pin``: import distribution files that are already on disk (pip's cache, a pip download) into the mirror.

Each file must be named as a distribution (its project is read from the name, which is checked
like a name from an index). A file the store already holds with the same sha256 is skipped; the
others are imported and recorded in the store's archive list and in the mirror state (with no
upload facts: there was no index page), under the sync lock. The index tree is rebuilt at the end.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..archive.importer import ArchiveImporter
from ..dag.cid import format_cid
from ..errors import ImporterError
from ..profiles import resolve_settings
from ..sinks.store import ArchiveRecord, BlockStore
from .download import sha256_file
from .errors import UnsafeFileName
from .lock import SyncLock
from .names import guess_project, parse_dist_filename
from .state import FileRecord, MirrorState
from .tree import build_store_index


@dataclass(slots=True)
class PinReport:
    imported: int = 0
    already: int = 0
    failed: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    index: str = ""


def pin_files(store_dir: Path, files: Mapping[str, Path]) -> PinReport:
    """Import ``files`` (file name -> path) into the store's mirror; see the module docstring."""
    report = PinReport()
    settings = resolve_settings()
    with SyncLock(store_dir):
        with BlockStore(store_dir) as store, MirrorState(store_dir) as state:
            held = {(r.name, r.sha256.hex()) for r in store.iter_archives()}
            for name, path in sorted(files.items()):
                project = guess_project(name)
                try:
                    dist = parse_dist_filename(name, project or "?")
                except UnsafeFileName as e:
                    report.failed.append(name)
                    report.lines.append(f"  skipped {name}: {e.reason}")
                    continue
                sha256, _ = sha256_file(path)
                if (name, sha256) in held:
                    report.already += 1
                    continue
                try:
                    imported = ArchiveImporter(settings, store).import_file(str(path))
                except ImporterError as e:
                    report.failed.append(name)
                    report.lines.append(f"  failed {name}: {e}")
                    continue
                store.record_archive(ArchiveRecord(name, imported.root, bytes.fromhex(imported.sha256),
                                                   imported.size, time.time()))
                state.record_file(FileRecord(name, dist.project, str(dist.version), dist.kind, imported.sha256,
                                             imported.size, None, None, None, None, None, imported.root, time.time()))
                report.imported += 1
                report.lines.append(f"  pinned {format_cid(imported.root)} {name}")
        report.index = format_cid(build_store_index(str(store_dir)).root)
    return report
