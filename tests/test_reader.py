"""The UnixFS reader on hand-built DAGs: files of every shape, directories, HAMT shards, symlinks."""

from __future__ import annotations

import hashlib

import mmh3
import pytest

from importer.dag.cid import DAG_CBOR, RAW, cid_of_block, format_cid
from importer.dag.dagpb import PBLink
from importer.dag.reader import Kind, PathError, iter_directory, iter_file, lookup, resolve, stat
from importer.dag.unixfs import HAMT_HASH_MURMUR3, Mtime, NodeType, UnixFSData
from importer.errors import BlockCorrupt, BlockNotFound, InvalidBlock

from .dag_builders import DagBuilder, Link


def read(dag: DagBuilder, cid: bytes) -> bytes:
    return b"".join(iter_file(dag.sink, cid))


# -- files -------------------------------------------------------------------------------------

def test_balanced_two_level_file_matches_kubo_cid_and_streams_back() -> None:
    # js-ipfs-unixfs hash-parity-with-go-ipfs: 45,900,000 zero bytes, CIDv0, dag-pb leaves,
    # 256 KiB chunks -> 176 leaves -> two levels (174 + 2 leaves under the root).
    data = bytes(45_900_000)
    dag = DagBuilder()
    root = dag.file(data)
    assert format_cid(root.cid) == "QmRdPboiJQoZ5cdazR9a8vGqdJvWg6M5bfdtUSKNHpuscj"
    node = stat(dag.sink, root.cid)
    assert (node.kind, node.size) == (Kind.FILE, 45_900_000)
    digest = hashlib.sha256()
    biggest = 0
    for chunk in iter_file(dag.sink, root.cid):
        digest.update(chunk)
        biggest = max(biggest, len(chunk))
    assert digest.digest() == hashlib.sha256(data).digest()
    assert biggest == 256 * 1024  # streamed one leaf at a time, never the whole file


def test_deep_raw_leaf_file_streams_exact_bytes() -> None:
    data = bytes(range(256)) * 40 + b"tail"  # 10244 bytes
    dag = DagBuilder()
    root = dag.file(data, chunk=100, width=4, raw_leaves=True, version=1)  # 103 leaves, 4 levels
    assert read(dag, root.cid) == data
    assert stat(dag.sink, root.cid).size == len(data)


def test_single_raw_block_is_a_file() -> None:
    dag = DagBuilder()
    cid = dag.put(1, RAW, b"hello world\n")
    assert format_cid(cid) == "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"
    assert read(dag, cid) == b"hello world\n"


def test_empty_file_reads_as_no_bytes() -> None:
    dag = DagBuilder()
    root = dag.file(b"")
    assert format_cid(root.cid) == "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
    assert read(dag, root.cid) == b""


def test_trickle_style_raw_type_leaves_are_read() -> None:
    dag = DagBuilder()
    leaves = [dag.node([], UnixFSData(NodeType.RAW, data=part, filesize=len(part))) for part in (b"ab", b"cde")]
    root = dag.node([PBLink(leaf.cid, b"", leaf.tsize) for leaf in leaves],
                    UnixFSData(NodeType.FILE, data=b"01", filesize=7, blocksizes=(2, 3)))
    assert read(dag, root.cid) == b"01abcde"  # inline data of an internal node comes first


def test_file_mode_and_mtime_are_reported() -> None:
    dag = DagBuilder()
    root = dag.file(b"", mode=0o640)
    assert format_cid(root.cid) == "QmQLgxypSNGNFTuUPGCecq6dDEjb6hNB5xSyVmP3cEuNtq"  # Kubo t0047
    timed = dag.file(b"", mtime=Mtime(1604320482))
    assert format_cid(timed.cid) == "QmQ6kErEW8kztQFV8vbwNU8E4dmtGsYpRiboiLxUEwibvj"
    assert stat(dag.sink, root.cid).mode == 0o640
    assert stat(dag.sink, timed.cid).mtime == Mtime(1604320482)


def _two_leaf_file(dag: DagBuilder, blocksizes: tuple[int, ...], filesize: int) -> Link:
    a, b = dag.put(1, RAW, b"aaaa"), dag.put(1, RAW, b"bb")
    return dag.node([PBLink(a, b"", 4), PBLink(b, b"", 2)],
                    UnixFSData(NodeType.FILE, filesize=filesize, blocksizes=blocksizes))


def test_filesize_disagreeing_with_blocksizes_is_rejected() -> None:
    dag = DagBuilder()
    root = _two_leaf_file(dag, (4, 2), 7)
    with pytest.raises(InvalidBlock, match="filesize 7 but data and blocksizes add up to 6"):
        read(dag, root.cid)


