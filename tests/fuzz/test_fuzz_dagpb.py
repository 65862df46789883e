"""Fuzz the dag-pb and UnixFS Data decoders (any bytes decode or fail with InvalidBlock, nothing else)
and the UnixFS readers and ``get``'s writer on top of them."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from functools import cache
from pathlib import Path

from hypothesis import given

from importer.cli.extract import extract
from importer.dag.cid import DAG_PB, cid_of_block
from importer.dag.dagpb import decode_node
from importer.dag.reader import iter_directory, iter_file, iter_tree_files, lookup, stat
from importer.dag.unixfs import decode_unixfs
from importer.errors import ImporterError, InvalidBlock
from importer.sinks.base import MemorySink
from importer.sinks.car import iter_dag

from .harness import FUZZ, inputs
from .seeds import real_blocks


@FUZZ
@given(data=inputs("dagpb"))
def test_dagpb_and_unixfs_decoders_fail_only_with_invalid_block(data: bytes) -> None:
    try:
        node = decode_node(data, "fuzz")
    except InvalidBlock as e:
        assert "\n" not in str(e)
        return
    if node.data is not None:
        try:
            decode_unixfs(node.data, "fuzz")
        except InvalidBlock as e:
            assert "\n" not in str(e)


@cache
def _real_blocks() -> dict[bytes, bytes]:
    return dict(real_blocks()[1])


@FUZZ
@given(data=inputs("dagpb"))
def test_unixfs_readers_on_a_mutated_node_fail_only_with_importer_errors(data: bytes) -> None:
    """The node, put under its own CID beside real trees and files, is read by every walk the
    commands use (stat, cat, ls, get, export): a result or one ImporterError line each."""
    sink = MemorySink()
    sink.blocks.update(_real_blocks())
    cid = cid_of_block(0, DAG_PB, data)
    sink.blocks[cid] = data
    walks: list[Callable[[], object]] = [
        lambda: stat(sink, cid),
        lambda: sum(len(piece) for piece in iter_file(sink, cid)),
        lambda: [entry.name for entry in iter_directory(sink, cid)],
        lambda: lookup(sink, cid, "oldfmt"),
        lambda: sum(1 for _ in iter_dag(sink, cid)),
        lambda: list(iter_tree_files(sink, cid)),
    ]
    for walk in walks:
        try:
            walk()
        except ImporterError as e:
            assert "\n" not in str(e)
    with tempfile.TemporaryDirectory() as folder:
        try:
            extract(sink, cid, Path(folder) / "out")
        except ImporterError as e:
            assert "\n" not in str(e)
        except OSError as e:  # what the file system refuses (a 4 KiB link target): one line in the CLI
            assert e.errno is not None
        else:
            return
        assert os.listdir(folder) == []
