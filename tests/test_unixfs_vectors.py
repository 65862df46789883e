"""The spec's well-known CIDs (ipfs-unixfs-spec.md §8): files, directories, symlinks, mode/mtime."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from importer.adder import Adder
from importer.dag.cid import format_cid
from importer.dag.unixfs import Mtime
from importer.layout import FileAttributes
from importer.profiles import resolve_settings
from importer.sinks import MemorySink, NullSink

from .conftest import RunCli

V0 = ("--profile", "unixfs-v0-2015")
V1 = ("--profile", "unixfs-v1-2025")


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(("data", "flags", "expected"), [
    (b"", (), "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"),
    (b"", V0, "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"),
    (b"", ("--raw-leaves",), "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"),
    (b"", ("--cid-version", "1"), "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"),
    (b"", V1, "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"),
    (b"", ("--cid-version", "1", "--raw-leaves=false"), "bafybeif7ztnhq65lumvvtr4ekcwd2ifwgm3awq4zfr3srh462rwyinlb4y"),
    (b"hello world\n", (), "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"),
    (b"hello world\n", V1, "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"),
    (b"Hello Worlds!\n", (), "QmVr26fY1tKyspEJBniVhqxQeEjhF78XerGiqWAwraVLQH"),
    (b"Hello Worlds!\n", ("--chunker", "size-32"), "QmVr26fY1tKyspEJBniVhqxQeEjhF78XerGiqWAwraVLQH"),
    (b"IPFS\n", (), "QmdFyxZXsFiP4csgfM5uPu99AvFiKH62CSPDw5TP92nr7w"),
    (b"Hello Venus!\n", (), "QmU5kp3BH3B8tnWUU2Pikdb2maksBNkb92FHRr56hyghh4"),
    (b"Hello Jupiter!\n", (), "QmUnvPcBctVTAcJpigv6KMqDvmDewksPWrNVoy1E1WP5fh"),
    (b"Hello Neptune!\nHello Pluton!", (), "QmZDhWpi8NvKrekaYYhxKCdNVGWsFFe1CREnAjP1QbPaB3"),
    (b"World\n", (), "Qma9CyFdG5ffrZCcYSin2uAETygB25cswVwEYYzwfQuhTe"),
])
def test_single_file_cid_matches_spec_vector(tmp_path: Path, cli: RunCli, data: bytes,
                                             flags: tuple[str, ...], expected: str) -> None:
    rc, out, _ = cli("add", "-Q", "-n", *flags, write(tmp_path / "f", data))
    assert (rc, out.strip()) == (0, expected)


def test_45900000_zero_bytes_match_go_ipfs_parity_vectors() -> None:
    # js-ipfs-unixfs hash-parity-with-go-ipfs: its "random" stream is all zeros.
    data = bytes(45_900_000)
    for trickle, expected in ((False, "QmRdPboiJQoZ5cdazR9a8vGqdJvWg6M5bfdtUSKNHpuscj"),
                              (True, "QmdZcefqMZ3tzdS4CRBN5s1c67eS3nQzN8TNXFBYfgofoy")):
        adder = Adder(resolve_settings(trickle=trickle), NullSink())
        assert format_cid(adder.add_stream(io.BytesIO(data)).cid) == expected


@pytest.mark.parametrize(("flags", "expected"), [
    ((), "QmWSgS32xQEcXMeqd3YPJLrNBLSdsfYCep2U7CFkyrjXwY"),
    (V0, "QmWSgS32xQEcXMeqd3YPJLrNBLSdsfYCep2U7CFkyrjXwY"),
    (("--raw-leaves",), "QmfWfQfKCY5Ukv9peBbxM5vqWM9BzmqUSXvdCgjT2wsiBT"),
    (("--cid-version=1",), "bafybeih7e5dmkyk25up5vxug4q3hrg2fxbzf23dfrac2fns5h7z4aa7ioi"),
    (V1, "bafybeih7e5dmkyk25up5vxug4q3hrg2fxbzf23dfrac2fns5h7z4aa7ioi"),
    (("--cid-version=1", "--raw-leaves=false"), "bafybeif5tuep5ap2d7zyhbktucey75aoacxufgt6i3v4gebmixyipnyp7y"),
])
def test_planets_directory_matches_spec_vector(tmp_path: Path, cli: RunCli, flags: tuple[str, ...],
                                               expected: str) -> None:
    write(tmp_path / "planets" / "mars.txt", b"Hello Mars!\n")
    write(tmp_path / "planets" / "venus.txt", b"Hello Venus!\n")
    rc, out, _ = cli("add", "-r", "-Q", "-n", *flags, tmp_path / "planets")
    assert (rc, out.strip()) == (0, expected)


def test_moons_directory_and_its_subdirectories_match_spec(tmp_path: Path, cli: RunCli) -> None:
    write(tmp_path / "moons" / "jupiter" / "europa.txt", b"Hello Europa!\n")
    write(tmp_path / "moons" / "saturn" / "titan.txt", b"Hello Titan!\n")
    write(tmp_path / "moons" / "mercury.txt", b"hey you are no moon!\n")
    rc, out, _ = cli("add", "-r", "-n", tmp_path / "moons")
    lines: dict[str, str] = {}
    for line in out.splitlines():
        _, cid, path = line.split(" ", 2)
        lines[path] = cid
    assert rc == 0
    assert lines["moons"] == "QmbGoaQZm8kjYfCiN1aBsgwhqfUBGDYTrDb91Mz7Dvq81B"
    assert lines["moons/jupiter"] == "QmS5mZddhFPLWFX3w6FzAy9QxyYkaxvUpsWCtZ3r7jub9J"
    assert lines["moons/saturn"] == "QmaMagZT4rTE7Nonw8KGSK4oe1bh533yhZrCo1HihSG8FK"


def test_nested_directory_and_output_order_follow_kubo(tmp_path: Path, cli: RunCli) -> None:
    write(tmp_path / "d" / "hey", b"Hey\n")
    write(tmp_path / "d" / "hello" / "world", b"World\n")
    rc, out, _ = cli("add", "-r", "-n", tmp_path / "d")
    assert rc == 0
    # Files first, in walk order; then directories, children before parents.
    assert [line.split(" ")[2] for line in out.splitlines()] == ["d/hello/world", "d/hey", "d/hello", "d"]
    assert out.splitlines()[-1] == "added QmZQWnfcqJ6hNkkPvrY9Q5X39GP3jUnUbAV4AbmbbR3Cb1 d"


def test_symlink_is_stored_as_symlink_node(tmp_path: Path, cli: RunCli) -> None:
    write(tmp_path / "d" / "foo", b"content\n")
    os.symlink("foo", tmp_path / "d" / "bar")
    rc, out, _ = cli("add", "-r", "-Q", "-n", tmp_path / "d")
    assert (rc, out.strip()) == (0, "QmWvY6FaqFMS89YAQ9NAPjVP4WZKA1qbHbicc9HeSKQTgt")


def test_empty_directory_matches_both_profiles(tmp_path: Path, cli: RunCli) -> None:
    (tmp_path / "e").mkdir()
    assert cli("add", "-r", "-Q", "-n", *V0, tmp_path / "e")[1].strip() == "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"
    assert cli("add", "-r", "-Q", "-n", *V1, tmp_path / "e")[1].strip() == \
        "bafybeiczsscdsbs7ffqz55asqdf3smv6klcw3gofszvwlyarci47bgf354"


def _file_cid(attrs: FileAttributes) -> str:
    adder = Adder(resolve_settings(preserve_mode=True), MemorySink())
    return format_cid(adder.add_stream(io.BytesIO(b""), attrs).cid)


def _symlink_cid(attrs: FileAttributes) -> str:
    adder = Adder(resolve_settings(preserve_mtime=True), MemorySink())
    return format_cid(adder.add_symlink(b"nothing", attrs).cid)


def _dir_cid(attrs: FileAttributes) -> str:
    adder = Adder(resolve_settings(preserve_mode=True), MemorySink())
    return format_cid(adder.add_directory([], attrs).cid)


@pytest.mark.parametrize(("kind", "attrs", "expected"), [
    ("file", FileAttributes(mode=0o640), "QmQLgxypSNGNFTuUPGCecq6dDEjb6hNB5xSyVmP3cEuNtq"),
    ("file", FileAttributes(mtime=Mtime(1604320482)), "QmQ6kErEW8kztQFV8vbwNU8E4dmtGsYpRiboiLxUEwibvj"),
    ("file", FileAttributes(mode=0o640, mtime=Mtime(1604320482)), "QmYkvboLsvLFcSYmqVJRxvBdYRQLroLv9kELf3LRiCqBri"),
    ("file", FileAttributes(mode=0o764), "QmchD3BN8TQ3RW6jPLxSaNkqvfuj7syKhzTRmL4EpyY1Nz"),
    ("file", FileAttributes(mtime=Mtime(1603539720)), "QmT3aY4avDcYXCWpU8CJzqUkW7YEuEsx36S8cTNoLcuK1B"),
    ("file", FileAttributes(mtime=Mtime(1603539720, 54321)), "QmaKH8H5rXBUBCX4vdxi7ktGQEL7wejV7L9rX2qpZjwncz"),
    ("file", FileAttributes(mode=0o764, mtime=Mtime(1603539720, 54321)),
     "QmUkxrtBA8tPjwCYz1HrsoRfDz6NgKut3asVeHVQNH4C8L"),
    ("symlink", FileAttributes(mtime=Mtime(1604320482)), "QmbJwotgtr84JxcnjpwJ86uZiyMoxbZuNH4YrdJMypkYaB"),
    ("symlink", FileAttributes(mtime=Mtime(1603539720)), "QmV1Uot2gy4bhY9yvYiZxhhchhyYC6MKKoGV1XtWNmpCLe"),
    ("symlink", FileAttributes(mtime=Mtime(1603539720, 54321)), "QmPHYCxYvvHj6VxiPNJ3kXxcPsnJLDYUJqsDJWjvytmrmY"),
    ("dir", FileAttributes(mode=0o755), "QmRviohgafvCsbkiTgfQFipbuXJ6k1YtoiaQW4quttJPKu"),
    ("dir", FileAttributes(mode=0o713), "QmQ1ABnw2iip7sj23EzzBZ9T77KyyfESP6SUboiXPyzNQe"),
    ("dir", FileAttributes(mtime=Mtime(1655158722)), "QmYMy7CZGb498QFSQBF5ZFwv1FYbrAtYZMe4VxhDXxAcvf"),
    ("dir", FileAttributes(mtime=Mtime(1603539720)), "QmfWitW6F13WHFXLbJzXRYmwrS1p4gaAJAfucUSMytRPn3"),
    ("dir", FileAttributes(mtime=Mtime(1603539720, 54321)), "QmZFdCLJay31hT3Tx1LygJ7XfiLEs3qLCXtbeBfhf38aZg"),
])
def test_mode_and_mtime_vectors_from_kubo_sharness(kind: str, attrs: FileAttributes, expected: str) -> None:
    make = {"file": _file_cid, "symlink": _symlink_cid, "dir": _dir_cid}[kind]
    assert make(attrs) == expected


def test_preserve_mode_and_mtime_tree_matches_kubo(tmp_path: Path, cli: RunCli) -> None:
    t = 1655158632
    root = tmp_path / "root"
    files = {"dir2/sub1/sub2/file3": (0o644, t + 10), "dir3/file2": (0o644, t + 60), "file1": (0o644, t + 80)}
    dirs = {"dir1": t + 90, "dir2/sub1/sub2": t + 30, "dir2/sub1": t + 40, "dir2": t + 50, "dir3": t + 70}
    for rel, (mode, mtime) in files.items():
        write(root / rel, b"")
        os.chmod(root / rel, mode)
        os.utime(root / rel, (mtime, mtime))
    (root / "dir1").mkdir()
    os.symlink("../sub2/file3", root / "dir2" / "sub1" / "link1")
    os.utime(root / "dir2" / "sub1" / "link1", (t + 20, t + 20), follow_symlinks=False)
    for rel, mtime in sorted(dirs.items(), key=lambda kv: -kv[0].count("/")):
        os.chmod(root / rel, 0o755)
        os.utime(root / rel, (mtime, mtime))
    os.chmod(root, 0o700)
    os.utime(root, (t, t))
    rc, out, err = cli("add", "-r", "-Q", "-n", "--preserve-mode", "--preserve-mtime", root)
    assert (rc, out.strip(), err) == (0, "QmSioyvQuXetxg7uo8FswGn9XKKEsisDq1HTMzGyWbw2R6", "")
