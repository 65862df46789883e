"""Packs: the payloads of many blocks in one row of the store, so the file holds payload, not page slack.

SQLite stores a row's bytes in its table's leaf page and, past about 4 KiB, in a chain of
overflow pages. A store of one row per block therefore wastes space in two ways that
``python -m bench.diskusage`` measured on real chains (5 numpy releases, wheel + sdist, 47.5 MB
of payloads): leaf pages that hold a few small rows or the local part of a large one are a third
empty (+9.0% of the payload), and a row rewritten smaller (a block re-encoded as a delta after it
was written) leaves free pages behind (+21.2%). A pack is one row of the ``packs`` table whose
``data`` is a run of *segments* laid end to end; its overflow chain is full but for its last page,
and the block rows shrink to a locator of a few bytes, so leaf pages are dense.

Segments, and how a block row (encoding :data:`ENCODING_PACKED` or :data:`ENCODING_PACKED_DELTA`)
finds its bytes. Its ``data`` is a *locator*, five unsigned LEB128 varints and an optional sixth::

    pack-id  offset  length  frame-size  inner-offset  [flags]

``pack[offset : offset + length]`` is the segment. For :data:`ENCODING_PACKED`, with
``frame-size`` 0 the segment is the block itself; otherwise it is one zstd frame (plain, or
made with one of the store's dictionaries: its header names it) that decodes to ``frame-size``
bytes, of which the block is ``[inner-offset : inner-offset + size]``. Blocks under
:data:`GROUP_BELOW` written together share a frame (:data:`FRAME_BYTES`), so zstd sees the
context a lone 300-byte directory node or a lone header file lacks, as git's packs compress
objects against their neighbours; a full 256 KiB leaf is a frame of its own. For :data:`ENCODING_PACKED_DELTA` the segment is a delta payload
(:mod:`importer.sinks.delta`), exactly what an encoding-3 row holds. ``flags``, written only when
not 0: :data:`LOCATOR_X86` (form 1) or :data:`LOCATOR_X86_2` (form 2), the bytes found are the
x86 filter's transform of the block in that form (:mod:`importer.sinks.x86`), which a read undoes. A CID never changes: the
block row is still keyed by it and every read hashes the decoded block against it.

Figures behind the constants, from ``/tmp`` prototypes on the 10,137 small blocks (< 16 KiB, not
deltas; 13.98 MB) of that numpy store, stored one frame each at level 3 with the store's
dictionary in 5.81 MB; grouped in write order into frames of (uncompressed)::

    frame      16 KiB   64 KiB   256 KiB   1 MiB
    level  3    4.81     4.50     4.22     3.97 MB   (0.05-0.15 s)
    level  9    4.55     4.20     3.94     3.64 MB   (0.3-0.5 s)
    level 19    4.43     4.04     3.70     3.41 MB   (6-8 s)

A random read decodes the block's whole frame, about 1 GB/s here: 0.1 ms for 128 KiB.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import zstandard

from ..dag.varint import decode_uvarint, encode_uvarint
from .atrest import UndecodablePayload

KiB: Final = 1024
MiB: Final = 1024 * KiB

#: A block row whose ``data`` is a locator into a pack: the block is raw or in a zstd frame there.
ENCODING_PACKED: Final = 4
#: A block row whose ``data`` is a locator into a pack, where its delta payload is.
ENCODING_PACKED_DELTA: Final = 5
#: Locator flag: the segment or frame slice holds :func:`importer.sinks.x86.encode` of the block.
#: A block that looks like x86 machine code (:func:`importer.sinks.x86.looks_like_code`) is packed
#: so: its calls' operands repeat (the same PLT entries, the same helpers) and compress better.
#: zstd -19 in 8 MiB frames of the first wheel's 256 KiB leaves in archive order (``/work/tmp``
#: prototype, 2026-12-07), filtered (``call`` units only, the filter's first form) against not:
#: pandas 3.0.3 6,729,222 / 7,124,000 B (0.945), grpcio 1.84.1 0.930, cryptography 48.0.1 0.956,
#: numpy 2.5.1 0.974; the RIP-relative units took the changed ``.so`` files of the newest wheels,
#: each compressed alone at level 19, a further 0.922 (pandas), 0.962 (grpcio) and 0.980 (numpy)
#: of their ``call``-only size. Code before schema 10
#: refuses a locator with a sixth varint as damaged; the store records 10 first
#: (:data:`~importer.sinks.store.schema.X86_DELTAS_SCHEMA`).
LOCATOR_X86: Final = 1
#: Locator flag: the same in the filter's form 2, which new writes use (its units took the
#: changed ``.so`` files of the newest wheels, each compressed alone at level 19, a further 0.988
#: (pandas), 0.994 (numpy), 0.997 (grpcio) and 0.999 (cryptography) of their form-1 size;
#: ``python -m bench.perf_x86`` at 0982e38, 2026-12-08). Code before schema 12
#: refuses it as an unknown flag (or, before 10, trailing bytes); the store records 12 first
#: (:data:`~importer.sinks.store.schema.X86_FORM2_SCHEMA`).
LOCATOR_X86_2: Final = 2
#: The x86 form of each value the sixth varint may have: it is one value, not bits (a block is
#: stored in one form, and there are no other flags); any other value is refused.
X86_FORM_OF_LOCATOR: Final = {LOCATOR_X86: 1, LOCATOR_X86_2: 2}
#: The locator flag of each x86 form.
LOCATOR_OF_X86_FORM: Final = {form: flags for flags, form in X86_FORM_OF_LOCATOR.items()}
#: Blocks smaller than this are grouped with their neighbours into frames: every block but a full
#: 256 KiB leaf of a large file. On the first grpcio sdist (grpcio-1.84.1.tar.gz, 13.4 MB; the
#: blocks of one import, MB at rest; zstd -19 --long=31 of the whole tar: 8.83)::
#:
#:     blocks       bytes   alone, level 3   frames of 128 KiB, level 9   512 KiB, 9   2 MiB, 19
#:     < 16 KiB     20.93        7.18                3.99                     3.70         3.19
#:     16-64 KiB    24.42        5.42                4.28                     3.98         3.40
#:     64-256 KiB   19.04        2.95                2.50                     2.37         2.05
#:     256 KiB      16.80        2.24                1.93 (each alone)        1.85         1.57
#:
#: Grouping the blocks of 16-256 KiB too (and level 9 for the leaves) takes that release from
#: 14.6 to 12.7 MB at rest.
GROUP_BELOW: Final = 256 * KiB
#: Grouped blocks go into frames of at least this many uncompressed bytes (the last frame of a
#: write may be smaller; a block larger than what is left makes a frame up to twice this size):
#: a frame decodes in a few tenths of a millisecond for a random read (zstd at ~1 GB/s here).
FRAME_BYTES: Final = 128 * KiB
#: Frames of the packs ``store optimize --level N`` rewrites, which are *cold*: written once, read
#: rarely. They group every block but deltas, full 256 KiB leaves too, into frames of at least
#: this many bytes. On aiohttp's store (unseen7, 10 archives; its 575 packed blocks, 25.2 MB,
#: 10.11 MB at rest in 128 KiB frames at level 9 and leaves alone), at level 19 with the store's
#: dictionary, in write order::
#:
#:     frames      128 KiB   512 KiB   1 MiB    2 MiB
#:     MB          9.46      9.31      9.18     9.05    (0.936, 0.921, 0.909, 0.895 of today)
#:
#: and on the seven unseen7 stores (``python -m bench.cold_frames``, REPORT.md "Cold frames"),
#: the store files after ``store optimize --level 19 --frame-size F`` and a cold random ``get``
#: (median over 40 blocks of aiohttp's store; ``python -m bench.perf_disk --stores``)::
#:
#:     frames      1 MiB     2 MiB     4 MiB     8 MiB
#:     MiB         71.60     71.10     70.79     70.71   (0.996, 0.989, 0.985, 0.984 of the bound)
#:     get, ms     1.68      2.70      4.96      9.87    (0.36 in the default layout)
#:
#: and with the frames of 1 MiB and more made without the dictionary (:data:`COLD_PLAIN_FROM`;
#: REPORT.md "Cold frames without the dictionary"; aiohttp's cold ``get`` 1.56 ms at 1 MiB and
#: 10.41 ms at 8 MiB, 0.35 ms in the default layout)::
#:
#:     MiB         70.81     69.46     67.96     67.19   (0.985, 0.967, 0.946, 0.935 of the bound)
#:
#: 1 MiB stays the default: 8 MiB frames store 5.1% less, for a random read of one block 6-7x
#: slower (10 ms); a whole ``fetch`` decodes each frame once and is as fast at every size.
#: ``--frame-size`` picks another size.
COLD_FRAME_BYTES: Final = 1 * MiB
#: Cold frames of this size or more are compressed without the store's dictionary. A dictionary
#: pays in a small frame (zstd starts it with context) and costs in a large one: python-zstandard
#: 0.25 (zstd 1.5.7) at level 19, the blocks of three stores in write order grouped into frames
#: of F, MB (``python -m bench.frame_context STORE --all-blocks --frame-sizes 128KiB 512KiB 1MiB
#: 2MiB 8MiB --dictionary --no-base --no-long``: a store of grpcio-1.84.1.tar.gz alone, and of
#: pydantic's and aiohttp's 10-archive chains of unseen7; the trained or the shipped 64 KiB
#: dictionary)::
#:
#:     F                 128 KiB         512 KiB         1 MiB           2 MiB           8 MiB
#:                       plain   dict    plain   dict    plain   dict    plain   dict    plain   dict
#:     grpcio sdist      11.82  11.26    10.82  10.72    10.40  10.53     9.95  10.30     9.50  10.15
#:     aiohttp chain     12.87  12.73    12.58  12.55    12.40  12.46    12.20  12.35    11.67  12.01
#:     pydantic chain     1.97   1.89     1.78   1.77     1.70   1.73     1.50   1.57     0.98   1.06
#:
#: The loss is not the window (an 8 MiB frame declares 8 MiB either way) nor the binding (zstd's
#: own ``ZSTD_CCtx_loadDictionary`` gives the same bytes; this and what follows are one-off
#: measures on the same stores, REPORT.md "Cold frames without the dictionary"): a 64-*byte* raw dictionary costs
#: grpcio's 8 MiB frames 29% at level 19; it is how zstd attaches or copies a dictionary's
#: prepared tables. Its experimental ``ZSTD_dictForceLoad`` (not in python-zstandard's C backend)
#: makes a dictionary never cost: on grpcio's first 32 MiB, 1 MiB frames 5.74 MB against 5.79
#: plain and 5.92 attached, 8 MiB 5.27 against 5.28 and 5.70; 1% at most over plain frames,
#: not worth a second binding. The default frames (:data:`FRAME_BYTES`, 128 KiB) keep the
#: dictionary; level 22 instead of 19 gains under 0.1% on the same blocks. The rule is set at
#: level 19, the level ``store optimize`` is for; lower levels are mixed (the first 32 MiB of the
#: grpcio and aiohttp stores in 1 MiB frames, dictionary against plain: level 3 1.008 and 1.003,
#: level 9 1.012 and 0.979, level 19 1.021 and 1.004).
COLD_PLAIN_FROM: Final = 1 * MiB
#: Smallest and largest ``--frame-size``: below 128 KiB a cold frame would be no larger than the
#: default layout's (:data:`FRAME_BYTES`); past 8 MiB a random read (10 ms at the median, table
#: above) would pay more than the 0.1% a doubling still gained from 4 to 8 MiB.
MIN_COLD_FRAME_BYTES: Final = FRAME_BYTES
MAX_COLD_FRAME_BYTES: Final = 8 * MiB
#: zstd level of every frame of a pack: level 9 stores 7% less than 3 on numpy's small blocks,
#: 15-21% less on grpcio's (table above) and 5% less on numpy's 256 KiB binary leaves; it
#: compresses about 3x slower than level 3 (REPORT.md, "Deltas at rest": what that costs an
#: import); level 19 would gain 6-15% more for 20x the time (``store optimize --level 19``).
FRAME_LEVEL: Final = 9
#: A pack is closed once it holds this many bytes. Reading a segment walks the pack's overflow
#: chain from its start (SQLite keeps no index of it), 256 pages of 4 KiB at most; a pack's
#: last, partly filled page is 0.2% of it.
PACK_BYTES: Final = 1 * MiB
#: Largest frame a locator may declare. A cold frame of ``F`` bytes groups the blocks smaller
#: than ``F`` until they reach ``F``, so it holds less than ``2 F`` (a block of ``F`` or more is a
#: frame of its own, and past :data:`LEGACY_MAX_FRAME` a raw segment); with
#: :data:`MAX_COLD_FRAME_BYTES` that is under 16 MiB. Anything larger is a damaged locator, not
#: an allocation.
MAX_FRAME: Final = 2 * MAX_COLD_FRAME_BYTES
#: What readers before schema 9 accept (their ``MAX_FRAME``): a store whose cold frames may be
#: larger (``--frame-size`` above half of it) is raised to schema 9 first, which those readers
#: refuse at open (:mod:`importer.sinks.store.schema`), instead of meeting frames they call damaged.
LEGACY_MAX_FRAME: Final = 4 * MiB


def frame_size(text: str) -> int:
    """A frame size written as ``1MiB``, ``512KiB`` or bytes, as bytes; ValueError if it is none of them."""
    units = {"mib": MiB, "kib": KiB, "": 1}
    lowered = text.strip().lower()
    unit = next(u for u in ("mib", "kib", "") if lowered.endswith(u))
    number = lowered[:len(lowered) - len(unit)] if unit else lowered
    if not number.isdigit():
        raise ValueError(f"frame size {text!r} is not a whole number of bytes, KiB or MiB")
    return int(number) * units[unit]


def cold_frame_bytes(text: str) -> int:
    """A ``--frame-size`` value (:func:`frame_size`) as bytes; ValueError naming the bounds."""
    size = frame_size(text)
    if not MIN_COLD_FRAME_BYTES <= size <= MAX_COLD_FRAME_BYTES:
        raise ValueError(f"frame size {text} is outside {MIN_COLD_FRAME_BYTES // KiB} KiB - "
                         f"{MAX_COLD_FRAME_BYTES // MiB} MiB")
    return size


@dataclass(frozen=True, slots=True)
class Locator:
    """Where a packed block's bytes are (module docstring)."""

    pack: int
    offset: int
    length: int
    frame_size: int
    inner: int
    flags: int = 0

    def encode(self) -> bytes:
        fields = [self.pack, self.offset, self.length, self.frame_size, self.inner]
        if self.flags:  # 0 is the field left out, so every locator without flags reads as before
            fields.append(self.flags)
        return b"".join(encode_uvarint(n) for n in fields)

    @property
    def x86_form(self) -> int:
        """The x86 filter's form the bytes found are in (:data:`X86_FORM_OF_LOCATOR`), 0 for none."""
        return X86_FORM_OF_LOCATOR.get(self.flags, 0)


