"""``get`` judges every symlink by where it resolves through the links already written (PEP 706's
``data`` filter rule), not by counting ``..``: chains that climb out are refused, with nothing
written, and links that stay inside are written as they are."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from importer.dag.cid import format_cid
from importer.dag.dagpb import PBLink
from importer.dag.unixfs import NodeType, UnixFSData
from importer.sinks.store import BlockStore
from tests.conftest import RunCli
from tests.dag_builders import DagBuilder, Link

from .support import files_under

Tree = dict[str, "Tree | bytes | tuple[str]"]  # a dict is a directory, bytes a file, (target,) a symlink


def build(dag: DagBuilder, tree: Tree) -> Link:
    entries: dict[str, Link] = {}
    for name, value in tree.items():
        if isinstance(value, dict):
            entries[name] = build(dag, value)
        elif isinstance(value, tuple):
            entries[name] = dag.symlink(value[0].encode())
        else:
            entries[name] = dag.file(value)
    return dag.directory(entries)


def stored(dag: DagBuilder, tmp_path: Path) -> Path:
    """A store at ``tmp_path/store`` holding the builder's blocks."""
    store = tmp_path / "store"
    with BlockStore(store) as s:
        s.put_many(dag.sink)
    return store


def get(tmp_path: Path, cli: RunCli, tree: Tree) -> tuple[int, str, str, Path]:
    """``get`` the tree into ``tmp_path/box/out``; a sentinel file sits beside the output."""
    dag = DagBuilder()
    root = build(dag, tree)
    store = stored(dag, tmp_path)
    box = tmp_path / "box"
    box.mkdir()
    (box / "sentinel").write_bytes(b"outside the output")
    rc, _, err = cli("get", format_cid(root.cid), "-o", box / "out", "--store", store)
    return rc, err, format_cid(root.cid), box


def assert_refused(rc: int, err: str, box: Path, message: str) -> None:
    assert (rc, err.count("\n")) == (1, 1), err
    assert message in err, err
    assert files_under(box) == ["sentinel"]  # no output, no part directory, nothing outside
    assert (box / "sentinel").read_bytes() == b"outside the output"


@pytest.mark.parametrize(("tree", "message"), [
    # The chain: l1 points at the output root (allowed); l2 goes through l1 and one up.
    # "l2" sorts before "ok", so when l2 is written ok/l1 does not exist yet: only the check
    # after the whole tree is written sees where it leads.
    ({"ok": {"l1": ("..",)}, "l2": ("ok/l1/..",)}, "symlink 'l2' -> 'ok/l1/..' leads outside the output directory"),
    # The same chain written in the other order is refused as it is written.
    ({"ok": {"l1": ("..",)}, "zz": ("ok/l1/..",)}, "symlink 'zz' -> 'ok/l1/..' leads outside the output directory"),
    ({"link": ("/etc/passwd",)}, "symlink 'link' -> '/etc/passwd' is absolute"),
    ({"link": ("../sentinel",)}, "symlink 'link' -> '../sentinel' leads outside the output directory"),
    ({"d": {"e": {"link": ("../../..",)}}}, "symlink 'd/e/link' -> '../../..' leads outside the output directory"),
    # A link to a link: a -> b is harmless text, b climbs out.
    ({"a": ("b",), "b": ("c/../..",), "c": {}}, "symlink 'b' -> 'c/../..' leads outside the output directory"),
    # A link re-aimed after it was judged: "a -> b/../x" is inside while b does not exist; then
    # b -> "." makes it ./../x. Counting ".." in each text would accept both.
    ({"a": ("b/../x",), "b": (".",)}, "symlink 'a' -> 'b/../x' leads outside the output directory"),
    # An entry that climbs through another directory's link to the output root, then one up.
    ({"d": {"up": ("..",)}, "z": {"deep": ("../d/up/../sentinel",)}},
     "symlink 'z/deep' -> '../d/up/../sentinel' leads outside the output directory"),
])
def test_get_refuses_symlink_chains_that_leave_the_output(tree: Tree, message: str, tmp_path: Path,
                                                          cli: RunCli) -> None:
    rc, err, _, box = get(tmp_path, cli, tree)
    assert_refused(rc, err, box, message)


