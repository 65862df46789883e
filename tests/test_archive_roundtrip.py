"""Real wheels and sdists, built at test time by setuptools, hatchling, flit-core, poetry-core and maturin's
compressors, rebuild byte for byte from the store, and a second version adds only what changed."""

from __future__ import annotations

import gzip
import io
import tarfile
import zipfile
import zlib
from pathlib import Path

import pytest

from importer.compress import recompress

from .archive_builders import (
    BACKEND_MODULES,
    MATURIN_MINIZ,
    MATURIN_ZLIB_RS,
    BuiltProject,
    built_projects,
    bz2_python,
    gzip_gnu,
    gzip_python,
    gzip_wrap,
    maturin_params,
    maturin_wheel,
    project_files,
    project_module,
    python_source,
    xz_python,
)
from .archive_checks import assert_roundtrip, import_json
from .conftest import RunCli
from .oracle_support import shared_dir

BACKENDS = sorted(BACKEND_MODULES)


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, int], BuiltProject]:
    """Versions 1 and 2 of the demo project, wheel and sdist, from every backend (built once per run)."""
    return built_projects(shared_dir(tmp_path_factory) / "archive-projects")


@pytest.mark.parametrize("backend", BACKENDS)
def test_backend_wheel_rebuilds_identically_with_every_member_replayed(
        built: dict[tuple[str, int], BuiltProject], backend: str, tmp_path: Path, cli: RunCli) -> None:
    wheel = built[backend, 1].wheel
    summary = assert_roundtrip(cli, wheel, tmp_path / "store", kind="wheel")
    assert summary["format"] == "zip"
    assert summary["verbatim_bytes"] == 0, summary["member_detail"]
    with zipfile.ZipFile(wheel) as z:
        names = [i.filename for i in z.infolist()]
        assert summary["members"] == len(names)
        assert summary["replayed_bytes"] == sum(i.file_size for i in z.infolist())
    assert [m["name"] for m in summary["member_detail"]] == names
    module = project_module(backend)
    assert {m["path"] for m in summary["member_detail"]} >= {f"{module}/big.py", f"{module}/changed.py"}


@pytest.mark.parametrize("backend", BACKENDS)
def test_backend_sdist_rebuilds_identically_with_its_gzip_stream_replayed(
        built: dict[tuple[str, int], BuiltProject], backend: str, tmp_path: Path, cli: RunCli) -> None:
    sdist = built[backend, 1].sdist
    summary = assert_roundtrip(cli, sdist, tmp_path / "store", kind="sdist")
    assert summary["format"] == "tar.gz"
    assert summary["verbatim_bytes"] == 0
    assert len(summary["outer"]) == 1 and "kept verbatim" not in summary["outer"][0]
    with tarfile.open(sdist) as t:
        assert summary["members"] == len(t.getmembers())


@pytest.mark.parametrize("backend", BACKENDS)
def test_second_version_adds_about_the_changed_file(
        built: dict[tuple[str, int], BuiltProject], backend: str, tmp_path: Path, cli: RunCli) -> None:
    changed = len(project_files(backend, 2)[f"{project_module(backend)}/changed.py"])
    unchanged = sum(len(data) for data in project_files(backend, 2).values()) - changed
    for kind in ("wheel", "sdist"):
        store = tmp_path / f"store-{kind}"  # a wheel and its sdist share files: one store each
        first = getattr(built[backend, 1], kind)
        second = getattr(built[backend, 2], kind)
        one = import_json(cli, first, store)
        two = import_json(cli, second, store)
        assert one["new_bytes"] > changed + unchanged  # the first version stores everything
        # The second stores the changed file plus metadata, directories, skeleton and recipe:
        # a few kB, far below the unchanged files it shares with the first.
        assert changed <= two["new_bytes"] <= changed + 16 * 1024, (kind, two)
        assert two["new_blocks"] < two["blocks"]


def test_second_version_report_prints_new_blocks_and_bytes(
        built: dict[tuple[str, int], BuiltProject], tmp_path: Path, cli: RunCli) -> None:
    store = tmp_path / "store"
    rc, out, _ = cli("wheel", "--store", store, built["hatchling", 1].wheel)
    assert rc == 0
    rc, out, _ = cli("wheel", "--store", store, built["hatchling", 2].wheel)
    assert rc == 0
    new, at_rest = out.splitlines()[2:4]
    assert new.startswith("  new in this store: ") and new.endswith(" logical bytes (uncompressed)")
    assert at_rest.startswith("  at rest: ") and " payload bytes stored, store file " in at_rest


