"""The mirror's own state: one SQLite file beside the block store (``<store>/mirror.sqlite3``).

The block store keeps blocks and the list of imported archives (name, root, sha256, size); what
an index says of a file beyond that is the mirror's business and lives here, so the store's
tables are never touched:

* ``files``: one row per file the mirror took from an index: its project, version, what the
  index said (sha256, size, upload time, requires-python, yanked and the reason, the core
  metadata hash), where it came from, and the archive root once imported. A row with a root is
  written only after the store recorded the archive, so a sync killed at any point leaves rows
  that are either complete or re-done by the next sync;
* ``archive_facts``: per archive root, what the index tree needs from inside it, computed once:
  the METADATA file (CID, sizes, sha256), the Requires-Python it declares, and with ``--plain``
  the archive as a plain UnixFS file;
* ``project_nodes``: per project, the digest of its page inputs and the directory node built from
  them, so an index rebuild redoes only projects whose files changed;
* ``index_roots``: every index tree built, newest last (the server's default, the root to pin).

SQLite in WAL mode with a busy timeout, like the store: readers (``serve``) run beside a writer.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

from ..layout import DagNode
from .errors import MirrorStateError

#: File name of the state database inside the store directory.
STATE_NAME: Final = "mirror.sqlite3"
#: Version of the tables below, kept in ``meta``.
SCHEMA_VERSION: Final = 1
#: As the store's: a writer waits this long for another's transaction (ms).
BUSY_TIMEOUT_MS: Final = 60_000

_SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    ("CREATE TABLE IF NOT EXISTS files ("
     " filename TEXT PRIMARY KEY, project TEXT NOT NULL, version TEXT NOT NULL, kind TEXT NOT NULL,"
     " sha256 TEXT NOT NULL, size INTEGER NOT NULL, upload_time TEXT, requires_python TEXT,"
     " yanked INTEGER NOT NULL, yanked_reason TEXT, core_metadata TEXT, url TEXT,"
     " root BLOB, synced_at REAL NOT NULL)"),
    "CREATE INDEX IF NOT EXISTS files_project ON files (project)",
    ("CREATE TABLE IF NOT EXISTS archive_facts ("
     " root BLOB PRIMARY KEY, metadata_cid BLOB, metadata_tsize INTEGER, metadata_size INTEGER,"
     " metadata_sha256 TEXT, requires_python TEXT,"
     " plain_cid BLOB, plain_tsize INTEGER, plain_size INTEGER)"),
    ("CREATE TABLE IF NOT EXISTS project_nodes ("
     " project TEXT PRIMARY KEY, digest BLOB NOT NULL, cid BLOB NOT NULL, tsize INTEGER NOT NULL,"
     " size INTEGER NOT NULL)"),
    ("CREATE TABLE IF NOT EXISTS index_roots ("
     " id INTEGER PRIMARY KEY, root BLOB NOT NULL, plain INTEGER NOT NULL, projects INTEGER NOT NULL,"
     " files INTEGER NOT NULL, built_at REAL NOT NULL)"),
)


@dataclass(frozen=True, slots=True)
class FileRecord:
    """A file as the index described it; ``root`` once its archive is in the store."""

    filename: str
    project: str
    version: str
    kind: str
    sha256: str
    size: int
    upload_time: str | None
    requires_python: str | None
    yanked: str | None  # None: not yanked; else the reason ("" when none was given)
    core_metadata: str | None
    url: str | None
    root: bytes | None
    synced_at: float


@dataclass(frozen=True, slots=True)
class ArchiveFacts:
    """What the index tree needs from inside one archive (see the module docstring)."""

    root: bytes
    metadata: DagNode | None
    metadata_sha256: str | None
    requires_python: str | None
    plain: DagNode | None = None


@dataclass(frozen=True, slots=True)
class IndexRoot:
    root: bytes
    plain: bool
    projects: int
    files: int
    built_at: float


def _node(cid: Any, tsize: Any, size: Any) -> DagNode | None:
    if cid is None:
        return None
    return DagNode(bytes(cid), int(tsize), int(size))


class MirrorState:
    """The state file of the mirror of one store; use one instance per thread."""

    def __init__(self, store_dir: str | os.PathLike[str]) -> None:
        self.path = Path(store_dir) / STATE_NAME
        try:
            Path(store_dir).mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            self._conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = NORMAL")
            self._migrate()
        except sqlite3.Error as e:
            raise MirrorStateError(str(self.path), str(e)) from None
        except OSError as e:
            raise MirrorStateError(str(self.path), e.strerror or str(e)) from None

    def _migrate(self) -> None:
        with self._write("create tables"):
            for statement in _SCHEMA:
                self._conn.execute(statement)
            row = self._conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is None:
                self._conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) > SCHEMA_VERSION:
                raise MirrorStateError(str(self.path), f"schema version {row[0]} is newer than this program's "
                                                       f"{SCHEMA_VERSION}: upgrade dpip-importer")

    class _Tx:
        def __init__(self, state: MirrorState, what: str) -> None:
            self.state, self.what = state, what

        def __enter__(self) -> None:
            try:
                self.state._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as e:
                raise MirrorStateError(str(self.state.path), f"cannot {self.what}: {e}") from None

        def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                     tb: TracebackType | None) -> None:
            conn = self.state._conn
            try:
                conn.execute("COMMIT" if exc_type is None else "ROLLBACK")
            except sqlite3.Error as e:
                raise MirrorStateError(str(self.state.path), f"cannot {self.what}: {e}") from None
            if isinstance(exc, sqlite3.Error):
                raise MirrorStateError(str(self.state.path), f"cannot {self.what}: {exc}") from None

    def _write(self, what: str) -> MirrorState._Tx:
        return MirrorState._Tx(self, what)

    def _read(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._conn.execute(sql, args).fetchall()
        except sqlite3.Error as e:
            raise MirrorStateError(str(self.path), f"cannot read: {e}") from None

    # -- files ------------------------------------------------------------------------------------

    _FILE_COLUMNS: Final = ("filename, project, version, kind, sha256, size, upload_time, requires_python, yanked, "
                            "yanked_reason, core_metadata, url, root, synced_at")

    @staticmethod
    def _file(row: tuple[Any, ...]) -> FileRecord:
        (filename, project, version, kind, sha256, size, upload_time, requires_python, yanked, reason, core, url,
         root, synced_at) = row
        return FileRecord(str(filename), str(project), str(version), str(kind), str(sha256), int(size),
                          upload_time, requires_python, (str(reason or "") if yanked else None),
                          core, url, bytes(root) if root is not None else None, float(synced_at))

    def files(self) -> list[FileRecord]:
        """Every file, by project then file name."""
        rows = self._read(f"SELECT {self._FILE_COLUMNS} FROM files ORDER BY project, filename")
        return [self._file(r) for r in rows]

    def get_file(self, filename: str) -> FileRecord | None:
        rows = self._read(f"SELECT {self._FILE_COLUMNS} FROM files WHERE filename = ?", (filename,))
        return self._file(rows[0]) if rows else None

    def record_file(self, record: FileRecord) -> None:
        """Insert or replace one file's row."""
        with self._write(f"record {record.filename}"):
            self._conn.execute(
                f"INSERT OR REPLACE INTO files ({self._FILE_COLUMNS}) VALUES ({', '.join('?' * 14)})",
                (record.filename, record.project, record.version, record.kind, record.sha256, record.size,
                 record.upload_time, record.requires_python, int(record.yanked is not None), record.yanked,
                 record.core_metadata, record.url, record.root, record.synced_at))

    # -- facts of archives ------------------------------------------------------------------------

    def archive_facts(self, root: bytes) -> ArchiveFacts | None:
        rows = self._read("SELECT metadata_cid, metadata_tsize, metadata_size, metadata_sha256, requires_python, "
                          "plain_cid, plain_tsize, plain_size FROM archive_facts WHERE root = ?", (root,))
        if not rows:
            return None
        mc, mt, ms, msha, rp, pc, pt, ps = rows[0]
        return ArchiveFacts(root, _node(mc, mt, ms), msha, rp, _node(pc, pt, ps))

    def record_archive_facts(self, facts: ArchiveFacts) -> None:
        m, p = facts.metadata, facts.plain
        with self._write("record archive facts"):
            self._conn.execute(
                "INSERT OR REPLACE INTO archive_facts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (facts.root, m.cid if m else None, m.tsize if m else None, m.size if m else None,
                 facts.metadata_sha256, facts.requires_python, p.cid if p else None, p.tsize if p else None,
                 p.size if p else None))

    # -- the index tree ----------------------------------------------------------------------------

    def project_node(self, project: str, digest: bytes) -> DagNode | None:
        """The directory built last time for ``project`` if its inputs had this digest."""
        rows = self._read("SELECT cid, tsize, size FROM project_nodes WHERE project = ? AND digest = ?",
                          (project, digest))
        return _node(*rows[0]) if rows else None

    def record_project_nodes(self, nodes: list[tuple[str, bytes, DagNode]]) -> None:
        with self._write("record project directories"):
            self._conn.executemany("INSERT OR REPLACE INTO project_nodes VALUES (?, ?, ?, ?, ?)",
                                   [(p, d, n.cid, n.tsize, n.size) for p, d, n in nodes])

    def record_index_root(self, index: IndexRoot) -> None:
        with self._write("record the index root"):
            self._conn.execute("INSERT INTO index_roots (root, plain, projects, files, built_at) VALUES (?, ?, ?, ?, ?)",
                               (index.root, int(index.plain), index.projects, index.files, index.built_at))

    def latest_index(self) -> IndexRoot | None:
        rows = self._read("SELECT root, plain, projects, files, built_at FROM index_roots ORDER BY id DESC LIMIT 1")
        if not rows:
            return None
        root, plain, projects, files, built_at = rows[0]
        return IndexRoot(bytes(root), bool(plain), int(projects), int(files), float(built_at))

    def iter_index_roots(self) -> Iterator[IndexRoot]:
        for root, plain, projects, files, built_at in self._read(
                "SELECT root, plain, projects, files, built_at FROM index_roots ORDER BY id"):
            yield IndexRoot(bytes(root), bool(plain), int(projects), int(files), float(built_at))

    # -- lifetime ----------------------------------------------------------------------------------

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
