"""Compression at rest for the block store: zstd frames, and trained zstd dictionaries for small blocks.

The store keeps the CID of the *uncompressed* block, so compression never changes a CID: it only
changes the ``(encoding, data)`` pair of a row. Encodings:

* 0 identity: ``data`` is the block.
* 1 zstd: ``data`` is one zstd frame (content size in the header, no checksum: every read is
  hashed against the CID, which is a far stronger check than zstd's 32-bit xxhash).
* 2 zstd with a dictionary: one zstd frame whose header carries the dictionary ID; that ID is the
  ``id`` of a row of the store's ``dictionaries`` table (the ID is patched into the trained
  dictionary's own header before it is stored, so ``zstd -D`` with the exported dictionary
  decodes the frame too). A frame naming a dictionary the store does not have is corrupt.
* 3 zstd against other blocks (:mod:`importer.sinks.delta`): the store decodes these itself,
  since only it can fetch the references; this codec refuses them.

Level and dictionary, from ``python -m bench.perf_store --wheels W.whl ...`` on ten real wheels
(pip 23.2.1/24.2, setuptools 56.0.0/67.6.1/84.2.1, wheel 0.40.0/0.43.0, flit_core 3.12.0,
PyYAML 6.0.2 and MarkupSafe 3.0.2 for CPython 3.11 x86_64) imported by this program: 1,752
blocks, 22.2 MB logical, 1,427 blocks under 16 KiB. One core of a shared 2-core machine; speeds
are the range over three runs::

    level  1: ratio 3.11, 129-254 MB/s    level  9: ratio 3.50, 21-27 MB/s
    level  3: ratio 3.26, 107-139 MB/s    level 19: ratio 3.67,   2 MB/s
    level  6: ratio 3.45,  38-52 MB/s

Importing those wheels (inflate, chunk, hash) ran at 4.7-7.4 MB/s and the codec at level 3 at
104-269 MB/s, so level 3 costs 2-7% of an import's time; level 9 would cost 20-35% for 7% less
space and level 19 several times the import for 11% less: level 3 (zstd's own default) it is.

Dictionaries: trained on every other block under :data:`SMALL_BLOCK` and measured on the rest
(2.68 MB), level 3 reached ratio 2.71 without a dictionary, 3.07 with a 32 KiB one and 3.16 with
a 64 KiB one. By size class (same split): 256 B-1 KiB 1.37 -> 1.68, 1-4 KiB 2.32 -> 2.95,
4-16 KiB 2.95 -> 3.38, 16-64 KiB 3.50 -> 3.74, 64 KiB and up 3.52 -> 3.53; blocks under 256 B
(dag-pb nodes, mostly hashes) 1.07 -> 1.23. Hence dictionaries for blocks under 16 KiB, where
they gain 14-27%, and not above (7% at 16-64 KiB, nothing past 64 KiB); and 64 KiB dictionaries.
End to end, ``store optimize`` on the ten wheels' store (a 56,025-byte dictionary trained on all
1,427 small blocks, which then moved to it) took it from ratio 3.26 to 3.38, dictionary included.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.resources import files
from typing import Final

import zstandard

KiB: Final = 1024

ENCODING_IDENTITY: Final = 0
ENCODING_ZSTD: Final = 1
ENCODING_ZSTD_DICT: Final = 2
#: A zstd frame made against other blocks of the store; decoded by the store, which holds them
#: (payload format in :mod:`importer.sinks.delta`).
ENCODING_DELTA: Final = 3
#: Names in ``store stats``; 4 and 5 are packed blocks and packed deltas (:mod:`importer.sinks.packs`).
ENCODING_NAMES: Final = {ENCODING_IDENTITY: "identity", ENCODING_ZSTD: "zstd", ENCODING_ZSTD_DICT: "zstd+dict",
                         ENCODING_DELTA: "zstd+delta", 4: "packed", 5: "packed delta"}

#: zstd level for every frame; derived in the module docstring.
LEVEL: Final = 3
#: Blocks smaller than this are compressed with the newest dictionary and are the dictionary's
#: training samples: dag-pb nodes, recipes and the small files of a wheel.
SMALL_BLOCK: Final = 16 * KiB
#: Largest dictionary trained: 64 KiB beat 32 KiB by 3% on small blocks (module docstring).
DICT_SIZE: Final = 64 * KiB
#: zstd's trainer documentation asks for samples totalling about 100x the dictionary size, so a
#: sample of S bytes trains a dictionary of S/100 bytes, up to :data:`DICT_SIZE` ...
DICT_SAMPLE_RATIO: Final = 100
#: ... and never below 1 KiB (zstd refuses capacities under 256 bytes; a dictionary of a few
#: hundred bytes holds too little shared content to be worth its row).
MIN_DICT_SIZE: Final = 1 * KiB
#: Fewer samples than this and the trainer's statistics mean nothing (zstd's docs speak of
#: "a few thousand"; a hundred is the floor below which training is not attempted at all).
MIN_SAMPLES: Final = 100
#: A compressed block is kept only if it saves at least 1/32 (3%) of the block and at least 8
#: bytes: below that, every later read would pay a decompression for next to no space.
MIN_SAVING_FRACTION: Final = 32
MIN_SAVING_BYTES: Final = 8
#: Blocks of at least :data:`PROBE_MIN` bytes are first probed: their first :data:`PROBE` bytes
#: are compressed, and if those do not save 1/32 the block is stored raw without compressing the
#: rest. Leaves of already-compressed members (PNG, nested archives) are then refused for 1/16
#: of the work. On the ten-wheel mix the probe refused no block that would have shrunk (same
#: ratio, 3.2554), and lifted zstd on incompressible 256 KiB leaves from 2.8 to 19 GB/s.
PROBE: Final = 16 * KiB
PROBE_MIN: Final = 4 * PROBE

#: The dictionary the package ships, trained on Python packages by ``python -m bench.train_dictionary``
#: (source files, metadata, RECORD files, directory nodes and recipes of 129 archives of 81 top100
#: projects): a store that has trained none of its own compresses small blocks with it, so the
#: first archives of a new store benefit. A frame made with it names :data:`SHIPPED_ID`, and
#: every later version of the package must ship that dictionary under that ID to read them.
SHIPPED_DICTIONARY: Final = files("importer.sinks").joinpath("data", "python.zdict")
#: Its ID: far above the store's own, which count from 1 (zstd reserves IDs from 2**31).
SHIPPED_ID: Final = 1 << 30

#: Magic number that opens a zstd dictionary; the 4 bytes after it are its ID, little-endian.
_DICT_MAGIC: Final = b"\x37\xa4\x30\xec"
#: Magic number that opens a zstd frame: a row of ``dictionaries`` that starts with it holds its
#: dictionary as one zstd frame (:func:`stored_dictionary`).
_FRAME_MAGIC: Final = b"\x28\xb5\x2f\xfd"
#: zstd level of a stored dictionary: written once, read once per process. At 19 the nine
#: trained dictionaries of unseen7's and the top100 subset's stores (``/work/tmp`` prototype on
#: the stores of REPORT.md "Keys and short references", 2026-12-08) take 0.26-0.48 of their
#: size: 267,778 B -> 96,532 B in all (grpcio's 65,536 -> 17,111, pandas' 58,290 -> 22,258).
STORED_DICTIONARY_LEVEL: Final = 19
#: Largest dictionary a stored frame may decode to: the largest the store trains
#: (:data:`DICT_SIZE`) with room to spare, so a damaged row cannot make a read allocate more.
MAX_STORED_DICTIONARY: Final = 16 * DICT_SIZE


class UndecodablePayload(Exception):
    """A stored payload that is not a valid frame of its encoding; the store reports it as corrupt."""


class UnknownEncoding(Exception):
    """A row written by a newer version with an encoding this one does not know."""


@dataclass(frozen=True, slots=True)
class Dictionary:
    """One row of the ``dictionaries`` table."""

    id: int
    data: bytes
    trained_at: float
    samples: int


def shipped_dictionary() -> bytes | None:
    """The bytes of :data:`SHIPPED_DICTIONARY` (None if this installation lacks it)."""
    global _shipped
    if _shipped is None:
        try:
            _shipped = SHIPPED_DICTIONARY.read_bytes()
        except OSError:
            _shipped = b""
    return _shipped or None


_shipped: bytes | None = None


def train_dictionary(samples: Sequence[bytes], dict_id: int) -> bytes | None:
    """A zstd dictionary trained on ``samples`` and carrying ``dict_id``; None if zstd cannot train one."""
    if len(samples) < MIN_SAMPLES:
        return None
    size = min(DICT_SIZE, max(MIN_DICT_SIZE, sum(map(len, samples)) // DICT_SAMPLE_RATIO))
    try:
        trained = zstandard.train_dictionary(size, list(samples), level=LEVEL)
    except zstandard.ZstdError:
        return None  # e.g. samples too uniform or too small to learn from
    return with_dict_id(trained.as_bytes(), dict_id)


def with_dict_id(dictionary: bytes, dict_id: int) -> bytes:
    """``dictionary`` with its header's ID replaced: the store numbers dictionaries itself."""
    if not dictionary.startswith(_DICT_MAGIC):
        raise ValueError("not a zstd dictionary")
    if not 0 < dict_id < 1 << 31:  # 0 means "no dictionary"; zstd reserves IDs >= 2**31
        raise ValueError(f"dictionary id {dict_id} out of range")
    return dictionary[:4] + struct.pack("<I", dict_id) + dictionary[8:]


