"""Member names that would escape or clash (``../``, absolute, backslashes, drive letters, NUL,
duplicates, case clashes, escaping links) import: the tree holds only safe relative paths, the
others stay in the recipe with the reason, and fetch rebuilds the archive byte for byte."""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Any

from tests.archive_builders import TarMember, ZipEntry, build_zip, gzip_python, tar_bytes
from tests.archive_checks import assert_roundtrip
from tests.conftest import RunCli

ZIP_NAMES: dict[bytes, str | None] = {
    b"pkg/ok.py": "pkg/ok.py",
    b"../../evil.py": None,
    b"/abs/evil.py": None,
    b"..\\..\\evil.py": None,
    b"pkg\\win.py": None,
    b"C:/evil.py": None,
    b"pkg/a\x00b.py": None,
    b"pkg//empty.py": None,
    b"\xff\xfe.py": None,
    b"./pkg/dot.py": "pkg/dot.py",
    b"pkg/README": "pkg/README",
    b"pkg/readme": "pkg/readme",  # a case clash: IPFS directories are case-sensitive, both stay
}
REASONS = {
    "../../evil.py": "'..' component",
    "/abs/evil.py": "absolute path",
    "..\\..\\evil.py": "name contains a backslash",
    "pkg\\win.py": "name contains a backslash",
    "C:/evil.py": "absolute path (drive letter)",
    "pkg/a\x00b.py": "name contains a NUL byte",
    "pkg//empty.py": "empty path component",
    "\\xff\\xfe.py": "name is not valid UTF-8",
}


def _details(summary: dict[str, Any]) -> list[dict[str, Any]]:
    detail = summary["member_detail"]
    assert isinstance(detail, list)
    return detail


def test_hostile_zip_names_stay_out_of_the_tree_and_rebuild(tmp_path: Path, cli: RunCli) -> None:
    entries = [ZipEntry(name, b"x = %d\n" % i) for i, name in enumerate(ZIP_NAMES)]
    entries.append(ZipEntry(b"pkg/ok.py", b"a second pkg/ok.py\n"))
    path = tmp_path / "names-1.0-py3-none-any.whl"
    path.write_bytes(build_zip(entries))
    detail = _details(assert_roundtrip(cli, path, tmp_path / "store"))
    for name, want in ZIP_NAMES.items():
        label = name.decode("utf-8", "backslashreplace")
        member = next(m for m in detail if m["name"] == label)
        assert member["path"] == want, member
        if want is None:
            assert member["note"] == REASONS[label], member
    duplicate = detail[-1]
    assert duplicate["name"] == "pkg/ok.py" and duplicate["path"] is None
    assert duplicate["note"] == "duplicate of member #0"


def test_hostile_tar_names_and_links_stay_out_of_the_tree_and_rebuild(tmp_path: Path, cli: RunCli) -> None:
    members = [
        TarMember("pkg-1.0/ok.py", b"ok\n"),
        TarMember("../../escape.txt", b"dotdot"),
        TarMember("/tmp/absolute.txt", b"absolute"),
        TarMember("pkg-1.0\\..\\..\\win.txt", b"backslashes"),
        TarMember("pkg-1.0/out", kind=tarfile.SYMTYPE, linkname="../../../etc"),
        TarMember("pkg-1.0/winlink", kind=tarfile.SYMTYPE, linkname="..\\..\\etc"),
        TarMember("pkg-1.0/inside", kind=tarfile.SYMTYPE, linkname="ok.py"),
        TarMember("pkg-1.0/hard", kind=tarfile.LNKTYPE, linkname="../../escape.txt"),
        TarMember("pkg-1.0/ok.py", b"again\n"),
    ]
    path = tmp_path / "names-1.0.tar.gz"
    path.write_bytes(gzip_python(tar_bytes(members)))
    detail = _details(assert_roundtrip(cli, path, tmp_path / "store"))
    placed = {m["name"]: (m["path"], m["note"]) for m in detail[:-1]}
    assert placed == {
        "pkg-1.0/ok.py": ("pkg-1.0/ok.py", None),
        "../../escape.txt": (None, "'..' component"),
        "/tmp/absolute.txt": (None, "absolute path"),
        "pkg-1.0\\..\\..\\win.txt": (None, "name contains a backslash"),
        "pkg-1.0/out": (None, "symlink target escapes the archive root"),
        "pkg-1.0/winlink": (None, "symlink target escapes the archive root"),
        "pkg-1.0/inside": ("pkg-1.0/inside", None),
        "pkg-1.0/hard": (None, "hardlink"),
    }
    assert detail[-1]["path"] is None and detail[-1]["note"] == "duplicate of member #0"
