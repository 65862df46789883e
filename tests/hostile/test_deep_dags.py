"""Deep DAGs: every walk (get, ls, cat, export, import of an archive, fetch) is iterative or
depth-limited, so 1,500 nested directories give a correct result and deeper-than-allowed file,
HAMT and DAG-CBOR structures a one-line error, never a RecursionError."""

from __future__ import annotations

import os
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest

from importer.cli.extract import remove_tree
from importer.dag.cid import DAG_CBOR, format_cid
from importer.dag.dagpb import PBLink
from importer.dag.reader import MAX_FILE_DEPTH, MAX_SHARD_DEPTH
from importer.dag.unixfs import HAMT_HASH_MURMUR3, NodeType, UnixFSData
from importer.sinks.car import CarReader
from tests.archive_builders import TarMember, gzip_python, tar_bytes
from tests.archive_checks import sha256_file
from tests.conftest import RunCli

from .forge import Forge
from .support import import_car, one_line_error, run_cli

#: Nesting of the deep trees: past Python's default recursion limit (1000), so any recursive
#: walk would fail, while the path ("d/" x 1,500 = 3,000 bytes) stays under PATH_MAX (4096).
DEPTH: Final = 1500


def deep_tree(forge: Forge, depth: int = DEPTH) -> tuple[bytes, bytes]:
    """``d/d/.../d/leaf.txt`` (``depth`` directories); return the root CID and the leaf's CID."""
    leaf = forge.file(b"at the bottom\n")
    node = forge.directory({"leaf.txt": leaf})
    for _ in range(depth - 1):
        node = forge.directory({"d": node})
    return forge.directory({"d": node}).cid, leaf.cid


@pytest.fixture
def deep_output(tmp_path: Path) -> Iterator[Path]:
    """Where a deep tree is written; removed by the test, pass or fail: pytest's own clean-up of
    old temporary directories recurses (``shutil.rmtree`` before Python 3.12) and would fail."""
    path = tmp_path / "got"
    try:
        yield path
    finally:
        remove_tree(path)


def test_a_car_of_1500_nested_directories_reads_correctly_everywhere(tmp_path: Path, cli: RunCli,
                                                                     deep_output: Path) -> None:
    forge = Forge()
    root, leaf = deep_tree(forge)
    store = import_car(forge, tmp_path, root)
    cid = format_cid(root)
    deep = "/".join(["d"] * DEPTH)
    rc, out, err = cli("cat", f"{cid}/{deep}/leaf.txt", "--store", store)
    assert (rc, out, err) == (0, "at the bottom\n", "")
    rc, out, err = cli("ls", f"{cid}/{deep}", "--store", store)
    assert (rc, out) == (0, f"{format_cid(leaf)} 14 leaf.txt\n"), err
    rc, _, err = cli("get", cid, "-o", deep_output, "--store", store)
    assert rc == 0, err
    assert (deep_output / deep / "leaf.txt").read_bytes() == b"at the bottom\n"
    here, levels = deep_output, 0
    while sorted(os.listdir(here)) == ["d"]:  # exactly one directory per level, none missing
        here, levels = here / "d", levels + 1
    assert (levels, os.listdir(here)) == (DEPTH, ["leaf.txt"])
    rc, _, err = cli("export", cid, "-o", tmp_path / "again.car", "--store", store)
    assert rc == 0, err
    with CarReader(tmp_path / "again.car") as reader:
        assert reader.roots == (root,)
        assert {c for c, _ in reader} == set(forge.dag.sink.blocks)


