"""liblzma through the stdlib ``lzma`` module: the compressor of .tar.xz sdists.

An xz stream header is 6 magic bytes (fd 37 7a 58 5a 00) and 2 flag bytes, the second holding the
integrity check id in its low 4 bits; the preset (0-9, optionally EXTREME) must be searched. Only
single-threaded output is reproduced: ``xz -T0`` (the default since xz 5.6) splits the input into
blocks of 3 x the dictionary size and writes block sizes into the headers, which Python cannot do.
"""

from __future__ import annotations

import lzma
from collections.abc import Iterable, Iterator

from ..params import CompressorParams

#: liblzma 5.x (the family has kept its LZMA2 encoder output stable within a preset).
FAMILY = "liblzma-5"

_MAGIC = b"\xfd7zXZ\x00"

#: CHECK_CRC64 (id 4) is xz(1)'s and Python's default; the golden outputs use it.
DEFAULT_CHECK = lzma.CHECK_CRC64

#: Check ids liblzma can write: none, CRC32, CRC64, SHA-256.
CHECKS = (lzma.CHECK_NONE, lzma.CHECK_CRC32, lzma.CHECK_CRC64, lzma.CHECK_SHA256)

#: Presets in likelihood order: 6 is the default of xz(1) and Python, 9 is "-9".
PRESET_ORDER = (6, 9, 0, 1, 2, 3, 4, 5, 7, 8)


class XzBackend:
    """``lzma.LZMACompressor(FORMAT_XZ, check, preset[|EXTREME])``: feed-independent."""

    name = "xz"
    kind = "xz"
    family = FAMILY
    feed_dependent = False
    spawns_process = False

    def probe(self) -> str:
        return "liblzma (CPython lzma)"

    def settings(self) -> tuple[CompressorParams, ...]:
        return tuple(CompressorParams(self.name, self.family, preset, extreme=extreme, check=DEFAULT_CHECK)
                     for extreme in (False, True) for preset in PRESET_ORDER)

    def candidates(self, head: bytes) -> tuple[CompressorParams, ...]:
        if head[:6] != _MAGIC or len(head) < 8 or head[6] != 0:
            return ()
        check = head[7] & 0x0F
        if check not in CHECKS:
            return ()
        return tuple(CompressorParams(p.name, p.family, p.level, extreme=p.extreme, check=check)
                     for p in self.settings())

    def encode(self, params: CompressorParams, pieces: Iterable[bytes]) -> Iterator[bytes]:
        preset = params.level | (lzma.PRESET_EXTREME if params.extreme else 0)
        comp = lzma.LZMACompressor(format=lzma.FORMAT_XZ, check=params.check, preset=preset)
        for piece in pieces:
            if out := comp.compress(piece):
                yield out
        yield comp.flush()