def parse_locator(data: bytes, size: int) -> Locator:
    """The locator of a packed row holding a ``size``-byte block; UndecodablePayload if it is not one."""
    values = []
    pos = 0
    try:
        for _ in range(5):
            value, pos = decode_uvarint(data, pos)
            values.append(value)
        if pos < len(data):
            flags, pos = decode_uvarint(data, pos)
            if flags not in X86_FORM_OF_LOCATOR:  # the only flags; 0 is written by leaving the field out
                raise UndecodablePayload(f"pack locator has unknown flags {flags:#x}")
            values.append(flags)
    except ValueError as e:
        raise UndecodablePayload(f"pack locator does not parse ({e})") from None
    if pos != len(data):
        raise UndecodablePayload("pack locator has trailing bytes")
    locator = Locator(*values)
    if locator.pack <= 0 or locator.length <= 0 and size > 0:
        raise UndecodablePayload(f"pack locator names pack {locator.pack}, {locator.length} bytes")
    if locator.frame_size > MAX_FRAME:
        raise UndecodablePayload(f"pack locator declares a {locator.frame_size}-byte frame, over the "
                                 f"{MAX_FRAME}-byte bound")
    if locator.frame_size and locator.inner + size > locator.frame_size:
        raise UndecodablePayload(f"pack locator puts {size} bytes at {locator.inner} of a {locator.frame_size}-byte frame")
    return locator


