"""The embedded block store: one SQLite database in WAL mode, the default sink and source.

:class:`BlockStore` is built one role per module:

* :mod:`.schema`: opening the file (WAL, ``busy_timeout``, ``auto_vacuum``), its tables and
  the migrations of older stores;
* :mod:`.base`: the state every layer shares, write transactions, free pages, closing;
* :mod:`.reading`: a block by CID, decoded from any encoding and checked against its CID;
* :mod:`.dictionaries`: the compression setting and the store's trained zstd dictionaries;
* :mod:`.writing`: buffered puts committed as packs (:mod:`importer.sinks.packs`) or rows;
* :mod:`.repack`: each pack's live bytes, empty packs deleted, mostly dead ones rewritten;
* :mod:`.deltas`: blocks stored against others (:mod:`importer.sinks.delta`), kept readable;
* :mod:`.upkeep`: deletes, re-encoding, statistics, verification;
* :mod:`.roots` and :mod:`.pushed`: the archive index, the pins and the roots pushed to nodes;
* :mod:`.blockstore`: the class itself, and the compressor search's attempts memo.

Every name below is importable from :mod:`importer.sinks.store`, the store's public interface.
"""

from .base import (
    AUTO_VACUUM_MODES,
    BATCH_BYTES,
    COMPRESSION_ENV,
    COMPRESSIONS,
    RECLAIM_FRACTION,
    SQL_PARAMS,
    STORE_ENV,
    TRAIN_AFTER,
    default_store_path,
)
from .blockstore import BlockStore
from .deltas import DELTA_ROWS
from .dictionaries import SAMPLE_BLOCKS, SAMPLE_BYTES, TRAIN_GROWTH
from .pushed import PushedRoot
from .reading import DELTA_ENCODINGS, FRAME_CACHE_BYTES, PACKED_ENCODINGS, REFERENCE_CACHE_BYTES
from .records import BlockRow, DeleteReport, EncodingStats, PageStats, StoreStats
from .roots import ArchiveRecord, Pin
from .schema import BUSY_TIMEOUT_MS, DB_NAME, DEFAULT_COMPRESSION, ROWID_SCHEMA_VERSION, SCHEMA_VERSION
from .upkeep import DELETE_ROWS, RECOMPRESS_ROWS

__all__ = [
    "AUTO_VACUUM_MODES",
    "BATCH_BYTES",
    "BUSY_TIMEOUT_MS",
    "COMPRESSIONS",
    "COMPRESSION_ENV",
    "DB_NAME",
    "DEFAULT_COMPRESSION",
    "DELETE_ROWS",
    "DELTA_ENCODINGS",
    "DELTA_ROWS",
    "FRAME_CACHE_BYTES",
    "PACKED_ENCODINGS",
    "RECLAIM_FRACTION",
    "RECOMPRESS_ROWS",
    "REFERENCE_CACHE_BYTES",
    "ROWID_SCHEMA_VERSION",
    "SAMPLE_BLOCKS",
    "SAMPLE_BYTES",
    "SCHEMA_VERSION",
    "SQL_PARAMS",
    "STORE_ENV",
    "TRAIN_AFTER",
    "TRAIN_GROWTH",
    "ArchiveRecord",
    "BlockRow",
    "BlockStore",
    "DeleteReport",
    "EncodingStats",
    "PageStats",
    "Pin",
    "PushedRoot",
    "StoreStats",
    "default_store_path",
]
