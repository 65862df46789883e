"""zlib-ng through ctypes, driven exactly as Rust ``flate2``'s writer drives it: maturin >= 1.10 wheels.

maturin >= 1.10 writes members with the ``zip`` crate on ``flate2``'s zlib-rs backend. zlib-rs is
a port of zlib-ng, and on real maturin wheels (jiter 0.19.0's 733 kB extension module, for one)
zlib-ng 2.3 reproduces the stream where the zlib-rs 0.6.2 binding diverges after ~54 kB, so this
backend is the one tried first for those producers. zlib-ng's output depends on how the input is
split between ``deflate`` calls and on the output space of each call, so it replays ``flate2``'s
``zio::Writer``:

* ``write(piece)``: empty the 32 KiB output buffer, call ``deflate(NO_FLUSH)`` with the rest of
  the piece and 32 KiB of output space; ``write_all`` repeats until the piece is consumed;
* ``flush()`` (the optional final sync flush): one ``deflate(SYNC_FLUSH)`` into what is left of
  the buffer after the last write, then ``deflate(NO_FLUSH)`` with a fresh buffer until no output;
* ``finish()``: ``deflate(FINISH)`` with a fresh buffer until no more output.

The pieces are cut by the registry as the params say (8 KiB ``io::copy`` pieces for files, the
whole buffer for generated files, ``write!`` fields for RECORD). The ``zlib-rs`` PyPI binding
(0.1.2, zlib-rs 0.6.2) was tried first and dropped: it ignores memLevel and strategy, cannot
limit the output space per call, and its streams diverge from real maturin wheels (jiter's
extension module after 54,185 bytes) where this backend reproduces them whole. The ``zlib-ng`` PyPI package (1.1.0) links
zlib-ng 2.3.3 into its extension module and exports the native ``zng_*`` API, which we call.
"""

from __future__ import annotations

import ctypes
import importlib.util
from collections.abc import Iterable, Iterator

from ..errors import CompressorUnavailable
from ..params import CompressorParams

#: The zlib-ng generation the golden outputs come from (PyPI zlib-ng 1.1.0 = zlib-ng 2.3.3).
FAMILY = "zlib-ng-2.3"

#: ``flate2::zio::Writer`` allocates its output buffer with ``Vec::with_capacity(32 * 1024)``.
FLATE2_OUT_SIZE = 32 * 1024

#: ``std::io::copy``'s stack buffer for readers without their own buffer: 8 * 1024 bytes.
COPY_FEED = 8 * 1024

#: flate2 calls deflateInit2 with memLevel 8 (zlib's DEF_MEM_LEVEL) and the default strategy.
MEM_LEVEL = 8

#: deflate flush values and return codes (zlib.h): Z_NO_FLUSH 0, Z_SYNC_FLUSH 2, Z_FINISH 4;
#: Z_STREAM_END 1, Z_BUF_ERROR -5 (no progress possible: not an error here).
_NO_FLUSH, _SYNC_FLUSH, _FINISH = 0, 2, 4
_STREAM_END, _BUF_ERROR = 1, -5

#: Levels: 6 is flate2's Compression::default() and maturin's default.
LEVEL_ORDER = (6, 9, 1, 2, 3, 4, 5, 7, 8)


class _ZngStream(ctypes.Structure):
    """``zng_stream`` from zlib-ng.h (native API: sizes are size_t, adler is uint32_t)."""

    _fields_ = [
        ("next_in", ctypes.c_void_p), ("avail_in", ctypes.c_uint32), ("total_in", ctypes.c_size_t),
        ("next_out", ctypes.c_void_p), ("avail_out", ctypes.c_uint32), ("total_out", ctypes.c_size_t),
        ("msg", ctypes.c_char_p), ("state", ctypes.c_void_p), ("zalloc", ctypes.c_void_p),
        ("zfree", ctypes.c_void_p), ("opaque", ctypes.c_void_p), ("data_type", ctypes.c_int),
        ("adler", ctypes.c_uint32), ("reserved", ctypes.c_ulong),
    ]


_LIB: ctypes.CDLL | None = None


