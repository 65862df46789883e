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
whole buffer for generated files, ``write!`` fields for RECORD; for maturin sdists, whose
``GzEncoder`` sits under the ``tar`` crate, the tar crate's writes: feed "tar"). The ``zlib-rs`` PyPI binding
(0.1.2, zlib-rs 0.6.2) was tried first and dropped: it ignores memLevel and strategy, cannot
limit the output space per call, and its streams diverge from real maturin wheels (jiter's
extension module after 54,185 bytes) where this backend reproduces them whole. The ``zlib-ng`` PyPI package (1.1.0) links
zlib-ng 2.3.3 into its extension module and exports the native ``zng_*`` API, which we call.

The same library also writes what CPython's ``zipfile`` writes when CPython's ``zlib`` module is
linked against zlib-ng (Pillow's manylinux2014 wheels 11.1-12.2: their build installs zlib-ng in
zlib-compat mode and auditwheel, repacking the wheel, then deflates with it). That writer hands
each member to one ``compress()`` call (``ZipFile.writestr``: feed "writestr") and gives zlib-ng
the growing output buffer of CPython's ``zlib`` module (out_growth "cpython", see
:data:`CPYTHON_BLOCKS`). zlib-ng 2.2 and 2.3 differ in the last match of a stream (2.3 takes the
first candidate reaching the end of the input, 2.2 keeps searching for a longer one: match_tpl.h
``len >= lookahead`` vs ``len > lookahead``), so a second backend, ``zlib-ng-2.2``, serves the
2.2 generation, with the same settings, from a library named by the ``DPIP_ZLIB_NG_2_2``
environment variable (the zlib-rs of maturin 1.13 behaves as 2.2 there: pydantic-core 2.46.4's
4.7 MB extension module differs from zlib-ng 2.3 in its last match only; for example
the extension module of PyPI ``zlib-ng`` 1.0.0, which links zlib-ng 2.2.5); without it that backend
is unusable and such members stay verbatim. Pillow 11.1-11.3 streams additionally have every string
of a match up to 258 bytes inserted into the hash chains, which stock zlib-ng level 6 does only up
to 16 x max_lazy = 256 bytes; ``deflateTune`` with max_lazy 17 (so 272) reproduces them (measured:
all 402 deflate members of pillow 11.1.0, 11.2.1 and 11.3.0 with zlib-ng 2.2.5; which build
option of the producer causes it was not found).
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import importlib.util
import os
from collections.abc import Callable, Iterable, Iterator

from ..errors import CompressorUnavailable
from ..params import CompressorParams

#: The zlib-ng generation the golden outputs come from (PyPI zlib-ng 1.1.0 = zlib-ng 2.3.3).
FAMILY = "zlib-ng-2.3"

#: The older generation (golden outputs from zlib-ng 2.2.5, PyPI zlib-ng 1.0.0) and the variable
#: naming its library.
FAMILY_2_2 = "zlib-ng-2.2"
LIBRARY_2_2_VARIABLE = "DPIP_ZLIB_NG_2_2"

#: CPython's ``zlib`` output buffer blocks (Include/internal/pycore_blocks_output_buffer.h,
#: BUFFER_BLOCK_SIZE, CPython 3.10+): each ``compress()``/``flush()`` starts a new buffer and calls
#: ``deflate`` once per block until a call leaves space; the last size repeats.
_KIB, _MIB = 1 << 10, 1 << 20
CPYTHON_BLOCKS = (32 * _KIB, 64 * _KIB, 256 * _KIB, 1 * _MIB, 4 * _MIB, 8 * _MIB, 16 * _MIB, 16 * _MIB,
                  32 * _MIB, 32 * _MIB, 32 * _MIB, 32 * _MIB, 64 * _MIB, 64 * _MIB, 128 * _MIB, 128 * _MIB,
                  256 * _MIB)

#: zlib-ng's configuration_table (deflate.c) for the levels a max_lazy override is used with:
#: level -> (good_length, max_lazy, nice_length, max_chain); deflateTune takes all four.
_TUNE_BASE = {6: (8, 16, 128, 128)}

#: The smallest max_lazy whose 16 x (the medium strategy's insert limit) covers a 258-byte match.
PILLOW11_MAX_LAZY = 17

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


