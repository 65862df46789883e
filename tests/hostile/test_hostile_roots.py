"""Roots and recipes that lie: sizes that understate, "billion laughs" nesting, repeated pages,
counts that do not match, nesting too deep, cycles. Each is a CAR of hand-made blocks imported
with ``import-car`` and then read by every command, in a child process under a memory cap (and
a file-size cap where something is written): a one-line error, a bounded result, no file."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Final

import pytest

from importer.archive.plan import RebuildPlan
from importer.archive.recipe import MAX_MEMBERS
from importer.dag.cbor import Link, encode_dag_cbor
from importer.dag.cid import DAG_CBOR, cid_of_block, format_cid
from importer.errors import RebuildLimit
from importer.sinks.base import MemorySink
from tests.conftest import RunCli

from .forge import DEFLATE_PARAMS, Forge, nested_entry
from .support import MiB, files_under, import_car, one_line_error, run_cli

#: The address space a read command may use here: far above its ~100 MB working set, far below
#: what any of these inputs would take if a bound failed (3 GiB of content, exabytes declared).
MEMORY: Final = 768 * MiB
#: Largest file a command may write here: one 1 MiB piece. A root claiming 123 bytes whose
#: rebuild is 3 GiB must stop before its first piece past 123 bytes is written.
ONE_PIECE: Final = 1 * MiB


def read_commands(root: str, out: Path) -> list[tuple[str, ...]]:
    return [("fetch", root, "-o", str(out / "fetched.zip")), ("verify", root), ("inspect", root),
            ("get", root, "-o", str(out / "got")), ("ls", root), ("export", root, "-o", str(out / "x.car"))]


def run_bounded(store: Path, *args: str, cwd: Path) -> Any:
    return run_cli(*args, "--store", store, cwd=cwd, memory=MEMORY, file_size=ONE_PIECE)


@pytest.fixture
def out(tmp_path: Path) -> Path:
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


def test_a_root_claiming_123_bytes_of_a_3_gib_file_writes_at_most_123(tmp_path: Path, out: Path) -> None:
    forge = Forge()
    bomb = forge.zero_file(3 << 30)  # 3 GiB of zeros: 12,288 links to one leaf
    recipe = forge.recipe(skeleton=forge.skeleton(b""), skeleton_size=0, members=[[0, "big", -1]])
    root = forge.root(size=123, tree=forge.directory({"big": bomb}).cid, recipe=recipe)
    store = import_car(forge, tmp_path, root)
    cid = format_cid(root)
    for command in ("fetch", "verify"):
        args = ("fetch", cid, "-o", "fetched.zip") if command == "fetch" else ("verify", cid)
        line = one_line_error(run_bounded(store, *args, cwd=out))
        assert line == f"dpip-import {command}: archive {cid}: rebuilds a body of more than the 123 bytes its root declares"
    assert os.listdir(out) == []


def test_output_stops_at_the_declared_size_when_the_body_is_honest(tmp_path: Path, out: Path) -> None:
    """The body (1 MiB of incompressible skeleton, deflated) is as declared; only the root's size
    lies, so the bound that stops it is the output's."""
    forge = Forge()
    body = hashlib.shake_256(b"noise").digest(1 << 20)
    recipe = forge.recipe(skeleton=forge.skeleton(body), skeleton_size=len(body), body="raw",
                          outer=[[1, 0, -1, 0, len(body)]], params=[DEFLATE_PARAMS], tail=len(body))
    root = forge.root(name="noise-1.0.tar.gz", size=123, recipe=recipe)
    store = import_car(forge, tmp_path, root)
    line = one_line_error(run_bounded(store, "fetch", format_cid(root), cwd=out))
    assert line == f"dpip-import fetch: archive {format_cid(root)}: rebuilds more than the 123 bytes its root declares"
    assert os.listdir(out) == []


def test_a_skeleton_larger_than_what_it_lands_in_is_refused_before_work(tmp_path: Path, out: Path) -> None:
    forge = Forge()
    size = 3 << 30
    recipe = forge.recipe(skeleton=forge.skeleton(b""), skeleton_size=size, tail=size)
    root = forge.root(size=123, recipe=recipe)
    store = import_car(forge, tmp_path, root)
    line = one_line_error(run_bounded(store, "verify", format_cid(root), cwd=out))
    assert line == (f"dpip-import verify: archive {format_cid(root)}: skeleton of 3,221,225,472 bytes is larger than "
                    "the 123-byte archive and its 123-byte body together")


