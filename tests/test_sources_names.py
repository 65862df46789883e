"""Members that cannot live in the tree (bad names, escaping symlinks, hardlinks, devices,
duplicates, file/directory conflicts) are kept recipe-only with the reason recorded."""

from __future__ import annotations

import io
import tarfile

from importer.sources.base import Member, MemberKind, decode_name
from importer.sources.names import Placement, classify_members
from importer.sources.tar import iter_tar


def member(index: int, raw: bytes, kind: MemberKind = "file", link: bytes | None = None,
           verbatim: str | None = None) -> Member:
    return Member(index, raw, decode_name(raw), kind, 0, None, None, link, 0, 0, verbatim_reason=verbatim)


def classify(*specs: tuple[bytes, MemberKind] | tuple[bytes, MemberKind, bytes]) -> list[tuple[str | None, str | None]]:
    members = [member(i, spec[0], spec[1], spec[2] if len(spec) == 3 else None) for i, spec in enumerate(specs)]
    return [(p.path, p.reason) for p in classify_members(members)]


def test_plain_files_dirs_and_safe_symlinks_go_into_the_tree() -> None:
    assert classify((b"pkg/", "dir"), (b"pkg/a.py", "file"), (b"./pkg/b.py", "file"),
                    (b"pkg/link", "symlink", b"../pkg/a.py")) == [
        ("pkg", None), ("pkg/a.py", None), ("pkg/b.py", None), ("pkg/link", None)]


def test_unsafe_names_are_recipe_only_with_reasons() -> None:
    assert classify((b"/etc/passwd", "file"), (b"../evil", "file"), (b"a/../../b", "file"), (b"a//b", "file"),
                    (b"caf\xe9", "file"), (b"./", "dir"), (b"nul\x00byte", "file")) == [
        (None, "absolute path"), (None, "'..' component"), (None, "'..' component"),
        (None, "empty path component"), (None, "name is not valid UTF-8"), (None, "names the archive root"),
        (None, "name contains a NUL byte")]


def test_escaping_symlinks_hardlinks_and_devices_are_recipe_only() -> None:
    assert classify((b"pkg/up", "symlink", b"../../etc"), (b"abs", "symlink", b"/etc/passwd"),
                    (b"hard", "hardlink", b"pkg/a"), (b"dev", "other"), (b"bad", "symlink", b"\xff")) == [
        (None, "symlink target escapes the archive root"), (None, "symlink target escapes the archive root"),
        (None, "hardlink"), (None, "device, fifo or other special file"),
        (None, "symlink target is not valid UTF-8")]


def test_duplicates_and_file_directory_conflicts_keep_the_first() -> None:
    assert classify((b"a", "file"), (b"a", "file"), (b"a/b", "file"), (b"d/x", "file"), (b"d/", "dir"),
                    (b"d/", "dir"), (b"d", "file"), (b"s", "symlink", b"d"), (b"s/x", "file"),
                    (b"e/f", "file"), (b"e", "file")) == [
        ("a", None), (None, "duplicate of member #0"), (None, "parent 'a' is a file (member #0)"),
        ("d/x", None), ("d", None), (None, "duplicate of member #4"),
        (None, "file where member #4 is a dir"), ("s", None),
        (None, "parent 's' is a symlink (member #7)"), ("e/f", None),
        (None, "file where other members need a directory")]


def test_verbatim_members_are_recipe_only() -> None:
    placements = classify_members([member(0, b"secret", verbatim="encrypted member")])
    assert placements == [Placement(0, None, "kept verbatim: encrypted member")]
    assert not placements[0].in_tree


def test_hostile_tar_members_parse_and_classify() -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, kind, link in [("../escape.txt", tarfile.REGTYPE, ""), ("/abs.txt", tarfile.REGTYPE, ""),
                                 ("out", tarfile.SYMTYPE, "../../../etc/passwd"),
                                 ("hard", tarfile.LNKTYPE, "ok.txt"), ("ok.txt", tarfile.REGTYPE, "")]:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, link
            t.addfile(info)
    members = [e for e in iter_tar(io.BytesIO(buf.getvalue()), "t.tar") if isinstance(e, Member)]
    assert [(p.path, p.reason) for p in classify_members(members)] == [
        (None, "'..' component"), (None, "absolute path"), (None, "symlink target escapes the archive root"),
        (None, "hardlink"), ("ok.txt", None)]