def stored_dictionary(dictionary: bytes) -> bytes:
    """What a ``dictionaries`` row holds for ``dictionary``: one zstd frame of it when that is
    smaller (the dictionary itself otherwise); :func:`loaded_dictionary` reverses it."""
    frame = zstandard.ZstdCompressor(level=STORED_DICTIONARY_LEVEL, write_checksum=False).compress(dictionary)
    return frame if len(frame) < len(dictionary) else dictionary


def loaded_dictionary(row: bytes) -> bytes:
    """The dictionary a ``dictionaries`` row holds (:func:`stored_dictionary`); UndecodablePayload
    if it is neither a dictionary nor a frame of one."""
    if row.startswith(_DICT_MAGIC):
        return row
    if not row.startswith(_FRAME_MAGIC):
        raise UndecodablePayload("a dictionary row that is neither a zstd dictionary nor a frame of one")
    try:
        size = zstandard.get_frame_parameters(row).content_size
    except zstandard.ZstdError as e:
        raise UndecodablePayload(f"a dictionary row with no zstd frame header ({e})") from None
    if not 0 < size <= MAX_STORED_DICTIONARY:  # checked before zstd allocates what the header claims
        raise UndecodablePayload(f"a dictionary row whose frame declares {size} bytes")
    try:
        dictionary = decompress_frame(zstandard.ZstdDecompressor(), row, size)
    except UndecodablePayload as e:
        raise UndecodablePayload(f"a dictionary row whose {e}") from None
    if not dictionary.startswith(_DICT_MAGIC):
        raise UndecodablePayload("a dictionary row whose frame holds no zstd dictionary")
    return dictionary