def test_a_skeleton_frame_that_inflates_past_its_declared_size_stops_there(tmp_path: Path, out: Path) -> None:
    forge = Forge()
    frame = forge.skeleton(bytes(256 << 20))  # 256 MiB of zeros in a ~8 KB frame, declared as 10 bytes
    recipe = forge.recipe(skeleton=frame, skeleton_size=10, tail=10)
    root = forge.root(size=10, recipe=recipe)
    store = import_car(forge, tmp_path, root)
    line = one_line_error(run_bounded(store, "verify", format_cid(root), cwd=out))
    assert line == f"dpip-import verify: block {format_cid(frame)}: skeleton size does not match the member table"


def laughs(forge: Forge, per_level: int, levels: int, *, honest: bool) -> bytes:
    """Nested roots, each linking the one below ``per_level`` times: ``per_level ** levels``
    copies of a 110-byte archive from a few blocks. Honest sizes declare it all; lying ones
    say 200 bytes at every level."""
    content = b"hello world" * 10
    level = forge.honest_root(content)
    size = len(content)
    for _ in range(levels):
        size *= per_level
        recipe = forge.recipe(skeleton=forge.skeleton(b""), skeleton_size=0,
                              members=[nested_entry(level)] * per_level)
        level = forge.root(size=size if honest else 200, recipe=recipe)
    return level


@pytest.mark.parametrize("honest", [True, False])
def test_billion_laughs_is_refused_before_any_work(honest: bool, tmp_path: Path, out: Path) -> None:
    forge = Forge()
    root = laughs(forge, 1000, 3, honest=honest)  # 10**9 copies
    store = import_car(forge, tmp_path, root)
    cid = format_cid(root)
    for args in (("verify", cid), ("fetch", cid, "-o", "x.whl")):
        line = one_line_error(run_bounded(store, *args, cwd=out))
        assert line == (f"dpip-import {args[0]}: archive {cid}: declares more than 68,719,476,736 bytes of work "
                        "across its nested archives (each counted once per use)")
    assert os.listdir(out) == []


def test_small_laughs_that_lie_stop_at_the_first_nested_overflow(tmp_path: Path, out: Path) -> None:
    forge = Forge()
    root = laughs(forge, 10, 3, honest=False)  # declared work is small; the first level already lies
    store = import_car(forge, tmp_path, root)
    line = one_line_error(run_bounded(store, "verify", format_cid(root), cwd=out))
    assert line.startswith("dpip-import verify: archive ") and line.endswith(
        ": rebuilds a body of more than the 200 bytes its root declares")


def test_honest_small_laughs_rebuild_byte_for_byte(tmp_path: Path, out: Path) -> None:
    """Nesting itself is fine: 10 x 10 copies of the archive, sizes declared, rebuild as declared."""
    forge = Forge()
    content = b"hello world" * 10
    inner = laughs(forge, 10, 2, honest=True)
    whole = content * 100
    top = forge.root(name="laughs-1.0.tar", size=len(whole), sha256=hashlib.sha256(whole).digest(),
                     recipe=forge.recipe(skeleton=forge.skeleton(b""), skeleton_size=0, members=[nested_entry(inner)]))
    store = import_car(forge, tmp_path, top)
    proc = run_bounded(store, "fetch", format_cid(top), cwd=out)
    assert proc.returncode == 0, proc.stderr
    assert (out / "laughs-1.0.tar").read_bytes() == whole


def test_a_page_listed_300_times_is_refused(tmp_path: Path, out: Path) -> None:
    forge = Forge()
    # 300 x 300 entries stays under the member limit, so the repeated page is what is refused.
    page = forge.page([[0, -1, -1]] * 300)
    recipe = forge.recipe(skeleton=forge.skeleton(b""), skeleton_size=0, pages=[page] * 300, count=300 * 300)
    root = forge.root(size=0, recipe=recipe)
    store = import_car(forge, tmp_path, root)
    for args in read_commands(format_cid(root), out):
        proc = run_bounded(store, *args, cwd=out)
        if args[0] in ("get", "ls", "export"):
            # get and ls read the root's tree (an empty directory), export writes each block once
            assert proc.returncode == 0, proc.stderr
        else:
            assert one_line_error(proc) == (f"dpip-import {args[0]}: block {format_cid(recipe)}: recipe lists page "
                                            f"{format_cid(page)} twice")


