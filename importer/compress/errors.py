"""Errors of the compressor registry: a compressor we must not trust, or a recipe entry we cannot read."""

from __future__ import annotations

from ..errors import ImporterError


class CompressorUnavailable(ImporterError, RuntimeError):
    """A compressor a recipe names cannot be used to rebuild here (missing, or failed its golden check).

    Rebuilding with it anyway could write an archive that differs from the original, so the caller
    must stop (an error is acceptable, a wrong archive never is).
    """

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"compressor {name!r} cannot be used to rebuild: {reason}")
        self.name = name
        self.reason = reason


class InvalidCompressorParams(ImporterError, ValueError):
    """A recipe's compressor entry that does not decode (unknown version, field or value)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"invalid compressor parameters: {reason}")
        self.reason = reason