def _library() -> ctypes.CDLL:
    global _LIB
    if _LIB is None:
        spec = importlib.util.find_spec("zlib_ng.zlib_ng") if importlib.util.find_spec("zlib_ng") else None
        if spec is None or spec.origin is None:
            raise CompressorUnavailable("zlib-ng", "the zlib-ng package is not installed")
        try:
            lib = ctypes.CDLL(spec.origin)
            stream_p = ctypes.POINTER(_ZngStream)
            lib.zlibng_version.restype = ctypes.c_char_p
            lib.zng_deflateInit2.argtypes = [stream_p] + [ctypes.c_int] * 5
            lib.zng_deflate.argtypes = [stream_p, ctypes.c_int]
            lib.zng_deflateEnd.argtypes = [stream_p]
        except (OSError, AttributeError) as exc:
            raise CompressorUnavailable("zlib-ng", f"cannot use {spec.origin}: {exc}") from None
        _LIB = lib
    return _LIB


class ZlibNgBackend:
    """``zng_deflate`` on a raw stream, fed and flushed as ``flate2``'s writer does."""

    name = "zlib-ng"
    kind = "deflate"
    family = FAMILY
    feed_dependent = True

    def probe(self) -> str:
        return "zlib-ng " + bytes(_library().zlibng_version()).decode("ascii")

    def settings(self) -> tuple[CompressorParams, ...]:
        out: list[CompressorParams] = []
        for level in LEVEL_ORDER:
            # (feed, sync_flush), most likely first: copied files, generated files written whole,
            # RECORD written field by field (no sync flush: the zip is finished right after).
            for feed, sync in (("fixed", True), ("whole", True), ("record", False), ("lines", False),
                               ("fixed", False), ("whole", False), ("record", True), ("lines", True)):
                out.append(CompressorParams(self.name, self.family, level, mem_level=MEM_LEVEL, wbits=-15,
                                            feed=feed, feed_size=COPY_FEED if feed == "fixed" else 0,
                                            out_size=FLATE2_OUT_SIZE, sync_flush=sync))
        return tuple(out)

    def candidates(self, head: bytes) -> tuple[CompressorParams, ...]:
        return self.settings()

    def encode(self, params: CompressorParams, pieces: Iterable[bytes]) -> Iterator[bytes]:
        lib = _library()
        stream = _ZngStream()
        ref = ctypes.byref(stream)
        if lib.zng_deflateInit2(ref, params.level, 8, params.wbits, params.mem_level, 0) != 0:
            raise CompressorUnavailable("zlib-ng", f"zng_deflateInit2 refused {params.label}")
        size = params.out_size or FLATE2_OUT_SIZE
        out = ctypes.create_string_buffer(size)
        out_addr = ctypes.addressof(out)

        def call(flush: int, space: int, offset: int = 0) -> tuple[int, bytes]:
            stream.next_out, stream.avail_out = out_addr + offset, space
            status = lib.zng_deflate(ref, flush)
            if status < 0 and status != _BUF_ERROR:
                raise RuntimeError(f"zng_deflate failed with status {status}")
            return status, out.raw[offset : offset + space - stream.avail_out]

        try:
            pending = 0  # bytes of the last write's output still in flate2's buffer (not dumped)
            for piece in pieces:
                data = bytes(piece)
                keep = ctypes.c_char_p(data)  # points into ``data``; no copy
                base = ctypes.cast(keep, ctypes.c_void_p).value or 0
                done = 0
                while done < len(data):  # write_all: each write dumps the buffer first
                    stream.next_in, stream.avail_in = base + done, len(data) - done
                    _, produced = call(_NO_FLUSH, size)
                    done = len(data) - stream.avail_in
                    pending = len(produced)
                    if produced:
                        yield produced
            stream.next_in, stream.avail_in = None, 0
            if params.sync_flush:
                # flush(): SYNC into what is left of the buffer, then drain with NO_FLUSH.
                _, produced = call(_SYNC_FLUSH, size - pending, pending)
                if produced:
                    yield produced
                while True:
                    _, produced = call(_NO_FLUSH, size)
                    if not produced:
                        break
                    yield produced
            while True:  # finish(): FINISH with a dumped buffer until nothing more comes out
                status, produced = call(_FINISH, size)
                if produced:
                    yield produced
                if status == _STREAM_END or not produced:
                    break
        finally:
            lib.zng_deflateEnd(ref)