@pytest.mark.parametrize(("count", "pages", "reason"), [
    (5, 1, "recipe pages hold 1 items, it declares 5"),
    (0, 1, "recipe lists 1 pages for 0 items"),
    (2, 2, "recipe pages hold more than the 2 items it declares"),
    (MAX_MEMBERS + 1, 1, f"recipe field 'members' value {MAX_MEMBERS + 1} is outside 0..{MAX_MEMBERS}"),
])
def test_a_member_count_that_does_not_match_the_pages_is_refused(count: int, pages: int, reason: str,
                                                                 tmp_path: Path, out: Path) -> None:
    forge = Forge()
    page_cids = [forge.page([[0, -1, -1], [0, -1, -1 - i]][: 1 + i]) for i in range(pages)]
    recipe = forge.recipe(skeleton=forge.skeleton(b""), skeleton_size=0, pages=page_cids, count=count)
    root = forge.root(size=0, recipe=recipe)
    store = import_car(forge, tmp_path, root)
    line = one_line_error(run_bounded(store, "verify", format_cid(root), cwd=out))
    assert line == f"dpip-import verify: block {format_cid(recipe)}: {reason}"


def test_archives_nested_deeper_than_the_importer_nests_are_refused(tmp_path: Path, out: Path) -> None:
    forge = Forge()
    content = b"x"
    level = forge.honest_root(content)
    chain = [level]
    for _ in range(4):  # the importer opens 3 levels below the top; this is 4
        recipe = forge.recipe(skeleton=forge.skeleton(b""), skeleton_size=0, members=[nested_entry(level)])
        level = forge.root(size=1, sha256=hashlib.sha256(content).digest(), recipe=recipe)
        chain.append(level)
    store = import_car(forge, tmp_path, level)
    line = one_line_error(run_bounded(store, "verify", format_cid(level), cwd=out))
    assert line == (f"dpip-import verify: archive {format_cid(level)}: archives nest more than 3 levels deep "
                    f"(at {format_cid(chain[0])})")
    proc = run_bounded(store, "verify", format_cid(chain[3]), cwd=out)  # three levels: fine
    assert proc.returncode == 0, proc.stderr


class UncheckedSource(MemorySink):
    """A block source that does not check blocks against their CIDs, as a buggy or hostile node
    would serve them: the only way to meet a cycle, which real hashes make impossible."""

    def get(self, cid: bytes) -> bytes:
        return self.blocks[cid]


def fake_cid(label: bytes) -> bytes:
    return cid_of_block(1, DAG_CBOR, label)


def fake_root(source: UncheckedSource, cid: bytes, members: list[bytes]) -> None:
    skeleton = Forge()
    frame = skeleton.skeleton(b"")
    source.blocks.update(skeleton.dag.sink.blocks)
    page, recipe = fake_cid(cid + b"page"), fake_cid(cid + b"recipe")
    source.blocks[page] = encode_dag_cbor([[0, Link(m), -1] for m in members])
    source.blocks[recipe] = encode_dag_cbor({
        "v": 1, "body": "zip", "outer": [[2]], "skeleton": Link(frame), "skeleton_size": 0, "params": [],
        "extra": [], "pages": [Link(page)], "members": len(members), "tail": 0})
    source.blocks[cid] = encode_dag_cbor({
        "dpip": 1, "kind": "archive", "name": "cycle-1.0.zip", "size": 0, "sha256": bytes(32),
        "tree": Link(Forge().directory({}).cid), "recipe": Link(recipe)})


@pytest.mark.parametrize("length", [1, 2, 3])
def test_a_cycle_of_nested_roots_is_refused(length: int) -> None:
    source = UncheckedSource()
    cids = [fake_cid(b"root %d" % i) for i in range(length)]
    for i, cid in enumerate(cids):
        fake_root(source, cid, [cids[(i + 1) % length]])
    with pytest.raises(RebuildLimit) as e:
        RebuildPlan(source, cids[0])
    chain = " -> ".join(format_cid(c) for c in [*cids, cids[0]])
    assert e.value.reason == f"nested archive roots form a cycle: {chain}"


