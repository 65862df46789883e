"""Sinks: where blocks go (embedded store, CAR file, memory, nowhere) and are read back from."""

from .base import BlockSink, BlockSource, MemorySink, NullSink

__all__ = ["BlockSink", "BlockSource", "MemorySink", "NullSink"]