def is_stored_frame(row: bytes) -> bool:
    """Whether a ``dictionaries`` row holds its dictionary as a frame (schema 13)."""
    return row.startswith(_FRAME_MAGIC)


def _saves_enough(size: int, compressed: int) -> bool:
    return compressed <= size - max(MIN_SAVING_BYTES, size // MIN_SAVING_FRACTION)


def frame_parameters(frame: bytes, size: int) -> zstandard.FrameParameters:
    """The header of a stored zstd frame, checked to declare the row's ``size``.

    The size check comes before decompressing: a damaged header must not make zstd allocate
    whatever content size it claims.
    """
    try:
        params = zstandard.get_frame_parameters(frame)
    except zstandard.ZstdError as e:
        raise UndecodablePayload(f"no zstd frame header ({e})") from None
    if params.content_size != size:
        raise UndecodablePayload(f"zstd frame declares {params.content_size} bytes, the row {size}")
    return params


def decompress_frame(decompressor: zstandard.ZstdDecompressor, frame: bytes, size: int) -> bytes:
    """``frame`` decompressed to exactly ``size`` bytes, else UndecodablePayload."""
    try:
        block = decompressor.decompress(frame, max_output_size=size)
    except zstandard.ZstdError as e:
        raise UndecodablePayload(f"zstd frame does not decode ({e})") from None
    if len(block) != size:
        raise UndecodablePayload(f"zstd frame decodes to {len(block)} bytes, the row says {size}")
    return block


class BlockCodec:
    """Encodes blocks for storage and decodes stored payloads back; not thread-safe.

    ``load_dictionary(id)`` returns a dictionary's bytes (or None) when a payload names one this
    codec has not seen; :meth:`use_dictionary` makes one the dictionary for new small blocks.
    """

    def __init__(self, *, compress: bool, load_dictionary: Callable[[int], bytes | None]) -> None:
        self.compress = compress
        self._load = load_dictionary
        self._plain = zstandard.ZstdCompressor(level=LEVEL, write_checksum=False)
        self._plain_d = zstandard.ZstdDecompressor()
        self._dict_c: tuple[int, zstandard.ZstdCompressor] | None = None
        self._dict_d: dict[int, zstandard.ZstdDecompressor] = {}

    @property
    def dictionary_id(self) -> int:
        """ID of the dictionary new small blocks are compressed with (0: none)."""
        return self._dict_c[0] if self._dict_c else 0

    def use_dictionary(self, dict_id: int, data: bytes) -> None:
        d = zstandard.ZstdCompressionDict(data, dict_type=zstandard.DICT_TYPE_FULLDICT)
        d.precompute_compress(level=LEVEL)  # build the tables once, not per small block
        self._dict_c = (dict_id, zstandard.ZstdCompressor(dict_data=d, write_checksum=False))

    def encode(self, block: bytes, compressor: zstandard.ZstdCompressor | None = None) -> tuple[int, bytes]:
        """``(encoding, payload)``: compressed if that saves enough, else the block as is.

        ``compressor``: what compresses a block that gets no dictionary, after the probe (the
        store's packs use a stronger level for large blocks); level :data:`LEVEL` by default.
        """
        if not self.compress or len(block) <= MIN_SAVING_BYTES:
            return ENCODING_IDENTITY, block
        if self._dict_c is not None and len(block) < SMALL_BLOCK:
            encoding, payload = ENCODING_ZSTD_DICT, self._dict_c[1].compress(block)
        else:
            if len(block) >= PROBE_MIN and not _saves_enough(PROBE, len(self._plain.compress(block[:PROBE]))):
                return ENCODING_IDENTITY, block
            encoding, payload = ENCODING_ZSTD, (compressor or self._plain).compress(block)
        if not _saves_enough(len(block), len(payload)):
            return ENCODING_IDENTITY, block
        return encoding, payload

    def decode(self, encoding: int, payload: bytes, size: int) -> bytes:
        """The block stored as ``payload``; ``size`` is its recorded logical length."""
        if encoding == ENCODING_IDENTITY:
            return payload
        if encoding not in (ENCODING_ZSTD, ENCODING_ZSTD_DICT):
            raise UnknownEncoding(encoding)
        params = frame_parameters(payload, size)
        if encoding == ENCODING_ZSTD_DICT:
            if params.dict_id == 0:
                raise UndecodablePayload("zstd frame names no dictionary")
            decompressor = self._decompressor(params.dict_id)
        elif params.dict_id != 0:
            raise UndecodablePayload(f"plain zstd frame names dictionary {params.dict_id}")
        else:
            decompressor = self._plain_d
        return decompress_frame(decompressor, payload, size)

    def decode_frame(self, frame: bytes, size: int) -> bytes:
        """A zstd frame of ``size`` bytes, plain or made with one of the store's dictionaries (its header says which)."""
        params = frame_parameters(frame, size)
        decompressor = self._decompressor(params.dict_id) if params.dict_id else self._plain_d
        return decompress_frame(decompressor, frame, size)

    def _decompressor(self, dict_id: int) -> zstandard.ZstdDecompressor:
        decompressor = self._dict_d.get(dict_id)
        if decompressor is None:
            data = self._load(dict_id)
            if data is None:
                raise UndecodablePayload(f"zstd frame names dictionary {dict_id}, which the store does not have")
            d = zstandard.ZstdCompressionDict(data, dict_type=zstandard.DICT_TYPE_FULLDICT)
            decompressor = self._dict_d[dict_id] = zstandard.ZstdDecompressor(dict_data=d)
        return decompressor
