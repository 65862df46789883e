"""The read-side commands end to end: add -> cat/get/ls, CAR round trips, store stats/verify, errors."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from importer.cli.main import main
from importer.dag.cid import RAW, cid_of_block, format_cid, parse_cid
from importer.dag.dagpb import PBLink
from importer.dag.reader import stat
from importer.dag.unixfs import NodeType, UnixFSData
from importer.sinks.store import DB_NAME, BlockStore

from .dag_builders import DagBuilder

Run = Callable[..., tuple[int, bytes, str]]


@pytest.fixture
def run(capsysbinary: pytest.CaptureFixture[bytes]) -> Run:
    """``rc, stdout_bytes, stderr_text = run("cat", cid)``, in-process."""

    def go(*argv: str | os.PathLike[str]) -> tuple[int, bytes, str]:
        capsysbinary.readouterr()
        rc = main([os.fspath(a) for a in argv])
        captured = capsysbinary.readouterr()
        return rc, captured.out, captured.err.decode()

    return go


def payload(n: int, seed: str = "x") -> bytes:
    out = bytearray()
    block = hashlib.sha256(seed.encode()).digest()
    while len(out) < n:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:n])


def add(run: Run, store: Path, *args: str | os.PathLike[str]) -> str:
    rc, out, err = run("add", "-Q", "--store", store, *args)
    assert rc == 0, err
    return out.decode().strip()


def make_tree(root: Path) -> Path:
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "empty-dir").mkdir()
    (root / "big.bin").write_bytes(payload(600_000))
    (root / "empty").write_bytes(b"")
    (root / "sub" / "a.txt").write_bytes(b"alpha\n")
    (root / "sub" / "deeper" / "b.txt").write_bytes(b"beta\n")
    os.symlink("sub/a.txt", root / "link")
    os.chmod(root / "sub" / "a.txt", 0o640)
    os.utime(root / "sub" / "a.txt", ns=(1_600_000_000_123_456_789, 1_600_000_000_123_456_789))
    return root


def tree_listing(root: Path) -> dict[str, object]:
    found: dict[str, object] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                found[rel] = ("link", os.readlink(path))
            elif path.is_dir():
                found[rel] = "dir"
            else:
                found[rel] = path.read_bytes()
    return found


def all_blocks(store: Path) -> dict[bytes, bytes]:
    with BlockStore(store, create=False) as s:
        return {c: s.get(c) for c in s.iter_cids()}


# -- round trips -------------------------------------------------------------------------------

@pytest.mark.parametrize("flags", [(), ("--cid-version", "1"), ("--chunker", "size-1000", "--trickle")])
def test_add_then_cat_gives_the_same_bytes(run: Run, tmp_path: Path, flags: tuple[str, ...]) -> None:
    data = payload(700_001)
    (tmp_path / "f").write_bytes(data)
    root = add(run, tmp_path / "s", *flags, tmp_path / "f")
    rc, out, err = run("cat", root, "--store", tmp_path / "s")
    assert (rc, err) == (0, "")
    assert out == data


def test_add_then_get_reproduces_the_tree(run: Run, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    root = add(run, tmp_path / "s", "-r", "--preserve-mode", "--preserve-mtime", src)
    rc, _, err = run("get", root, "-o", tmp_path / "out", "--store", tmp_path / "s")
    assert rc == 0, err
    assert tree_listing(tmp_path / "out") == tree_listing(src)
    a = (tmp_path / "out" / "sub" / "a.txt").stat()
    assert a.st_mode & 0o7777 == 0o640
    assert a.st_mtime_ns == 1_600_000_000_123_456_789
    assert [p for p in os.listdir(tmp_path) if p.startswith(".")] == []


def test_cat_and_get_follow_a_path_below_the_root(run: Run, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    src = make_tree(tmp_path / "src")
    root = add(run, tmp_path / "s", "-r", src)
    rc, out, _ = run("cat", f"/ipfs/{root}/sub/deeper/b.txt", "--store", tmp_path / "s")
    assert (rc, out) == (0, b"beta\n")
    monkeypatch.chdir(tmp_path)  # without -o, get names the output after the last path element
    rc, _, err = run("get", f"{root}/sub", "--store", tmp_path / "s")
    assert rc == 0, err
    assert (tmp_path / "sub" / "deeper" / "b.txt").read_bytes() == b"beta\n"


def test_get_of_a_hamt_directory_reproduces_it(run: Run, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(40):
        (src / f"file-{i:03}.txt").write_bytes(f"content {i}\n".encode())
    root = add(run, tmp_path / "s", "-r", "--hamt-threshold", "200", src)
    with BlockStore(tmp_path / "s") as store:
        node = stat(store, parse_cid(root))
        assert node.unixfs is not None and node.unixfs.type is NodeType.HAMT_SHARD
    rc, out, _ = run("ls", root, "--store", tmp_path / "s")
    names = [line.split()[-1] for line in out.decode().splitlines()]
    assert names == sorted(p.name for p in src.iterdir())
    rc, _, err = run("get", root, "-o", tmp_path / "out", "--store", tmp_path / "s")
    assert rc == 0, err
    assert tree_listing(tmp_path / "out") == tree_listing(src)
    for i in (0, 17, 39):  # path lookup descends the shards by each name's hash
        rc, out, _ = run("cat", f"{root}/file-{i:03}.txt", "--store", tmp_path / "s")
        assert (rc, out) == (0, f"content {i}\n".encode())
    rc, _, err = run("cat", f"{root}/file-999.txt", "--store", tmp_path / "s")
    assert (rc, err) == (1, f"dpip-import cat: {root}: no link named 'file-999.txt'\n")


def test_add_car_then_import_car_gives_the_same_blocks_as_add(run: Run, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    root = add(run, tmp_path / "direct", "-r", src)
    car_root = add(run, tmp_path / "unused", "-r", "--car", tmp_path / "add.car", src)
    assert car_root == root
    rc, out, err = run("import-car", tmp_path / "add.car", "--store", tmp_path / "imported")
    assert (rc, out.decode(), err) == (0, root + "\n", "")
    assert all_blocks(tmp_path / "imported") == all_blocks(tmp_path / "direct")


def test_export_then_import_car_round_trips_and_matches_add_car(run: Run, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    root = add(run, tmp_path / "s", "-r", src)
    add(run, tmp_path / "unused", "-r", "--car", tmp_path / "add.car", src)
    rc, _, err = run("export", root, "-o", tmp_path / "export.car", "--store", tmp_path / "s")
    assert rc == 0, err
    assert (tmp_path / "export.car").read_bytes() == (tmp_path / "add.car").read_bytes()
    rc, out, _ = run("import-car", tmp_path / "export.car", "--store", tmp_path / "s2")
    assert (rc, out.decode()) == (0, root + "\n")
    assert all_blocks(tmp_path / "s2") == all_blocks(tmp_path / "s")


# -- ls ----------------------------------------------------------------------------------------

def test_ls_prints_kubo_columns_sorted_with_slash_after_directories(run: Run, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "foo").write_bytes(b"content\n")
    (src / "sub" / "x").write_bytes(b"1234567890" * 2000)
    os.symlink("foo", src / "bar")
    root = add(run, tmp_path / "s", "-r", src)
    dag = DagBuilder()  # the same entries, built independently, for their CIDs
    foo, bar = dag.file(b"content\n"), dag.symlink(b"foo")
    sub = dag.directory({"x": dag.file(b"1234567890" * 2000)})
    rc, out, _ = run("ls", root, "--store", tmp_path / "s")
    assert rc == 0
    # Go tabwriter(minwidth 1, padding 1): each column as wide as its widest cell plus one space.
    assert out.decode() == (f"{format_cid(bar.cid)} 0 bar\n"
                            f"{format_cid(foo.cid)} 8 foo\n"
                            f"{format_cid(sub.cid)} - sub/\n")
    rc, out, _ = run("ls", f"{root}/sub", root, "--store", tmp_path / "s")
    assert out.decode().startswith(f"{root}/sub:\n{format_cid(dag.file(b'1234567890' * 2000).cid)} 20000 x\n\n{root}:\n")


# -- store commands ----------------------------------------------------------------------------

def test_store_stats_counts_blocks_and_bytes(run: Run, tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"hello world\n")
    add(run, tmp_path / "s", "--cid-version", "1", tmp_path / "f")
    rc, out, _ = run("store", "stats", "--store", tmp_path / "s")
    lines = out.decode().splitlines()
    assert rc == 0
    assert lines[1:4] == ["blocks:        1", "logical bytes: 12", "stored bytes:  12"]


def test_corrupted_block_is_detected_by_cat_and_store_verify(run: Run, tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"hello world\n")
    root = add(run, tmp_path / "s", "--cid-version", "1", tmp_path / "f")
    with sqlite3.connect(tmp_path / "s" / DB_NAME) as conn:
        conn.execute("UPDATE blocks SET data = ? WHERE cid = ?", (b"hello World\n", parse_cid(root)))
    rc, out, err = run("cat", root, "--store", tmp_path / "s")
    assert (rc, out) == (1, b"")
    assert err.startswith(f"dpip-import cat: block {root} in ") and "is corrupt" in err
    rc, out, err = run("store", "verify", "--store", tmp_path / "s")
    assert (rc, err) == (1, "")
    lines = out.decode().splitlines()
    assert lines[0].startswith(f"corrupt {root}: ")
    assert lines[1:] == [f"incomplete pin {root}: 1 damaged (first: {root} damaged)",
                         "verified 1 blocks: 0 ok, 1 corrupt; 0 of 1 archives and pins complete"]


def test_store_verify_of_a_sound_store_exits_zero(run: Run, tmp_path: Path) -> None:
    add(run, tmp_path / "s", "-r", make_tree(tmp_path / "src"))
    rc, out, err = run("store", "verify", "--store", tmp_path / "s")
    assert (rc, err) == (0, "")
    assert out == b"verified 12 blocks: 12 ok, 0 corrupt; 1 of 1 archives and pins complete\n"


# -- bad input ---------------------------------------------------------------------------------

@pytest.mark.parametrize("command", [("cat",), ("ls",), ("get",), ("export", "-o", "x.car")])
def test_invalid_cid_prints_one_line_and_exits_1(run: Run, tmp_path: Path, command: tuple[str, ...]) -> None:
    BlockStore(tmp_path / "s").close()
    rc, out, err = run(*command, "notacid", "--store", tmp_path / "s")
    assert (rc, out) == (1, b"")
    assert err.startswith(f"dpip-import {command[0]}: invalid CID 'notacid': ")
    assert err.count("\n") == 1 and "Traceback" not in err


def test_missing_store_is_one_clear_line(run: Run, tmp_path: Path) -> None:
    rc, _, err = run("cat", "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn", "--store", tmp_path / "none")
    assert rc == 1
    assert err == (f"dpip-import cat: store {tmp_path / 'none'}: no block store here "
                   "(nothing has been added to it yet)\n")
    assert not (tmp_path / "none").exists()


def test_cat_of_a_directory_is_refused(run: Run, tmp_path: Path) -> None:
    root = add(run, tmp_path / "s", "-r", make_tree(tmp_path / "src"))
    rc, _, err = run("cat", root, "--store", tmp_path / "s")
    assert rc == 1
    assert err == f"dpip-import cat: {root}: is a directory, not a file\n"


def test_import_of_a_corrupt_car_names_the_offset(run: Run, tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"hello world\n")
    add(run, tmp_path / "unused", "--cid-version", "1", "--car", tmp_path / "a.car", tmp_path / "f")
    data = (tmp_path / "a.car").read_bytes()
    (tmp_path / "a.car").write_bytes(data[:-2] + b"X\n")
    rc, out, err = run("import-car", tmp_path / "a.car", "--store", tmp_path / "s")
    assert (rc, out) == (1, b"")
    assert err.startswith(f"dpip-import import-car: {tmp_path / 'a.car'}: invalid CAR at byte 59: block ")


def store_with_entries(path: Path, names: list[str]) -> str:
    """A store holding one directory with these entry names (duplicates allowed), each a file."""
    dag = DagBuilder()
    links = [PBLink(child.cid, name.encode(), child.tsize)
             for name in names for child in [dag.file(name.encode())]]
    root = dag.node(links, UnixFSData(NodeType.DIRECTORY))
    with BlockStore(path) as store:
        store.put_many(dag.sink)
    return format_cid(root.cid)


@pytest.mark.parametrize("bad", ["..", "a/b", "nul\0byte", "."])
def test_get_refuses_unsafe_names_and_leaves_nothing(run: Run, tmp_path: Path, bad: str) -> None:
    root = store_with_entries(tmp_path / "s", ["fine", bad])
    (tmp_path / "work").mkdir()
    rc, _, err = run("get", root, "-o", tmp_path / "work" / "out", "--store", tmp_path / "s")
    assert rc == 1
    assert f"directory entry name {bad!r} is not a safe file name" in err
    assert os.listdir(tmp_path / "work") == []


def test_get_refuses_duplicate_names(run: Run, tmp_path: Path) -> None:
    root = store_with_entries(tmp_path / "s", ["same", "same"])
    rc, _, err = run("get", root, "-o", tmp_path / "out", "--store", tmp_path / "s")
    assert rc == 1 and "two entries named 'same'" in err
    assert not (tmp_path / "out").exists()


def test_get_will_not_replace_an_existing_directory(run: Run, tmp_path: Path) -> None:
    root = store_with_entries(tmp_path / "s", ["a"])
    (tmp_path / "out").mkdir()
    for force in ((), ("--force",)):
        rc, _, err = run("get", root, "-o", tmp_path / "out", "--store", tmp_path / "s", *force)
        assert rc == 1 and err == f"dpip-import get: {tmp_path / 'out'}: is a directory\n"


def test_get_of_a_file_replaces_an_existing_file_only_with_force(run: Run, tmp_path: Path) -> None:
    dag = DagBuilder()
    cid = dag.put(1, RAW, b"new")
    assert cid == cid_of_block(1, RAW, b"new")
    with BlockStore(tmp_path / "s") as store:
        store.put_many(dag.sink)
    (tmp_path / "out").write_bytes(b"old")
    rc, _, err = run("get", format_cid(cid), "-o", tmp_path / "out", "--store", tmp_path / "s")
    assert (rc, err) == (1, f"dpip-import get: {tmp_path / 'out'}: already exists (pass --force to replace it)\n")
    assert (tmp_path / "out").read_bytes() == b"old"
    rc, _, _ = run("get", format_cid(cid), "-o", tmp_path / "out", "--store", tmp_path / "s", "--force")
    assert rc == 0
    assert (tmp_path / "out").read_bytes() == b"new"
