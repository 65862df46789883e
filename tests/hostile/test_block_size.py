"""No block over 1 MiB from an archive: recipe pages cut by bytes, long lists paged (recipe
version 2), a final guard naming the block and its size; and roots made before all this
(recipe version 1, written by the importer as it was) still rebuild."""

from __future__ import annotations

import gzip
import hashlib
import os
import random
from pathlib import Path

import dag_cbor
import pytest
from multiformats import CID

from importer.archive.recipe import (
    INLINE_LIST_BYTES,
    PAGE_BYTES,
    PAGE_SIZE,
    MemberEntry,
    OuterStream,
    Recipe,
    read_recipe,
    write_recipe,
)
from importer.dag.cbor import decode_dag_cbor
from importer.dag.cid import DAG_CBOR, DAG_PB, RAW, cid_codec, cid_of_block, format_cid, parse_cid
from importer.errors import OversizeBlock
from importer.sinks.base import MemorySink
from importer.sinks.car import CarReader
from importer.sinks.guard import MAX_BLOCK_SIZE
from importer.sinks.store import BlockStore
from tests.archive_builders import TarMember, ZipEntry, build_zip, tar_bytes
from tests.archive_checks import sha256_file
from tests.conftest import RunCli
from tests.fuzz.seeds import V1_ARCHIVES, recipe_v1_car

PARAMS: dict[str, int | str] = {"v": 1, "name": "zlib", "family": "madler-zlib", "level": 9, "wbits": -15, "mem_level": 8}


def big_recipe(rng: random.Random) -> Recipe:
    """Every list long: 100,000 outer items, 3,000 params, 5,000 extras, 10,000 members with
    300-byte names and a few of 200 KB (which alone fill 4096 entries past 1 MiB)."""
    extra = tuple(cid_of_block(1, RAW, b"%d" % i) for i in range(5000))
    params = tuple({**PARAMS, "level": 1 + i % 9, "max_lazy": i} for i in range(3000))
    outer = tuple(OuterStream(i % 3000, -1, i * 10, 10) if i % 2 else 512 for i in range(100_000))
    members = tuple(MemberEntry(rng.randrange(2**40), "d/" + ("x" * (200_000 if i % 2500 == 7 else 300)) + str(i),
                                rng.randrange(-1, 3000)) for i in range(10_000))
    return Recipe("tar", outer, cid_of_block(1, RAW, b"skeleton"), 2**33, params, extra, members, 1024)


def test_a_recipe_with_long_lists_is_paged_under_1_mib_and_reads_back(tmp_path: Path) -> None:
    recipe = big_recipe(random.Random(5))
    sink = MemorySink()
    cid = write_recipe(recipe, sink)
    assert max(len(b) for b in sink.blocks.values()) <= PAGE_BYTES + 200_100 < MAX_BLOCK_SIZE
    node = decode_dag_cbor(sink.blocks[cid])
    assert node["v"] == 2 and len(sink.blocks[cid]) < INLINE_LIST_BYTES
    assert {key: set(node[key]) for key in ("outer", "params", "extra")} == {k: {"n", "pages"} for k in
                                                                          ("outer", "params", "extra")}
    pages = [decode_dag_cbor(sink.blocks[bytes(p)]) for p in node["pages"]]
    assert all(len(p) <= PAGE_SIZE for p in pages) and sum(len(p) for p in pages) == len(recipe.members)
    assert read_recipe(sink, cid) == recipe


def test_a_recipe_that_fits_is_version_1_byte_for_byte_as_before() -> None:
    """The layout every recipe had before paging, encoded by the reference DAG-CBOR library."""
    members = tuple(MemberEntry(i, f"pkg/m{i}.py", 0) for i in range(PAGE_SIZE + 10))
    recipe = Recipe("zip", (None,), cid_of_block(0, DAG_PB, b"s"), 99, (PARAMS,), (cid_of_block(1, RAW, b"e"),),
                    members, 7)
    sink = MemorySink()
    cid = write_recipe(recipe, sink)
    pages: list[dag_cbor.IPLDKind] = [CID.decode(cid_of_block(1, 0x71, dag_cbor.encode([[m.skeleton_before, m.source, m.params]
                                                                                    for m in members[s:s + PAGE_SIZE]])))
                                         for s in range(0, len(members), PAGE_SIZE)]
    params: dag_cbor.IPLDKind = dict(PARAMS)
    old = dag_cbor.encode({"v": 1, "body": "zip", "outer": [[2]], "skeleton": CID.decode(recipe.skeleton),
                           "skeleton_size": 99, "params": [params], "extra": [CID.decode(recipe.extra[0])],
                           "pages": pages, "members": len(members), "tail": 7})
    assert sink.blocks[cid] == old