_LIBS: dict[str, ctypes.CDLL] = {}


def _package_library() -> str:
    """Path of the ``zlib_ng`` extension module (PyPI zlib-ng), which exports the ``zng_*`` API."""
    spec = importlib.util.find_spec("zlib_ng.zlib_ng") if importlib.util.find_spec("zlib_ng") else None
    if spec is None or spec.origin is None:
        raise CompressorUnavailable("zlib-ng", "the zlib-ng package is not installed")
    return spec.origin


def _variable_library() -> str:
    """Path of the zlib-ng 2.2 library named by :data:`LIBRARY_2_2_VARIABLE`."""
    path = os.environ.get(LIBRARY_2_2_VARIABLE, "")
    if not path:
        raise CompressorUnavailable("zlib-ng-2.2", f"{LIBRARY_2_2_VARIABLE} does not name a zlib-ng 2.2 library")
    return path


def _load(name: str, locate: Callable[[], str]) -> ctypes.CDLL:
    lib = _LIBS.get(name)
    if lib is None:
        path = locate()
        try:
            lib = ctypes.CDLL(path)
            stream_p = ctypes.POINTER(_ZngStream)
            lib.zlibng_version.restype = ctypes.c_char_p
            lib.zng_deflateInit2.argtypes = [stream_p] + [ctypes.c_int] * 5
            lib.zng_deflateTune.argtypes = [stream_p] + [ctypes.c_int] * 4
            lib.zng_deflate.argtypes = [stream_p, ctypes.c_int]
            lib.zng_deflateEnd.argtypes = [stream_p]
        except (OSError, AttributeError) as exc:
            raise CompressorUnavailable(name, f"cannot use {path}: {exc}") from None
        _LIBS[name] = lib
    return lib


def _flate2_settings(name: str, family: str) -> list[CompressorParams]:
    """Rust flate2's writer on zlib-rs (maturin >= 1.10 and uv wheels), most likely first."""
    out: list[CompressorParams] = []
    for level in LEVEL_ORDER:
        # (feed, sync_flush), most likely first: copied files, generated files written whole,
        # RECORD written field by field (no sync flush: the zip is finished right after).
        for feed, sync in (("fixed", True), ("whole", True), ("record", False), ("lines", False),
                           ("fixed", False), ("whole", False), ("record", True), ("lines", True)):
            out.append(CompressorParams(name, family, level, mem_level=MEM_LEVEL, wbits=-15, feed=feed,
                                        feed_size=COPY_FEED if feed == "fixed" else 0, out_size=FLATE2_OUT_SIZE,
                                        sync_flush=sync))
    # Early zlib-rs (maturin 1.10: rpds-py 0.29/0.30; uv_build 0.9) inserts every string of a
    # 258-byte match, as max_lazy 17 makes zlib-ng do: the level-6 settings again with it.
    return out + [dataclasses.replace(p, max_lazy=PILLOW11_MAX_LAZY) for p in out if p.level == 6]


def _tar_settings(name: str, family: str) -> list[CompressorParams]:
    """maturin sdists: flate2's GzEncoder (no flush before finish) under the tar crate's writes."""
    out = [CompressorParams(name, family, level, mem_level=MEM_LEVEL, wbits=-15, feed="tar",
                            out_size=FLATE2_OUT_SIZE) for level in LEVEL_ORDER]
    return out + [dataclasses.replace(out[0], max_lazy=PILLOW11_MAX_LAZY)]


def _cpython_settings(name: str, family: str) -> list[CompressorParams]:
    """CPython ``zipfile`` on zlib-ng: every level written by ``writestr``, then the Pillow 11 tuning."""
    out = [CompressorParams(name, family, level, mem_level=MEM_LEVEL, wbits=-15, feed="writestr",
                            out_growth="cpython") for level in LEVEL_ORDER]
    out.insert(1, CompressorParams(name, family, 6, mem_level=MEM_LEVEL, wbits=-15, feed="writestr",
                                   out_growth="cpython", max_lazy=PILLOW11_MAX_LAZY))
    return out


