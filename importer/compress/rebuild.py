"""Recompress a member's content with recorded params, refusing any compressor that failed its golden check."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from .golden import feed_for, require_usable
from .params import CompressorParams


def recompress(params: CompressorParams, pieces: Iterable[bytes]) -> Iterator[bytes]:
    """Yield the compressed stream ``params`` produce from the content ``pieces``.

    Checks the backend first (raises ``CompressorUnavailable`` before any output if it is missing,
    failed its golden check, is of another family, or the setting has no golden output), then
    streams: memory is bounded by the backend's window, not by the member size. zlib, bz2, lzma
    and ctypes (miniz) release the GIL while compressing, so callers can run members in threads.
    """
    backend = require_usable(params)
    return backend.encode(params, feed_for(backend, params, pieces))
