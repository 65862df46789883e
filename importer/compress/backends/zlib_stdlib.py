"""CPython's ``zlib`` module as a raw-deflate backend: what ``zipfile``, ``gzip`` and ``tarfile`` write with."""

from __future__ import annotations

import functools
import zlib
from collections.abc import Iterable, Iterator

from ..params import CompressorParams

#: madler zlib's deflate has produced the same bytes for given (level, memLevel, strategy) since
#: 1.2.0.4 (Google archive-patcher's fingerprint corpus, 2016); zlib-ng and other forks do not.
FAMILY = "madler-zlib"

#: Raw deflate with a 32 KiB (2 ** 15) window, as zip members and gzip bodies carry it.
RAW_WBITS = -15

#: Strategies other than the default that zlib users pick, tried at the levels where they occur:
#: (strategy, level). 1 = Z_FILTERED, 2 = Z_HUFFMAN_ONLY, 3 = Z_RLE, 4 = Z_FIXED.
_OTHER_STRATEGIES = ((1, 6), (1, 9), (2, 6), (3, 6), (4, 6), (4, 9))

#: Levels in the order they occur in real archives: 6 is Z_DEFAULT_COMPRESSION (zipfile), 9 is
#: what tarfile/gzip use, then the rest. Level 0 is left out: zlib >= 1.2.11 sizes stored blocks
#: from each call's avail_in/avail_out (deflate_stored copies straight through), so its output
#: depends on the caller's buffers, not only on the settings; such members stay verbatim.
LEVEL_ORDER = (6, 9, 1, 5, 4, 3, 2, 7, 8)


class ZlibBackend:
    """``zlib.compressobj(level, DEFLATED, -15, memLevel, strategy)``, fed as it comes."""

    name = "zlib"
    kind = "deflate"
    family = FAMILY
    feed_dependent = False
    spawns_process = False

    def probe(self) -> str:
        return zlib.ZLIB_RUNTIME_VERSION

    def settings(self) -> tuple[CompressorParams, ...]:
        return _settings(self.name, self.family)

    def candidates(self, head: bytes) -> tuple[CompressorParams, ...]:
        return self.settings()

    def encode(self, params: CompressorParams, pieces: Iterable[bytes]) -> Iterator[bytes]:
        comp = zlib.compressobj(params.level, zlib.DEFLATED, params.wbits, params.mem_level, params.strategy)
        for piece in pieces:
            if out := comp.compress(piece):
                yield out
        if params.sync_flush:
            yield comp.flush(zlib.Z_SYNC_FLUSH)
        yield comp.flush(zlib.Z_FINISH)


@functools.cache
def _settings(name: str, family: str) -> tuple[CompressorParams, ...]:
    """Every setting, built once: each search lists the candidates, and building them costs ~0.1 ms."""
    out: list[CompressorParams] = []
    # memLevel 8 is zlib's default (DEF_MEM_LEVEL); 9 is what "maximum memory" callers pass.
    for sync in (False, True):
        for mem_level in (8, 9):
            for level in LEVEL_ORDER:
                out.append(CompressorParams(name, family, level, mem_level=mem_level, wbits=RAW_WBITS,
                                            sync_flush=sync))
        for strategy, level in _OTHER_STRATEGIES:
            out.append(CompressorParams(name, family, level, mem_level=8, strategy=strategy, wbits=RAW_WBITS,
                                        sync_flush=sync))
    return tuple(out)
