"""Blocks stored as deltas against other blocks (store encoding 3): round trip, chains, corruption, delete, upgrade."""

from __future__ import annotations

import random
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from importer.cli.main import main
from importer.dag.cid import RAW, cid_of_block, format_cid
from importer.dag.varint import encode_uvarint
from importer.errors import BlockCorrupt
from importer.sinks.atrest import ENCODING_DELTA, ENCODING_IDENTITY, ENCODING_ZSTD
from importer.sinks.delta import MAX_DEPTH, MAX_REFS, encode_payload, read_header, short_ref
from importer.sinks.store import DB_NAME, BlockStore, EncodingStats
from importer.sinks.store.schema import DELTA_REF_KEYS_SCHEMA, ref_key

from .old_stores import make_old_store


@pytest.fixture(autouse=True)
def one_row_per_block(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests read and forge the rows of the one-row-per-block layout (encoding-3 delta rows), which
    the store still reads, and writes when it rewrites a committed block; packs, the layout new
    blocks are written in, are covered by tests/test_store_packs.py."""
    monkeypatch.setattr(BlockStore, "default_packs", False)

#: Functions in a generated module: about 45 bytes each, so 2500 make ~110 KB, well above the
#: 16 KiB small-block limit (no dictionary gets involved) and below one 256 KiB leaf.
FUNCTIONS = 2500


def module_text(seed: int) -> bytes:
    """A deterministic Python-like block of about 110 KB that zstd compresses about 7x."""
    rnd = random.Random(seed)
    return "".join(f"def f_{seed}_{i}(a, b):\n    return a * {rnd.randrange(10**6)} + b\n\n"
                   for i in range(FUNCTIONS)).encode()


def edited(data: bytes, step: int) -> bytes:
    """``data`` with one short line inserted near its middle: what a new release does to a module."""
    middle = len(data) // 2 + 37 * step
    return data[:middle] + f"# edit {step}\n".encode() + data[middle:]


def chain_of(length: int) -> list[bytes]:
    """``length`` releases of one module, each one edit after the one before."""
    chain = [module_text(1)]
    for step in range(1, length):
        chain.append(edited(chain[-1], step))
    return chain


def encode_chain(store: BlockStore, chain: list[bytes], last: int) -> None:
    """Make ``chain[1..last]`` each a delta of the one before, one call per level (depths 1..last)."""
    for level in range(1, last + 1):
        assert store.delta_encode([(cid(chain[level]), [cid(chain[level - 1])])])[0] == 1


def noise(seed: int, size: int = 50_000) -> bytes:
    """Incompressible bytes (stored raw, encoding 0)."""
    return random.Random(seed).randbytes(size)


def cid(data: bytes) -> bytes:
    return cid_of_block(1, RAW, data)


def committed(path: Path, *blocks: bytes, compression: str = "zstd") -> BlockStore:
    """An open store at ``path`` holding ``blocks``, committed in this order (rowid order)."""
    store = BlockStore(path, compression=compression)
    for data in blocks:
        store.put(cid(data), data)
    store.flush()
    return store


def db(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path / DB_NAME, isolation_level=None)


def row(path: Path, data: bytes) -> tuple[int, bytes]:
    """``(encoding, payload)`` of the row of block ``data``."""
    with db(path) as conn:
        found = conn.execute("SELECT encoding, data FROM blocks WHERE cid = ?", (cid(data),)).fetchone()
    assert found is not None
    return int(found[0]), bytes(found[1])


def delta_refs(path: Path) -> set[tuple[int, int]]:
    """The ``(reference, dependent)`` rows of ``delta_refs`` as keys (:func:`keyed`); none without the table."""
    with db(path) as conn:
        if conn.execute("SELECT 1 FROM sqlite_schema WHERE name = 'delta_refs'").fetchone() is None:
            return set()
        return {(r if isinstance(r, int) else ref_key(bytes(r)), c if isinstance(c, int) else ref_key(bytes(c)))
                for r, c in conn.execute("SELECT ref, cid FROM delta_refs")}


def keyed(pairs: set[tuple[bytes, bytes]]) -> set[tuple[int, int]]:
    """``(reference, dependent)`` CIDs as :func:`delta_refs` gives them."""
    return {(ref_key(ref), ref_key(dependent)) for ref, dependent in pairs}


def depth(path: Path, data: bytes) -> int:
    encoding, payload = row(path, data)
    assert encoding == ENCODING_DELTA
    return read_header(payload).depth


def sound(path: Path) -> bool:
    """Every block of the store at ``path`` reads back, checked, in a fresh process-like open."""
    with BlockStore(path, create=False) as store:
        return all(problem is None for _, problem in store.verify())


def forge(path: Path, data: bytes, encoding: int, payload: bytes) -> None:
    """Rewrite a row behind the store's back."""
    with db(path) as conn:
        conn.execute("UPDATE blocks SET encoding = ?, data = ? WHERE cid = ?", (encoding, payload, cid(data)))


# -- round trip ---------------------------------------------------------------------------------

def test_delta_round_trips_and_is_counted_in_stats(tmp_path: Path) -> None:
    old = module_text(1)
    new = edited(old, 1)
    store = committed(tmp_path / "s", old, new)
    before = store.stats()
    _, plain = row(tmp_path / "s", new)

    rewritten, saved = store.delta_encode([(cid(new), [cid(old)])])

    encoding, payload = row(tmp_path / "s", new)
    assert (rewritten, saved) == (1, len(plain) - len(payload))
    assert encoding == ENCODING_DELTA
    assert len(payload) < len(plain) // 20  # one inserted line against the old module: tens of bytes
    header = read_header(payload)
    assert (header.depth, header.refs) == (1, (short_ref(cid(old)),))  # 12 bytes of its 36
    assert store.get(cid(new)) == new
    after = store.stats()
    assert after.stored_bytes == before.stored_bytes - saved
    assert EncodingStats("zstd+delta", 1, len(new), len(payload)) in after.encodings
    assert (after.blocks, after.logical_bytes) == (before.blocks, before.logical_bytes)
    assert delta_refs(tmp_path / "s") == keyed({(cid(old), cid(new))})
    store.close()
    with BlockStore(tmp_path / "s", create=False) as reopened:  # no reference cached from the encode
        assert reopened.get(cid(new)) == new
        assert [problem for _, problem in reopened.verify()] == [None, None]


def test_delta_with_several_references_round_trips(tmp_path: Path) -> None:
    first, second = module_text(1), module_text(2)
    new = edited(first[:60_000] + second[:60_000], 1)
    store = committed(tmp_path / "s", first, second, new)
    assert store.delta_encode([(cid(new), [cid(first), cid(second)])])[0] == 1
    store.close()
    assert read_header(row(tmp_path / "s", new)[1]).refs == (short_ref(cid(first)), short_ref(cid(second)))
    with BlockStore(tmp_path / "s", create=False) as store:
        assert store.get(cid(new)) == new
    assert delta_refs(tmp_path / "s") == keyed({(cid(first), cid(new)), (cid(second), cid(new))})


def test_recompress_leaves_a_delta_row_as_it_is(tmp_path: Path) -> None:
    old = module_text(1)
    new = edited(old, 1)
    with committed(tmp_path / "s", old, new) as store:
        store.delta_encode([(cid(new), [cid(old)])])
        stored = row(tmp_path / "s", new)
        store.recompress()
    assert row(tmp_path / "s", new) == stored
    assert sound(tmp_path / "s")


# -- chains and the rules that keep them readable --------------------------------------------------

def test_delta_of_a_delta_reads_back_with_depth_one_more_than_its_deepest_reference(tmp_path: Path) -> None:
    a, b, c = chain_of(3)
    d = edited(a, 3)
    with committed(tmp_path / "s", a, b, c, d) as store:
        assert store.delta_encode([(cid(b), [cid(a)])])[0] == 1
        assert store.delta_encode([(cid(c), [cid(a), cid(b)])])[0] == 1  # depths 0 and 1 -> 2
        assert store.delta_encode([(cid(d), [cid(a)])])[0] == 1  # depth 0 -> 1
    assert (depth(tmp_path / "s", b), depth(tmp_path / "s", c), depth(tmp_path / "s", d)) == (1, 2, 1)
    with BlockStore(tmp_path / "s", create=False) as store:
        assert (store.get(cid(c)), store.get(cid(b)), store.get(cid(d))) == (c, b, d)
    assert sound(tmp_path / "s")


def test_chain_stops_at_max_depth_and_every_level_reads_back(tmp_path: Path) -> None:
    chain = chain_of(MAX_DEPTH + 2)
    with committed(tmp_path / "s", *chain) as store:
        encode_chain(store, chain, MAX_DEPTH)
        _, plain = row(tmp_path / "s", chain[-1])
        # Its reference is at MAX_DEPTH: a delta of it would be MAX_DEPTH + 1 deep.
        assert store.delta_encode([(cid(chain[-1]), [cid(chain[-2])])]) == (0, 0)
    assert row(tmp_path / "s", chain[-1]) == (ENCODING_ZSTD, plain)
    assert [depth(tmp_path / "s", block) for block in chain[1:-1]] == list(range(1, MAX_DEPTH + 1))
    with BlockStore(tmp_path / "s", create=False) as store:
        assert store.get(cid(chain[MAX_DEPTH])) == chain[MAX_DEPTH]  # a cold read of 16 levels
    assert sound(tmp_path / "s")


def test_block_already_a_delta_is_not_encoded_again(tmp_path: Path) -> None:
    a, other = module_text(1), module_text(2)
    b = edited(a, 1)
    with committed(tmp_path / "s", a, other, b) as store:
        store.delta_encode([(cid(b), [cid(a)])])
        stored = row(tmp_path / "s", b)
        assert store.delta_encode([(cid(b), [cid(a)])]) == (0, 0)
        assert store.delta_encode([(cid(b), [cid(other)])]) == (0, 0)
    assert row(tmp_path / "s", b) == stored
    assert delta_refs(tmp_path / "s") == keyed({(cid(a), cid(b))})


def test_block_that_a_delta_references_is_not_encoded(tmp_path: Path) -> None:
    a = module_text(1)
    b = edited(a, 1)
    c = edited(a, 2)
    with committed(tmp_path / "s", a, b, c) as store:
        store.delta_encode([(cid(b), [cid(a)])])
        plain = row(tmp_path / "s", a)
        # a is b's reference: made a delta of c it would be as deep as b, which b's reads refuse.
        assert store.delta_encode([(cid(a), [cid(c)])]) == (0, 0)
    assert row(tmp_path / "s", a) == plain
    assert sound(tmp_path / "s")


def test_chain_planned_in_one_call_gets_its_depths_from_the_rows_written_before_it(tmp_path: Path) -> None:
    a, b, c = chain_of(3)
    with committed(tmp_path / "s", a, b, c) as store:
        # b becomes a delta first, in the same transaction: c's depth must then be 2, not the 1
        # it had when the batch was planned (a depth-1 reference under a depth-1 delta is refused).
        assert store.delta_encode([(cid(b), [cid(a)]), (cid(c), [cid(b)])])[0] == 2
    assert (depth(tmp_path / "s", b), depth(tmp_path / "s", c)) == (1, 2)
    with BlockStore(tmp_path / "s", create=False) as store:  # cold: nothing in the reference cache
        assert store.get(cid(c)) == c
    assert sound(tmp_path / "s")


def test_one_call_does_not_extend_a_chain_past_max_depth(tmp_path: Path) -> None:
    chain = chain_of(MAX_DEPTH + 2)
    with committed(tmp_path / "s", *chain) as store:
        encode_chain(store, chain, MAX_DEPTH - 1)
        _, plain = row(tmp_path / "s", chain[-1])
        # Planned at MAX_DEPTH - 1 + 1, the last one would be MAX_DEPTH + 1 once its reference is written.
        assert store.delta_encode([(cid(chain[MAX_DEPTH]), [cid(chain[MAX_DEPTH - 1])]),
                                   (cid(chain[-1]), [cid(chain[MAX_DEPTH])])])[0] == 1
    assert depth(tmp_path / "s", chain[MAX_DEPTH]) == MAX_DEPTH
    assert row(tmp_path / "s", chain[-1]) == (ENCODING_ZSTD, plain)
    assert sound(tmp_path / "s")


def test_delta_not_smaller_than_the_stored_payload_is_not_written(tmp_path: Path) -> None:
    block, unrelated = noise(1), noise(2)
    with committed(tmp_path / "s", unrelated, block) as store:
        assert row(tmp_path / "s", block) == (ENCODING_IDENTITY, block)
        assert store.delta_encode([(cid(block), [cid(unrelated)])]) == (0, 0)
    assert row(tmp_path / "s", block) == (ENCODING_IDENTITY, block)
    assert delta_refs(tmp_path / "s") == set()


def test_candidate_naming_itself_or_a_missing_block_is_not_encoded(tmp_path: Path) -> None:
    a = module_text(1)
    b = edited(a, 1)
    absent = edited(a, 2)
    with committed(tmp_path / "s", a, b) as store:
        assert store.delta_encode([(cid(b), [cid(b)]), (cid(b), [cid(absent)]), (cid(absent), [cid(a)]),
                                   (cid(b), [])]) == (0, 0)
    assert row(tmp_path / "s", b)[0] == ENCODING_ZSTD


def test_delta_against_max_refs_references_round_trips(tmp_path: Path) -> None:
    refs = [module_text(10 + i)[:20_000] for i in range(MAX_REFS)]
    new = edited(b"".join(refs), 1)
    with committed(tmp_path / "s", *refs, new) as store:
        assert store.delta_encode([(cid(new), [cid(r) for r in refs])])[0] == 1
    assert read_header(row(tmp_path / "s", new)[1]).refs == tuple(short_ref(cid(r)) for r in refs)
    assert sound(tmp_path / "s")


def test_candidate_with_more_than_max_refs_references_is_left_alone(tmp_path: Path) -> None:
    refs = [module_text(10 + i)[:20_000] for i in range(MAX_REFS + 1)]
    wide = edited(b"".join(refs), 1)
    old = module_text(1)
    new = edited(old, 1)
    with committed(tmp_path / "s", *refs, wide, old, new) as store:
        assert store.delta_encode([(cid(new), [cid(old)]), (cid(wide), [cid(r) for r in refs])])[0] == 1
    assert row(tmp_path / "s", wide)[0] == ENCODING_ZSTD
    assert row(tmp_path / "s", new)[0] == ENCODING_DELTA
    assert sound(tmp_path / "s")


def test_store_without_compression_writes_no_delta(tmp_path: Path) -> None:
    a = module_text(1)
    b = edited(a, 1)
    with committed(tmp_path / "s", a, b, compression="none") as store:
        assert store.delta_encode([(cid(b), [cid(a)])]) == (0, 0)
    assert row(tmp_path / "s", b) == (ENCODING_IDENTITY, b)
    assert delta_refs(tmp_path / "s") == set()


# -- damage ------------------------------------------------------------------------------------------

@pytest.fixture
def delta_store(tmp_path: Path) -> tuple[Path, bytes, bytes]:
    """A closed store whose block ``new`` is a delta against ``old``: ``(path, old, new)``."""
    old = module_text(1)
    new = edited(old, 1)
    with committed(tmp_path / "s", old, new) as store:
        assert store.delta_encode([(cid(new), [cid(old)])])[0] == 1
    return tmp_path / "s", old, new


@pytest.mark.parametrize("damage", ["depth zero", "flipped frame byte", "truncated frame", "frame of another size"])
def test_damaged_delta_payload_is_block_corrupt(delta_store: tuple[Path, bytes, bytes], damage: str) -> None:
    path, old, new = delta_store
    _, payload = row(path, new)
    if damage == "depth zero":
        bad = b"\x00" + payload[1:]
    elif damage == "flipped frame byte":
        bad = payload[:-3] + bytes([payload[-3] ^ 0x40]) + payload[-2:]
    elif damage == "truncated frame":
        bad = payload[:-5]
    else:  # a valid frame of a shorter block: the row's size disagrees with the frame header
        bad = encode_payload(new[:-1], [cid(old)], [old], 1)
    assert bad != payload
    forge(path, new, ENCODING_DELTA, bad)
    with BlockStore(path, create=False) as store:
        with pytest.raises(BlockCorrupt) as e:
            store.get(cid(new))
        assert e.value.cid == format_cid(cid(new))
        assert "zstd+delta" in e.value.actual or "sha2-256" in e.value.actual
        assert store.get(cid(old)) == old
        assert [cid_ for cid_, problem in store.verify() if problem is not None] == [cid(new)]


def test_reference_deleted_behind_the_store_is_named_in_block_corrupt(delta_store: tuple[Path, bytes, bytes]) -> None:
    path, old, new = delta_store
    with db(path) as conn:
        conn.execute("DELETE FROM blocks WHERE cid = ?", (cid(old),))
    with BlockStore(path, create=False) as store, pytest.raises(BlockCorrupt) as e:
        store.get(cid(new))
    assert e.value.cid == format_cid(cid(new))
    assert f"its reference {format_cid(short_ref(cid(old)))} is not in the store" in str(e.value)



def test_two_blocks_answering_a_short_reference_make_the_delta_damaged_not_guessed(
        delta_store: tuple[Path, bytes, bytes]) -> None:
    path, old, new = delta_store
    twin = short_ref(cid(old)) + bytes(24)  # a CID with the same first 12 bytes (2**64 hashes to make)
    with db(path) as conn:
        conn.execute("INSERT INTO blocks SELECT ?, encoding, size, data FROM blocks WHERE cid = ?", (twin, cid(old)))
    with BlockStore(path, create=False) as store, pytest.raises(BlockCorrupt) as e:
        store.get(cid(new))
    first, second = sorted([cid(old), twin])
    assert e.value.actual == (f"nothing: its zstd+delta payload is damaged: its reference "
                              f"{format_cid(short_ref(cid(old)))} names {format_cid(first)} and {format_cid(second)}")


def test_a_delta_naming_its_reference_by_the_whole_cid_still_reads(tmp_path: Path) -> None:
    # What code before schema 11 wrote: the header holds the reference's 36-byte CID.
    old = module_text(1)
    new = edited(old, 1)
    with committed(tmp_path / "s", old, new) as store:
        assert store.delta_encode([(cid(new), [cid(old)])])[0] == 1
    encoding, payload = row(tmp_path / "s", new)
    header = read_header(payload)
    whole = encode_uvarint(header.depth) + encode_uvarint(1) + encode_uvarint(36) + cid(old) + payload[header.frame_offset:]
    forge(tmp_path / "s", new, encoding, whole)
    with BlockStore(tmp_path / "s", create=False) as store:
        assert store._delta_header(cid(new)) == replace(header, refs=(cid(old),), frame_offset=39)
        assert store.get(cid(new)) == new
        assert store.delete(cid(old)) is True  # found through delta_refs, rewritten without it
        assert store.get(cid(new)) == new
    assert sound(tmp_path / "s")

def test_store_verify_reports_a_delta_missing_its_reference_in_one_line(
        delta_store: tuple[Path, bytes, bytes], capsys: pytest.CaptureFixture[str]) -> None:
    path, old, new = delta_store
    with db(path) as conn:
        conn.execute("DELETE FROM blocks WHERE cid = ?", (cid(old),))
    capsys.readouterr()
    assert main(["store", "verify", "--store", str(path)]) == 1
    out, err = capsys.readouterr()
    line = (f"corrupt {format_cid(cid(new))}: block {format_cid(cid(new))} in {path} is corrupt: its bytes hash "
            f"to nothing: its zstd+delta payload is damaged: its reference {format_cid(short_ref(cid(old)))} is not "
            "in the store")
    assert out.splitlines() == [line, "verified 1 blocks: 0 ok, 1 corrupt; 0 of 0 archives and pins complete"]
    assert err == ""


def test_damaged_reference_makes_the_delta_corrupt(delta_store: tuple[Path, bytes, bytes]) -> None:
    path, old, new = delta_store
    encoding, payload = row(path, old)
    forge(path, old, encoding, payload[:-3] + bytes([payload[-3] ^ 0x01]) + payload[-2:])
    with BlockStore(path, create=False) as store:
        with pytest.raises(BlockCorrupt) as e:
            store.get(cid(new))
        assert f"its reference {format_cid(cid(old))} is damaged" in str(e.value)
        assert {c for c, problem in store.verify() if problem is not None} == {cid(old), cid(new)}


@pytest.mark.parametrize(("depth_p", "depth_q"), [(1, 1), (2, 1), (MAX_DEPTH, MAX_DEPTH - 1)])
def test_forged_cycle_of_references_is_block_corrupt_not_a_hang(tmp_path: Path, depth_p: int, depth_q: int) -> None:
    p, q = module_text(1), module_text(2)
    committed(tmp_path / "s", p, q).close()
    # Each row a well-formed delta against the other, with plausible depths: only a damaged
    # (or hostile) store can hold this, since delta_encode never deepens a referenced block.
    forge(tmp_path / "s", p, ENCODING_DELTA, encode_payload(p, [cid(q)], [q], depth_p))
    forge(tmp_path / "s", q, ENCODING_DELTA, encode_payload(q, [cid(p)], [p], depth_q))
    with BlockStore(tmp_path / "s", create=False) as store:
        for block in (p, q):
            with pytest.raises(BlockCorrupt) as e:
                store.get(cid(block))
            assert "referenced by one of depth" in str(e.value)
        assert {c for c, problem in store.verify() if problem is not None} == {cid(p), cid(q)}


def test_forged_delta_naming_itself_is_block_corrupt(tmp_path: Path) -> None:
    p = module_text(1)
    committed(tmp_path / "s", p).close()
    forge(tmp_path / "s", p, ENCODING_DELTA, encode_payload(p, [cid(p)], [p], 1))
    with BlockStore(tmp_path / "s", create=False) as store, pytest.raises(BlockCorrupt):
        store.get(cid(p))


# -- delete ----------------------------------------------------------------------------------------------

def test_deleting_a_reference_rewrites_its_dependents_plain(tmp_path: Path) -> None:
    a = module_text(1)
    b, c = edited(a, 1), edited(a, 2)
    with committed(tmp_path / "s", a, b, c) as store:
        assert store.delta_encode([(cid(b), [cid(a)]), (cid(c), [cid(a)])])[0] == 2
        assert store.delete(cid(a)) is True
        assert (store.get(cid(b)), store.get(cid(c))) == (b, c)
        assert store.has(cid(a)) is False
    assert row(tmp_path / "s", b)[0] == ENCODING_ZSTD
    assert row(tmp_path / "s", c)[0] == ENCODING_ZSTD
    assert delta_refs(tmp_path / "s") == set()
    assert sound(tmp_path / "s")


def test_deleting_the_root_of_a_chain_keeps_the_rest_of_the_chain_readable(tmp_path: Path) -> None:
    a, b, c = chain_of(3)
    with committed(tmp_path / "s", a, b, c) as store:
        store.delta_encode([(cid(b), [cid(a)])])
        store.delta_encode([(cid(c), [cid(b)])])
        assert store.delete(cid(a)) is True
    assert row(tmp_path / "s", b)[0] == ENCODING_ZSTD
    assert depth(tmp_path / "s", c) == 2
    assert delta_refs(tmp_path / "s") == keyed({(cid(b), cid(c))})
    with BlockStore(tmp_path / "s", create=False) as store:
        assert store.get(cid(c)) == c
    assert sound(tmp_path / "s")


def test_deleting_a_delta_frees_its_reference_for_encoding(tmp_path: Path) -> None:
    a = module_text(1)
    b, c = edited(a, 1), edited(a, 2)
    with committed(tmp_path / "s", a, b, c) as store:
        store.delta_encode([(cid(b), [cid(a)])])
        assert store.delete(cid(b)) is True
        assert delta_refs(tmp_path / "s") == set()
        assert store.delta_encode([(cid(a), [cid(c)])])[0] == 1
        assert store.get(cid(a)) == a
    assert sound(tmp_path / "s")



def test_references_that_share_a_key_cost_work_but_never_a_block(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Every CID given the same key: the worst case of keys shared by chance.
    monkeypatch.setattr("importer.sinks.store.refs.ref_key", lambda cid: 7)
    a, b = chain_of(2)
    c = module_text(2)
    d = edited(c, 1)
    with committed(tmp_path / "s", a, b, c, d) as store:
        assert store.delta_encode([(cid(b), [cid(a)])])[0] == 1
        # d's reference looks referenced now (every key is), so d is not made a delta: no harm.
        assert store.delta_encode([(cid(d), [cid(c)])])[0] == 0
        # c is no reference of b's: b's row shares the key but b is left as it is.
        assert store.delete(cid(c)) is True
        assert row(tmp_path / "s", b)[0] == ENCODING_DELTA
        assert delta_refs(tmp_path / "s") == {(7, 7)}
        # a is: b is rewritten without it.
        assert store.delete(cid(a)) is True
        assert row(tmp_path / "s", b)[0] == ENCODING_ZSTD
        assert delta_refs(tmp_path / "s") == set()
        assert (store.get(cid(b)), store.get(cid(d))) == (b, d)
    assert sound(tmp_path / "s")



def test_a_delta_whose_key_another_delta_shares_keeps_its_rows_when_that_one_is_rewritten(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = chain_of(2)
    c = module_text(2)
    d = edited(c, 1)
    real_key = ref_key
    # b and d, two deltas, share a key; every other block has its own.
    monkeypatch.setattr("importer.sinks.store.refs.ref_key",
                        lambda block: 7 if block in (cid(b), cid(d)) else real_key(block))
    with committed(tmp_path / "s", a, b, c, d) as store:
        assert store.delta_encode([(cid(b), [cid(a)]), (cid(d), [cid(c)])])[0] == 2
        assert delta_refs(tmp_path / "s") == {(real_key(cid(a)), 7), (real_key(cid(c)), 7)}
        # Deleting a rewrites b, whose rows go by its key, d's with them: d's are written again.
        assert store.delete(cid(a)) is True
        assert (row(tmp_path / "s", b)[0], row(tmp_path / "s", d)[0]) == (ENCODING_ZSTD, ENCODING_DELTA)
        assert delta_refs(tmp_path / "s") == {(real_key(cid(c)), 7)}
        # So deleting c still finds d and rewrites it.
        assert store.delete(cid(c)) is True
        assert row(tmp_path / "s", d)[0] == ENCODING_ZSTD
        assert delta_refs(tmp_path / "s") == set()
        assert (store.get(cid(b)), store.get(cid(d))) == (b, d)
    assert sound(tmp_path / "s")

# -- upgrade --------------------------------------------------------------------------------------------

def test_schema_3_store_is_migrated_to_the_current_schema_and_takes_deltas(tmp_path: Path) -> None:
    a = module_text(1)
    b = edited(a, 1)
    # What the schema 3 code wrote: no delta_refs table, nor any table added after it.
    make_old_store(tmp_path / "s", 3, drop=("delta_refs", "pins", "attempts", "pushed", "packs", "pack_usage"))
    with db(tmp_path / "s") as conn:
        conn.executemany("INSERT INTO blocks (cid, encoding, size, data) VALUES (?, 0, ?, ?)",
                         [(cid(a), len(a), a), (cid(b), len(b), b)])
    with BlockStore(tmp_path / "s", create=False) as store:
        assert (store.get(cid(a)), store.get(cid(b))) == (a, b)
        assert store.delta_encode([(cid(b), [cid(a)])]) == (1, len(b) - len(row(tmp_path / "s", b)[1]))
    with db(tmp_path / "s") as conn:  # its first delta made ``delta_refs``, keyed, and raised it to 11
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (str(DELTA_REF_KEYS_SCHEMA),)
        assert "ref INTEGER" in conn.execute("SELECT sql FROM sqlite_schema WHERE name = 'delta_refs'").fetchone()[0]
    assert delta_refs(tmp_path / "s") == keyed({(cid(a), cid(b))})
    assert sound(tmp_path / "s")



def test_a_store_with_the_cid_table_of_schema_7_keeps_it_and_deletes_exactly(tmp_path: Path) -> None:
    a, b, c = chain_of(3)
    make_old_store(tmp_path / "s", 7)
    with BlockStore(tmp_path / "s", create=False) as store:
        for data in (a, b, c):
            store.put(cid(data), data)
        store.flush()
        assert store.delta_encode([(cid(b), [cid(a)])])[0] == 1
        assert store.delta_encode([(cid(c), [cid(b)])])[0] == 1
    with db(tmp_path / "s") as conn:  # references by CID, as schema 7 code reads them
        assert {(bytes(r), bytes(d)) for r, d in conn.execute("SELECT ref, cid FROM delta_refs")} == {
            (cid(a), cid(b)), (cid(b), cid(c))}
        # 11: its new deltas name their references short, which schema 7 code cannot resolve.
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("11",)
    with BlockStore(tmp_path / "s", create=False) as store:
        assert store.delete(cid(a)) is True
    with db(tmp_path / "s") as conn:
        assert {(bytes(r), bytes(d)) for r, d in conn.execute("SELECT ref, cid FROM delta_refs")} == {(cid(b), cid(c))}
    assert sound(tmp_path / "s")

# -- two processes at once ---------------------------------------------------------------------

#: Releases of several modules for the two delta writers: long enough chains that both
#: processes' transactions interleave.
WRITER_CHAINS = 6
WRITER_LENGTH = 6


def writer_chains() -> list[list[bytes]]:
    chains = []
    for seed in range(WRITER_CHAINS):
        chain = [module_text(100 + seed)]
        for step in range(1, WRITER_LENGTH):
            chain.append(edited(chain[-1], step))
        chains.append(chain)
    return chains


def _delta_writer(path: str, links: list[tuple[int, int]]) -> None:
    """Encode the given (chain, level) links one call each: level against level - 1."""
    chains = writer_chains()
    with BlockStore(path) as store:
        for c, level in links:
            store.delta_encode([(cid(chains[c][level]), [cid(chains[c][level - 1])])], chunk_rows=1)


def test_two_processes_making_overlapping_deltas_leave_every_block_readable(tmp_path: Path) -> None:
    import multiprocessing

    chains = writer_chains()
    with committed(tmp_path / "s", *[data for chain in chains for data in chain]):
        pass
    links = [(c, level) for c in range(WRITER_CHAINS) for level in range(1, WRITER_LENGTH)]
    # One process walks the chains forwards, the other backwards: they meet in the middle and
    # each must re-check, under the write lock, what the other did.
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_delta_writer, args=(str(tmp_path / "s"), links)),
             ctx.Process(target=_delta_writer, args=(str(tmp_path / "s"), links[::-1]))]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0]
    with BlockStore(tmp_path / "s", create=False) as store:
        for chain in chains:
            for data in chain:
                assert store.get(cid(data)) == data
        assert all(problem is None for _, problem in store.verify())
    with db(tmp_path / "s") as conn:
        rows = {bytes(c): (int(e), bytes(d)) for c, e, d in conn.execute("SELECT cid, encoding, data FROM blocks")}
    refs = delta_refs(tmp_path / "s")
    # Which links become deltas depends on the interleaving (a referenced block is never made one).
    assert sum(encoding == ENCODING_DELTA for encoding, _ in rows.values()) >= WRITER_CHAINS
    for block, (encoding, payload) in rows.items():
        if encoding != ENCODING_DELTA:
            continue
        header = read_header(payload)
        # The reverse index names exactly the row's references, and each is shallower.
        named = [next(c for c in rows if c.startswith(ref)) for ref in header.refs]  # short names resolved
        assert {ref for ref, dependent in refs if dependent == ref_key(block)} == {ref_key(ref) for ref in named}
        for ref in named:
            ref_encoding, ref_payload = rows[ref]
            ref_depth = read_header(ref_payload).depth if ref_encoding == ENCODING_DELTA else 0
            assert ref_depth < header.depth
