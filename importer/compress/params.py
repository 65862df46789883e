"""The settings that reproduce one compressed stream, as a frozen record that round-trips through a recipe dict.

A recipe stores ``CompressorParams.to_dict()``: str/int/bool values only, so it encodes as DAG-CBOR
unchanged, with a ``v`` field so later readers can refuse what they do not understand.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from .errors import InvalidCompressorParams

#: Version of the dict layout written by :meth:`CompressorParams.to_dict`.
PARAMS_VERSION = 1

#: Compressor names; each is served by one backend module of this package.
NAMES = ("zlib", "miniz", "zlib-ng", "zlib-ng-2.2", "gnu-gzip", "bz2", "xz")

#: How a writer fed its compressor, for compressors whose output depends on it (zlib-ng):
#: "any" (it does not matter), "fixed" (pieces of ``feed_size`` bytes, a copy loop), "whole" (one
#: call with everything), "lines" (one call per line), "record" (RECORD lines cut into the pieces
#: Rust's ``write!`` hands over: path, ",sha256=", digest, ",", size, "\n"), "writestr" (one call with
#: the whole member, as CPython's ``ZipFile.writestr`` does; allowed for members up to 64 MiB), "tar"
#: (a tar stream cut into the Rust ``tar`` crate's writes: headers, 8 KiB data pieces, padding).
FEEDS = ("any", "fixed", "whole", "lines", "record", "writestr", "tar")

#: How the caller gave output space to each compress call, when the output depends on it (zlib-ng
#: returns from a call when the space runs out and forgets its one-match lookahead): "" (fixed
#: ``out_size`` pieces, the flate2 writer), "cpython" (CPython's ``zlib`` module: one call per
#: output block of its growing buffer, 32 KiB, 64 KiB, 256 KiB, 1 MiB, ... restarting for ``flush()``).
OUT_GROWTHS = ("", "cpython")

#: Stream kinds a compressor can produce: raw deflate (zip members, gzip bodies), bzip2 and xz streams.
KINDS = ("deflate", "bz2", "xz")


@dataclass(frozen=True, slots=True)
class CompressorParams:
    """One compressor with every setting that changes its output bytes.

    Fields that do not apply to a compressor keep their default and are left out of the dict.
    """

    #: One of :data:`NAMES`.
    name: str
    #: The implementation generation whose output these settings were verified against
    #: (see ``golden.py``); a runtime of another family must not rebuild with them.
    family: str
    #: Compression level (zlib, miniz, zlib-ng, gzip 1-9; bz2 1-9 = block size / 100 kB; xz preset 0-9).
    level: int
    #: zlib ``memLevel`` 1-9 (sizes the hash table and the symbol buffer, so block boundaries); 0: not used.
    mem_level: int = 0
    #: zlib strategy: 0 default, 1 filtered, 2 Huffman only, 3 RLE, 4 fixed codes.
    strategy: int = 0
    #: zlib ``wbits``: -15 is a raw deflate stream with a 32 KiB window; 0: not used.
    wbits: int = 0
    #: How the input was split between compress calls: one of :data:`FEEDS`.
    feed: str = "any"
    #: Bytes per call when ``feed`` is "fixed" (8 KiB for Rust's ``io::copy``); 0 otherwise.
    feed_size: int = 0
    #: Output space given to each compress call, when the output depends on it (Rust ``flate2``'s
    #: writer hands zlib-ng a 32 KiB buffer per call); 0: unlimited or irrelevant.
    out_size: int = 0
    #: One of :data:`OUT_GROWTHS`.
    out_growth: str = ""
    #: zlib-ng ``deflateTune`` max_lazy (also its max_insert_length: matches up to 16 x this long have
    #: every string inserted into the hash chains); 0: the level's own value.
    max_lazy: int = 0
    #: A ``Z_SYNC_FLUSH`` before ``Z_FINISH`` (Rust ``flate2`` writers flush before finishing).
    sync_flush: bool = False
    #: xz: the preset has ``PRESET_EXTREME`` or'ed in.
    extreme: bool = False
    #: xz integrity check id from the stream header (0 none, 1 CRC32, 4 CRC64, 10 SHA-256); -1: not used.
    check: int = -1

    @property
    def label(self) -> str:
        """A short human-readable name, also the key of the golden table: ``zlib/l6/m8/s0``."""
        parts = [self.name, f"l{self.level}"]
        if self.mem_level:
            parts.append(f"m{self.mem_level}")
        if self.name == "zlib":
            parts.append(f"s{self.strategy}")
        if self.feed == "fixed":
            parts.append(f"feed{self.feed_size}")
        elif self.feed != "any":
            parts.append(f"feed-{self.feed}")
        if self.out_size:
            parts.append(f"out{self.out_size}")
        if self.out_growth:
            parts.append(f"out-{self.out_growth}")
        if self.max_lazy:
            parts.append(f"lazy{self.max_lazy}")
        if self.sync_flush:
            parts.append("sync")
        if self.extreme:
            parts.append("extreme")
        if self.check >= 0:
            parts.append(f"check{self.check}")
        return "/".join(parts)

    def to_dict(self) -> dict[str, str | int | bool]:
        """The recipe form: version, name, family, level, then only the fields that differ from default.

        >>> CompressorParams("zlib", "zlib-1", 6, mem_level=8, wbits=-15).to_dict()
        {'v': 1, 'name': 'zlib', 'family': 'zlib-1', 'level': 6, 'mem_level': 8, 'wbits': -15}
        """
        out: dict[str, str | int | bool] = {"v": PARAMS_VERSION}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name in ("name", "family", "level") or value != field.default:
                out[field.name] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> CompressorParams:
        """Decode :meth:`to_dict` output; raise :class:`InvalidCompressorParams` on anything else."""
        if data.get("v") != PARAMS_VERSION:
            raise InvalidCompressorParams(f"unsupported version {data.get('v')!r} (expected {PARAMS_VERSION})")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields) - {"v"})
        if unknown:
            raise InvalidCompressorParams(f"unknown fields {unknown}")
        values: dict[str, object] = {}
        for name, field in fields.items():
            if name not in data:
                if field.default is dataclasses.MISSING:
                    raise InvalidCompressorParams(f"missing field {name!r}")
                continue
            value = data[name]
            expected = type(field.default) if field.default is not dataclasses.MISSING else None
            if name in ("name", "family"):
                expected = str
            elif name == "level":
                expected = int
            # bool is a subclass of int: compare exact types so True never passes as a level.
            if type(value) is not expected:
                raise InvalidCompressorParams(f"field {name!r} has type {type(value).__name__}")
            values[name] = value
        params = cls(**values)  # type: ignore[arg-type]
        if params.name not in NAMES:
            raise InvalidCompressorParams(f"unknown compressor {params.name!r}")
        if params.feed not in FEEDS or (params.feed == "fixed") != (params.feed_size > 0):
            raise InvalidCompressorParams(f"invalid feed {params.feed!r} with feed_size {params.feed_size}")
        if params.out_growth not in OUT_GROWTHS or params.max_lazy < 0:
            raise InvalidCompressorParams(f"invalid out_growth {params.out_growth!r} or max_lazy {params.max_lazy}")
        return params