@dataclass(frozen=True, slots=True)
class Placed:
    """One block of a pack being built: its CID, size, encoding and locator (pack id filled in later)."""

    cid: bytes
    size: int
    encoding: int
    offset: int
    length: int
    frame_size: int
    inner: int
    refs: tuple[bytes, ...] = ()
    flags: int = 0

    def locator(self, pack: int) -> bytes:
        return Locator(pack, self.offset, self.length, self.frame_size, self.inner, self.flags).encode()


class PackBuilder:
    """Lays blocks out as the segments of one pack; :meth:`take` hands the pack over."""

    def __init__(self, frame_compressor: zstandard.ZstdCompressor, frame_bytes: int = FRAME_BYTES) -> None:
        self._frames = frame_compressor
        self._frame_bytes = frame_bytes
        self._parts: list[bytes] = []
        self._bytes = 0
        self.placed: list[Placed] = []
        self._group: list[tuple[bytes, bytes, int]] = []
        self._group_bytes = 0

    @property
    def full(self) -> bool:
        return self._bytes >= PACK_BYTES

    @property
    def empty(self) -> bool:
        return not self.placed and not self._group

    def _segment(self, segment: bytes) -> int:
        offset = self._bytes
        self._parts.append(segment)
        self._bytes += len(segment)
        return offset

    def add_grouped(self, cid: bytes, block: bytes, flags: int = 0) -> None:
        """A block grouped with its neighbours into one frame (it closes once it holds ``frame_bytes``);
        ``flags``: the locator's (``block`` is then what they say the pack holds, not the block)."""
        self._group.append((cid, block, flags))
        self._group_bytes += len(block)
        if self._group_bytes >= self._frame_bytes:
            self.close_frame()

    def add_frame(self, cid: bytes, size: int, payload: bytes, framed: bool, flags: int = 0) -> None:
        """A block that is a segment alone: ``payload`` is a zstd frame of it (``framed``) or the block
        (of what the locator's ``flags`` say the pack holds)."""
        offset = self._segment(payload)
        self.placed.append(Placed(cid, size, ENCODING_PACKED, offset, len(payload), size if framed else 0, 0,
                                  flags=flags))

    def add_delta(self, cid: bytes, size: int, payload: bytes, refs: Sequence[bytes]) -> None:
        offset = self._segment(payload)
        self.placed.append(Placed(cid, size, ENCODING_PACKED_DELTA, offset, len(payload), 0, 0, tuple(refs)))

    def close_frame(self) -> None:
        """Compress the grouped small blocks into one frame (kept raw if zstd does not shrink them)."""
        if not self._group:
            return
        joined = b"".join(block for _, block, _ in self._group)
        frame = self._frames.compress(joined)
        framed = len(frame) < len(joined)
        offset = self._segment(frame if framed else joined)
        length = self._bytes - offset
        inner = 0
        for cid, block, flags in self._group:
            if framed:
                self.placed.append(Placed(cid, len(block), ENCODING_PACKED, offset, length, len(joined), inner,
                                          flags=flags))
            else:
                self.placed.append(Placed(cid, len(block), ENCODING_PACKED, offset + inner, len(block), 0, 0,
                                          flags=flags))
            inner += len(block)
        self._group.clear()
        self._group_bytes = 0

    def take(self) -> tuple[bytes, list[Placed]]:
        """The pack's bytes and its blocks; the builder starts empty again."""
        self.close_frame()
        data, placed = b"".join(self._parts), self.placed
        self._parts, self._bytes, self.placed = [], 0, []
        return data, placed