def test_one_entry_over_1_mib_is_refused_with_the_block_and_its_size() -> None:
    recipe = Recipe("tar", (), cid_of_block(1, RAW, b"s"), 0, (), (), (MemberEntry(0, "n" * (1 << 20), -1),), 0)
    block_size = 1 + 1 + 5 + (1 << 20) + 1 + 1  # list head, entry head, 0, text head + name, -1
    page = cid_of_block(1, 0x71, bytes([0x81, 0x83, 0x00, 0x7A]) + (1 << 20).to_bytes(4, "big") + b"n" * (1 << 20)
                        + b"\x20")
    with pytest.raises(OversizeBlock) as e:
        write_recipe(recipe, MemorySink())
    assert (e.value.cid, e.value.size, e.value.limit) == (format_cid(page), block_size, MAX_BLOCK_SIZE)
    assert str(e.value) == f"block {format_cid(page)} is 1,048,585 bytes, over the 1,048,576-byte block limit"


def test_roots_made_before_recipe_version_2_still_rebuild(tmp_path: Path, cli: RunCli) -> None:
    v1_car = tmp_path / "recipe-v1.car"
    v1_car.write_bytes(recipe_v1_car())
    with CarReader(v1_car) as reader:
        roots = [format_cid(r) for r in reader.roots]
        nodes = [decode_dag_cbor(block) for cid, block in reader if cid_codec(cid) == DAG_CBOR]
    versions = [node["v"] for node in nodes if isinstance(node, dict) and "outer" in node]
    assert versions == [1, 1, 1]  # the wheel's, the sdist's and its nested member's: the version before 2
    store = tmp_path / "store"
    rc, out, err = cli("import-car", "--store", store, v1_car)
    assert (rc, out.split()) == (0, roots), err
    for root, sha in zip(roots, V1_ARCHIVES.values(), strict=True):
        rc, _, err = cli("fetch", root, "-o", tmp_path / "back", "--store", store, "--force")
        assert rc == 0, err
        assert sha256_file(tmp_path / "back") == sha
        assert cli("verify", root, "--store", store)[0] == 0


@pytest.mark.slow
def test_an_sdist_of_6000_gzip_streams_imports_as_version_2_and_fetches_identically(tmp_path: Path,
                                                                                     cli: RunCli) -> None:
    tar = tar_bytes([TarMember(f"multi-1.0/f{i}.txt", b"line %d\n" % i * 3) for i in range(40)])
    step = len(tar) // 6000 + 1
    sdist = tmp_path / "multi-1.0.tar.gz"
    sdist.write_bytes(b"".join(gzip.compress(tar[i:i + step], 9, mtime=0) for i in range(0, len(tar), step)))
    store = tmp_path / "store"
    rc, out, err = cli("sdist", "--store", store, sdist)
    assert rc == 0, err
    root = out.split()[1]
    with BlockStore(store) as s:
        sizes = {c: len(s.get(c)) for c in s.iter_cids()}
        node = decode_dag_cbor(s.get(bytes(decode_dag_cbor(s.get(parse_cid(root)))["recipe"])))
    assert max(sizes.values()) < MAX_BLOCK_SIZE
    assert node["v"] == 2 and node["outer"]["n"] > 12_000
    rc, _, err = cli("fetch", root, "-o", tmp_path / "back.tar.gz", "--store", store)
    assert rc == 0, err
    assert sha256_file(tmp_path / "back.tar.gz") == hashlib.sha256(sdist.read_bytes()).hexdigest()


@pytest.mark.parametrize(("entries", "flags"), [
    ([ZipEntry(b"big/blob.bin", os.urandom(1536 * 1024), method=0)], ("--chunker", "size-2000000")),
    # 20 names of 65,000 bytes in one directory: its HAMT shard would be 1.3 MB.
    ([ZipEntry(b"wide/" + bytes([97 + i]) * 65_000, b"x", method=0) for i in range(20)], ()),
])
def test_an_import_that_would_write_a_block_over_1_mib_is_refused(entries: list[ZipEntry], flags: tuple[str, ...],
                                                                  tmp_path: Path, cli: RunCli) -> None:
    wheel = tmp_path / "big-1.0-py3-none-any.whl"
    wheel.write_bytes(build_zip(entries))
    rc, _, err = cli("auto", "--store", tmp_path / "store", *flags, wheel)
    assert rc == 1 and err.count("\n") == 1
    assert err.startswith("dpip-import auto: block ") and err.endswith(" bytes, over the 1,048,576-byte block limit\n")