def _maturin_files() -> dict[str, bytes]:
    return {
        "rustpkg/__init__.py": b"from .rustpkg import *\n",
        # An extension module: mostly incompressible with compressible runs, over many 8 KiB feeds.
        "rustpkg/rustpkg.cpython-311-x86_64-linux-gnu.so": python_source(7, 800) + bytes(range(256)) * 300,
        "rustpkg/py.typed": b"",
    }


@pytest.mark.parametrize("generator", [MATURIN_MINIZ, MATURIN_ZLIB_RS])
def test_maturin_style_wheel_rebuilds_identically_with_its_own_compressor(
        generator: str, tmp_path: Path, cli: RunCli) -> None:
    wheel = tmp_path / "rustpkg-0.1.0-cp311-cp311-manylinux_2_17_x86_64.whl"
    wheel.write_bytes(maturin_wheel(generator, "rustpkg", "0.1.0", _maturin_files()))
    summary = assert_roundtrip(cli, wheel, tmp_path / "store", kind="wheel")
    assert summary["producer"] == generator
    assert summary["verbatim_bytes"] == 0, summary["member_detail"]
    used = {m["params"].split("/")[0] for m in summary["member_detail"] if m["how"] == "replayed"}
    assert used == ({"miniz"} if generator == MATURIN_MINIZ else {"zlib-ng"})


def test_maturin_style_sdist_rebuilds_identically_with_miniz_gzip(
        built: dict[tuple[str, int], BuiltProject], tmp_path: Path, cli: RunCli) -> None:
    """maturin writes sdists through flate2's GzEncoder on miniz_oxide: level 6, XFL 0, OS 255."""
    tar = _sdist_tar(built)
    body = b"".join(recompress(maturin_params(MATURIN_MINIZ, "x"), [tar]))
    sdist = tmp_path / "rustpkg-0.1.0.tar.gz"
    sdist.write_bytes(gzip_wrap(body, zlib.crc32(tar), len(tar)))
    summary = assert_roundtrip(cli, sdist, tmp_path / "store", kind="sdist")
    assert summary["outer"][0].startswith("deflate: miniz/l6"), summary["outer"]


def _sdist_tar(built: dict[tuple[str, int], BuiltProject]) -> bytes:
    with gzip.open(built["setuptools", 1].sdist) as f:
        return f.read()


@pytest.mark.parametrize("suffix, wrap", [
    (".tar.gz", gzip_python), (".tgz", gzip_python), (".tar.bz2", bz2_python), (".tar.xz", xz_python),
    (".tar", lambda data: data),
])
def test_sdist_in_every_container_rebuilds_identically(
        built: dict[tuple[str, int], BuiltProject], tmp_path: Path, cli: RunCli, suffix: str,
        wrap: object) -> None:
    sdist = tmp_path / f"dpip-demo-setuptools-1.0{suffix}"
    sdist.write_bytes(wrap(_sdist_tar(built)))  # type: ignore[operator]
    summary = assert_roundtrip(cli, sdist, tmp_path / "store", kind="sdist")
    assert summary["verbatim_bytes"] == 0
    assert all("kept verbatim" not in line for line in summary["outer"])


def test_sdist_compressed_by_gnu_gzip_rebuilds_identically(
        built: dict[tuple[str, int], BuiltProject], tmp_path: Path, cli: RunCli) -> None:
    sdist = tmp_path / "dpip-demo-setuptools-1.0.tar.gz"
    sdist.write_bytes(gzip_gnu(_sdist_tar(built), 9))
    summary = assert_roundtrip(cli, sdist, tmp_path / "store", kind="sdist")
    assert summary["outer"] == ["deflate: gnu-gzip/l9"] or summary["outer"][0].startswith("deflate: gnu-gzip")


def test_zip_sdist_rebuilds_identically(
        built: dict[tuple[str, int], BuiltProject], tmp_path: Path, cli: RunCli) -> None:
    buf = io.BytesIO()
    with tarfile.open(built["setuptools", 1].sdist) as t, zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for info in t.getmembers():
            f = t.extractfile(info)
            z.writestr(info.name + ("/" if info.isdir() else ""), f.read() if f else b"")
    sdist = tmp_path / "dpip-demo-setuptools-1.0.zip"
    sdist.write_bytes(buf.getvalue())
    summary = assert_roundtrip(cli, sdist, tmp_path / "store", kind="sdist")
    assert summary["format"] == "zip" and summary["verbatim_bytes"] == 0