def hostile_fields(forge: Forge) -> dict[str, tuple[bytes, str]]:
    """Roots with one bad field each, and the reason ``fetch`` gives for it."""
    honest = forge.honest_root(b"content")
    from importer.dag.cbor import decode_dag_cbor

    node = decode_dag_cbor(forge.dag.sink.blocks[honest])
    recipe = decode_dag_cbor(forge.dag.sink.blocks[bytes(node["recipe"])])

    def root(**change: Any) -> bytes:
        return forge.cbor({**node, **change})

    def with_recipe(**change: Any) -> bytes:
        return root(recipe=Link(forge.cbor({**recipe, **change})))

    return {
        "sha256 is a huge integer": (root(sha256=2**64 - 1), "archive root field 'sha256' is an integer, not 32 bytes"),
        "sha256 is short": (root(sha256=b"\x01" * 31), "archive root field 'sha256' is bytes of 31 bytes, not 32 bytes"),
        "NUL in the name": (root(name="a\0b-1.0.zip"),
                            "archive root name 'a\\x00b-1.0.zip' is empty, longer than 1024 bytes or holds a NUL"),
        "size is negative": (root(size=-1), "archive root field 'size' value -1 is outside 0..9223372036854775807"),
        "size is a string": (root(size="12"), "archive root field 'size' is a string, not an integer"),
        "tree is not a link": (root(tree="Qm..."), "archive root field 'tree' is a string, not a CID link"),
        "params entry is a list": (with_recipe(params=[[1, 2]]), "recipe params 0 is a list, not a map"),
        "params entry is a string": (with_recipe(params=["zlib"]), "recipe params 0 is a string, not a map"),
        "params entry is bad": (with_recipe(params=[{"v": 1, "name": "zlib"}]),
                                "recipe params 0: invalid compressor parameters: missing field 'family'"),
        "outer item unknown": (with_recipe(outer=[[7]]), "recipe outer item 0 value 7 is outside 0..2"),
        "body unknown": (with_recipe(body="rar"), "recipe body 'rar' is not one of zip, tar, raw"),
        "version 3": (with_recipe(v=3), "recipe field 'v' value 3 is outside 1..2"),
        "paged list in v1": (with_recipe(outer={"n": 1, "pages": []}), "recipe field 'outer' is a map, not a list"),
    }


def test_every_bad_field_is_one_line_in_every_command(tmp_path: Path, out: Path, cli: RunCli) -> None:
    forge = Forge()
    cases = hostile_fields(forge)
    store = import_car(forge, tmp_path, *(cid for cid, _ in cases.values()))
    for what, (cid, reason) in cases.items():
        root = format_cid(cid)
        for args in read_commands(root, out):
            rc, _, err = cli(*args, "--store", store)
            if args[0] in ("get", "ls", "export"):
                # get and ls read the root's tree where it has one; export writes the blocks as they are
                assert rc == 0 or (rc, err.count("\n")) == (1, 1), (what, err)
                continue
            assert (rc, err.count("\n")) == (1, 1), (what, err)
            assert err.startswith(f"dpip-import {args[0]}: block ") and err.endswith(f": {reason}\n"), (what, err)
        assert set(files_under(out)) <= {"x.car", "got"}, what  # nothing but what get and export write
        for path in (out / "x.car", out / "got"):
            if path.is_dir():
                path.rmdir()
            elif path.exists():
                path.unlink()


def test_max_total_size_bounds_what_a_rebuild_declares_and_reads(tmp_path: Path, out: Path) -> None:
    forge = Forge()
    size = 1 << 20
    recipe = forge.recipe(skeleton=forge.skeleton(b""), skeleton_size=0, members=[[0, "zeros", -1]])
    root = forge.root(size=size, sha256=hashlib.sha256(bytes(size)).digest(), recipe=recipe,
                      tree=forge.directory({"zeros": forge.zero_file(size)}).cid)
    store = import_car(forge, tmp_path, root)
    cid = format_cid(root)
    assert run_bounded(store, "verify", cid, cwd=out).returncode == 0  # 1 MiB is far within 16 GiB
    line = one_line_error(run_bounded(store, "verify", cid, "--max-total-size", "400000", cwd=out))
    assert line == (f"dpip-import verify: archive {cid}: declares more than 1,600,000 bytes of work across its "
                    "nested archives (each counted once per use)")  # size + body = 2 MiB
    line = one_line_error(run_bounded(store, "fetch", cid, "--max-total-size", "600000", cwd=out))
    assert line == (f"dpip-import fetch: archive {cid}: reads more than 600,000 bytes of file contents "
                    "(--max-total-size)")
    assert os.listdir(out) == []
