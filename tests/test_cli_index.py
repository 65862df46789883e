"""The CLI as a user meets it: ``list``, archives named by file name or sha256, ``ls``/``cat`` through an
archive root, global options anywhere, ``wheel``/``sdist`` refusing each other's archives, ``--car``
keeping the store, honest import figures, and help text on every argument."""

from __future__ import annotations

import argparse
import ast
import json
import sqlite3
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from importer.cli.main import COMMAND_MODULE, build_parser, named_command
from importer.dag.cid import format_cid, parse_cid
from importer.sinks.store import DB_NAME, BlockStore

from .archive_builders import TarMember, ZipEntry, build_zip, gzip_python, python_source, tar_bytes
from .archive_checks import import_json, sha256_file
from .conftest import RunCli

TEXT = python_source(31, 400)
WHEEL_FILES = [ZipEntry(b"foo_bar/__init__.py", b""), ZipEntry(b"foo_bar/core.py", TEXT),
               ZipEntry(b"foo_bar-1.0.dist-info/WHEEL", b"Wheel-Version: 1.0\n", method=0)]


@pytest.fixture
def wheel(tmp_path: Path) -> Path:
    path = tmp_path / "Foo_Bar-1.0-py3-none-any.whl"
    path.write_bytes(build_zip(WHEEL_FILES))
    return path


@pytest.fixture
def sdist(tmp_path: Path) -> Path:
    path = tmp_path / "foo.bar-1.0.tar.gz"
    path.write_bytes(gzip_python(tar_bytes([TarMember("foo.bar-1.0/", kind=tarfile.DIRTYPE),
                                            TarMember("foo.bar-1.0/core.py", TEXT)])))
    return path


@pytest.fixture
def other(tmp_path: Path) -> Path:
    path = tmp_path / "other-2.0.tar.gz"
    path.write_bytes(gzip_python(tar_bytes([TarMember("other-2.0/x.py", python_source(32, 50))])))
    return path


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "store"


def imported(cli: RunCli, store: Path, *paths: Path) -> list[dict[str, Any]]:
    return [import_json(cli, path, store) for path in paths]


# -- list --------------------------------------------------------------------------------------

