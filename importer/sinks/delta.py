"""Delta encoding at rest: a block stored as a zstd frame made against other blocks of the store.

A new release of a package mostly edits files the previous release already had: a Python module
gains a function, a shared library is rebuilt with a few functions changed. Stored alone, each
changed leaf costs its zstd-compressed size; stored against the leaves of the same file in the
previous release, it costs what changed. This module is the codec and the rule that picks the
reference; which file is "the same file" is decided by :mod:`importer.archive.delta`, and the
store (:mod:`importer.sinks.store`) keeps the payloads as its encoding 3.

Payload of a delta row (all integers unsigned LEB128 varints)::

    depth|flags  n  (len cid) * n  zstd-frame

``cid``s are the reference blocks, in order, each as its CID or (since schema 11) the CID
without the last :data:`REF_BYTES_DROPPED` bytes of its digest (:func:`short_ref`), which the
store resolves to the one block whose CID starts so; the frame is zstd with their concatenated bytes as
a raw-content dictionary (no dictionary ID, content size in the header). ``depth`` is one more
than the deepest reference (a non-delta block has depth 0): a read decodes at most
:data:`MAX_DEPTH` levels of references, so a delta is only made against references of depth
below it. ``flags`` share the first varint with the depth: :data:`X86_FILTERED` (form 1) or
:data:`X86_FILTERED_2` (form 2) says the frame was made over the x86-filtered bytes of the block
and of every reference (:mod:`importer.sinks.x86`), which a block that looks like machine code is
tried with; the smaller of the two is kept.

Figures behind the constants, from ``/tmp`` prototypes on the top100 download cache (newest two
releases, each leaf of a changed file, 256 KiB leaves, zstd level 3; MiB at rest):

===================  ======  =========  ========  ========  ==========
archive              alone   window 0   +128 KiB  +256 KiB  exact +256
===================  ======  =========  ========  ========  ==========
pyarrow wheel         44.90     19.14     17.58     17.74      17.56
numpy wheel           11.81      7.69      7.68      7.67       7.67
scipy wheel           13.31      2.61      2.61      2.61       2.61
sqlalchemy sdist       6.60      0.06      0.06      0.06       0.06
===================  ======  =========  ========  ========  ==========

"window 0" references the leaves that cover the new leaf's position scaled to the old file's
size; "+128 KiB" also those within 128 KiB either side (a rebuilt library moves code by tens of
KiB); "exact +256" is a byte-exact window instead of whole leaves. Larger windows lose, because
zstd at level 3 indexes only the dictionary's tail: on ``libarrow.so`` (46 MiB) a byte-exact
window of +-1 MiB took 13.1 MiB and one of +-4 MiB 15.4 MiB, barely better than alone (15.8),
against 5.96 MiB at +-256 KiB; ``zstd -9 --long --patch-from`` of the whole file made 9.26 MiB.
With the whole old file as every leaf's dictionary, ten releases each of sqlalchemy, numpy,
attrs and requests took 114.5 MiB against 90.5 at +-256 KiB. Level 9 instead of 3 gained under
1% on those deltas for 2-3x the time, so deltas were made at level 3 until stop 21; on the
deltas of unseen7's stores (native libraries filtered, structure blocks, small releases) level 7
takes 9-12% off, and whole chains 1-5% of their disk (:data:`DELTA_LEVEL`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

import zstandard

from ..dag.cid import IDENTITY, split_cid
from ..dag.reader import LeafSpan
from ..dag.varint import decode_uvarint, encode_uvarint
from ..errors import InvalidCid
from . import x86
from .atrest import UndecodablePayload, decompress_frame, frame_parameters

KiB: Final = 1024

#: zstd level of a delta made by an import, by ``store gc`` and by ``store optimize`` without
#: ``--level`` (cold packs remake theirs at that level). 150 deltas of each of unseen7's default
#: stores made again at each level (one-off script, 2026-12-08; bytes, seconds)::
#:
#:     level            3              5              7              9              12
#:     pandas     941,400 0.18   895,288 0.28   851,646 0.46   833,433 0.67   823,939 1.08
#:     aiohttp    691,958 0.12   652,058 0.26   624,319 0.41   613,975 0.57   603,532 0.92
#:     grpcio     332,217 0.13   308,020 0.22   292,034 0.34   281,063 0.55   275,092 0.69
#:
#: 7 takes 9-12% off the deltas for about 3x their time; 9 another 2-4% for 1.4-1.6x more. Whole
#: chains, level 7 against 3 (``python -m bench.perf_disk --baseline``, same run, 04:27-04:35):
#: pandas' store 0.949 of the disk for 0.92 of the import speed, grpcio's 0.974 for 0.93,
#: aiohttp's 0.989 for 0.98; fetch and cold reads the same (a frame decodes at the same speed
#: whatever its level).
DELTA_LEVEL: Final = 7

#: Leaves of the reference file within this distance of the new leaf's scaled position are
#: references too (the table in the module docstring: 128 KiB was as good as 256 KiB).
MARGIN: Final = 128 * KiB
#: Deepest chain of references a read may have to decode. Each level widens the window by
#: :data:`MARGIN` either side, so a cold read of a leaf at depth d decodes about d * (d + 3)
#: 256 KiB leaves: 304 at 16, around 75 MB of zstd at ~1 GB/s. Git's default pack depth is 50;
#: 16 keeps a random read well under a second and means one plain copy of a file that changes
#: in every release per 16 releases (the benchmark's chains have 10, so it never restarts there).
MAX_DEPTH: Final = 16
#: Flag beside the depth in a delta's first varint (depths take bits 0-4: at most
#: :data:`MAX_DEPTH`, 16): the frame holds :func:`importer.sinks.x86.encode` of the block in
#: form 1, made against the same transform of each reference. Code before schema 10 reads the
#: field as a depth of 33 or more and refuses the delta; the store records schema 10 first
#: (:data:`~importer.sinks.store.schema.X86_DELTAS_SCHEMA`).
X86_FILTERED: Final = 0x20
#: The same in form 2 (bit 6; the first varint stays one byte, under 0x80). Code before schema
#: 12 refuses the delta (as a depth over 16 before 10, as an unknown flag in 10); the store
#: records schema 12 first (:data:`~importer.sinks.store.schema.X86_FORM2_SCHEMA`). Both bits
#: set is no form and refused.
X86_FILTERED_2: Final = 0x40
_DEPTH_BITS: Final = X86_FILTERED - 1
#: The x86 form of each value of the bits above the depth; any other value is refused.
_FORM_OF_FLAGS: Final = {0: 0, X86_FILTERED: 1, X86_FILTERED_2: 2}
_FLAGS_OF_FORM: Final = {form: flags for flags, form in _FORM_OF_FLAGS.items()}
#: Bytes of a reference's digest a delta header leaves out (:func:`short_ref`), of a digest of at
#: least :data:`REF_DIGEST_FROM`: the 8 it keeps, with the CID's prefix (10 bytes for a CIDv0,
#: 12 for a raw-leaf CIDv1), name one block among the store's n with odds of about n / 2**64 of
#: another sharing them, and finding a block that does takes 2**64 hashes. The references
#: were 35 of the 40-odd bytes a reference took in a delta's header, incompressible, about
#: 230 KB in unseen7's optimized stores (6,581 references); 24 fewer bytes each are 158 KB,
#: the last of what kept those stores from 5x (REPORT.md, "Keys and short references").
REF_BYTES_DROPPED: Final = 24
REF_DIGEST_FROM: Final = 32
#: At most this many references per delta (and so per dictionary): a 256 KiB leaf scaled onto
#: a file of similar size with the margin covers 3 leaves, 4 when the boundaries fall badly;
#: more means the old file is much larger, and a huge dictionary only slows zstd down.
MAX_REFS: Final = 6


def reference_span(offset: int, length: int, size: int, old: Sequence[LeafSpan], old_size: int) -> list[bytes]:
    """The leaves of the old file (``old``, in file order, ``old_size`` bytes) to delta the new leaf against.

    The new leaf is ``length`` bytes at ``offset`` of a ``size``-byte file; its position is
    scaled onto the old file and widened by :data:`MARGIN` either side; every old leaf that
    overlaps that window is a reference, up to :data:`MAX_REFS` around the window's middle.
    """
    if size <= 0 or length <= 0 or old_size <= 0 or not old:
        return []
    start = offset * old_size // size - MARGIN
    end = -(-(offset + length) * old_size // size) + MARGIN
    picked = [leaf for leaf in old if leaf.offset < end and leaf.offset + leaf.length > start and leaf.length > 0]
    if len(picked) > MAX_REFS:
        middle = (start + end) // 2
        nearest = sorted(picked, key=lambda leaf: abs(leaf.offset + leaf.length // 2 - middle))[:MAX_REFS]
        picked = sorted(nearest, key=lambda leaf: leaf.offset)
    return [leaf.cid for leaf in picked]


@dataclass(frozen=True, slots=True)
class DeltaHeader:
    """The part of a delta payload before its zstd frame."""

    depth: int
    refs: tuple[bytes, ...]
    frame_offset: int
    #: The form of the x86 filter the frame was made over (:data:`X86_FILTERED`,
    #: :data:`X86_FILTERED_2`), 0 for none.
    x86_form: int = 0


def encode_payload(block: bytes, refs: Sequence[bytes], ref_blocks: Sequence[bytes], depth: int,
                   level: int = DELTA_LEVEL, *, filtered: bool = False, form: int | None = None) -> bytes:
    """The delta payload of ``block`` against the blocks ``ref_blocks`` (CIDs ``refs``) at ``depth``;
    ``level``: zstd's (``store optimize --level 19`` remakes the deltas of cold packs: 24% smaller
    on aiohttp's 294 deltas of unseen7, 1.13 -> 0.85 MB, in 29 ms a delta). A block that looks
    like machine code (:func:`importer.sinks.x86.looks_like_code`) is also tried with the x86
    filter, and the smaller payload kept (the table in :mod:`importer.sinks.x86`); ``filtered``: only
    with the filter (``store optimize`` remaking a delta that was smaller filtered: at level 19 the
    second try made optimizing pandas' store take 1.5-1.6x as long); ``form``: the filter's
    (:data:`importer.sinks.x86.FORMS`; None, the one new writes use, :data:`importer.sinks.x86.FORM`)."""
    if not 0 < depth <= MAX_DEPTH:
        raise ValueError(f"delta depth {depth} outside 1..{MAX_DEPTH}")
    if not refs or len(refs) != len(ref_blocks):
        raise ValueError("a delta needs its reference blocks")
    form = x86.FORM if form is None else form
    if filtered:
        return _filtered_payload(block, refs, ref_blocks, depth, level, form)
    payload = _header(depth, refs) + _compress(block, ref_blocks, level)
    if x86.looks_like_code(block):
        made = _filtered_payload(block, refs, ref_blocks, depth, level, form)
        if len(made) < len(payload):
            return made
    return payload


def _filtered_payload(block: bytes, refs: Sequence[bytes], ref_blocks: Sequence[bytes], depth: int,
                      level: int, form: int) -> bytes:
    return _header(depth, refs, form) + _compress(
        x86.encode(block, form), [x86.encode(ref, form) for ref in ref_blocks], level)


def _compress(block: bytes, ref_blocks: Sequence[bytes], level: int) -> bytes:
    compressor = zstandard.ZstdCompressor(level=level, dict_data=_dictionary(ref_blocks), write_checksum=False,
                                          write_dict_id=False, write_content_size=True)
    return compressor.compress(block)


def _header(depth: int, refs: Sequence[bytes], form: int = 0) -> bytes:
    """The header of a delta at ``depth`` against ``refs`` (as :func:`short_ref`), made over x86
    ``form`` (0: none)."""
    header = bytearray(encode_uvarint(depth | _FLAGS_OF_FORM[form]) + encode_uvarint(len(refs)))
    for cid in refs:
        ref = short_ref(cid)
        header += encode_uvarint(len(ref)) + ref
    return bytes(header)


def short_ref(cid: bytes) -> bytes:
    """How a delta header names the reference ``cid``: without the last :data:`REF_BYTES_DROPPED`
    bytes of a digest of :data:`REF_DIGEST_FROM` bytes or more (not an identity hash, whose
    "digest" is the block itself); anything else, and a name already short, as it is."""
    try:
        _, _, code, digest = split_cid(cid)
    except InvalidCid:
        return cid
    return cid[:-REF_BYTES_DROPPED] if code != IDENTITY and len(digest) >= REF_DIGEST_FROM else cid


def with_depth(payload: bytes, depth: int) -> bytes:
    """``payload`` with its depth replaced (the frame does not depend on it)."""
    if not 0 < depth <= MAX_DEPTH:
        raise ValueError(f"delta depth {depth} outside 1..{MAX_DEPTH}")
    header = read_header(payload)
    return _header(depth, header.refs, header.x86_form) + payload[header.frame_offset:]


def read_header(payload: bytes) -> DeltaHeader:
    """The depth and references of a delta payload; UndecodablePayload if it is not one."""
    try:
        field, pos = decode_uvarint(payload, 0)
        count, pos = decode_uvarint(payload, pos)
        depth = field & _DEPTH_BITS
        form = _FORM_OF_FLAGS.get(field & ~_DEPTH_BITS)
        if form is None:
            raise UndecodablePayload(f"delta header has unknown flags {field & ~_DEPTH_BITS:#x}")
        if not 0 < depth <= MAX_DEPTH or not 0 < count <= MAX_REFS:
            raise UndecodablePayload(f"delta header says depth {depth}, {count} references")
        refs = []
        for _ in range(count):
            length, pos = decode_uvarint(payload, pos)
            if not 0 < length <= 128 or pos + length > len(payload):
                raise UndecodablePayload("delta header names a reference that does not fit")
            refs.append(payload[pos:pos + length])
            pos += length
    except ValueError as e:  # a truncated or overlong varint
        raise UndecodablePayload(f"delta header does not parse ({e})") from None
    return DeltaHeader(depth, tuple(refs), pos, form)


def decode_payload(payload: bytes, size: int, fetch: Callable[[bytes], bytes]) -> bytes:
    """The block a delta payload holds; ``fetch(cid)`` returns a reference block, already verified."""
    header = read_header(payload)
    frame = payload[header.frame_offset:]
    frame_parameters(frame, size)
    ref_blocks = [fetch(cid) for cid in header.refs]
    if header.x86_form:
        ref_blocks = [x86.encode(ref, header.x86_form) for ref in ref_blocks]
    block = decompress_frame(zstandard.ZstdDecompressor(dict_data=_dictionary(ref_blocks)), frame, size)
    return x86.decode(block, header.x86_form) if header.x86_form else block


def _dictionary(ref_blocks: Sequence[bytes]) -> zstandard.ZstdCompressionDict:
    return zstandard.ZstdCompressionDict(b"".join(ref_blocks), dict_type=zstandard.DICT_TYPE_RAWCONTENT)
