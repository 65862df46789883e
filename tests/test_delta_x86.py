"""The x86 call filter (importer.sinks.x86) and the deltas made over it: exact transform, smaller deltas of moved code, schema 10."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from importer.dag.cid import RAW, cid_of_block
from importer.sinks import x86
from importer.sinks.atrest import UndecodablePayload
from importer.sinks.delta import X86_FILTERED, decode_payload, encode_payload, read_header
from importer.sinks.packs import ENCODING_PACKED, LOCATOR_X86, Locator, parse_locator
from importer.sinks.store import DB_NAME, BlockStore
from importer.sinks.store.schema import (
    DELTA_REF_KEYS_SCHEMA,
    ROWID_SCHEMA_VERSION,
    SCHEMA_VERSION,
    X86_DELTAS_SCHEMA,
)

from .test_store_cold_frames import schema_version

#: Entries of the synthetic library's PLT: what most calls of a real extension module go to
#: (the Python C API, libc), and what does not move when a function in the middle grows.
PLT_ENTRIES = 64
#: Bytes of a PLT entry (as in an x86-64 ELF's ``.plt``).
PLT_ENTRY = 16


def library(seed: int, functions: int = 2000, grown: int | None = None) -> bytes:
    """A synthetic x86-64 library of about 200 KB: a PLT, then ``functions`` functions of code-like
    filler each calling PLT entries; ``grown``: that function is 100 bytes longer, so every
    function after it moves, as in a rebuild with one function edited."""
    rnd = random.Random(seed)
    out = bytearray(rnd.randbytes(PLT_ENTRIES * PLT_ENTRY))
    for f in range(functions):
        body = rnd.randbytes(rnd.randrange(20, 60))
        if f == grown:
            body += random.Random(seed + 1).randbytes(100)
        out += body
        for _ in range(2):
            target = rnd.randrange(PLT_ENTRIES) * PLT_ENTRY
            out += b"\xe8" + (target - (len(out) + 5)).to_bytes(4, "little", signed=True)
            out += rnd.randbytes(rnd.randrange(4, 12))
    return bytes(out)


def test_calls_become_positions_and_only_plausible_ones_are_converted() -> None:
    # A call at 0 with displacement 0x10 targets 0x15; a unit whose top byte is 0x12 is left as
    # it is (and its operand, which holds an E8, is skipped); -0x30 at 12 targets 12 + 5 - 0x30 = -31.
    block = b"\xe8\x10\x00\x00\x00" + b"\x90\xe8\xe8\x00\x00\x12" + b"\x90" + b"\xe8\xd0\xff\xff\xff"
    assert x86.encode(block) == (b"\xe8\x15\x00\x00\x00" + b"\x90\xe8\xe8\x00\x00\x12" + b"\x90"
                                 + b"\xe8\xe1\xff\xff\xff")
    assert x86.decode(x86.encode(block)) == block
    # Units overlapping a converted one's operand: the first E8 (operand top byte 0xDF) is left,
    # the second is the start of the next unit only after the first's five bytes.
    tricky = b"\x00\x48\x8b\x3c\xe8\xe8\x23\xd5\xdf\xff\x48"
    assert x86.decode(x86.encode(tricky)) == tricky


def test_rip_relative_operands_become_positions() -> None:
    # mov rax, [rip + 0x10] (48 8B 05) at 0: its displacement ends at 7, so it targets 0x17;
    # lea rcx, [rip - 0x10] (8D 0D, no REX) at 7 ends at 13: -3; call [rip - 0x10] (FF 15) at 13
    # ends at 19: 3. A modrm that is not RIP-relative (48 8B 45: [rbp + disp8]) is no unit.
    block = (b"\x48\x8b\x05\x10\x00\x00\x00" + b"\x8d\x0d\xf0\xff\xff\xff" + b"\xff\x15\xf0\xff\xff\xff"
             + b"\x48\x8b\x45\x10\x00\x00\x00")
    assert x86.encode(block) == (b"\x48\x8b\x05\x17\x00\x00\x00" + b"\x8d\x0d\xfd\xff\xff\xff"
                                 + b"\xff\x15\x03\x00\x00\x00" + b"\x48\x8b\x45\x10\x00\x00\x00")
    assert x86.decode(x86.encode(block)) == block


#: Bytes that start or fill units, so that random blocks are dense with them and their overlaps.
UNIT_BYTES = [0xE8, 0x48, 0x4C, 0x89, 0x8B, 0x8D, 0x05, 0x15, 0x25, 0x3D, 0xFF, 0x00]


@given(st.lists(st.one_of(st.sampled_from(UNIT_BYTES), st.integers(0, 255)), max_size=300))
def test_the_compiled_filter_equals_its_reference(values: list[int]) -> None:
    block = bytes(values)
    assert x86.encode(block) == x86.reference_convert(block, 1)
    assert x86.decode(block) == x86.reference_convert(block, -1)
    assert x86.decode(x86.encode(block)) == block


def test_the_compiled_filter_is_the_one_in_use() -> None:
    assert x86._kernel() is not x86.reference_convert


def test_positions_wrap_within_25_bits_sign_extended() -> None:
    # A displacement of -1 at the block's start targets 4: converted to 4; one of 0x00FFFFFF at
    # 0 targets 0x01000004, which is bit 24 set: stored sign-extended as 0xFF000004.
    assert x86.encode(b"\xe8\xff\xff\xff\xff") == b"\xe8\x04\x00\x00\x00"
    assert x86.encode(b"\xe8\xff\xff\xff\x00") == b"\xe8\x04\x00\x00\xff"
    assert x86.decode(b"\xe8\x04\x00\x00\xff") == b"\xe8\xff\xff\xff\x00"


@given(st.binary(max_size=400), st.lists(st.integers(0, 399), max_size=40))
def test_filter_round_trips_any_bytes(data: bytes, calls: list[int]) -> None:
    planted = bytearray(data)
    for at in calls:  # plant E8s, many of them plausible, some overlapping
        if at < len(planted):
            planted[at] = 0xE8
    block = bytes(planted)
    assert x86.decode(x86.encode(block)) == block
    assert x86.encode(x86.decode(block)) == block
    assert len(x86.encode(block)) == len(block)


def test_machine_code_is_recognised_and_text_and_noise_are_not() -> None:
    assert x86.looks_like_code(library(1))
    assert not x86.looks_like_code(b"def f(a, b):\n    return a + b\n" * 4000)
    assert not x86.looks_like_code(random.Random(3).randbytes(200_000))
    assert not x86.looks_like_code(b"")


def test_a_library_whose_functions_moved_deltas_smaller_with_the_filter(monkeypatch: pytest.MonkeyPatch) -> None:
    old, new = library(7), library(7, grown=600)
    assert len(new) == len(old) + 100
    ref = [cid_of_block(1, RAW, old)]
    filtered = encode_payload(new, ref, [old], 1)
    header = read_header(filtered)
    assert header.x86 and header.depth == 1 and header.refs == tuple(ref)
    assert filtered[0] == 1 | X86_FILTERED
    assert decode_payload(filtered, len(new), lambda _: old) == new
    monkeypatch.setattr(x86, "looks_like_code", lambda block: False)
    plain = encode_payload(new, ref, [old], 1)
    assert not read_header(plain).x86
    # Without the filter each of the ~2,800 calls after the grown function changed its operand;
    # with it only the grown function's bytes are new (about 100 bytes plus matches).
    assert len(filtered) * 5 < len(plain)


def test_text_is_never_filtered() -> None:
    old = b"".join(b"def f_%d(a):\n    return a * %d\n\n" % (i, i * 7) for i in range(3000))
    new = old.replace(b"f_1500(a)", b"f_1500(a, b)")
    payload = encode_payload(new, [b"\x01" * 36], [old], 2)
    assert not read_header(payload).x86
    assert payload[0] == 2
    # Remade by `store optimize` after it was smaller filtered: filtered only, whatever it holds.
    forced = encode_payload(new, [b"\x01" * 36], [old], 2, 19, filtered=True)
    assert read_header(forced).x86
    assert decode_payload(forced, len(new), lambda _: old) == new


def test_a_delta_header_with_an_unknown_flag_is_refused() -> None:
    payload = encode_payload(library(2, grown=5), [b"\x01" * 36], [library(2)], 1)
    with pytest.raises(UndecodablePayload, match="delta header has unknown flags 0x60"):
        read_header(bytes([payload[0] | 0x40]) + payload[1:])


def text_pair() -> tuple[bytes, bytes]:
    old = b"".join(b"x_%d = %d\n" % (i, i) for i in range(20_000))
    return old, old.replace(b"x_777 = 777", b"x_777 = 778")


@pytest.mark.parametrize("packs", [True, False], ids=["packs", "rows"])
def test_a_store_of_text_needs_no_newer_reader_until_its_first_delta_and_that_delta_is_not_filtered(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, packs: bool) -> None:
    monkeypatch.setattr(BlockStore, "default_packs", packs)
    old, new = text_pair()
    with BlockStore(tmp_path / "s") as store:
        store.put(cid_of_block(1, RAW, old), old)
        store.put(cid_of_block(1, RAW, new), new)
    # 8 (7 for rows: a rowid ``blocks``), which code before the filter reads.
    assert schema_version(tmp_path / "s") == (SCHEMA_VERSION if packs else ROWID_SCHEMA_VERSION)
    with BlockStore(tmp_path / "s") as store:
        assert store.delta_encode([(cid_of_block(1, RAW, new), [cid_of_block(1, RAW, old)])])[0] == 1
        header = store._delta_header(cid_of_block(1, RAW, new))
        assert header is not None and not header.x86
    assert schema_version(tmp_path / "s") == DELTA_REF_KEYS_SCHEMA  # its references by key


@pytest.mark.parametrize("packs", [True, False], ids=["packs", "rows"])
def test_a_store_records_a_newer_schema_with_its_first_x86_delta_and_reads_it_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, packs: bool) -> None:
    monkeypatch.setattr(BlockStore, "default_packs", packs)
    old, new = library(11), library(11, grown=900)
    text_old, text_new = text_pair()
    cids = {data: cid_of_block(1, RAW, data) for data in (old, new, text_old, text_new)}
    with BlockStore(tmp_path / "s") as store:
        for data, cid in cids.items():
            store.put(cid, data)
        store.flush()
        assert store.delta_encode([(cids[text_new], [cids[text_old]]), (cids[new], [cids[old]])])[0] == 2
    assert schema_version(tmp_path / "s") == DELTA_REF_KEYS_SCHEMA  # 10 and more (packs: see below)
    with BlockStore(tmp_path / "s", create=False) as store:
        assert [header.x86 for header in (store._delta_header(cids[new]), store._delta_header(cids[text_new]))
                if header is not None] == [True, False]
        assert all(store.get(cid) == data for data, cid in cids.items())
        assert [problem for _, problem in store.verify()] == [None] * 4
        if packs:  # `store optimize --level 19` makes the delta again, filtered again
            assert store.compact_packs(below=1.01, level=19)[0] > 0
            header = store._delta_header(cids[new])
            assert header is not None and header.x86
            assert store.get(cids[new]) == new
            assert [problem for _, problem in store.verify()] == [None] * 4


def locators(store: Path) -> dict[bytes, Locator]:
    with sqlite3.connect(store / DB_NAME) as conn:
        return {bytes(cid): parse_locator(bytes(data), int(size)) for cid, data, size in conn.execute(
            "SELECT cid, data, size FROM blocks WHERE encoding = ?", (ENCODING_PACKED,))}


@pytest.mark.parametrize("level", [0, 19], ids=["import", "optimize"])
def test_code_is_packed_filtered_and_reads_back(tmp_path: Path, level: int) -> None:
    code, small_code = library(21), library(22, functions=300)
    text, _ = text_pair()
    cids = {data: cid_of_block(1, RAW, data) for data in (code, small_code, text)}
    with BlockStore(tmp_path / "s") as store:
        for data, cid in cids.items():
            store.put(cid, data)
        store.flush()
        if level:
            assert store.compact_packs(below=1.01, level=level)[0] > 0
    found = locators(tmp_path / "s")
    # The 200 KB library and the 30 KB one share a frame with the text at import (all under 256 KiB).
    assert {data: found[cid].flags for data, cid in cids.items()} == {code: LOCATOR_X86, small_code: LOCATOR_X86,
                                                                     text: 0}
    assert schema_version(tmp_path / "s") == X86_DELTAS_SCHEMA
    with BlockStore(tmp_path / "s", create=False) as store:
        assert all(store.get(cid) == data for data, cid in cids.items())
        assert [problem for _, problem in store.verify()] == [None] * 3


def test_a_locator_keeps_its_five_fields_without_flags_and_refuses_unknown_ones() -> None:
    assert Locator(3, 10, 20, 0, 0).encode() == bytes([3, 10, 20, 0, 0])
    assert Locator(3, 10, 20, 0, 0, LOCATOR_X86).encode() == bytes([3, 10, 20, 0, 0, 1])
    assert parse_locator(bytes([3, 10, 20, 0, 0, 1]), 20).flags == LOCATOR_X86
    for flags in (0, 2):
        with pytest.raises(UndecodablePayload, match=f"pack locator has unknown flags {flags:#x}"):
            parse_locator(bytes([3, 10, 20, 0, 0, flags]), 20)


def test_a_store_with_an_x86_delta_imported_beside_its_previous_release_reads_back(tmp_path: Path) -> None:
    # The import path: the new block is still buffered when its delta is decided (staged).
    old, new = library(13), library(13, grown=1200)
    with BlockStore(tmp_path / "s") as store:
        store.put(cid_of_block(1, RAW, old), old)
        store.flush()
        store.put(cid_of_block(1, RAW, new), new)
        assert store.delta_encode([(cid_of_block(1, RAW, new), [cid_of_block(1, RAW, old)])])[0] == 1
    assert schema_version(tmp_path / "s") == DELTA_REF_KEYS_SCHEMA
    with BlockStore(tmp_path / "s", create=False) as store:
        header = store._delta_header(cid_of_block(1, RAW, new))
        assert header is not None and header.x86
        assert store.get(cid_of_block(1, RAW, new)) == new
