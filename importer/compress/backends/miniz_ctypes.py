"""C miniz (same bytes as Rust miniz_oxide, which maturin < 1.10 wrote wheels with) through ctypes.

The ``miniz`` PyPI package (1.0) ships miniz 3.0.2 (``mz_version()`` = "11.0.2") as a shared
library but wraps only one-shot ``mz_compress2``; we call its zlib-style streaming API directly:
``mz_deflateInit2(level, MZ_DEFLATED, -15, memLevel, strategy)`` then ``mz_deflate`` per piece.
miniz ignores memLevel, and its output does not depend on how the input is fed (tdefl waits for a
full 258-byte lookahead before matching). ctypes releases the GIL during each call.
"""

from __future__ import annotations

import ctypes
import importlib
import os
from collections.abc import Iterable, Iterator

from ..errors import CompressorUnavailable
from ..params import CompressorParams

#: C miniz 3.x and miniz_oxide produce identical deflate streams for the same level.
FAMILY = "miniz-3"

#: mz_deflate flush values (miniz.h): MZ_NO_FLUSH 0, MZ_SYNC_FLUSH 2, MZ_FINISH 4; return codes:
#: MZ_OK 0, MZ_STREAM_END 1, MZ_BUF_ERROR -5 ("no progress possible", not an error for us).
_NO_FLUSH, _SYNC_FLUSH, _FINISH = 0, 2, 4
_STREAM_END, _BUF_ERROR = 1, -5

#: MZ_DEFLATED, the only method; memLevel is ignored by miniz, pass zlib's default 8.
_DEFLATED, _MEM_LEVEL = 8, 8

#: Output buffer per call: 256 KiB holds any block tdefl emits at once (its own output buffer,
#: TDEFL_OUT_BUF_SIZE, is 85,196 bytes), so a flush never needs a second flush call.
_OUT_SIZE = 256 << 10

#: Levels: 6 is flate2's Compression::default(); miniz also has 10 ("uber"), which flate2 never passes.
LEVEL_ORDER = (6, 9, 1, 2, 3, 4, 5, 7, 8, 0)


class _MzStream(ctypes.Structure):
    """``mz_stream`` from miniz.h (field order and C types as declared there)."""

    _fields_ = [
        ("next_in", ctypes.c_void_p), ("avail_in", ctypes.c_uint), ("total_in", ctypes.c_ulong),
        ("next_out", ctypes.c_void_p), ("avail_out", ctypes.c_uint), ("total_out", ctypes.c_ulong),
        ("msg", ctypes.c_char_p), ("state", ctypes.c_void_p), ("zalloc", ctypes.c_void_p),
        ("zfree", ctypes.c_void_p), ("opaque", ctypes.c_void_p), ("data_type", ctypes.c_int),
        ("adler", ctypes.c_ulong), ("reserved", ctypes.c_ulong),
    ]


_LIB: ctypes.CDLL | None = None


def _library() -> ctypes.CDLL:
    global _LIB
    if _LIB is None:
        try:
            utils = importlib.import_module("miniz.utils")
        except ImportError as exc:
            raise CompressorUnavailable("miniz", f"the miniz package is not installed ({exc})") from None
        path = os.path.join(os.path.dirname(utils.__file__ or ""), "dependencies",
                            utils.get_dependency_filename())
        try:
            lib = ctypes.CDLL(path)
        except OSError as exc:
            raise CompressorUnavailable("miniz", f"cannot load {path}: {exc}") from None
        stream_p = ctypes.POINTER(_MzStream)
        lib.mz_version.restype = ctypes.c_char_p
        lib.mz_deflateInit2.argtypes = [stream_p] + [ctypes.c_int] * 5
        lib.mz_deflate.argtypes = [stream_p, ctypes.c_int]
        lib.mz_deflateEnd.argtypes = [stream_p]
        _LIB = lib
    return _LIB


class MinizBackend:
    """miniz's ``mz_deflate`` on a raw stream, optionally with a final sync flush."""

    name = "miniz"
    kind = "deflate"
    family = FAMILY
    feed_dependent = False
    spawns_process = False

    def probe(self) -> str:
        return "miniz " + bytes(_library().mz_version()).decode("ascii")

    def settings(self) -> tuple[CompressorParams, ...]:
        return tuple(CompressorParams(self.name, self.family, level, wbits=-15, sync_flush=sync)
                     for sync in (False, True) for level in LEVEL_ORDER)

    def candidates(self, head: bytes) -> tuple[CompressorParams, ...]:
        return self.settings()

    def encode(self, params: CompressorParams, pieces: Iterable[bytes]) -> Iterator[bytes]:
        lib = _library()
        stream = _MzStream()
        ref = ctypes.byref(stream)
        if lib.mz_deflateInit2(ref, params.level, _DEFLATED, params.wbits, _MEM_LEVEL, 0) != 0:
            raise CompressorUnavailable("miniz", f"mz_deflateInit2 refused {params.label}")
        out = ctypes.create_string_buffer(_OUT_SIZE)
        out_addr = ctypes.addressof(out)

        def run(flush: int) -> bytes:
            chunks = []
            while True:
                stream.next_out, stream.avail_out = out_addr, _OUT_SIZE
                status = lib.mz_deflate(ref, flush)
                if status < 0 and status != _BUF_ERROR:
                    raise RuntimeError(f"mz_deflate failed with status {status}")
                chunks.append(out.raw[: _OUT_SIZE - stream.avail_out])
                if status == _STREAM_END or status == _BUF_ERROR:
                    break
                if stream.avail_out and (flush != _FINISH) and not stream.avail_in:
                    break
                # Output space ran out: drain with NO_FLUSH so a sync flush is not emitted twice.
                if flush == _SYNC_FLUSH:
                    flush = _NO_FLUSH
            return b"".join(chunks)

        try:
            for piece in pieces:
                data = bytes(piece)
                if not data:
                    continue
                keep = ctypes.c_char_p(data)  # points into ``data``; no copy
                stream.next_in, stream.avail_in = ctypes.cast(keep, ctypes.c_void_p).value, len(data)
                if result := run(_NO_FLUSH):
                    yield result
            stream.next_in, stream.avail_in = None, 0
            if params.sync_flush:
                yield run(_SYNC_FLUSH)
            yield run(_FINISH)
        finally:
            lib.mz_deflateEnd(ref)