def test_raw_leaf_larger_than_its_blocksize_is_rejected() -> None:
    dag = DagBuilder()
    root = _two_leaf_file(dag, (3, 3), 6)
    with pytest.raises(InvalidBlock) as e:
        read(dag, root.cid)
    assert e.value.reason == "raw leaf holds 4 bytes, its parent says 3"
    assert e.value.cid == format_cid(cid_of_block(1, RAW, b"aaaa"))


def test_link_count_disagreeing_with_blocksizes_is_rejected() -> None:
    dag = DagBuilder()
    root = _two_leaf_file(dag, (6,), 6)
    with pytest.raises(InvalidBlock, match="2 links but 1 blocksizes"):
        read(dag, root.cid)


def test_corrupt_leaf_is_detected_while_streaming() -> None:
    dag = DagBuilder()
    root = dag.file(b"x" * 300, chunk=100, raw_leaves=True, version=1)
    leaf = cid_of_block(1, RAW, b"x" * 100)
    dag.sink.blocks[leaf] = b"y" * 100
    with pytest.raises(BlockCorrupt):
        read(dag, root.cid)


def test_missing_leaf_raises_block_not_found() -> None:
    dag = DagBuilder()
    root = dag.file(b"x" * 150, chunk=100, raw_leaves=True, version=1)
    del dag.sink.blocks[cid_of_block(1, RAW, b"x" * 50)]
    with pytest.raises(BlockNotFound):
        read(dag, root.cid)


# -- directories and symlinks ------------------------------------------------------------------

def test_directory_with_symlink_matches_kubo_cid_and_lists() -> None:
    dag = DagBuilder()
    foo = dag.file(b"content\n")
    bar = dag.symlink(b"foo")
    root = dag.directory({"foo": foo, "bar": bar})
    assert format_cid(root.cid) == "QmWvY6FaqFMS89YAQ9NAPjVP4WZKA1qbHbicc9HeSKQTgt"
    entries = list(iter_directory(dag.sink, root.cid))
    assert [(e.name, e.cid, e.tsize) for e in entries] == [("bar", bar.cid, bar.tsize), ("foo", foo.cid, foo.tsize)]
    link = stat(dag.sink, resolve(dag.sink, root.cid, "bar"))
    assert (link.kind, link.target) == (Kind.SYMLINK, b"foo")
    assert read(dag, resolve(dag.sink, root.cid, "/foo/")) == b"content\n"


def test_nested_directory_matches_kubo_cid_and_resolves_paths() -> None:
    dag = DagBuilder()
    hello = dag.directory({"world": dag.file(b"World\n")})
    root = dag.directory({"hey": dag.file(b"Hey\n"), "hello": hello})
    assert format_cid(root.cid) == "QmZQWnfcqJ6hNkkPvrY9Q5X39GP3jUnUbAV4AbmbbR3Cb1"
    assert read(dag, resolve(dag.sink, root.cid, "hello/world")) == b"World\n"
    assert stat(dag.sink, resolve(dag.sink, root.cid, "hello")).kind is Kind.DIRECTORY


def test_resolving_a_missing_name_raises_path_error() -> None:
    dag = DagBuilder()
    root = dag.directory({"a": dag.file(b"1")})
    with pytest.raises(PathError) as e:
        resolve(dag.sink, root.cid, "b")
    assert e.value.reason == "no link named 'b'"
    assert e.value.path == format_cid(root.cid)


def test_resolving_through_a_file_or_symlink_raises_path_error() -> None:
    dag = DagBuilder()
    root = dag.directory({"f": dag.file(b"1"), "l": dag.symlink(b"f")})
    with pytest.raises(PathError, match="is a file, cannot look up 'x'"):
        resolve(dag.sink, root.cid, "f/x")
    with pytest.raises(PathError, match="is a symlink"):
        resolve(dag.sink, root.cid, "l/x")


def test_reading_a_directory_as_a_file_raises_path_error() -> None:
    dag = DagBuilder()
    root = dag.directory({})
    with pytest.raises(PathError, match="is a directory, not a file"):
        read(dag, root.cid)


# -- HAMT shards -------------------------------------------------------------------------------

def hamt_hash(name: bytes) -> int:
    """h1 of murmur3-x64-128, seed 0, as boxo reads it (big-endian of the first 8 digest bytes)."""
    return int.from_bytes(mmh3.hash_bytes(name)[:8], "little")


