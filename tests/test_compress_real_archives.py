"""Wheels and sdists built at test time by setuptools, hatchling and flit_core: every member is reproduced."""

from __future__ import annotations

import random
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import pytest

from importer.compress import CompressorParams, ProducerHints, recompress, search_params

#: Each backend's PEP 517 module and the [build-system] table that selects it.
BACKENDS = {
    "setuptools": ("setuptools.build_meta", 'requires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"'),
    "hatchling": ("hatchling.build", 'requires = ["hatchling"]\nbuild-backend = "hatchling.build"'),
    "flit_core": ("flit_core.buildapi", 'requires = ["flit_core"]\nbuild-backend = "flit_core.buildapi"'),
}

#: zip local file header: signature, 5 x u16, 3 x u32, name and extra lengths (APPNOTE 4.3.7): 30 bytes.
_LOCAL_HEADER = struct.Struct("<IHHHHHIIIHH")


def _write_project(root: Path, backend: str) -> None:
    rng = random.Random(backend)
    pkg = root / "demo_pkg"
    pkg.mkdir(parents=True)
    (root / "pyproject.toml").write_text(
        f"[build-system]\n{BACKENDS[backend][1]}\n\n[project]\nname = \"demo-pkg\"\nversion = \"1.0\"\n"
        "description = \"demo\"\nrequires-python = \">=3.8\"\n")
    (root / "README.md").write_text("# demo\n")
    (pkg / "__init__.py").write_text('"""demo."""\n__version__ = "1.0"\n')
    # A member of several deflate blocks, one of incompressible bytes, and an empty one.
    words = [f"word{i}" for i in range(300)]
    (pkg / "data.py").write_text("DATA = [\n" + "".join(f"    {rng.choice(words)!r},\n" for _ in range(40_000)) + "]\n")
    (pkg / "blob.bin").write_bytes(rng.randbytes(100_000))
    (pkg / "empty.txt").write_text("")
    if backend == "setuptools":
        (root / "setup.cfg").write_text("[options.package_data]\ndemo_pkg = *.bin, *.txt\n")
        (root / "MANIFEST.in").write_text("include demo_pkg/*.bin demo_pkg/*.txt\n")


def _build(tmp_path: Path, backend: str, hook: str) -> Path:
    root = tmp_path / "src"
    _write_project(root, backend)
    out = tmp_path / "dist"
    out.mkdir()
    module = BACKENDS[backend][0]
    code = f"import {module} as b; print(b.{hook}({str(out)!r}))"
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return out / result.stdout.strip().splitlines()[-1]


def _raw_member(archive: Path, info: zipfile.ZipInfo) -> bytes:
    with archive.open("rb") as file:
        file.seek(info.header_offset)
        fields = _LOCAL_HEADER.unpack(file.read(_LOCAL_HEADER.size))
        file.seek(fields[9] + fields[10], 1)  # skip name and extra field
        return file.read(info.compress_size)


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_wheel_deflate_members_all_reproduced(tmp_path: Path, backend: str) -> None:
    wheel = _build(tmp_path, backend, "build_wheel")
    with zipfile.ZipFile(wheel) as zf:
        generator = next(line.split(":", 1)[1].strip() for name in zf.namelist() if name.endswith(".dist-info/WHEEL")
                         for line in zf.read(name).decode().splitlines() if line.startswith("Generator:"))
        deflated = [info for info in zf.infolist() if info.compress_type == zipfile.ZIP_DEFLATED]
        assert len(deflated) >= 6
        previous: CompressorParams | None = None
        attempts = []
        for info in deflated:
            raw, content = _raw_member(wheel, info), zf.read(info)
            hints = ProducerHints(generator=generator, member_name=info.filename, previous=previous)
            result = search_params(raw, content, hints=hints)
            assert result.params is not None, f"{info.filename}: {result.reason}"
            assert b"".join(recompress(result.params, [content])) == raw
            previous = result.params
            attempts.append(len(result.attempts))
    assert previous is not None and previous.label == "zlib/l6/m8/s0"
    # The producer's default is the first guess for every member.
    assert attempts == [1] * len(deflated)


def _gzip_body(data: bytes) -> tuple[int, int, int]:
    """(XFL, OS, offset of the deflate body) from an RFC 1952 header."""
    flags, xfl, os_byte = data[3], data[8], data[9]
    pos = 10
    if flags & 0x04:  # FEXTRA: 2-byte length then the field
        pos += 2 + int.from_bytes(data[pos : pos + 2], "little")
    for bit in (0x08, 0x10):  # FNAME, FCOMMENT: zero-terminated
        if flags & bit:
            pos = data.index(b"\x00", pos) + 1
    if flags & 0x02:  # FHCRC
        pos += 2
    return xfl, os_byte, pos


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_sdist_gzip_body_reproduced(tmp_path: Path, backend: str) -> None:
    sdist = _build(tmp_path, backend, "build_sdist")
    data = sdist.read_bytes()
    xfl, os_byte, start = _gzip_body(data)
    inflater = zlib.decompressobj(-15)
    content = inflater.decompress(data[start:])
    body = data[start : len(data) - len(inflater.unused_data)]
    result = search_params(body, content, hints=ProducerHints(gzip_xfl=xfl, gzip_os=os_byte))
    assert result.params is not None and result.params.label == "zlib/l9/m8/s0"
    assert len(result.attempts) == 1
    assert b"".join(recompress(result.params, [content])) == body
