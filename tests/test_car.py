"""CARv1: header bytes per the spec, Kubo's export order, strict reading, atomic export."""

from __future__ import annotations

import os
from pathlib import Path

import dag_cbor
import pytest
from multiformats import CID

from importer.dag.cid import DAG_CBOR, RAW, cid_of_block, format_cid
from importer.dag.varint import encode_uvarint
from importer.errors import BlockNotFound, InvalidCar
from importer.sinks.car import (
    CARV2_PRAGMA,
    MAX_SECTION,
    CarReader,
    encode_car_header,
    encode_section,
    export_car,
    iter_dag,
    read_car,
)

from .dag_builders import DagBuilder, Link

EMPTY_DIR_V0 = "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"


def cid(text: str) -> bytes:
    return bytes(CID.decode(text))


# -- header ------------------------------------------------------------------------------------

def test_header_for_one_cidv0_root_matches_spec_bytes() -> None:
    root = cid(EMPTY_DIR_V0)
    header = encode_car_header([root])
    # spec section 9: 56-byte header: 38 a2 65 "roots" 81 d8 2a 58 23 00 12 20 <digest> 67 "version" 01
    assert header[0] == 56 and len(header) == 57
    assert header[:16] == bytes.fromhex("38" "a2" "65726f6f7473" "81" "d82a" "5823" "00" "1220")
    assert header[16:48] == root[2:]
    assert header[48:] == b"\x67version\x01"
    assert header[1:] == dag_cbor.encode({"roots": [CID.decode(root)], "version": 1})


@pytest.mark.parametrize("count", [0, 2, 30])
def test_header_equals_dag_cbor_encoding_for_cidv1_roots(count: int) -> None:
    roots = [cid_of_block(1, RAW, str(i).encode()) for i in range(count)]
    header = encode_car_header(roots)
    body = dag_cbor.encode({"roots": [CID.decode(r) for r in roots], "version": 1})
    assert header == encode_uvarint(len(body)) + body


# -- export order ------------------------------------------------------------------------------

def build_tree() -> tuple[DagBuilder, list[bytes]]:
    """root {a: file(L1, L2), b: {c: the same file}, d: raw L1}; returns the expected order."""
    dag = DagBuilder()
    file = dag.file(b"1" * 10 + b"2" * 5, chunk=10, raw_leaves=True, version=1)
    leaf1, leaf2 = cid_of_block(1, RAW, b"1" * 10), cid_of_block(1, RAW, b"2" * 5)
    sub = dag.directory({"c": file}, version=1)
    root = dag.directory({"a": file, "b": sub, "d": Link(leaf1, 10, 10)}, version=1)
    # Pre-order, links in stored order, each block once: b's copy of the file and d are repeats.
    return dag, [root.cid, file.cid, leaf1, leaf2, sub.cid]


def test_iter_dag_is_depth_first_pre_order_each_block_once() -> None:
    dag, expected = build_tree()
    assert [c for c, _ in iter_dag(dag.sink, expected[0])] == expected


def test_export_then_read_car_gives_the_same_blocks_in_order(tmp_path: Path) -> None:
    dag, expected = build_tree()
    target = tmp_path / "out.car"
    summary = export_car(dag.sink, expected[0], target)
    with CarReader(target) as reader:
        assert reader.roots == (expected[0],)
        assert reader.version == 1
        blocks = list(reader)
    assert [c for c, _ in blocks] == expected
    assert all(dag.sink.blocks[c] == b for c, b in blocks)
    assert summary.blocks == 5 and summary.bytes == target.stat().st_size
    assert sorted(os.listdir(tmp_path)) == ["out.car"]


def test_export_bytes_are_header_then_sections(tmp_path: Path) -> None:
    dag, expected = build_tree()
    export_car(dag.sink, expected[0], tmp_path / "out.car")
    want = encode_car_header([expected[0]]) + b"".join(encode_section(c, dag.sink.blocks[c]) for c in expected)
    assert (tmp_path / "out.car").read_bytes() == want


def test_export_of_several_roots_writes_shared_blocks_once(tmp_path: Path) -> None:
    dag, expected = build_tree()
    file_root = expected[1]
    export_car(dag.sink, [file_root, expected[0]], tmp_path / "two.car")
    with CarReader(tmp_path / "two.car") as reader:
        assert reader.roots == (file_root, expected[0])
        order = [c for c, _ in reader]
    assert order == [file_root, expected[2], expected[3], expected[0], expected[4]]


