"""The benchmark's strategies: decoding once, every strategy's blocks give the input back, the registry."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import pytest

from bench.decoded import DecodedArchive, decode_archive
from bench.delta_zstd import delta_restore
from bench.strategies import STRATEGIES, V0, InMemoryChunker, get_strategies, store_structural
from importer.archive.importer import ArchiveImporter
from importer.archive.recipe import read_root
from importer.chunkers import parse_chunker
from importer.dag.cid import RAW, split_cid
from importer.dag.reader import iter_file, resolve
from importer.errors import ImporterError
from importer.sinks.base import MemorySink

from .bench_archives import make_sdist, make_wheel, needs_zstd, random_bytes

FILES = {
    "__init__.py": b"from .core import run\n" * 50,
    "core.py": b"def run():\n    return 42\n" * 4000,
    "data/blob.bin": random_bytes(600_000, 1),
    "empty.txt": b"",
}


def _decoded(kind: str, version: str = "1.0", files: dict[str, bytes] = FILES) -> DecodedArchive:
    if kind == "wheel":
        return decode_archive(make_wheel("demo", version, files), f"demo-{version}-py3-none-any.whl", "wheel")
    return decode_archive(make_sdist("demo", version, files), f"demo-{version}.tar.gz", "sdist")


def test_registry_has_every_strategy_the_issue_names() -> None:
    wanted = {"whole", "fixed-262144", "fixed-1048576", "rabin", "buzhash", "structural", "structural-v1",
              "structural+buzhash", "structural+rabin", "structural+fastcdc", "stream-buzhash", "delta-zstd",
              "structural+nested", "structural+nested+buzhash"}
    assert wanted <= set(STRATEGIES)
    assert sum(name.startswith("fastcdc-") for name in STRATEGIES) >= 3


def test_unknown_strategy_is_an_error_naming_it() -> None:
    with pytest.raises(KeyError, match="nope"):
        get_strategies(["whole", "nope"])


def test_sdist_body_is_the_decompressed_tar_stream() -> None:
    data = make_sdist("demo", "1.0", FILES)
    decoded = decode_archive(data, "demo-1.0.tar.gz", "sdist")
    assert decoded.body == gzip.decompress(data)
    assert decoded.format == "tar.gz"
    assert {m.path: decoded.content(m) for m in decoded.members if m.member.kind == "file"} == {
        f"demo-1.0/{name}": data for name, data in FILES.items()}


def test_wheel_members_decode_to_their_contents() -> None:
    decoded = _decoded("wheel")
    contents = {m.path: decoded.content(m) for m in decoded.members}
    assert contents["demo/data/blob.bin"] == FILES["data/blob.bin"]
    assert contents["demo-1.0.dist-info/METADATA"] == b"Name: demo\nVersion: 1.0\n"


def test_corrupt_archive_raises_an_importer_error() -> None:
    data = bytearray(make_wheel("demo", "1.0", FILES))
    data[len(data) // 3: len(data) // 3 + 64] = bytes(64)
    with pytest.raises(ImporterError):
        decode_archive(bytes(data), "demo-1.0-py3-none-any.whl", "wheel")


@pytest.mark.parametrize("spec", ["buzhash", "rabin", "fastcdc-4096-16384-65536"])
def test_in_memory_chunker_cuts_where_the_stream_chunker_does(spec: str) -> None:
    data = random_bytes(3_000_000, 7)
    streamed = list(parse_chunker(spec).chunks(io.BytesIO(data)))
    assert list(InMemoryChunker(parse_chunker(spec)).chunks(io.BytesIO(data))) == streamed
    assert len(streamed) > 3


def _reassembled(name: str, archive: DecodedArchive, previous: DecodedArchive | None) -> dict[str, bytes]:
    """What the strategy's blocks give back: the archive, the body, or each member's content."""
    strategy = STRATEGIES[name]
    sink = MemorySink()
    root = strategy.store(archive, previous, sink)
    if strategy.family == "whole":
        return {"archive": sink.get(root)}
    if strategy.family == "archive":
        return {"archive": b"".join(iter_file(sink, root))}
    if strategy.family == "stream":
        return {"body": b"".join(iter_file(sink, root))}
    if strategy.family == "delta":
        block = sink.get(root)
        if block == archive.data:
            return {"archive": block}
        return {"body": delta_restore(previous, block)}
    tree = read_root(sink, root).tree
    return {m.path: b"".join(iter_file(sink, resolve(sink, tree, m.path)))
            for m in archive.members if m.path is not None and m.member.kind == "file"}


@pytest.mark.parametrize("kind", ["wheel", "sdist"])
@pytest.mark.parametrize("name", [pytest.param(n, marks=needs_zstd) if STRATEGIES[n].family == "delta" else n
                                  for n in sorted(STRATEGIES)])
def test_every_strategy_reassembles_its_input(name: str, kind: str) -> None:
    previous = _decoded(kind, "0.9", {**FILES, "core.py": b"def run():\n    return 41\n" * 4000})
    archive = _decoded(kind)
    got = _reassembled(name, archive, previous)
    expected = {"archive": archive.data, "body": archive.body,
                **{m.path: archive.content(m) for m in archive.members if m.path is not None}}
    assert got and all(expected[key] == value for key, value in got.items())
    if STRATEGIES[name].family == "structural":
        assert len(got) == len(FILES) + (1 if kind == "wheel" else 0)


@needs_zstd
def test_delta_first_version_decompresses_alone() -> None:
    archive = _decoded("sdist")
    sink = MemorySink()
    root = STRATEGIES["delta-zstd"].store(archive, None, sink)
    assert delta_restore(None, sink.get(root)) == archive.body


@needs_zstd
def test_delta_patch_of_a_small_change_is_small() -> None:
    previous = _decoded("wheel", "1.0")
    archive = _decoded("wheel", "1.0", {**FILES, "core.py": FILES["core.py"] + b"# one more line\n"})
    sink = MemorySink()
    root = STRATEGIES["delta-zstd"].store(archive, previous, sink)
    assert split_cid(root)[1] == RAW
    assert len(sink.get(root)) < 200


@needs_zstd
def test_the_bound_at_level_19_is_no_larger_than_at_level_9_and_restores() -> None:
    previous = _decoded("sdist", "1.0")
    archive = _decoded("sdist", "1.0", {**FILES, "core.py": FILES["core.py"] + b"# one more line\n" * 50})
    patches = {}
    for name in ("delta-zstd", "delta-zstd-9"):
        sink = MemorySink()
        patches[name] = sink.get(STRATEGIES[name].store(archive, previous, sink))
        assert delta_restore(previous, patches[name]) == archive.body
    assert len(patches["delta-zstd"]) <= len(patches["delta-zstd-9"])
    assert "-19 --long=31" in STRATEGIES["delta-zstd"].summary


def _body_only(body: bytes) -> DecodedArchive:
    return DecodedArchive(filename="x.tar", kind="sdist", data=body, sha256=b"", format="tar", body=body, members=(),
                          skeleton_size=0, skeleton_frame=b"", outer=(None,), tail=0)


@needs_zstd
def test_delta_reaches_the_start_of_a_reference_larger_than_a_zstd_dictionary_index() -> None:
    # A raw-content zstd dictionary is indexed over its last 16 MiB only at level 9; the patch-from
    # reference must be searched whole: here the unchanged part sits in the first 24 MiB.
    head = random_bytes(24 * 1024 * 1024, 9)
    previous = _body_only(head + random_bytes(8 * 1024 * 1024, 10))
    archive = _body_only(head + b"a new tail")
    sink = MemorySink()
    root = STRATEGIES["delta-zstd"].store(archive, previous, sink)
    assert len(sink.get(root)) < 64 * 1024
    assert delta_restore(previous, sink.get(root)) == archive.body


@pytest.mark.parametrize("kind", ["wheel", "sdist"])
def test_structural_builds_the_importers_tree_and_nearly_its_bytes(kind: str, tmp_path: Path) -> None:
    archive = _decoded(kind)
    path = tmp_path / archive.filename
    path.write_bytes(archive.data)
    real = MemorySink()
    report = ArchiveImporter(V0, real, workers=1).import_file(str(path))
    mine = MemorySink()
    root = store_structural(archive, V0, mine)
    assert read_root(mine, root).tree == report.tree
    # Only the recipe and root differ (the params table): a few bytes, not the content.
    assert len(set(real.blocks) - set(mine.blocks)) <= 3
    assert abs(sum(map(len, real.blocks.values())) - sum(map(len, mine.blocks.values()))) < 256