@functools.cache
def _settings(name: str, family: str) -> tuple[CompressorParams, ...]:
    """Every setting, built once: each search lists the candidates, and building them costs ~0.3 ms."""
    return tuple(_flate2_settings(name, family) + _cpython_settings(name, family) + _tar_settings(name, family))


class ZlibNgBackend:
    """``zng_deflate`` on a raw stream, fed and flushed as ``flate2``'s writer or CPython's ``zlib`` does."""

    name = "zlib-ng"
    kind = "deflate"
    family = FAMILY
    feed_dependent = True
    spawns_process = False

    def _library(self) -> ctypes.CDLL:
        return _load(self.name, _package_library)

    def probe(self) -> str:
        return "zlib-ng " + bytes(self._library().zlibng_version()).decode("ascii")

    def settings(self) -> tuple[CompressorParams, ...]:
        return _settings(self.name, self.family)

    def candidates(self, head: bytes) -> tuple[CompressorParams, ...]:
        return self.settings()

    def encode(self, params: CompressorParams, pieces: Iterable[bytes]) -> Iterator[bytes]:
        lib = self._library()
        stream = _ZngStream()
        ref = ctypes.byref(stream)
        if lib.zng_deflateInit2(ref, params.level, 8, params.wbits, params.mem_level, 0) != 0:
            raise CompressorUnavailable(self.name, f"zng_deflateInit2 refused {params.label}")
        if params.max_lazy:
            good, _, nice, chain = _TUNE_BASE.get(params.level, (0, 0, 0, 0))
            if not nice or lib.zng_deflateTune(ref, good, params.max_lazy, nice, chain) != 0:
                lib.zng_deflateEnd(ref)
                raise CompressorUnavailable(self.name, f"zng_deflateTune refused {params.label}")
        if params.out_growth == "cpython":
            yield from _encode_cpython(lib, stream, pieces)
        else:
            yield from self._encode_flate2(lib, stream, params, pieces)

    def _encode_flate2(self, lib: ctypes.CDLL, stream: _ZngStream, params: CompressorParams,
                       pieces: Iterable[bytes]) -> Iterator[bytes]:
        ref = ctypes.byref(stream)
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


def _encode_cpython(lib: ctypes.CDLL, stream: _ZngStream, pieces: Iterable[bytes]) -> Iterator[bytes]:
    """``compress(piece)`` per piece, then ``flush()``, with CPython's output buffer (zlibmodule.c)."""
    ref = ctypes.byref(stream)

    def call(flush: int) -> Iterator[bytes]:
        # One buffer per compress()/flush() call: deflate into block after block while it fills them.
        for size in _blocks():
            out = ctypes.create_string_buffer(size)
            stream.next_out, stream.avail_out = ctypes.addressof(out), size
            status = lib.zng_deflate(ref, flush)
            if status < 0 and status != _BUF_ERROR:
                raise RuntimeError(f"zng_deflate failed with status {status}")
            if produced := ctypes.string_at(out, size - stream.avail_out):
                yield produced
            if stream.avail_out:
                return

    try:
        for piece in pieces:
            data = bytes(piece)
            keep = ctypes.c_char_p(data)  # points into ``data``; no copy
            stream.next_in, stream.avail_in = ctypes.cast(keep, ctypes.c_void_p).value, len(data)
            yield from call(_NO_FLUSH)
        stream.next_in, stream.avail_in = None, 0
        yield from call(_FINISH)
    finally:
        lib.zng_deflateEnd(ref)


def _blocks() -> Iterator[int]:
    yield from CPYTHON_BLOCKS
    while True:
        yield CPYTHON_BLOCKS[-1]


class ZlibNg22Backend(ZlibNgBackend):
    """zlib-ng 2.2 from the library :data:`LIBRARY_2_2_VARIABLE` names, driven as flate2 or CPython's ``zlib`` do."""

    name = "zlib-ng-2.2"
    family = FAMILY_2_2

    def _library(self) -> ctypes.CDLL:
        return _load(self.name, _variable_library)

    def probe(self) -> str:
        version = bytes(self._library().zlibng_version()).decode("ascii")
        if not version.startswith("2.2."):
            raise CompressorUnavailable(self.name, f"{LIBRARY_2_2_VARIABLE} names zlib-ng {version}, not 2.2.x")
        return "zlib-ng " + version