def test_an_sdist_of_1500_nested_directories_imports_and_fetches_identically(tmp_path: Path, cli: RunCli) -> None:
    prefix = "deep-1.0/" + "d/" * DEPTH
    members = [TarMember("deep-1.0/", kind=tarfile.DIRTYPE), TarMember(prefix + "leaf.txt", b"at the bottom\n")]
    sdist = tmp_path / "deep-1.0.tar.gz"
    sdist.write_bytes(gzip_python(tar_bytes(members)))
    store = tmp_path / "store"
    rc, out, err = cli("sdist", "--store", store, sdist)
    assert rc == 0, err
    root = out.split()[1]
    rc, _, err = cli("fetch", root, "-o", tmp_path / "back.tar.gz", "--store", store)
    assert rc == 0, err
    assert sha256_file(tmp_path / "back.tar.gz") == sha256_file(sdist)
    rc, _, err = cli("verify", root, "--store", store)
    assert rc == 0, err
    # The next release is planned against this one (the delta planner walks both trees).
    newer = tmp_path / "deep-1.1.tar.gz"
    newer.write_bytes(gzip_python(tar_bytes([TarMember("deep-1.1/", kind=tarfile.DIRTYPE),
                                             TarMember("deep-1.1/" + "d/" * DEPTH + "leaf.txt", b"still here\n")])))
    rc, out, err = cli("sdist", "--store", store, newer)
    assert rc == 0, err
    rc, _, err = cli("fetch", out.split()[1], "-o", tmp_path / "newer.tar.gz", "--store", store)
    assert rc == 0, err
    assert sha256_file(tmp_path / "newer.tar.gz") == sha256_file(newer)


def test_a_file_dag_deeper_than_the_limit_is_one_line(tmp_path: Path) -> None:
    forge = Forge()
    node = forge.file(b"x")
    for _ in range(MAX_FILE_DEPTH + 1):
        node = forge.dag.node([PBLink(node.cid, b"", node.tsize)],
                              UnixFSData(NodeType.FILE, filesize=1, blocksizes=(1,)))
    store = import_car(forge, tmp_path, node.cid)
    for args in (("cat", format_cid(node.cid)), ("get", format_cid(node.cid), "-o", str(tmp_path / "f"))):
        line = one_line_error(run_cli(*args, "--store", store))
        assert line.startswith(f"dpip-import {args[0]}: block ") and line.endswith(
            f": file DAG deeper than {MAX_FILE_DEPTH} levels")
    assert not (tmp_path / "f").exists()


def test_a_hamt_deeper_than_its_hash_allows_is_one_line(tmp_path: Path) -> None:
    forge = Forge()
    shard = forge.dag.node([PBLink(forge.file(b"x").cid, b"00x", 10)],
                           UnixFSData(NodeType.HAMT_SHARD, data=b"\x01", hash_type=HAMT_HASH_MURMUR3, fanout=256))
    for _ in range(MAX_SHARD_DEPTH + 1):
        shard = forge.dag.node([PBLink(shard.cid, b"00", shard.tsize)],
                               UnixFSData(NodeType.HAMT_SHARD, data=b"\x01", hash_type=HAMT_HASH_MURMUR3, fanout=256))
    store = import_car(forge, tmp_path, shard.cid)
    for args in (("ls", format_cid(shard.cid)), ("get", format_cid(shard.cid), "-o", str(tmp_path / "d"))):
        line = one_line_error(run_cli(*args, "--store", store))
        assert line.startswith(f"dpip-import {args[0]}: block ") and line.endswith(
            f": HAMT deeper than {MAX_SHARD_DEPTH} levels")
    assert not (tmp_path / "d").exists()


def test_deeply_nested_dag_cbor_is_one_line_in_export(tmp_path: Path) -> None:
    forge = Forge()
    block = b"\x81" * 5000 + b"\x00"  # [[[[...0...]]]], 5,000 lists deep
    cid = forge.dag.put(1, DAG_CBOR, block)
    store = import_car(forge, tmp_path, cid)
    line = one_line_error(run_cli("export", format_cid(cid), "-o", tmp_path / "x.car", "--store", store))
    assert line == f"dpip-import export: block {format_cid(cid)}: dag-cbor: lists and maps nest deeper than 256 levels at byte 256"
    assert not (tmp_path / "x.car").exists()


def test_a_refused_get_of_a_deep_tree_leaves_nothing(tmp_path: Path, cli: RunCli) -> None:
    forge = Forge()
    node = forge.directory({"escape": forge.dag.symlink(b"/etc")})
    for _ in range(DEPTH - 1):
        node = forge.directory({"d": node})
    store = import_car(forge, tmp_path, node.cid)
    (tmp_path / "box").mkdir()
    rc, _, err = cli("get", format_cid(node.cid), "-o", tmp_path / "box" / "out", "--store", store)
    assert rc == 1 and err.count("\n") == 1 and "/d/escape' -> '/etc' is absolute" in err
    assert os.listdir(tmp_path / "box") == []
