"""The archive commands' contract: ``--json`` keys and per-member detail, -n, --car, inspect, and ``fetch``
never leaving a partial or wrong file under the final name (mismatch, corrupt store, kill)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from importer.archive.recipe import ArchiveRoot, read_root, write_root
from importer.dag.cid import format_cid, parse_cid
from importer.sinks.store import BlockStore

from .archive_builders import TarMember, ZipEntry, build_zip, gzip_python, python_source, tar_bytes
from .archive_checks import import_json, sha256_file
from .conftest import RunCli
from .oracle_support import dpip_import_executable

TEXT = python_source(21, 300)
SUMMARY_KEYS = {"file", "root", "tree", "sha256", "size", "members", "replayed_bytes", "verbatim_bytes"}
DETAIL_KEYS = {"name", "size", "stored_size", "how", "params", "path", "note"}


@pytest.fixture
def wheel(tmp_path: Path) -> Path:
    path = tmp_path / "demo-1.0-py3-none-any.whl"
    path.write_bytes(build_zip([ZipEntry(b"demo/__init__.py", b""), ZipEntry(b"demo/core.py", TEXT),
                                ZipEntry(b"demo-1.0.dist-info/WHEEL", b"Wheel-Version: 1.0\n", method=0)]))
    return path


@pytest.fixture
def sdist(tmp_path: Path) -> Path:
    path = tmp_path / "demo-1.0.tar.gz"
    path.write_bytes(gzip_python(tar_bytes([TarMember("demo-1.0/", kind=tarfile.DIRTYPE),
                                            TarMember("demo-1.0/core.py", TEXT)])))
    return path


def test_json_has_the_documented_keys_and_verbose_member_detail(wheel: Path, sdist: Path, tmp_path: Path,
                                                                cli: RunCli) -> None:
    rc, out, err = cli("auto", "--json", "--verbose", "--store", tmp_path / "store", wheel, sdist)
    assert rc == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [d["file"] for d in lines] == [wheel.name, sdist.name]
    for data, path in zip(lines, (wheel, sdist), strict=True):
        assert SUMMARY_KEYS <= set(data)
        assert data["sha256"] == sha256_file(path) and data["size"] == path.stat().st_size
        parse_cid(data["root"]), parse_cid(data["tree"])
        assert len(data["member_detail"]) == data["members"]
        for member in data["member_detail"]:
            assert set(member) == DETAIL_KEYS
    wheel_detail = {m["name"]: m for m in lines[0]["member_detail"]}
    assert wheel_detail["demo/core.py"]["how"] == "replayed"
    assert wheel_detail["demo/core.py"]["params"] == "zlib/l6/m8/s0"
    assert wheel_detail["demo-1.0.dist-info/WHEEL"]["how"] == "stored"
    assert lines[0]["replayed_bytes"] == len(TEXT) + len(b"Wheel-Version: 1.0\n") and lines[0]["verbatim_bytes"] == 0


def test_json_without_verbose_has_no_member_detail(wheel: Path, tmp_path: Path, cli: RunCli) -> None:
    rc, out, _ = cli("wheel", "--json", "--store", tmp_path / "store", wheel)
    assert rc == 0 and "member_detail" not in json.loads(out)


def test_only_hash_stores_nothing_and_gives_the_same_root(wheel: Path, tmp_path: Path, cli: RunCli) -> None:
    rc, out, _ = cli("wheel", "--json", "-n", "--store", tmp_path / "nothing", wheel)
    assert rc == 0
    assert not (tmp_path / "nothing").exists()
    stored = import_json(cli, wheel, tmp_path / "store")
    assert json.loads(out)["root"] == stored["root"] and json.loads(out)["tree"] == stored["tree"]


def test_wheel_command_refuses_a_tar(sdist: Path, tmp_path: Path, cli: RunCli) -> None:
    rc, _, err = cli("wheel", "--store", tmp_path / "store", sdist)
    assert rc == 1 and "not a wheel" in err and err.count("\n") == 1


def test_car_export_imports_into_a_fresh_store_and_fetches_identically(wheel: Path, sdist: Path, tmp_path: Path,
                                                                      cli: RunCli) -> None:
    car = tmp_path / "archives.car"
    rc, out, err = cli("auto", "--json", "--car", car, wheel, sdist)
    assert rc == 0, err
    roots = [json.loads(line)["root"] for line in out.splitlines()]
    assert not list(tmp_path.glob(".dpip-car-*"))  # the staging store is gone
    fresh = tmp_path / "fresh"
    rc, _, err = cli("import-car", "--store", fresh, car)
    assert rc == 0, err
    for root, original in zip(roots, (wheel, sdist), strict=True):
        out_path = tmp_path / f"back-{original.name}"
        rc, _, err = cli("fetch", root, "-o", out_path, "--store", fresh)
        assert rc == 0, err
        assert sha256_file(out_path) == sha256_file(original)


def test_inspect_describes_the_recipe(sdist: Path, tmp_path: Path, cli: RunCli) -> None:
    summary = import_json(cli, sdist, tmp_path / "store")
    rc, out, err = cli("inspect", summary["root"], "--store", tmp_path / "store")
    assert rc == 0, err
    assert f"archive   {sdist.name}" in out and summary["sha256"] in out and summary["tree"] in out
    assert "body      tar, 2 members" in out
    assert "compressed stream over body bytes" in out and "zlib/l9" in out


def test_fetch_without_output_writes_the_archive_name_in_the_working_directory(
        wheel: Path, tmp_path: Path, cli: RunCli, monkeypatch: pytest.MonkeyPatch) -> None:
    summary = import_json(cli, wheel, tmp_path / "store")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    rc, out, err = cli("fetch", summary["root"], "--store", tmp_path / "store")
    assert rc == 0, err
    assert os.listdir(work) == [wheel.name]
    assert sha256_file(work / wheel.name) == summary["sha256"] and "(verified)" in out


def _lying_root(store_path: Path, root: str) -> str:
    """A root naming the same tree and recipe but another sha256: its rebuild cannot match."""
    with BlockStore(store_path) as store:
        real = read_root(store, parse_cid(root))
        fake = ArchiveRoot(real.name, real.size, bytes(32), real.tree, real.recipe)
        return format_cid(write_root(fake, store))


def test_fetch_mismatch_leaves_no_file_and_keeps_an_existing_one(wheel: Path, tmp_path: Path, cli: RunCli) -> None:
    store = tmp_path / "store"
    liar = _lying_root(store, import_json(cli, wheel, store)["root"])
    out = tmp_path / "out"
    out.mkdir()
    rc, _, err = cli("fetch", liar, "-o", out / "new.whl", "--store", store)
    assert rc == 1 and "rebuild does not match" in err and err.count("\n") == 1
    (out / "existing.whl").write_bytes(b"keep me")
    rc, _, err = cli("fetch", liar, "-o", out / "existing.whl", "--store", store)
    assert rc == 1
    assert sorted(os.listdir(out)) == ["existing.whl"]  # no new file, no temporary left behind
    assert (out / "existing.whl").read_bytes() == b"keep me"
    rc, _, err = cli("verify", liar, "--store", store)
    assert rc == 1 and "rebuild does not match" in err


def test_fetch_from_a_corrupt_store_fails_clearly_and_leaves_no_file(wheel: Path, tmp_path: Path,
                                                                      cli: RunCli) -> None:
    store = tmp_path / "store"
    root = import_json(cli, wheel, store)["root"]
    with sqlite3.connect(store / "blocks.sqlite3") as conn:  # flip one byte of the largest block
        cid, data = conn.execute("SELECT cid, data FROM blocks ORDER BY length(data) DESC LIMIT 1").fetchone()
        conn.execute("UPDATE blocks SET data = ? WHERE cid = ?", (bytes([data[0] ^ 1]) + data[1:], cid))
    out = tmp_path / "out"
    out.mkdir()
    rc, _, err = cli("fetch", root, "-o", out / wheel.name, "--store", store)
    assert rc == 1 and "corrupt" in err and err.count("\n") == 1
    assert os.listdir(out) == []
    rc, _, err = cli("verify", root, "--store", store)
    assert rc == 1 and "corrupt" in err


def test_fetch_killed_halfway_leaves_nothing_under_the_final_name(tmp_path: Path, cli: RunCli) -> None:
    members = [TarMember(f"big-1.0/blob{i}.bin", os.urandom(16 << 20)) for i in range(8)]
    archive = tmp_path / "big-1.0.tar.gz"
    archive.write_bytes(gzip_python(tar_bytes(members), 1))
    store = tmp_path / "store"
    root = import_json(cli, archive, store)["root"]
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen([str(dpip_import_executable()), "fetch", root, "-o", str(out / archive.name),
                             "--store", str(store)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        parts = [p for p in out.iterdir() if p.name.endswith(".part")]
        if parts and parts[0].stat().st_size > 1 << 20:
            break
        time.sleep(0.01)
    running = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert running, "fetch finished before it could be killed; make the archive bigger"
    assert not (out / archive.name).exists()
    rc, _, err = cli("fetch", root, "-o", out / archive.name, "--store", store)
    assert rc == 0, err
    assert sha256_file(out / archive.name) == sha256_file(archive)
