"""Synthetic wheels and sdists with known contents, for the dedup benchmark's tests."""

from __future__ import annotations

import gzip
import io
import random
import shutil
import tarfile
import zipfile
from pathlib import Path

import pytest

#: delta-zstd runs the zstd command-line tool (``--patch-from``); without it those tests skip.
needs_zstd = pytest.mark.skipif(shutil.which("zstd") is None, reason="the zstd command-line tool is not installed")

#: A fixed timestamp so the same members always make the same archive bytes.
STAMP = (2020, 1, 1, 0, 0, 0)
MTIME = 1577836800


def random_bytes(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def source_text(seed: int, size: int) -> bytes:
    """Source-like text, distinct per seed, that zstd shrinks but does not erase."""
    rng = random.Random(seed)
    words = ["def", "return", "self", "import", "class", "value", "None", f"name{seed}", f"v{rng.random()}"]
    out = bytearray()
    while len(out) < size:
        out += (" ".join(rng.choice(words) for _ in range(6)) + f" # {rng.randrange(10**9)}\n").encode()
    return bytes(out[:size])


def make_wheel(project: str, version: str, files: dict[str, bytes]) -> bytes:
    """A wheel: ``files`` under the package dir, plus a dist-info with METADATA naming the version."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(zipfile.ZipInfo(f"{project}/{name}", STAMP), data, zipfile.ZIP_DEFLATED)
        info = f"{project}-{version}.dist-info"
        z.writestr(zipfile.ZipInfo(f"{info}/METADATA", STAMP), f"Name: {project}\nVersion: {version}\n")
    return buf.getvalue()


def make_sdist(project: str, version: str, files: dict[str, bytes]) -> bytes:
    """A ``.tar.gz`` sdist with the files under ``project-version/``."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, data in files.items():
            info = tarfile.TarInfo(f"{project}-{version}/{name}")
            info.size, info.mtime = len(data), MTIME
            t.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


def write(tmp: Path, name: str, data: bytes) -> Path:
    path = tmp / name
    path.write_bytes(data)
    return path
