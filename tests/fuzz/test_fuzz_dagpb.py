"""Fuzz the dag-pb and UnixFS Data decoders: any bytes decode or fail with InvalidBlock, nothing else."""

from __future__ import annotations

from hypothesis import given

from importer.dag.dagpb import decode_node
from importer.dag.unixfs import decode_unixfs
from importer.errors import InvalidBlock

from .harness import FUZZ, inputs


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
