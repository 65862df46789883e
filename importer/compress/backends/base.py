"""The Backend protocol: one compressor implementation that can list its settings and compress with them."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol

from ..params import CompressorParams


class Backend(Protocol):
    """A compressor the registry can search with and rebuild with.

    ``encode`` is a generator so that a search can stop at the first differing byte and close it
    (a subprocess backend kills its child then).
    """

    #: The ``CompressorParams.name`` this backend serves.
    name: str
    #: The stream kind it produces ("deflate", "bz2" or "xz").
    kind: str
    #: The implementation generation its golden outputs were derived from (``CompressorParams.family``).
    family: str
    #: True when the output depends on how the input is split between calls (zlib-ng); the registry
    #: then re-cuts the input as ``feed``/``feed_size`` say before calling ``encode``.
    feed_dependent: bool
    #: True when each attempt starts a process (GNU gzip): the search then remembers its attempts
    #: for the rest of the process (see ``memo.py``), since a process start alone costs ~0.6 ms.
    spawns_process: bool

    def probe(self) -> str:
        """Return the runtime's version text, or raise ``CompressorUnavailable`` if it is missing."""
        ...

    def settings(self) -> tuple[CompressorParams, ...]:
        """Every setting the registry may use, most common first; each one has a golden output."""
        ...

    def candidates(self, head: bytes) -> tuple[CompressorParams, ...]:
        """The settings that can produce a stream starting with ``head`` (its first bytes), in order."""
        ...

    def encode(self, params: CompressorParams, pieces: Iterable[bytes]) -> Iterator[bytes]:
        """Compress ``pieces`` (already cut as the params say) and yield the output in pieces."""
        ...
