"""The DAG-CBOR link scanner (what gc and store verify follow) finds exactly the links the reference
decoder does, in the same order, and refuses what is not CBOR with the offset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dag_cbor
import pytest
from hypothesis import given
from hypothesis import strategies as st

from importer.dag.cbor import Link, encode_dag_cbor
from importer.dag.cbor_links import cbor_links
from importer.dag.cid import DAG_CBOR, RAW, cid_codec, cid_of_block
from importer.errors import InvalidBlock
from importer.sinks.car import iter_links
from importer.sinks.store import BlockStore

from .archive_builders import ZipEntry, build_zip, python_source
from .archive_checks import import_json
from .conftest import RunCli
from .fuzz.harness import FUZZ

CIDS = [cid_of_block(1, RAW, bytes([i])) for i in range(4)] + [cid_of_block(0, 0x70, b"x")]

values: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**64) + 1, 2**64 - 1) | st.binary(max_size=40)
    | st.text(max_size=20) | st.sampled_from(CIDS).map(Link),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner, max_size=6),
    max_leaves=40)


def _links_in_order(value: Any) -> list[bytes]:
    if isinstance(value, Link):
        return [bytes(value)]
    if isinstance(value, list):
        return [c for item in value for c in _links_in_order(item)]
    if isinstance(value, dict):
        ordered = sorted(value, key=lambda k: (len(k.encode()), k.encode()))  # DAG-CBOR's key order
        return [c for key in ordered for c in _links_in_order(value[key])]
    return []


@given(value=values)
def test_links_equal_the_reference_decoders_in_encoded_order(value: Any) -> None:
    block = encode_dag_cbor(value)
    cid = cid_of_block(1, DAG_CBOR, block)
    assert cbor_links(block, "x") == iter_links(cid, block) == _links_in_order(value)


@FUZZ
@given(data=st.binary(max_size=300))
def test_any_bytes_give_links_or_invalid_block_and_agree_where_the_reference_decodes(data: bytes) -> None:
    try:
        found = cbor_links(data, "x")
    except InvalidBlock:
        found = None
    try:
        reference = iter_links(cid_of_block(1, DAG_CBOR, data), data)
    except InvalidBlock:
        return
    assert found == reference


def test_every_dag_cbor_block_of_an_imported_archive_gives_the_reference_links(tmp_path: Path, cli: RunCli) -> None:
    wheel = tmp_path / "w-1.0-py3-none-any.whl"
    inner = build_zip([ZipEntry(b"i/a.py", python_source(3, 200))])
    wheel.write_bytes(build_zip([ZipEntry(b"w/a.py", python_source(4, 300)), ZipEntry(b"w/inner.zip", inner),
                                 ZipEntry(b"w-1.0.dist-info/WHEEL", b"Wheel-Version: 1.0\n")]))
    import_json(cli, wheel, tmp_path / "s", "--open-nested")
    with BlockStore(tmp_path / "s") as store:
        blocks = [(cid, store.get(cid)) for cid in store.iter_cids() if cid_codec(cid) == DAG_CBOR]
    assert len(blocks) >= 6  # root, recipe and page, of the wheel and of its nested zip
    assert sum(len(cbor_links(b, "x")) for _, b in blocks) >= 8
    for cid, block in blocks:
        assert cbor_links(block, "x") == iter_links(cid, block)


@pytest.mark.parametrize(("block", "reason", "offset"), [
    (b"\x82\x01", "the block ends inside a value", 2),
    (b"\x19\x01", "the block ends inside a head", 0),
    (b"\x9f\x01\xff", "additional information 31 (indefinite length or reserved) is not DAG-CBOR", 0),
    (b"\x01\x02", "bytes after the end of the value", 1),
    (b"\xd8\x2b\x41\x00", "tag 43 (DAG-CBOR allows only tag 42, a link)", 0),
    (b"\xd8\x2a\x01", "tag 42 must wrap a byte string", 2),
    (b"\xd8\x2a\x42\x01\x55", "a link must start with the identity multibase prefix 0x00", 2),
    (b"\xd8\x2a\x43\x00\x02\x55", "a link that is not a CID (unsupported CID version 2)", 2),
    (b"\x5a\xff\xff\xff\xff", "a string of 4294967295 bytes runs past the end of the block", 0),
])
def test_what_is_not_cbor_is_refused_with_the_offset(block: bytes, reason: str, offset: int) -> None:
    with pytest.raises(InvalidBlock) as e:
        cbor_links(block, "bafyfake")
    assert (e.value.cid, e.value.reason, e.value.offset) == ("bafyfake", "dag-cbor: " + reason, offset)


def test_a_reference_dag_cbor_encoding_decodes_to_what_the_scanner_reads() -> None:
    value = {"tree": dag_cbor.decode(encode_dag_cbor(Link(CIDS[0])))}
    block = dag_cbor.encode(value)
    assert cbor_links(block, "x") == [CIDS[0]]