def test_list_prints_every_archive_by_project_with_size_sha256_root_and_time(
        cli: RunCli, store: Path, wheel: Path, sdist: Path, other: Path) -> None:
    imported(cli, store, other, wheel, sdist)
    with BlockStore(store) as opened:
        rows = {r.name: r for r in opened.iter_archives()}
    rc, out, err = cli("list", "--store", store)
    assert (rc, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split() == ["IMPORTED", "(UTC)", "SIZE", "SHA256", "ROOT", "NAME"]
    names = [line.split()[-1] for line in lines[1:]]
    assert names == [wheel.name, sdist.name, other.name]  # project foo-bar (both), then other
    for line in lines[1:]:
        *_, size, sha, root, name = line.split()
        record = rows[name]
        assert (size, sha, root) == (f"{record.size:,d}", record.sha256.hex()[:16], format_cid(record.root))


@pytest.mark.parametrize("pattern", ["foo-bar", "Foo_Bar", "FOO.BAR", "foo*"])
def test_list_pattern_is_a_project_normalized_as_pep_503(cli: RunCli, store: Path, wheel: Path, sdist: Path,
                                                         other: Path, pattern: str) -> None:
    imported(cli, store, wheel, sdist, other)
    rc, out, _ = cli("list", pattern, "--json", "--store", store)
    assert rc == 0
    assert [item["name"] for item in json.loads(out)] == [wheel.name, sdist.name]


def test_list_json_has_full_sha256_root_and_times(cli: RunCli, store: Path, wheel: Path) -> None:
    (summary,) = imported(cli, store, wheel)
    rc, out, _ = cli("--json", "list", "--store", store)  # --json before the subcommand
    assert rc == 0
    (item,) = json.loads(out)
    assert set(item) == {"name", "project", "size", "sha256", "root", "imported_at", "imported_at_unix"}
    assert (item["name"], item["project"], item["size"], item["sha256"], item["root"]) == (
        wheel.name, "foo-bar", wheel.stat().st_size, summary["sha256"], summary["root"])
    assert item["imported_at"].endswith("Z") and isinstance(item["imported_at_unix"], float)


def test_list_of_a_pattern_nothing_matches_says_so_on_stderr(cli: RunCli, store: Path, wheel: Path) -> None:
    imported(cli, store, wheel)
    assert cli("list", "nope", "--store", store) == (0, "", f"no archive of project 'nope' in the index of {store}\n")


# -- naming an archive -------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["root", "name", "sha256", "prefix", "pip-style"])
def test_fetch_verify_inspect_take_a_root_a_file_name_or_a_sha256(cli: RunCli, store: Path, wheel: Path,
                                                                   tmp_path: Path, how: str) -> None:
    (summary,) = imported(cli, store, wheel)
    arg = {"root": summary["root"], "name": wheel.name, "sha256": summary["sha256"],
           "prefix": summary["sha256"][:8], "pip-style": "sha256:" + summary["sha256"][:12].upper()}[how]
    rc, out, err = cli("fetch", arg, "-o", tmp_path / "back.whl", "--store", store)
    assert rc == 0, err
    assert sha256_file(tmp_path / "back.whl") == summary["sha256"]
    rc, out, err = cli("verify", arg, "--store", store)
    assert (rc, out.split()[:2]) == (0, ["ok", wheel.name + ":"]), err
    rc, out, err = cli("inspect", arg, "--store", store)
    assert (rc, out.splitlines()[0]) == (0, f"archive   {wheel.name}"), err


def test_a_name_recorded_with_two_roots_is_ambiguous_and_lists_them(cli: RunCli, store: Path, wheel: Path) -> None:
    one = import_json(cli, wheel, store)
    two = import_json(cli, wheel, store, "--cid-version", "1")
    assert one["root"] != two["root"]
    rc, out, err = cli("fetch", wheel.name, "--store", store)
    assert (rc, out) == (1, "")
    assert err == (f"dpip-import fetch: {wheel.name!r} matches 2 archives: {wheel.name} ({one['root']}), "
                   f"{wheel.name} ({two['root']}); name one by its root CID\n")


@pytest.mark.parametrize(("arg", "reason"), [
    ("missing-1.0.tar.gz", "no archive of that name in the store's index (`dpip-import list` shows them)"),
    ("0123abcd", "no archive in the store's index has a sha256 starting with it"),
    ("abc123", "a sha256 prefix needs at least 8 hex digits"),
])
def test_an_argument_that_names_no_archive_is_one_line_saying_why(cli: RunCli, store: Path, wheel: Path,
                                                                   arg: str, reason: str) -> None:
    imported(cli, store, wheel)
    assert cli("inspect", arg, "--store", store) == (1, "", f"dpip-import inspect: {arg!r}: {reason}\n")


def test_a_mistyped_cid_is_named_with_the_argument(cli: RunCli, store: Path, wheel: Path) -> None:
    (summary,) = imported(cli, store, wheel)
    typo = summary["root"][:-1] + "!"
    rc, out, err = cli("verify", typo, "--store", store)
    assert (rc, out) == (1, "")
    assert err.startswith(f"dpip-import verify: {typo!r}: not a CID (") and err.endswith(
        "), nor a file name or sha256 in the store's index\n") and err.count("\n") == 1


# -- delete ------------------------------------------------------------------------------------

def test_delete_by_name_and_by_root_removes_the_index_rows_only(cli: RunCli, store: Path, wheel: Path,
                                                                sdist: Path, other: Path) -> None:
    w, s, _ = imported(cli, store, wheel, sdist, other)
    with BlockStore(store) as opened:
        blocks = opened.stats().blocks
    rc, out, err = cli("delete", wheel.name, s["root"], "--store", store)
    assert rc == 0, err
    assert out == (f"deleted {wheel.name} ({w['root']}) from the index\n"
                   f"deleted {sdist.name} ({s['root']}) from the index\n")
    assert err == "blocks no other archive or pin reaches stay until `dpip-import store gc`\n"
    with BlockStore(store) as opened:
        assert [r.name for r in opened.iter_archives()] == [other.name]
        assert opened.stats().blocks == blocks


def test_delete_with_one_unknown_argument_deletes_nothing(cli: RunCli, store: Path, wheel: Path) -> None:
    imported(cli, store, wheel)
    rc, out, err = cli("delete", wheel.name, "nothing-1.0.tar.gz", "--store", store)
    assert (rc, out) == (1, "")
    assert err.startswith("dpip-import delete: 'nothing-1.0.tar.gz': no archive of that name")
    with BlockStore(store) as opened:
        assert [r.name for r in opened.iter_archives()] == [wheel.name]


# -- ls / cat through an archive root ----------------------------------------------------------

def test_ls_of_an_archive_root_lists_its_tree_and_says_so(cli: RunCli, store: Path, wheel: Path) -> None:
    (summary,) = imported(cli, store, wheel)
    root, tree = summary["root"], summary["tree"]
    rc, listed_tree, _ = cli("ls", tree, "--store", store)
    rc, out, err = cli("ls", root, "--store", store)
    assert (rc, out) == (0, listed_tree)
    assert err == (f"dpip-import ls: {root} is the archive root of {wheel.name}; its files are the tree {tree}\n")
    for path in (f"{root}/foo_bar", f"{root}/tree/foo_bar"):
        assert cli("ls", path, "--store", store)[1] == cli("ls", f"{tree}/foo_bar", "--store", store)[1]


@pytest.mark.parametrize("below", ["foo_bar/core.py", "tree/foo_bar/core.py"])
def test_cat_below_an_archive_root_reads_the_file_of_its_tree(cli: RunCli, store: Path, wheel: Path,
                                                              below: str) -> None:
    (summary,) = imported(cli, store, wheel)
    rc, out, err = cli("cat", f"{summary['root']}/{below}", "--store", store)
    assert (rc, out.encode(), err) == (0, TEXT, "")


@pytest.mark.parametrize(("command", "below", "reason"), [
    ("cat", "", ("is an archive root: `dpip-import fetch` rebuilds the archive, `dpip-import cat ROOT/PATH` "
                 "writes one of its files")),
    ("ls", "/recipe", "is an archive recipe (DAG-CBOR), not UnixFS: `dpip-import inspect ROOT` describes it"),
    ("ls", "/recipe/pages/0", ("is a DAG-CBOR node, not a UnixFS file or directory: `dpip-import export` "
                               "writes its DAG to a CAR")),
])
def test_dag_cbor_nodes_that_are_not_unixfs_are_refused_with_a_hint(cli: RunCli, store: Path, wheel: Path,
                                                                     command: str, below: str, reason: str) -> None:
    (summary,) = imported(cli, store, wheel)
    target = summary["root"] + below
    assert cli(command, target, "--store", store) == (1, "", f"dpip-import {command}: {target}: {reason}\n")


def test_a_name_missing_below_an_archive_root_is_named_from_the_root(cli: RunCli, store: Path, wheel: Path) -> None:
    (summary,) = imported(cli, store, wheel)
    rc, out, err = cli("cat", f"{summary['root']}/foo_bar/nope.py", "--store", store)
    assert (rc, out) == (1, "")
    assert err == f"dpip-import cat: {summary['root']}/tree/foo_bar: no link named 'nope.py'\n"


def test_get_and_export_follow_ipld_paths_through_an_archive_root(cli: RunCli, store: Path, wheel: Path,
                                                                  tmp_path: Path) -> None:
    (summary,) = imported(cli, store, wheel)
    rc, _, err = cli("get", summary["root"], "-o", tmp_path / "files", "--store", store)
    assert (rc, err.splitlines()[0]) == (0, (f"dpip-import get: {summary['root']} is the archive root of "
                                            f"{wheel.name}; its files are the tree {summary['tree']}"))
    assert sorted(p.name for p in (tmp_path / "files").iterdir()) == ["foo_bar", "foo_bar-1.0.dist-info"]
    rc, _, err = cli("get", f"{summary['root']}/tree/foo_bar", "-o", tmp_path / "got", "--store", store)
    assert rc == 0, err
    assert (tmp_path / "got" / "core.py").read_bytes() == TEXT
    rc, _, err = cli("export", f"{summary['root']}/recipe", "-o", tmp_path / "recipe.car", "--store", store)
    assert rc == 0, err
    with BlockStore(store) as opened:
        from importer.archive.recipe import read_root

        recipe = read_root(opened, parse_cid(summary["root"])).recipe
    assert format_cid(recipe) in cli("import-car", "--store", tmp_path / "s2", tmp_path / "recipe.car")[1]


# -- global options, kinds, --car, figures, help -------------------------------------------------

@pytest.mark.parametrize("argv", [
    ("--store", "{store}", "--json", "store", "stats"),
    ("store", "--store", "{store}", "--json", "stats"),
    ("store", "stats", "--store", "{store}", "--json"),
    ("--json", "store", "stats", "--store", "{store}"),
])
def test_global_options_work_before_or_after_the_subcommand(cli: RunCli, store: Path, wheel: Path,
                                                             argv: tuple[str, ...]) -> None:
    imported(cli, store, wheel)
    rc, out, err = cli(*(a.format(store=store) for a in argv))
    assert (rc, err) == (0, "")
    assert json.loads(out)["path"] == str(store)


def test_debug_after_the_subcommand_shows_the_traceback(cli: RunCli, store: Path) -> None:
    with pytest.raises(Exception, match="no block store here"):
        cli("list", "--store", store, "--debug")


def test_wheel_refuses_a_zip_sdist_and_sdist_refuses_a_wheel(cli: RunCli, store: Path, wheel: Path,
                                                             tmp_path: Path) -> None:
    zip_sdist = tmp_path / "foo-1.0.zip"
    zip_sdist.write_bytes(build_zip([ZipEntry(b"foo-1.0/setup.py", TEXT)]))
    assert cli("wheel", "--store", store, zip_sdist) == (1, "", (
        f"dpip-import wheel: {zip_sdist}: not a wheel: it needs a NAME.dist-info/WHEEL member and a "
        "NAME-VERSION-PY-ABI-PLATFORM.whl name (PEP 427); `dpip-import sdist` or `auto` imports it\n"))
    assert cli("sdist", "--store", store, wheel) == (1, "", (
        f"dpip-import sdist: {wheel}: a wheel, not an sdist (a .dist-info/WHEEL member and a PEP 427 name); "
        "`dpip-import wheel` or `auto` imports it\n"))
    renamed = tmp_path / "notawheel.whl"
    renamed.write_bytes(wheel.read_bytes())
    assert cli("wheel", "--store", store, renamed)[0] == 1
    assert not store.exists()
    assert cli("sdist", "--json", "--store", store, zip_sdist)[0] == 0
    assert cli("wheel", "--json", "--store", store, wheel)[0] == 0


def test_car_keeps_the_blocks_in_the_store_too_unless_no_store(cli: RunCli, store: Path, wheel: Path,
                                                               tmp_path: Path) -> None:
    rc, out, err = cli("auto", "--json", "--car", tmp_path / "a.car", "--store", store, wheel)
    assert rc == 0, err
    root = json.loads(out)["root"]
    with BlockStore(store) as opened:
        assert [r.name for r in opened.iter_archives()] == [wheel.name]
    rc, _, err = cli("fetch", root, "-o", tmp_path / "back.whl", "--store", store)
    assert rc == 0, err
    assert sha256_file(tmp_path / "back.whl") == sha256_file(wheel)
    rc, out, err = cli("auto", "--json", "--car", tmp_path / "b.car", "--no-store", "--store", tmp_path / "s2", wheel)
    assert rc == 0, err
    assert json.loads(out)["root"] == root and not (tmp_path / "s2").exists()
    assert (tmp_path / "a.car").read_bytes() == (tmp_path / "b.car").read_bytes()
    refusal = "dpip-import auto: --no-store writes only the CAR: it needs --car (-n computes CIDs without writing)\n"
    assert cli("auto", "--no-store", wheel) == (1, "", refusal)


def test_import_report_gives_logical_bytes_and_bytes_at_rest(cli: RunCli, store: Path, wheel: Path,
                                                             sdist: Path) -> None:
    BlockStore(store).close()
    with sqlite3.connect(store / DB_NAME) as conn:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        before = {bytes(c) for (c,) in conn.execute("SELECT cid FROM blocks")}
    summary = import_json(cli, wheel, store)
    with sqlite3.connect(store / DB_NAME) as conn:
        sizes = {bytes(c): int(size) for c, size in conn.execute("SELECT cid, size FROM blocks")}
        pages_after, page_size = (conn.execute(f"PRAGMA {p}").fetchone()[0] for p in ("page_count", "page_size"))
    with BlockStore(store, create=False) as opened:  # a packed block's payload is its share of its pack
        rows = {c: (sizes[c], stored) for c, _, stored in opened.iter_payloads()}
    new = {c: v for c, v in rows.items() if c not in before}
    assert summary["new_blocks"] == len(new)
    assert summary["new_bytes"] == sum(size for size, _ in new.values())
    assert summary["new_payload_bytes"] == sum(stored for _, stored in new.values()) < summary["new_bytes"]
    assert summary["store_file_growth_bytes"] == (pages_after - pages) * page_size
    rc, out, _ = cli("auto", "--store", store, sdist)
    assert rc == 0
    lines = out.splitlines()
    assert lines[2].startswith("  new in this store: ") and lines[2].endswith(" logical bytes (uncompressed)")
    assert lines[3].startswith("  at rest: ") and " payload bytes stored, store file " in lines[3]


def _commands_and_arguments(parser: argparse.ArgumentParser, prefix: str = "") -> list[tuple[str, str | None]]:
    """(name, help) of every subcommand, positional argument and listed option, depth first."""
    found: list[tuple[str, str | None]] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, child in action.choices.items():
                found.append((f"{prefix}{name}", helps.get(name)))
                found.extend(_commands_and_arguments(child, f"{prefix}{name} "))
        elif not action.option_strings:
            found.append((f"{prefix}<{action.dest}>", action.help))
        elif action.help != argparse.SUPPRESS:  # the global options repeated after a subcommand are hidden
            found.append((f"{prefix}{action.option_strings[-1]}", action.help))
    return found


def test_every_command_option_and_positional_argument_has_help_text() -> None:
    found = _commands_and_arguments(build_parser())
    assert "add --cid-version" in dict(found)  # options are walked, not only commands
    missing = [name for name, text in found if not text]
    assert missing == []


def test_each_subcommand_is_mapped_to_the_module_that_registers_it() -> None:
    whole = build_parser()
    registered = next(a for a in whole._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert set(COMMAND_MODULE) == set(registered)
    for command, module in COMMAND_MODULE.items():
        alone = build_parser([command])
        choices = next(a for a in alone._actions if isinstance(a, argparse._SubParsersAction)).choices
        assert command in choices and {COMMAND_MODULE[c] for c in choices} == {module}


@pytest.mark.parametrize(("argv", "command"), [
    (["push", "x"], "push"), (["--store", "push", "ls", "x"], "ls"), (["--json", "fetch", "a"], "fetch"),
    (["--store=s", "--debug", "store", "gc"], "store"), (["--", "cat", "x"], "cat"), (["--help"], None), ([], None),
])
def test_the_subcommand_is_the_first_word_that_is_no_option_or_option_value(argv: list[str],
                                                                            command: str | None) -> None:
    assert named_command(argv) == command


def test_a_command_line_naming_push_imports_no_other_command_module(tmp_path: Path) -> None:
    """Start-up of one command pays for its own module only (issue 12's whole-process push)."""
    probe = ("import sys; from importer.cli.main import build_parser; build_parser(['push', 'x']); "
             "print(sorted(m for m in sys.modules if m.startswith('importer.cli.')))")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=tmp_path)
    loaded = set(ast.literal_eval(proc.stdout))
    assert "importer.cli.node" in loaded
    assert not loaded & {"importer.cli.archives", "importer.cli.blocks", "importer.cli.mirror", "importer.cli.serve"}
