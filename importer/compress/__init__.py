"""The compressor registry: which compressor and settings reproduce a compressed stream byte for byte.

The importer stores archive members uncompressed; to rebuild an archive exactly it must compress
them again into the very same bytes. :func:`find_params` searches the known compressors (CPython
zlib, miniz, zlib-ng driven as Rust's flate2 or as CPython's zlib module on zlib-ng, optionally a
zlib-ng 2.2 library, GNU gzip, bz2, xz) for the settings that do, :func:`recompress` replays
them, and :func:`check_compressors` makes sure each runtime compressor still writes the bytes
it is recorded to write before it is trusted (see ``golden.py``).
"""

from __future__ import annotations

from .errors import CompressorUnavailable, InvalidCompressorParams
from .golden import BackendStatus, check_compressors, reset_compressor_checks
from .hints import ProducerHints
from .params import PARAMS_VERSION, CompressorParams
from .rebuild import recompress
from .search import Attempt, SearchResult, find_params, search_params

__all__ = [
    "PARAMS_VERSION",
    "Attempt",
    "BackendStatus",
    "CompressorParams",
    "CompressorUnavailable",
    "InvalidCompressorParams",
    "ProducerHints",
    "SearchResult",
    "check_compressors",
    "find_params",
    "recompress",
    "reset_compressor_checks",
    "search_params",
]
