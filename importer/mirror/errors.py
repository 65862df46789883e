"""Errors of the mirror (sync, index tree): each renders as one line naming what failed and where."""

from __future__ import annotations

from ..errors import ImporterError


class MirrorError(ImporterError):
    """Root of the mirror's errors."""


class UnsafeFileName(MirrorError, ValueError):
    """A file name from an index that the mirror refuses to write or list (separators, wrong project...)."""

    def __init__(self, filename: str, project: str, reason: str) -> None:
        super().__init__(f"{project}: file name {filename!r} refused: {reason}")
        self.filename = filename
        self.project = project
        self.reason = reason


class IndexReadError(MirrorError, OSError):
    """An index page that cannot be read or parsed (HTTP error, bad JSON, wrong content type)."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.reason = reason


class DownloadError(MirrorError, OSError):
    """A file that could not be downloaded as the index described it (size, sha256, HTTP)."""

    def __init__(self, filename: str, url: str, reason: str) -> None:
        super().__init__(f"{filename}: {reason} ({url})")
        self.filename = filename
        self.url = url
        self.reason = reason


class MirrorBusy(MirrorError):
    """Another process holds the mirror's lock on this store."""

    def __init__(self, store: str, holder: str) -> None:
        super().__init__(f"another sync is running on store {store} ({holder}); not starting a second one")
        self.store = store
        self.holder = holder


class MirrorStateError(MirrorError):
    """The mirror's state file cannot be opened, read or written."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"mirror state {path}: {reason}")
        self.path = path
        self.reason = reason