def name_in_bucket(top: int, avoid: int | None = None) -> bytes:
    """A name whose hash's first byte is ``top`` (and whose second byte is not ``avoid``)."""
    for i in range(1_000_000):
        name = f"file-{i}".encode()
        h = hamt_hash(name)
        if h >> 56 == top and (avoid is None or (h >> 48) & 0xFF != avoid):
            return name
    raise AssertionError("no name found")


def shard(dag: DagBuilder, links: list[PBLink], buckets: list[int], fanout: int = 256) -> Link:
    bitfield = sum(1 << b for b in buckets)
    data = UnixFSData(NodeType.HAMT_SHARD, data=bitfield.to_bytes((bitfield.bit_length() + 7) // 8, "big"),
                      hash_type=HAMT_HASH_MURMUR3, fanout=fanout)
    return dag.node(links, data, version=1)


def test_hamt_bucket_hash_matches_spec_example() -> None:
    assert f"{hamt_hash(b'470.txt'):016x}" == "006e88df5847e67c"


def test_single_bucket_shard_data_matches_spec_bytes_and_lists() -> None:
    dag = DagBuilder()
    name = name_in_bucket(3)
    child = dag.file(b"three")
    root = shard(dag, [PBLink(child.cid, b"03" + name, child.tsize)], [3])
    # UnixFS spec example: only bucket 3 set -> Data = 08 05 12 01 08 28 22 30 80 02.
    block = dag.sink.blocks[root.cid]
    assert block.endswith(bytes.fromhex("0a0a" "08051201082822308002"))
    assert [(e.name, e.cid) for e in iter_directory(dag.sink, root.cid)] == [(name.decode(), child.cid)]
    assert stat(dag.sink, root.cid).kind is Kind.DIRECTORY
    assert read(dag, resolve(dag.sink, root.cid, name.decode())) == b"three"


def test_hamt_with_sub_shard_lists_all_entries_and_looks_up_by_hash() -> None:
    dag = DagBuilder()
    first = b"470.txt"  # bucket 00 at the root, 6E in the sub-shard (spec example)
    second = name_in_bucket(0x00, avoid=0x6E)
    third = name_in_bucket(0x03)
    files = {n: dag.file(n + b" body") for n in (first, second, third)}
    second_bucket = (hamt_hash(second) >> 48) & 0xFF
    sub_links = sorted([PBLink(files[first].cid, b"6E" + first, files[first].tsize),
                        PBLink(files[second].cid, f"{second_bucket:02X}".encode() + second,
                               files[second].tsize)], key=lambda link: link.name)
    sub = shard(dag, sub_links, [0x6E, second_bucket])
    root = shard(dag, [PBLink(sub.cid, b"00", sub.tsize),
                       PBLink(files[third].cid, b"03" + third, files[third].tsize)], [0, 3])
    listed = {e.name: e.cid for e in iter_directory(dag.sink, root.cid)}
    assert listed == {n.decode(): files[n].cid for n in files}
    for name, link in files.items():
        entry = lookup(dag.sink, root.cid, name.decode())
        assert entry is not None and entry.cid == link.cid
        assert read(dag, entry.cid) == name + b" body"
    assert lookup(dag.sink, root.cid, "absent-name") is None


def test_hamt_prefix_width_follows_fanout() -> None:
    # fanout 1024: prefixes are len("%X" % 1023) = 3 hex digits, here bucket 1023 = "3FF".
    dag = DagBuilder()
    child = dag.file(b"x")
    root = shard(dag, [PBLink(child.cid, b"3FFname", child.tsize)], [1023], fanout=1024)
    assert [e.name for e in iter_directory(dag.sink, root.cid)] == ["name"]


def test_hamt_link_in_a_bucket_the_bitfield_marks_empty_is_rejected() -> None:
    dag = DagBuilder()
    child = dag.file(b"x")
    root = shard(dag, [PBLink(child.cid, b"05name", child.tsize)], [3])
    with pytest.raises(InvalidBlock, match="bucket 5, which the bitfield marks empty"):
        list(iter_directory(dag.sink, root.cid))


def test_hamt_with_invalid_fanout_is_rejected() -> None:
    dag = DagBuilder()
    root = dag.node([], UnixFSData(NodeType.HAMT_SHARD, data=b"\x01", hash_type=HAMT_HASH_MURMUR3, fanout=100))
    with pytest.raises(InvalidBlock, match="fanout 100"):
        list(iter_directory(dag.sink, root.cid))


def test_non_unixfs_codec_is_refused() -> None:
    dag = DagBuilder()
    cid = dag.put(1, DAG_CBOR, b"\xa0")  # an empty map
    with pytest.raises(PathError, match="not a UnixFS node"):
        stat(dag.sink, cid)