@pytest.mark.parametrize("tree", [
    {"ok": {"l1": ("..",)}, "l2": ("ok/l1",)},  # a link to a link to the root: inside
    {"lib": {"libx.so.1": b"ELF"}, "libx.so": ("lib/libx.so.1",), "dangling": ("not/yet/there",)},
    {"a": ("b",), "b": ("a",)},  # a loop stays inside
    {"d": {"up": ("../d/./..",)}},  # resolves to the output root itself
])
def test_get_writes_symlinks_that_stay_inside(tree: Tree, tmp_path: Path, cli: RunCli) -> None:
    rc, err, _, box = get(tmp_path, cli, tree)
    assert (rc, err.endswith("Saving file(s) to " + str(box / "out") + "\n")) == (0, True), err
    out = box / "out"
    for path in files_under(out):
        if os.path.islink(out / path):
            real = os.path.realpath(out / path)
            assert os.path.commonpath([real, str(out)]) == str(out)


def test_a_link_then_a_file_of_the_same_name_is_refused(tmp_path: Path, cli: RunCli) -> None:
    """A file can never be written through a link: the name is taken, and files are opened
    O_EXCL | O_NOFOLLOW. Two entries of one name cannot come from a sorted directory unless the
    node lies, as this one does."""
    dag = DagBuilder()
    link, file = dag.symlink(b"../sentinel"), dag.file(b"overwrite?")
    root = dag.node([PBLink(link.cid, b"x", link.tsize), PBLink(file.cid, b"x", file.tsize)],
                    UnixFSData(NodeType.DIRECTORY))
    store = stored(dag, tmp_path)
    box = tmp_path / "box"
    box.mkdir()
    (box / "sentinel").write_bytes(b"outside the output")
    rc, _, err = cli("get", format_cid(root.cid), "-o", box / "out", "--store", store)
    # The link is refused first (it leaves the output); a link inside would hit the duplicate.
    assert_refused(rc, err, box, "symlink 'x' -> '../sentinel' leads outside the output directory")


def test_get_over_a_link_to_a_directory_replaces_the_link_not_the_directory(tmp_path: Path, cli: RunCli) -> None:
    """An output path that is a symlink to a directory elsewhere: refused without --force, and
    with --force the link itself is replaced; nothing is written where it pointed."""
    dag = DagBuilder()
    root = build(dag, {"f": b"data"})
    store = stored(dag, tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "out").symlink_to(elsewhere)
    rc, _, err = cli("get", format_cid(root.cid), "-o", tmp_path / "out", "--store", store)
    assert (rc, err) == (1, f"dpip-import get: {tmp_path / 'out'}: already exists (pass --force to replace it)\n")
    rc, _, err = cli("get", format_cid(root.cid), "-o", tmp_path / "out", "--store", store, "--force")
    assert rc == 0, err
    assert not (tmp_path / "out").is_symlink() and (tmp_path / "out" / "f").read_bytes() == b"data"
    assert os.listdir(elsewhere) == []


@pytest.mark.parametrize(("target", "ok"), [("sibling", True), ("../outside", False), ("/abs", False)])
def test_get_of_a_symlink_alone_keeps_it_inside_the_output_directory(target: str, ok: bool, tmp_path: Path,
                                                                     cli: RunCli) -> None:
    dag = DagBuilder()
    link = dag.symlink(target.encode())
    store = stored(dag, tmp_path)
    box = tmp_path / "box"
    box.mkdir()
    rc, _, err = cli("get", format_cid(link.cid), "-o", box / "link", "--store", store)
    if ok:
        assert rc == 0 and os.readlink(box / "link") == target
    else:
        assert rc == 1 and err.count("\n") == 1 and f"symlink '{box / 'link'}' -> '{target}'" in err
        assert os.listdir(box) == []
