"""The x86 filter (importer.sinks.x86) and the deltas made over it: exact transform in both forms,
smaller deltas of moved code, form-1 rows still read, schemas 10 and 12."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from importer.dag.cid import RAW, cid_of_block
from importer.errors import StoreError
from importer.sinks import x86
from importer.sinks.atrest import UndecodablePayload
from importer.sinks.delta import (
    X86_FILTERED,
    X86_FILTERED_2,
    decode_payload,
    encode_payload,
    read_header,
    short_ref,
    with_depth,
)
from importer.sinks.packs import ENCODING_PACKED, LOCATOR_X86, LOCATOR_X86_2, Locator, parse_locator
from importer.sinks.store import DB_NAME, BlockStore, schema
from importer.sinks.store.schema import (
    DELTA_REF_KEYS_SCHEMA,
    ROWID_SCHEMA_VERSION,
    SCHEMA_VERSION,
    X86_DELTAS_SCHEMA,
    X86_FORM2_SCHEMA,
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


@pytest.mark.parametrize("form", x86.FORMS)
def test_calls_become_positions_and_only_plausible_ones_are_converted(form: int) -> None:
    # A call at 0 with displacement 0x10 targets 0x15; a unit whose top byte is 0x12 is left as
    # it is (and its operand, which holds an E8, is skipped); -0x30 at 12 targets 12 + 5 - 0x30 = -31.
    block = b"\xe8\x10\x00\x00\x00" + b"\x90\xe8\xe8\x00\x00\x12" + b"\x90" + b"\xe8\xd0\xff\xff\xff"
    assert x86.encode(block, form) == (b"\xe8\x15\x00\x00\x00" + b"\x90\xe8\xe8\x00\x00\x12" + b"\x90"
                                       + b"\xe8\xe1\xff\xff\xff")
    assert x86.decode(x86.encode(block, form), form) == block
    # Units overlapping a converted one's operand: the first E8 (operand top byte 0xDF) is left,
    # the second is the start of the next unit only after the first's five bytes.
    tricky = b"\x00\x48\x8b\x3c\xe8\xe8\x23\xd5\xdf\xff\x48"
    assert x86.decode(x86.encode(tricky, form), form) == tricky


@pytest.mark.parametrize("form", x86.FORMS)
def test_rip_relative_operands_become_positions(form: int) -> None:
    # mov rax, [rip + 0x10] (48 8B 05) at 0: its displacement ends at 7, so it targets 0x17;
    # lea rcx, [rip - 0x10] (8D 0D, no REX) at 7 ends at 13: -3; call [rip - 0x10] (FF 15) at 13
    # ends at 19: 3. A modrm that is not RIP-relative (48 8B 45: [rbp + disp8]) is no unit.
    block = (b"\x48\x8b\x05\x10\x00\x00\x00" + b"\x8d\x0d\xf0\xff\xff\xff" + b"\xff\x15\xf0\xff\xff\xff"
             + b"\x48\x8b\x45\x10\x00\x00\x00")
    assert x86.encode(block, form) == (b"\x48\x8b\x05\x17\x00\x00\x00" + b"\x8d\x0d\xfd\xff\xff\xff"
                                       + b"\xff\x15\x03\x00\x00\x00" + b"\x48\x8b\x45\x10\x00\x00\x00")
    assert x86.decode(x86.encode(block, form), form) == block


#: One of each unit form 2 adds, hand-assembled, laid end to end from 0 (offset, instruction):
#: 0 ``movsd xmm0, [rip + 0x10]``, F2 prefix; 8 ``movss xmm9, [rip - 0x10]``, F3 and REX.R;
#: 17 ``movsxd rax, [rip + 0x100]``; 24 ``movzx eax, byte [rip - 0x20]``; 31 ``cmp eax, [rip]``;
#: 37 ``test [rip + 8], rax``; 44 ``movdqa xmm0, [rip + 0x12000000]``, not plausible; 52
#: ``movzx eax, byte [rbp + 0x10]``, not RIP-relative.
NEW_UNITS = (b"\xf2\x0f\x10\x05\x10\x00\x00\x00" + b"\xf3\x44\x0f\x10\x0d\xf0\xff\xff\xff"
             + b"\x48\x63\x05\x00\x01\x00\x00" + b"\x0f\xb6\x05\xe0\xff\xff\xff" + b"\x3b\x05\x00\x00\x00\x00"
             + b"\x48\x85\x05\x08\x00\x00\x00" + b"\x66\x0f\x6f\x05\x00\x00\x00\x12" + b"\x0f\xb6\x45\x10")


def test_form_2_makes_the_operands_of_its_new_units_positions() -> None:
    # Each displacement plus the position of its end: 0x10 + 8 = 0x18, -0x10 + 17 = 1,
    # 0x100 + 24 = 0x118, -0x20 + 31 = -1, 0 + 37 = 0x25, 8 + 44 = 0x34; the movdqa is consumed
    # whole unconverted, and the movzx through rbp is no unit.
    assert x86.encode(NEW_UNITS, 2) == (
        b"\xf2\x0f\x10\x05\x18\x00\x00\x00" + b"\xf3\x44\x0f\x10\x0d\x01\x00\x00\x00"
        + b"\x48\x63\x05\x18\x01\x00\x00" + b"\x0f\xb6\x05\xff\xff\xff\xff" + b"\x3b\x05\x25\x00\x00\x00"
        + b"\x48\x85\x05\x34\x00\x00\x00" + b"\x66\x0f\x6f\x05\x00\x00\x00\x12" + b"\x0f\xb6\x45\x10")
    assert x86.decode(x86.encode(NEW_UNITS, 2), 2) == NEW_UNITS


def test_form_1_leaves_the_units_of_form_2_as_they_are() -> None:
    # Form 1 is what schema-10 stores hold: it must not convert what form 2 added. Asked in
    # form 1, form 2 and form 1 again, the remembered results (x86._RECENT) do not mix.
    assert x86.encode(NEW_UNITS, 1) == NEW_UNITS
    assert x86.encode(NEW_UNITS, 2) != NEW_UNITS
    assert x86.encode(NEW_UNITS, 1) == NEW_UNITS
    assert x86.decode(NEW_UNITS, 1) == NEW_UNITS


def test_a_unit_takes_a_rex_before_its_opcode_and_a_prefix_only_before_0f() -> None:
    # 66 then movsd (F2 0F 10 05): 66 starts no unit before an F2, so the unit is the movsd at 1,
    # ending at 9: 0x10 + 9. REX 41 then movsxd 63 05 is one unit of 7 bytes: 0x10 + 7.
    assert x86.encode(b"\x66\xf2\x0f\x10\x05\x10\x00\x00\x00", 2) == b"\x66\xf2\x0f\x10\x05\x19\x00\x00\x00"
    assert x86.encode(b"\x41\x63\x05\x10\x00\x00\x00", 2) == b"\x41\x63\x05\x17\x00\x00\x00"
    # A 66 prefix before a mov opcode is not part of the unit (form 2 takes prefixes before 0F
    # only): the unit is 89 05 at 1, ending at 7.
    assert x86.encode(b"\x66\x89\x05\x10\x00\x00\x00", 2) == b"\x66\x89\x05\x17\x00\x00\x00"


def test_an_unknown_form_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown x86 filter form 3"):
        x86.reference_convert(b"\xe8\x00\x00\x00\x00", 1, 3)
    with pytest.raises(ValueError, match="unknown x86 filter form 3"):
        x86._kernel()(b"\xe8\x00\x00\x00\x00", 1, 3)


#: Bytes that start or fill units, so that random blocks are dense with them and their overlaps.
UNIT_BYTES = [0xE8, 0x48, 0x4C, 0x41, 0x89, 0x8B, 0x8D, 0x05, 0x15, 0x25, 0x3D, 0xFF, 0x00,
              0x66, 0xF2, 0xF3, 0x0F, 0x10, 0x6F, 0xB6, 0xBF, 0x03, 0x63, 0x85, 0x87]


@pytest.mark.parametrize("form", x86.FORMS)
@given(values=st.lists(st.one_of(st.sampled_from(UNIT_BYTES), st.integers(0, 255)), max_size=300))
def test_the_compiled_filter_equals_its_reference(form: int, values: list[int]) -> None:
    block = bytes(values)
    assert x86.encode(block, form) == x86.reference_convert(block, 1, form)
    assert x86.decode(block, form) == x86.reference_convert(block, -1, form)
    assert x86.decode(x86.encode(block, form), form) == block


def test_the_compiled_filter_is_the_one_in_use() -> None:
    assert x86._kernel() is not x86.reference_convert


@pytest.mark.parametrize("form", x86.FORMS)
def test_positions_wrap_within_25_bits_sign_extended(form: int) -> None:
    # A displacement of -1 at the block's start targets 4: converted to 4; one of 0x00FFFFFF at
    # 0 targets 0x01000004, which is bit 24 set: stored sign-extended as 0xFF000004.
    assert x86.encode(b"\xe8\xff\xff\xff\xff", form) == b"\xe8\x04\x00\x00\x00"
    assert x86.encode(b"\xe8\xff\xff\xff\x00", form) == b"\xe8\x04\x00\x00\xff"
    assert x86.decode(b"\xe8\x04\x00\x00\xff", form) == b"\xe8\xff\xff\xff\x00"


@pytest.mark.parametrize("form", x86.FORMS)
@given(data=st.binary(max_size=400), starts=st.lists(st.tuples(st.integers(0, 399), st.sampled_from(
    [b"\xe8", b"\x48\x8b\x05", b"\xf2\x0f\x10\x05", b"\x66\x41\x0f\x6f\x0d", b"\x48\x63\x05"])), max_size=40))
def test_filter_round_trips_any_bytes(form: int, data: bytes, starts: list[tuple[int, bytes]]) -> None:
    planted = bytearray(data)
    for at, unit in starts:  # plant unit starts, many with plausible operands, some overlapping
        planted[at:at + len(unit)] = unit
    block = bytes(planted)
    assert x86.decode(x86.encode(block, form), form) == block
    assert x86.encode(x86.decode(block, form), form) == block
    assert len(x86.encode(block, form)) == len(block)


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
    assert header.x86_form == 2 and header.depth == 1 and header.refs == (short_ref(ref[0]),)
    assert filtered[0] == 1 | X86_FILTERED_2
    assert decode_payload(filtered, len(new), lambda _: old) == new
    monkeypatch.setattr(x86, "looks_like_code", lambda block: False)
    plain = encode_payload(new, ref, [old], 1)
    assert read_header(plain).x86_form == 0
    # Without the filter each of the ~2,800 calls after the grown function changed its operand;
    # with it only the grown function's bytes are new (about 100 bytes plus matches).
    assert len(filtered) * 5 < len(plain)


def test_text_is_never_filtered() -> None:
    old = b"".join(b"def f_%d(a):\n    return a * %d\n\n" % (i, i * 7) for i in range(3000))
    new = old.replace(b"f_1500(a)", b"f_1500(a, b)")
    payload = encode_payload(new, [b"\x01" * 36], [old], 2)
    assert read_header(payload).x86_form == 0
    assert payload[0] == 2
    # Remade by `store optimize` after it was smaller filtered: filtered only, whatever it holds.
    forced = encode_payload(new, [b"\x01" * 36], [old], 2, 19, filtered=True)
    assert read_header(forced).x86_form == 2
    assert decode_payload(forced, len(new), lambda _: old) == new


def test_a_form_1_delta_as_schema_10_wrote_it_still_reads() -> None:
    old, new = library(3), library(3, grown=400)
    payload = encode_payload(new, [b"\x01" * 36], [old], 3, filtered=True, form=1)
    assert payload[0] == 3 | X86_FILTERED
    assert read_header(payload).x86_form == 1
    assert decode_payload(payload, len(new), lambda _: old) == new
    # The frame is over form 1's bytes: read as form 2 it is not the block.
    assert decode_payload(bytes([3 | X86_FILTERED_2]) + payload[1:], len(new), lambda _: old) != new
    # A delta given a new depth (its reference rewritten deeper) keeps its form.
    deeper = with_depth(payload, 4)
    assert deeper[0] == 4 | X86_FILTERED and decode_payload(deeper, len(new), lambda _: old) == new


@pytest.mark.parametrize("flags", [0x60, 0x80 | 0x20])
def test_a_delta_header_with_an_unknown_flag_is_refused(flags: int) -> None:
    # 0x60: both forms' bits, no form; 0x80 and up: a bit no code gave a meaning.
    payload = encode_payload(library(2, grown=5), [b"\x01" * 36], [library(2)], 1)
    field = bytes([(flags | 1) & 0x7F | 0x80, flags >> 7]) if flags >= 0x80 else bytes([flags | 1])
    with pytest.raises(UndecodablePayload, match=f"delta header has unknown flags {flags:#x}"):
        read_header(field + payload[1:])


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
        assert header is not None and header.x86_form == 0
    assert schema_version(tmp_path / "s") == DELTA_REF_KEYS_SCHEMA  # its references by key


@pytest.mark.parametrize("packs", [True, False], ids=["packs", "rows"])
def test_a_store_records_schema_12_with_its_first_form_2_delta_and_reads_it_back(
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
    assert schema_version(tmp_path / "s") == X86_FORM2_SCHEMA
    with BlockStore(tmp_path / "s", create=False) as store:
        assert [header.x86_form for header in (store._delta_header(cids[new]), store._delta_header(cids[text_new]))
                if header is not None] == [2, 0]
        assert all(store.get(cid) == data for data, cid in cids.items())
        assert [problem for _, problem in store.verify()] == [None] * 4
        if packs:  # `store optimize --level 19` makes the delta again, filtered again
            assert store.compact_packs(below=1.01, level=19)[0] > 0
            header = store._delta_header(cids[new])
            assert header is not None and header.x86_form == 2
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
    assert {data: found[cid].flags for data, cid in cids.items()} == {code: LOCATOR_X86_2, small_code: LOCATOR_X86_2,
                                                                     text: 0}
    assert schema_version(tmp_path / "s") == X86_FORM2_SCHEMA
    with BlockStore(tmp_path / "s", create=False) as store:
        assert all(store.get(cid) == data for data, cid in cids.items())
        assert [problem for _, problem in store.verify()] == [None] * 3


def test_a_locator_keeps_its_five_fields_without_flags_and_refuses_unknown_ones() -> None:
    assert Locator(3, 10, 20, 0, 0).encode() == bytes([3, 10, 20, 0, 0])
    assert Locator(3, 10, 20, 0, 0, LOCATOR_X86).encode() == bytes([3, 10, 20, 0, 0, 1])
    assert parse_locator(bytes([3, 10, 20, 0, 0, 1]), 20).x86_form == 1
    assert parse_locator(bytes([3, 10, 20, 0, 0, 2]), 20).x86_form == 2
    assert parse_locator(bytes([3, 10, 20, 0, 0]), 20).x86_form == 0
    for flags in (0, 3):
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
    assert schema_version(tmp_path / "s") == X86_FORM2_SCHEMA
    with BlockStore(tmp_path / "s", create=False) as store:
        header = store._delta_header(cid_of_block(1, RAW, new))
        assert header is not None and header.x86_form == 2
        assert store.get(cid_of_block(1, RAW, new)) == new


def test_a_store_of_form_1_rows_reads_back_and_takes_schema_12_with_its_first_form_2_row(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Written as schema-10 code writes (form 1): a packed library and a delta.
    old, new, later = library(31), library(31, grown=700), library(32)
    cids = {data: cid_of_block(1, RAW, data) for data in (old, new, later)}
    monkeypatch.setattr(x86, "FORM", 1)
    with BlockStore(tmp_path / "s") as store:
        store.put(cids[old], old)
        store.put(cids[new], new)
        store.flush()
        assert store.delta_encode([(cids[new], [cids[old]])])[0] == 1
    assert schema_version(tmp_path / "s") == DELTA_REF_KEYS_SCHEMA  # 10 for form 1, 11 for the delta's index
    assert locators(tmp_path / "s")[cids[old]].flags == LOCATOR_X86
    monkeypatch.undo()
    with BlockStore(tmp_path / "s", create=False) as store:
        header = store._delta_header(cids[new])
        assert header is not None and header.x86_form == 1
        assert store.get(cids[old]) == old and store.get(cids[new]) == new
        assert [problem for _, problem in store.verify()] == [None] * 2
        store.put(cids[later], later)
        store.flush()
    assert schema_version(tmp_path / "s") == X86_FORM2_SCHEMA
    assert {cid: locator.flags for cid, locator in locators(tmp_path / "s").items()} == {
        cids[old]: LOCATOR_X86, cids[later]: LOCATOR_X86_2}
    with BlockStore(tmp_path / "s", create=False) as store:
        assert all(store.get(cid) == data for data, cid in cids.items())
        # `store optimize` remakes the form-1 delta, filtered again, in form 2, and the packed
        # form-1 block as form 2.
        assert store.compact_packs(below=1.01, level=19)[0] > 0
        header = store._delta_header(cids[new])
        assert header is not None and header.x86_form == 2
        assert all(store.get(cid) == data for data, cid in cids.items())
        assert [problem for _, problem in store.verify()] == [None] * 3
    assert {locator.flags for locator in locators(tmp_path / "s").values()} == {LOCATOR_X86_2}


def test_a_store_with_a_form_2_row_is_refused_by_a_reader_of_schema_10(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with BlockStore(tmp_path / "s") as store:
        store.put(cid_of_block(1, RAW, library(41)), library(41))
    assert schema_version(tmp_path / "s") == X86_FORM2_SCHEMA
    monkeypatch.setattr(schema, "NEWEST_SCHEMA", X86_DELTAS_SCHEMA)
    with pytest.raises(StoreError) as e:
        BlockStore(tmp_path / "s", create=False)
    assert e.value.reason == "schema version 12 is newer than this program's 10: upgrade dpip-importer"
