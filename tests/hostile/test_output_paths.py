"""Where fetch, get and export write: never a path taken from data, never over a file without --force,
the usual permissions, and no part file left by an error, a signal or an earlier killed run."""

from __future__ import annotations

import hashlib
import os
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

from importer.compress import CompressorParams
from importer.dag.cid import format_cid
from importer.sinks.partfile import STALE_PART_AGE_S
from tests.conftest import RunCli
from tests.oracle_support import dpip_import_executable

from .forge import Forge
from .support import HANG_TIMEOUT_S, files_under, one_line_error, run_cli

CONTENT = b"PK\x05\x06" + bytes(18)  # an empty zip: what the honest roots rebuild
SHA = hashlib.sha256(CONTENT).hexdigest()


def store_with(tmp_path: Path, cli: RunCli, *names: str) -> tuple[Path, dict[str, str]]:
    """A store holding one honest root per name (each rebuilds CONTENT); ``{name: root CID}``."""
    forge = Forge()
    roots = {name: forge.honest_root(CONTENT, name=name) for name in names}
    car = forge.car(tmp_path / "roots.car", roots.values())
    store = tmp_path / "store"
    rc, _, err = cli("import-car", "--store", store, car)
    assert rc == 0, err
    car.unlink()
    return store, {name: format_cid(cid) for name, cid in roots.items()}


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory two levels down, so a name escaping it would land in tmp_path."""
    folder = tmp_path / "a" / "work"
    folder.mkdir(parents=True)
    monkeypatch.chdir(folder)
    return folder


# -- names from data ---------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "problem"), [
    ("../../evil-1.0.tar.gz", "holds a path separator"),
    ("/tmp/evil-1.0.tar.gz", "holds a path separator"),
    ("sub/evil-1.0.tar.gz", "holds a path separator"),
    ("evil\\..\\x-1.0.zip", "holds a path separator"),
    ("..", "holds '..'"),
    ("evil-1.0..tar.gz", "holds '..'"),
    (".", "starts with a dot"),
    (".bashrc-1.0.tar.gz", "starts with a dot"),
    ("evil\n-1.0.tar.gz", "holds a NUL or control character"),
    ("evil-1.0.exe", "does not end in .whl, .tar.gz, .tgz, .zip, .tar.bz2, .tar.xz, .tar"),
    ("evil.whl", "is not a PEP 427 wheel name (name-version[-build]-python-abi-platform.whl)"),
    ("evil-1.0-x1-py3-none-any.whl", "has a wheel build tag that does not start with a digit (PEP 427)"),
    ("evil.tar.gz", "is not an sdist name (name-version followed by the archive suffix)"),
    ("e" * 250 + "-1.0.tar.gz", "is longer than 255 bytes"),
])
def test_fetch_refuses_name_with_separator_or_other_unsafe_form(name: str, problem: str, tmp_path: Path,
                                                                cli: RunCli, work: Path) -> None:
    store, roots = store_with(tmp_path, cli, name)
    root = roots[name]
    before = files_under(tmp_path)
    rc, out, err = cli("fetch", root, "--store", store)
    assert (rc, out) == (1, "")
    assert err == (f"dpip-import fetch: {repr(name)[:200]}: the archive name in root {root} {problem}, so it is not used as a "
                   "file name; pass -o FILE (or -o DIR/FILE) to choose where to write\n")
    assert files_under(tmp_path) == before  # nothing written anywhere
    rc, _, err = cli("fetch", root, "-o", work, "--store", store)  # -o DIR uses the name too
    assert rc == 1 and problem in err
    rc, _, err = cli("fetch", root, "-o", work / "chosen.tar.gz", "--store", store)
    assert rc == 0, err
    assert (work / "chosen.tar.gz").read_bytes() == CONTENT


@pytest.mark.parametrize(("name", "reason"), [
    ("", "archive root name '' is empty, longer than 1024 bytes or holds a NUL"),
    ("evil\0-1.0.tar.gz", "archive root name 'evil\\x00-1.0.tar.gz' is empty, longer than 1024 bytes or holds a NUL"),
])
def test_fetch_refuses_a_root_whose_name_no_file_system_allows(name: str, reason: str, tmp_path: Path,
                                                               cli: RunCli, work: Path) -> None:
    store, roots = store_with(tmp_path, cli, name)
    for args in ((), ("-o", work / "x.zip")):
        rc, _, err = cli("fetch", roots[name], *args, "--store", store)
        assert (rc, err) == (1, f"dpip-import fetch: block {roots[name]}: {reason}\n")
    assert os.listdir(work) == []


@pytest.mark.parametrize("name", ["numpy-2.0.0-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
                                  "pkg-1.0-1-py3-none-any.whl", "python-dateutil-2.8.2.tar.gz",
                                  "setuptools-0.9.zip", "pytz-2013b.tar.bz2", "zope.interface-5.0.tgz"])
def test_fetch_without_output_writes_a_plain_archive_name_in_the_working_directory(
        name: str, tmp_path: Path, cli: RunCli, work: Path) -> None:
    store, roots = store_with(tmp_path, cli, name)
    rc, out, err = cli("fetch", roots[name], "--store", store)
    assert (rc, err) == (0, "")
    assert out == f"fetched {name}: {len(CONTENT)} bytes, sha256 {SHA} (verified) -> {name}\n"
    assert os.listdir(work) == [name] and (work / name).read_bytes() == CONTENT


def test_fetch_to_a_directory_writes_the_name_inside_it(tmp_path: Path, cli: RunCli, work: Path) -> None:
    name = "pkg-1.0.tar.gz"
    store, roots = store_with(tmp_path, cli, name)
    for output in (work / "dist", Path("dist2"), Path(".")):
        (work / output).mkdir(exist_ok=True)
        rc, _, err = cli("fetch", roots[name], "-o", output, "--store", store)
        assert rc == 0, err
        assert (work / output / name).read_bytes() == CONTENT


@pytest.mark.parametrize(("output", "message"), [
    ("", "'': -o needs a file, a directory, or - for stdout"),
    ("missing/pkg.tar.gz", "missing: no such directory"),
    ("missing/", "missing/: no such directory"),
])
def test_fetch_to_an_impossible_output_is_one_clear_line(output: str, message: str, tmp_path: Path, cli: RunCli,
                                                         work: Path) -> None:
    store, roots = store_with(tmp_path, cli, "pkg-1.0.tar.gz")
    rc, _, err = cli("fetch", roots["pkg-1.0.tar.gz"], "-o", output, "--store", store)
    assert (rc, err) == (1, f"dpip-import fetch: {message}\n")
    assert os.listdir(work) == []


# -- --force -----------------------------------------------------------------------------------

def test_fetch_and_get_and_export_never_overwrite_without_force(tmp_path: Path, cli: RunCli, work: Path) -> None:
    name = "pkg-1.0.tar.gz"
    store, roots = store_with(tmp_path, cli, name)
    forge = Forge()
    file_cid = format_cid(forge.file(b"new content").cid)
    car = forge.car(tmp_path / "file.car", [forge.file(b"new content").cid])
    assert cli("import-car", "--store", store, car)[0] == 0
    commands = {
        "fetch": ("fetch", roots[name], "-o", work / "out"),
        "get": ("get", file_cid, "-o", work / "out"),
        "export": ("export", file_cid, "-o", work / "out"),
    }
    for command, args in commands.items():
        (work / "out").write_bytes(b"keep me")
        rc, _, err = cli(*args, "--store", store)
        assert (rc, err) == (1, f"dpip-import {command}: {work / 'out'}: already exists (pass --force to replace it)\n")
        assert (work / "out").read_bytes() == b"keep me"
        rc, _, err = cli(*args, "--store", store, "--force")
        assert rc == 0, err
        assert (work / "out").read_bytes() != b"keep me"
        assert sorted(os.listdir(work)) == ["out"]  # no part file left
    (work / "out").unlink()
    (work / "out").mkdir()
    for command in ("get", "export"):  # a directory is never replaced, even with --force
        rc, _, err = cli(*commands[command], "--store", store, "--force")
        assert (rc, err) == (1, f"dpip-import {command}: {work / 'out'}: is a directory\n")
    rc, _, err = cli(*commands["fetch"], "--store", store)  # fetch -o DIR writes DIR/<name>
    assert rc == 0, err
    assert files_under(work) == ["out", f"out/{name}"]


# -- stdout ------------------------------------------------------------------------------------

def test_fetch_to_stdout_streams_the_archive(tmp_path: Path, cli: RunCli, work: Path) -> None:
    store, roots = store_with(tmp_path, cli, "x")  # a name never used as a file name with -o -
    proc = run_cli("fetch", roots["x"], "-o", "-", "--store", store, cwd=work)
    assert (proc.returncode, proc.stdout) == (0, CONTENT)
    assert proc.stderr.decode() == f"fetched x: {len(CONTENT)} bytes, sha256 {SHA} (verified) -> stdout\n"
    assert os.listdir(work) == []


def test_fetch_to_stdout_with_a_wrong_sha256_exits_non_zero(tmp_path: Path, work: Path) -> None:
    forge = Forge()
    honest = forge.honest_root(CONTENT)
    from importer.dag.cbor import decode_dag_cbor

    node = decode_dag_cbor(forge.dag.sink.blocks[honest])
    liar = forge.root(name=node["name"], size=len(CONTENT), recipe=bytes(node["recipe"]), sha256=bytes(32))
    store = tmp_path / "store"
    assert run_cli("import-car", "--store", store, forge.car(tmp_path / "x.car", [liar])).returncode == 0
    proc = run_cli("fetch", format_cid(liar), "-o", "-", "--store", store, cwd=work)
    assert proc.stdout == CONTENT  # streamed as rebuilt: the exit code says it is not the archive
    assert one_line_error(proc) == (
        f"dpip-import fetch: {node['name']}: rebuild does not match: rebuilt {len(CONTENT)} bytes with sha256 {SHA}, "
        f"expected {len(CONTENT)} bytes with sha256 {'0' * 64}")


# -- permissions -------------------------------------------------------------------------------

@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_written_files_and_directories_get_the_usual_permissions(umask: int, tmp_path: Path, cli: RunCli,
                                                                 work: Path) -> None:
    name = "pkg-1.0.tar.gz"
    store, roots = store_with(tmp_path, cli, name)
    forge = Forge()
    tree = forge.directory({"file": forge.file(b"data"), "sub": forge.directory({"inner": forge.file(b"x")})})
    assert cli("import-car", "--store", store, forge.car(tmp_path / "t.car", [tree.cid]))[0] == 0
    for args in (("fetch", roots[name]), ("get", format_cid(tree.cid), "-o", "tree"),
                 ("export", format_cid(tree.cid), "-o", "tree.car")):
        proc = run_cli(*args, "--store", store, cwd=work, umask=umask)
        assert proc.returncode == 0, proc.stderr
    modes = {path: stat.S_IMODE(os.lstat(work / path).st_mode) for path in files_under(work)}
    file_mode, dir_mode = 0o666 & ~umask, 0o777 & ~umask
    assert modes == {name: file_mode, "tree.car": file_mode, "tree": dir_mode, "tree/file": file_mode,
                     "tree/sub": dir_mode, "tree/sub/inner": file_mode}


def test_get_still_applies_a_stored_mode(tmp_path: Path, cli: RunCli, work: Path) -> None:
    forge = Forge()
    tree = forge.dag.directory({"script": forge.dag.file(b"#!/bin/sh\n", mode=0o4755)}, mode=0o750)
    store = tmp_path / "store"
    assert cli("import-car", "--store", store, forge.car(tmp_path / "t.car", [tree.cid]))[0] == 0
    proc = run_cli("get", format_cid(tree.cid), "-o", "tree", "--store", store, cwd=work, umask=0o077)
    assert proc.returncode == 0, proc.stderr
    assert stat.S_IMODE(os.stat(work / "tree").st_mode) == 0o750
    assert stat.S_IMODE(os.stat(work / "tree" / "script").st_mode) == 0o755  # setuid dropped


# -- part files --------------------------------------------------------------------------------

def slow_root(forge: Forge) -> bytes:
    """A root whose rebuild takes seconds but writes little: 256 MiB of zeros (a 10 KB skeleton)
    recompressed with xz at preset 9, about 10 KB of output. Its sha256 is wrong: the tests stop
    it before the end."""
    size = 256 * 1024 * 1024
    xz = CompressorParams("xz", "liblzma-5", 9, check=1).to_dict()
    recipe = forge.recipe(skeleton=forge.skeleton(bytes(size)), skeleton_size=size, body="raw",
                          outer=[[1, 0, -1, 0, size]], params=[xz], tail=size)
    return forge.root(name="slow-1.0.tar.xz", size=size, recipe=recipe)


@pytest.mark.parametrize(("signum", "code", "word"), [(signal.SIGTERM, 143, "terminated"),
                                                      (signal.SIGINT, 130, "interrupted")])
def test_fetch_killed_by_a_signal_removes_its_part_file(signum: int, code: int, word: str, tmp_path: Path,
                                                        work: Path) -> None:
    forge = Forge()
    root = slow_root(forge)
    store = tmp_path / "store"
    assert run_cli("import-car", "--store", store, forge.car(tmp_path / "s.car", [root])).returncode == 0
    proc = subprocess.Popen([str(dpip_import_executable()), "fetch", format_cid(root), "--store", str(store)],
                            cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + HANG_TIMEOUT_S
        while not os.listdir(work) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        parts = os.listdir(work)
        time.sleep(0.3)  # well inside the rebuild (seconds of xz), past the part file's creation
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=HANG_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert len(parts) == 1 and parts[0].startswith(".slow-1.0.tar.xz.") and parts[0].endswith(".part")
    assert (proc.returncode, err.decode()) == (code, f"dpip-import fetch: {word}\n")
    assert os.listdir(work) == []


def test_fetch_sweeps_only_stale_part_files_of_its_own_name(tmp_path: Path, cli: RunCli, work: Path) -> None:
    name = "pkg-1.0.tar.gz"
    store, roots = store_with(tmp_path, cli, name)
    old = time.time() - STALE_PART_AGE_S - 60
    stale = f".{name}.0123abcd.part"
    kept = [f".{name}.89abcdef.part",  # fresh: a fetch may still be writing it
            f".{name}.part", f".{name}.0123ABCD.part", f".{name}.0123abc.part", ".other-1.0.tar.gz.0123abcd.part",
            f"{name}.0123abcd.part"]  # not the exact pattern
    for part in [stale, *kept]:
        (work / part).write_bytes(b"left by a killed run")
    for part in [stale, *kept[1:]]:
        os.utime(work / part, (old, old))
    (work / f".{name}.fedcba98.part").mkdir()  # a directory (a killed get) is never removed here
    os.utime(work / f".{name}.fedcba98.part", (old, old))
    rc, _, err = cli("fetch", roots[name], "--store", store)
    assert rc == 0, err
    assert sorted(os.listdir(work)) == sorted([name, *kept, f".{name}.fedcba98.part"])


def test_fetch_error_leaves_no_part_file(tmp_path: Path, work: Path) -> None:
    forge = Forge()
    bomb = forge.zero_file(64 * 1024 * 1024)
    recipe = forge.recipe(skeleton=forge.skeleton(b""), skeleton_size=0, members=[[0, "big", -1]])
    root = forge.root(name="liar-1.0.tar.gz", size=123, tree=forge.directory({"big": bomb}).cid, recipe=recipe)
    store = tmp_path / "store"
    assert run_cli("import-car", "--store", store, forge.car(tmp_path / "l.car", [root])).returncode == 0
    proc = run_cli("fetch", format_cid(root), "--store", store, cwd=work)
    assert "rebuilds a body of more than the 123 bytes its root declares" in one_line_error(proc)
    assert os.listdir(work) == []


def test_a_fifo_or_device_is_never_replaced_even_with_force(tmp_path: Path, cli: RunCli, work: Path) -> None:
    name = "pkg-1.0.tar.gz"
    store, roots = store_with(tmp_path, cli, name)
    os.mkfifo(work / "fifo")  # stands for /dev/null: `fetch -o /dev/null --force` as root must not replace it
    forge = Forge()
    file = forge.file(b"x")
    assert cli("import-car", "--store", store, forge.car(tmp_path / "f.car", [file.cid]))[0] == 0
    for args in (("fetch", roots[name]), ("get", format_cid(file.cid)), ("export", format_cid(file.cid))):
        rc, _, err = cli(*args, "-o", work / "fifo", "--store", store, "--force")
        assert (rc, err) == (1, (f"dpip-import {args[0]}: {work / 'fifo'}: is not a regular file (a device, FIFO or "
                                 "socket is never replaced)\n"))
        assert stat.S_ISFIFO(os.lstat(work / "fifo").st_mode) and os.listdir(work) == ["fifo"]
