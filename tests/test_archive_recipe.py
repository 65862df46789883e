"""The recipe's member pages encode exactly as DAG-CBOR, recipes round-trip, and hostile recipes fail clearly."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import dag_cbor
import pytest

from importer.archive.importer import ArchiveImporter
from importer.archive.rebuild import fetch
from importer.archive.recipe import (
    ArchiveRoot,
    MemberEntry,
    OuterStream,
    Recipe,
    encode_page,
    read_recipe,
    read_root,
    write_recipe,
    write_root,
)
from importer.errors import InvalidBlock
from importer.profiles import resolve_settings
from importer.sinks.base import MemorySink

from .archive_builders import ZipEntry, build_zip


@pytest.mark.parametrize("count", [0, 1, 23, 24, 255, 256, 4096])
def test_encode_page_equals_dag_cbor_encode(count: int) -> None:
    rng = random.Random(count)
    sizes = [0, 5, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**40]
    sources: list[str | int] = ["", "a", "é/x" * 20, "y" * 300, "z" * 70000, -1, 0, 23, 24, 300]
    entries = [MemberEntry(rng.choice(sizes), rng.choice(sources), rng.choice([-1, 0, 23, 24, -25, -300]))
               for _ in range(count)]
    expected = dag_cbor.encode([[e.skeleton_before, e.source, e.params] for e in entries])
    assert encode_page(entries) == expected


def _imported(tmp_path: Path) -> tuple[MemorySink, ArchiveRoot, Recipe]:
    path = tmp_path / "a.zip"
    path.write_bytes(build_zip([ZipEntry(b"a.py", b"print('a')\n" * 100), ZipEntry(b"b.txt", b"b", method=0)]))
    sink = MemorySink()
    report = ArchiveImporter(resolve_settings(), sink).import_file(str(path))
    root = read_root(sink, report.root)
    return sink, root, read_recipe(sink, root.recipe)


def _with_recipe(sink: MemorySink, root: ArchiveRoot, recipe: Recipe) -> bytes:
    return write_root(dataclasses.replace(root, recipe=write_recipe(recipe, sink)), sink)


@pytest.mark.parametrize(("change", "message"), [
    ({"members": (MemberEntry(0, "a.py", 7),)}, "recipe member entry is out of range"),  # params past the table
    ({"members": (MemberEntry(0, 5, -1),)}, "recipe member source is out of range"),  # extra past the list
    ({"members": (MemberEntry(-1, "a.py", -1),)}, "recipe member entry value -1 is outside 0..9223372036854775807"),
    ({"tail": -3}, "recipe field 'tail' value -3 is outside 0..9223372036854775807"),
    ({"outer": (OuterStream(-1, 9, 0, 10),)}, "recipe outer stream is out of range"),
])
def test_hostile_recipe_indices_are_a_clear_error(change: dict[str, object], message: str, tmp_path: Path) -> None:
    sink, root, recipe = _imported(tmp_path)
    bad = _with_recipe(sink, root, dataclasses.replace(recipe, **change))  # type: ignore[arg-type]
    with pytest.raises(InvalidBlock) as e:
        fetch(sink, bad, None)
    assert e.value.reason == message


def test_recipe_naming_a_path_outside_the_tree_is_a_clear_error(tmp_path: Path) -> None:
    sink, root, recipe = _imported(tmp_path)
    members = (dataclasses.replace(recipe.members[0], source="no/such.py"),) + recipe.members[1:]
    bad = _with_recipe(sink, root, dataclasses.replace(recipe, members=members))
    with pytest.raises(InvalidBlock, match="not in the tree"):
        fetch(sink, bad, None)


def test_unchanged_recipe_round_trips_through_write_and_read(tmp_path: Path) -> None:
    sink, root, recipe = _imported(tmp_path)
    again = read_recipe(sink, write_recipe(recipe, sink))
    assert again == recipe
    assert fetch(sink, _with_recipe(sink, root, again), None) == root
