"""Chunkers: split a file's bytes into leaves (fixed size, Kubo's rabin and buzhash, FastCDC)."""

from .base import CHUNK_SIZE_LIMIT, DEFAULT_BLOCK_SIZE, Chunker
from .fixed import FixedChunker
from .registry import parse_chunker, register_chunker

__all__ = ["CHUNK_SIZE_LIMIT", "DEFAULT_BLOCK_SIZE", "Chunker", "FixedChunker", "parse_chunker", "register_chunker"]
