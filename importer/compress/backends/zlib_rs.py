"""zlib-rs (the Rust zlib that maturin >= 1.10 writes wheels with) through the ``zlib-rs`` PyPI binding.

maturin writes members through the Rust ``zip`` crate, whose deflate writer is ``flate2`` on the
zlib-rs backend. Unlike madler zlib, zlib-rs output depends on how the input is split between
``deflate`` calls, so the params record the feed: 8 KiB pieces (``std::io::copy``'s buffer, 8 * 1024)
for copied files, the whole buffer for small generated files, one line per call for files written
line by line (RECORD). ``flate2``'s writer flushes with ``Z_SYNC_FLUSH`` before ``Z_FINISH``, which
is why an empty member comes out as 7 bytes (00 00 00 ff ff, then 03 00).

Known gap: ``flate2`` gives each ``deflate`` call a 32 KiB output buffer; when one call would emit
more than that, zlib-rs consumes only part of the 8 KiB piece and the next call starts mid-piece.
The binding (0.1.2) always passes an output buffer large enough for everything, so those streams
(large binaries) cannot be replayed with it; they are kept verbatim by the caller.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from ..errors import CompressorUnavailable
from ..params import CompressorParams

#: The zlib-rs generation our golden outputs come from (binding 0.1.2 embeds zlib-rs 0.6.2).
FAMILY = "zlib-rs-0.6"

#: ``std::io::copy``'s stack buffer: Rust's DEFAULT_BUF_SIZE, 8 * 1024 bytes.
COPY_FEED = 8 * 1024

#: The binding ignores memLevel and always uses zlib's default, DEF_MEM_LEVEL = 8 (as flate2 does).
MEM_LEVEL = 8

#: Levels: 6 is flate2's Compression::default() and maturin's default; the rest for --compression-level.
LEVEL_ORDER = (6, 9, 1, 2, 3, 4, 5, 7, 8)


def _module() -> Any:
    try:
        import zlib_rs  # type: ignore[import-untyped, unused-ignore]
    except ImportError as exc:
        raise CompressorUnavailable("zlib-rs", f"the zlib-rs binding is not installed ({exc})") from None
    return zlib_rs


class ZlibRsBackend:
    """``zlib_rs.compressobj(level, 8, -15)`` fed in the recorded pattern, optionally sync-flushed."""

    name = "zlib-rs"
    kind = "deflate"
    family = FAMILY
    feed_dependent = True

    def probe(self) -> str:
        return str(_module().ZLIB_RUNTIME_VERSION)

    def settings(self) -> tuple[CompressorParams, ...]:
        out: list[CompressorParams] = []
        for level in LEVEL_ORDER:
            # (feed_size, feed_lines, sync_flush), most likely first: copied files, generated
            # files written whole, RECORD written line by line without the final sync flush.
            for feed, lines, sync in ((COPY_FEED, False, True), (0, False, True), (0, True, False),
                                      (0, True, True), (COPY_FEED, False, False), (0, False, False)):
                out.append(CompressorParams(self.name, self.family, level, mem_level=MEM_LEVEL, wbits=-15,
                                            feed_size=feed, feed_lines=lines, sync_flush=sync))
        return tuple(out)

    def candidates(self, head: bytes) -> tuple[CompressorParams, ...]:
        return self.settings()

    def encode(self, params: CompressorParams, pieces: Iterable[bytes]) -> Iterator[bytes]:
        mod = _module()
        comp = mod.compressobj(params.level, 8, params.wbits, MEM_LEVEL, 0)
        for piece in pieces:
            if out := comp.compress(bytes(piece)):
                yield out
        if params.sync_flush:
            yield comp.flush(mod.Z_SYNC_FLUSH)
        yield comp.flush(mod.Z_FINISH)
