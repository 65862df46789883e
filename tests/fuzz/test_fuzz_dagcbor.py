"""Fuzz the DAG-CBOR decoder and the archive root/recipe/page readers on top of it.

Any bytes decode to a value that re-encodes to the very same bytes (the decoder accepts only the
canonical form), or fail with one InvalidBlock line. A mutated root, recipe or page, put under
its own CID beside the real blocks of ``tests.fuzz.seeds.recipe_v1_car``, either rebuilds (and
then matches its sha256) or fails with an ImporterError: no other exception, no unbounded work.
"""

from __future__ import annotations

import contextlib
from functools import cache
from typing import Any

from hypothesis import given

from importer.archive.rebuild import rebuild
from importer.dag.cbor import Link, decode_dag_cbor, encode_dag_cbor
from importer.dag.cid import DAG_CBOR, cid_of_block
from importer.errors import ImporterError, InvalidBlock
from importer.sinks.base import MemorySink

from .harness import FUZZ, inputs
from .seeds import real_blocks


def _has_float(value: Any) -> bool:
    if isinstance(value, float):
        return True
    if isinstance(value, list):
        return any(_has_float(v) for v in value)
    if isinstance(value, dict):
        return any(_has_float(v) for v in value.values())
    return False


@FUZZ
@given(data=inputs("dagcbor"))
def test_dag_cbor_decodes_canonically_or_fails_with_one_line(data: bytes) -> None:
    try:
        value = decode_dag_cbor(data, "fuzz")
    except InvalidBlock as e:
        assert "\n" not in str(e)
        return
    if not _has_float(value):  # the encoder writes only what the importer needs: no floats
        assert encode_dag_cbor(value) == data


@cache
def _real() -> tuple[dict[bytes, bytes], tuple[bytes, ...]]:
    roots, blocks = real_blocks()
    return dict(blocks), roots


def _dag(block: bytes) -> tuple[MemorySink, list[bytes]]:
    """The real blocks plus ``block`` used as a root, as a recipe of a real root, and as the page
    of a real recipe; return the source and the roots to rebuild."""
    blocks, roots = _real()
    sink = MemorySink()
    sink.blocks.update(blocks)

    def put(value: Any) -> bytes:
        encoded = encode_dag_cbor(value)
        cid = cid_of_block(1, DAG_CBOR, encoded)
        sink.blocks[cid] = encoded
        return cid

    cid = cid_of_block(1, DAG_CBOR, block)
    sink.blocks[cid] = block
    root = decode_dag_cbor(blocks[roots[0]])
    recipe = decode_dag_cbor(blocks[bytes(root["recipe"])])
    count = 1
    with contextlib.suppress(InvalidBlock):
        page = decode_dag_cbor(block)
        count = len(page) if isinstance(page, list) else 1
    as_page = put({**recipe, "pages": [Link(cid)], "members": count})
    return sink, [cid, put({**root, "recipe": Link(cid)}), put({**root, "recipe": Link(as_page)})]


@FUZZ
@given(data=inputs("dagcbor"))
def test_mutated_roots_recipes_and_pages_rebuild_or_fail_with_importer_errors(data: bytes) -> None:
    sink, roots = _dag(data)
    for root in roots:
        try:
            rebuild(sink, root)  # the sha256 is checked: success means the very archive
        except ImporterError as e:
            assert "\n" not in str(e)