def test_dag_cbor_links_are_followed_in_encounter_order(tmp_path: Path) -> None:
    dag = DagBuilder()
    x, y, z = (dag.put(1, RAW, name) for name in (b"x", b"y", b"z"))
    # Canonical DAG-CBOR puts key "a" before "b", so y and z are met before x.
    block = dag_cbor.encode({"b": CID.decode(x), "a": [CID.decode(y), {"n": CID.decode(z)}]})
    root = dag.put(1, DAG_CBOR, block)
    assert [c for c, _ in iter_dag(dag.sink, root)] == [root, y, z, x]


def test_export_with_a_missing_block_leaves_no_file_behind(tmp_path: Path) -> None:
    dag, expected = build_tree()
    del dag.sink.blocks[expected[3]]
    with pytest.raises(BlockNotFound) as e:
        export_car(dag.sink, expected[0], tmp_path / "out.car")
    assert e.value.cid == format_cid(expected[3])
    assert os.listdir(tmp_path) == []


# -- strict reading ----------------------------------------------------------------------------

def write_car(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "in.car"
    path.write_bytes(data)
    return path


def one_block_car() -> tuple[bytes, bytes, bytes]:
    block = b"hello"
    c = cid_of_block(1, RAW, block)
    return encode_car_header([c]) + encode_section(c, block), c, block


def test_read_car_yields_verified_blocks(tmp_path: Path) -> None:
    data, c, block = one_block_car()
    assert list(read_car(write_car(tmp_path, data))) == [(c, block)]


def test_corrupt_block_is_rejected_with_its_section_offset(tmp_path: Path) -> None:
    data, c, _ = one_block_car()
    path = write_car(tmp_path, data[:-1] + b"O")
    with pytest.raises(InvalidCar) as e:
        list(read_car(path))
    assert e.value.offset == len(encode_car_header([c]))
    assert e.value.reason == f"block {format_cid(c)} does not match its CID"


def test_truncated_section_is_rejected(tmp_path: Path) -> None:
    data, _, _ = one_block_car()
    with pytest.raises(InvalidCar, match="section truncated: 41 bytes expected, 40 present"):
        list(read_car(write_car(tmp_path, data[:-1])))


def test_oversized_section_is_rejected_before_reading_it(tmp_path: Path) -> None:
    _, c, _ = one_block_car()
    header = encode_car_header([c])
    path = write_car(tmp_path, header + encode_uvarint(MAX_SECTION + 1) + b"\x00" * 10)
    with pytest.raises(InvalidCar, match="exceeds the 33554432-byte limit") as e:
        list(read_car(path))
    assert e.value.offset == len(header)


def test_empty_section_is_rejected(tmp_path: Path) -> None:
    data, _, _ = one_block_car()
    with pytest.raises(InvalidCar, match="empty section"):
        list(read_car(write_car(tmp_path, data + b"\x00")))


def test_section_without_a_valid_cid_is_rejected(tmp_path: Path) -> None:
    _, c, _ = one_block_car()
    header = encode_car_header([c])
    with pytest.raises(InvalidCar, match="does not start with a CID"):
        list(read_car(write_car(tmp_path, header + b"\x03\x02\x55\x12")))


@pytest.mark.parametrize(("body", "reason"), [
    (dag_cbor.encode([1]), "header is not a map"),
    (dag_cbor.encode({"roots": [], "version": 3}), "unsupported CAR version 3"),
    (dag_cbor.encode({"roots": [], "version": 1, "x": 1}), "are not exactly ['roots', 'version']"),
    (dag_cbor.encode({"roots": [1], "version": 1}), "header root 1 is not a CID"),
    (b"\xff", "header is not DAG-CBOR"),
])
def test_bad_header_is_rejected_at_byte_one(tmp_path: Path, body: bytes, reason: str) -> None:
    path = write_car(tmp_path, encode_uvarint(len(body)) + body)
    with pytest.raises(InvalidCar) as e:
        CarReader(path)
    assert reason in e.value.reason
    assert e.value.offset == 1


def test_empty_file_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(InvalidCar, match="header length truncated"):
        CarReader(write_car(tmp_path, b""))


def test_missing_file_is_an_invalid_car_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidCar, match="No such file"):
        CarReader(tmp_path / "absent.car")


def test_carv2_payload_is_read(tmp_path: Path) -> None:
    payload, c, block = one_block_car()
    data_offset = len(CARV2_PRAGMA) + 40
    fixed = (bytes(16) + data_offset.to_bytes(8, "little") + len(payload).to_bytes(8, "little")
             + bytes(8))
    index = b"\x80\x08junk-index"  # after the payload: must not be read as sections
    with CarReader(write_car(tmp_path, CARV2_PRAGMA + fixed + payload + index)) as reader:
        assert (reader.version, reader.roots) == (2, (c,))
        assert list(reader) == [(c, block)]
