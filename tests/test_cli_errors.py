"""Bad input to ``dpip-import``: one clear line on stderr, a non-zero exit, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def run(*args: str | os.PathLike[str]) -> subprocess.CompletedProcess[str]:
    argv = [os.fspath(a) for a in args]
    return subprocess.run([sys.executable, "-m", "importer", *argv], capture_output=True, text=True,
                          timeout=60, check=False)


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_missing_path_is_one_line_error(tmp_path: Path) -> None:
    assert_one_line_error(run("add", "-n", tmp_path / "nope"), "nope", "no such file or directory")


def test_fifo_is_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    assert_one_line_error(run("add", "-n", tmp_path / "fifo"), "fifo", "is a FIFO")


def test_fifo_inside_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    os.mkfifo(tmp_path / "d" / "pipe")
    assert_one_line_error(run("add", "-r", "-n", tmp_path / "d"), "pipe", "is a FIFO")


def test_device_file_is_refused() -> None:
    assert_one_line_error(run("add", "-n", "/dev/null"), "/dev/null", "character device")


def test_unreadable_file_is_refused(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        # Root reads any file whatever its mode; /proc/self/mem is a regular file whose first
        # bytes (an unmapped address) cannot be read by anyone: read() fails with EIO.
        assert_one_line_error(run("add", "-n", "/proc/self/mem"), "/proc/self/mem", "Input/output error")
    else:
        secret = tmp_path / "secret"
        secret.write_bytes(b"x")
        secret.chmod(0)
        assert_one_line_error(run("add", "-n", secret), "secret", "permission denied")


@pytest.mark.parametrize(("spec", "message"), [
    ("foo", "unrecognized chunker option: foo"),
    ("size-0", "chunker size must be greater than 0"),
    ("size-abc", 'strconv.Atoi: parsing "abc": invalid syntax'),
    ("size-2096897", "chunker parameters may not exceed the maximum chunk size of 2096896"),
])
def test_unknown_chunker_spec_uses_kubo_message(tmp_path: Path, spec: str, message: str) -> None:
    (tmp_path / "f").write_bytes(b"x")
    assert_one_line_error(run("add", "-n", "--chunker", spec, tmp_path / "f"), message)


@pytest.mark.parametrize("command", [("cat",), ("ls",), ("get", "-o", "out"), ("export", "-o", "x.car")])
def test_invalid_cid_is_one_line_error(tmp_path: Path, command: tuple[str, ...]) -> None:
    name, *rest = command
    proc = run(name, "not-a-cid", *rest, "--store", tmp_path / "s")
    assert_one_line_error(proc, "invalid CID", "not-a-cid")


def test_directory_without_recursive_flag_is_refused(tmp_path: Path) -> None:
    assert_one_line_error(run("add", "-n", tmp_path), "use the '-r' flag")


def test_raw_leaves_with_preserve_mode_is_refused(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    assert_one_line_error(run("add", "-n", "--raw-leaves", "--preserve-mode", tmp_path / "f"), "--raw-leaves")


@pytest.mark.parametrize(("argv", "line"), [
    (["wheel", "--max-ratio", "abc", "x.whl"],
     "dpip-import wheel: argument --max-ratio: 'abc' is not a whole number (see `dpip-import wheel --help`)"),
    (["store", "gc", "--bogus"],
     "dpip-import store gc: unrecognized arguments: --bogus (see `dpip-import store gc --help`)"),
    (["store"], "dpip-import store: the following arguments are required: ACTION (see `dpip-import store --help`)"),
])
def test_a_usage_error_is_one_line_naming_the_subcommand(argv: list[str], line: str) -> None:
    proc = run(*argv)
    assert (proc.returncode, proc.stderr) == (2, line + "\n")
