"""Guess the producer's compressor from what the archive tells (WHEEL Generator, gzip XFL/OS) to order the search.

The guesses only order candidates; every candidate is still verified byte for byte, so a wrong
guess costs attempts, never correctness. Facts behind each rule (measured on real PyPI files):

* setuptools/bdist_wheel, hatchling, flit, poetry, meson wheels: CPython zipfile, zlib level 6.
  Wheels repacked by auditwheel in an image whose libz is zlib-ng (Pillow 11.1-12.2 on
  manylinux2014) are CPython zipfile on zlib-ng level 6: tried right after zlib.
* maturin < 1.10: Rust ``zip`` 2.x on miniz_oxide, level 6. maturin >= 1.10 (zip 6): zlib-rs,
  reproduced by zlib-ng driven like flate2: level 6, files fed in 8 KiB pieces with a final sync
  flush, generated files whole; RECORD is written field by field without the sync flush.
* gzip header OS byte 3 (Unix) is GNU gzip (``tar czf``); OS 255 is Python's gzip module or Rust
  flate2. maturin >= 1.10 sdists (cryptography 47-50, pydantic-core 2.50) are flate2's GzEncoder
  on zlib-rs under the tar crate: zlib-ng level 6 fed the tar crate's writes, no sync flush. XFL is 2 for the slowest level (9), 4 for the fastest (1), else 0 (RFC 1952; CPython
  gzip, flate2 and GNU gzip all follow it).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from .params import CompressorParams

#: RFC 1952 OS byte values that matter here.
GZIP_OS_UNIX, GZIP_OS_UNKNOWN = 3, 255
#: RFC 1952 XFL: 2 = maximum compression (level 9), 4 = fastest (level 1).
GZIP_XFL_BEST, GZIP_XFL_FASTEST = 2, 4

#: maturin switched from miniz_oxide to zlib-rs in 1.10.0 (zip crate 6.0, Oct 2025).
MATURIN_ZLIB_RS = (1, 10)

_VERSION = re.compile(r"(\d+)\.(\d+)")


@dataclass(frozen=True, slots=True)
class ProducerHints:
    """What the caller knows about who wrote the stream; every field is optional."""

    #: The WHEEL file's ``Generator:`` value, e.g. "maturin (1.7.4)" or "hatchling 1.25.0".
    generator: str | None = None
    #: gzip header XFL and OS bytes, for the deflate body of a gzip stream.
    gzip_xfl: int | None = None
    gzip_os: int | None = None
    #: The member's name (RECORD is written line by line by maturin).
    member_name: str | None = None
    #: The params that reproduced the previous member of the same archive: tried first.
    previous: CompressorParams | None = None


#: A partial match on params fields: a candidate fits when every given field is equal.
Pattern = dict[str, object]


def _maturin_version(generator: str) -> tuple[int, int] | None:
    match = _VERSION.search(generator)
    return (int(match[1]), int(match[2])) if match else None


def preferred_patterns(kind: str, hints: ProducerHints) -> list[Pattern]:
    """Patterns of the likely settings, most likely first, from the producer hints."""
    if kind != "deflate":
        return []
    gen = (hints.generator or "").lower()
    name = hints.member_name or ""
    is_record = name.endswith(".dist-info/RECORD")
    # Files maturin generates in memory (metadata, SBOMs) reach the writer as one buffer.
    is_generated = ".dist-info/" in name and not is_record
    zlib6: Pattern = {"name": "zlib", "level": 6, "mem_level": 8, "strategy": 0, "sync_flush": False}
    miniz6: Pattern = {"name": "miniz", "level": 6, "sync_flush": False}
    copy: Pattern = {"name": "zlib-ng", "level": 6, "feed": "fixed", "feed_size": 8192, "sync_flush": True}
    whole: Pattern = {"name": "zlib-ng", "level": 6, "feed": "whole", "sync_flush": True}
    fields: Pattern = {"name": "zlib-ng", "level": 6, "feed": "record", "sync_flush": False}
    lines: Pattern = {"name": "zlib-ng", "level": 6, "feed": "lines", "sync_flush": False}
    # CPython's zipfile on zlib-ng: 2.3 and 2.2 stock (Pillow 12.2, 12.0-12.1), then max_lazy 17 (11.x).
    zipfile_ng: list[Pattern] = [{"name": name, "level": 6, "out_growth": "cpython", "max_lazy": lazy}
                                 for lazy in (0, 17) for name in ("zlib-ng", "zlib-ng-2.2")]
    ordered = [fields, lines, copy, whole] if is_record else [whole, copy, fields, lines] if is_generated \
        else [copy, whole, fields, lines]
    # zlib-rs as zlib-ng 2.3 writes it, then as 2.2 does (maturin 1.13's: pydantic-core 2.46.4).
    rust = [*ordered, *({**pattern, "name": "zlib-ng-2.2"} for pattern in ordered)]
    if gen.startswith("maturin"):
        version = _maturin_version(gen)
        if version is not None and version < MATURIN_ZLIB_RS:
            return [miniz6, {"name": "miniz", "level": 6}, *rust]
        # Some >= 1.10 builds link flate2 to system zlib instead (cryptography's maturin 1.14).
        return [*rust, zlib6, miniz6]
    if gen.startswith("uv"):
        return [*rust, miniz6, zlib6]
    if hints.gzip_os is not None or hints.gzip_xfl is not None:
        level = {GZIP_XFL_BEST: 9, GZIP_XFL_FASTEST: 1}.get(hints.gzip_xfl or 0, 6)
        zlib_at: Pattern = {"name": "zlib", "level": level, "mem_level": 8, "strategy": 0, "sync_flush": False}
        gzip_at: Pattern = {"name": "gnu-gzip", "level": level}
        if hints.gzip_os == GZIP_OS_UNIX:
            return [gzip_at, {"name": "gnu-gzip"}, zlib_at]
        if level == 6:  # flate2's GzEncoder (maturin sdists) writes XFL 0, OS 255
            tar: Pattern = {"name": "zlib-ng", "level": 6, "feed": "tar"}
            return [tar, {**tar, "name": "zlib-ng-2.2"}, zlib_at, miniz6, copy, {"name": "miniz", "level": 6}]
        return [zlib_at]
    return [zlib6, *zipfile_ng]


def _fits(params: CompressorParams, pattern: Pattern) -> bool:
    return all(getattr(params, key) == value for key, value in pattern.items())


def order_candidates(candidates: Sequence[CompressorParams], kind: str,
                     hints: ProducerHints | None) -> list[CompressorParams]:
    """``candidates`` reordered: the previous winner, then the producer's likely settings, then the rest.

    The rest keep the order they came in (see ``search.registry_candidates``).
    """
    hints = hints or ProducerHints()
    ranked: list[CompressorParams] = []
    seen: set[CompressorParams] = set()

    def take(params: CompressorParams) -> None:
        if params not in seen:
            seen.add(params)
            ranked.append(params)

    if hints.previous is not None and hints.previous in candidates:
        take(hints.previous)
    for pattern in preferred_patterns(kind, hints):
        for params in candidates:
            if _fits(params, pattern):
                take(params)
    for params in candidates:
        take(params)
    return ranked

