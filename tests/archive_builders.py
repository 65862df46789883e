"""Build wheels and sdists at test time: with the real PEP 517 backends, the way maturin writes them, and by hand.

* :func:`build_with_backend` writes a tiny generated project and calls one backend's PEP 517 hook
  (``build_wheel``/``build_sdist``) in a subprocess: no network, no build isolation, the backend
  being a test dependency of the venv. Versions 1 and 2 of a project differ in one file only
  (``changed.py``), so a second import shows what dedup saves.
* :func:`maturin_wheel` lays a wheel out as the Rust ``zip`` crate does and compresses every
  member with the project's own miniz (maturin < 1.10) or zlib-ng-as-flate2 (maturin >= 1.10)
  backend, with the feeds maturin uses (see ``importer/compress/hints.py``).
* :func:`build_zip` writes a zip byte by byte (data descriptors with and without signature,
  zip64, extra fields, comments, any method or flag, prepended and trailing bytes, lying CRCs),
  and :func:`tar_bytes`/:func:`gnu_sparse_header` build tars of every flavour.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import random
import struct
import subprocess
import sys
import tarfile
import textwrap
import zipfile
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from importer.compress import CompressorParams, recompress
from importer.compress.backends import BACKENDS

#: PEP 517 backend module of each build backend under test.
BACKEND_MODULES: Final = {
    "setuptools": "setuptools.build_meta",
    "hatchling": "hatchling.build",
    "flit": "flit_core.buildapi",
    "poetry": "poetry.core.masonry.api",
}
#: The ``[build-system] requires`` each backend's pyproject names (only informative: no isolation).
_REQUIRES: Final = {"setuptools": "setuptools", "hatchling": "hatchling", "flit": "flit_core",
                    "poetry": "poetry-core"}
#: A fixed SOURCE_DATE_EPOCH (2023-11-14) so a rebuild of the same project gives the same bytes.
SOURCE_DATE_EPOCH: Final = "1700000000"
#: Bound on one backend build: they take about a second; a hung one must fail the test.
BUILD_TIMEOUT_S: Final = 300

_HOOK = "import importlib, sys; m = importlib.import_module(sys.argv[1]); print(getattr(m, 'build_' + sys.argv[2])(sys.argv[3]))"


def python_source(seed: int, lines: int) -> bytes:
    """Deterministic Python-looking text (compressible like real code), about 40 bytes a line."""
    rng = random.Random(seed)
    words = ["value", "items", "result", "count", "index", "name", "data", "self", "other", "key"]
    out = [f'"""Generated module {seed}."""\n\n']
    for i in range(lines):
        a, b = rng.choice(words), rng.choice(words)
        out.append(f"def f_{seed}_{i}({a}, {b}=None):\n    return {a} * {rng.randrange(1000)} + len(str({b}))\n\n")
    return "".join(out).encode()


def project_module(backend: str) -> str:
    return f"dpip_demo_{backend}"


def project_files(backend: str, version: int) -> dict[str, bytes]:
    """The files of the demo project for ``backend``; versions differ only in ``changed.py``
    (and the version number in pyproject.toml)."""
    module = project_module(backend)
    pyproject = textwrap.dedent(f"""\
        [build-system]
        requires = ["{_REQUIRES[backend]}"]
        build-backend = "{BACKEND_MODULES[backend]}"

        [project]
        name = "{module.replace('_', '-')}"
        version = "{version}.0"
        description = "A generated project that dpip-import's tests build with {backend}"
        requires-python = ">=3.8"
        """)
    if backend == "setuptools":
        pyproject += f'\n[tool.setuptools]\npackages = ["{module}", "{module}.sub"]\n'
    return {
        "pyproject.toml": pyproject.encode(),
        f"{module}/__init__.py": b'"""A generated demo package."""\n',
        f"{module}/big.py": python_source(1, 6000),  # ~400 kB, the same in every version
        f"{module}/changed.py": python_source(1000 + version, 1500),  # ~100 kB, new in every version
        f"{module}/empty.py": b"",
        f"{module}/sub/__init__.py": b"from .data import TABLE\n",
        f"{module}/sub/data.py": b"TABLE = " + repr(list(range(3000))).encode() + b"\n",
    }


def write_project(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)


def build_with_backend(backend: str, kind: str, project: Path, out: Path) -> Path:
    """Run ``build_<kind>`` of ``backend`` on ``project`` in a subprocess; return the built file."""
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH, "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run([sys.executable, "-c", _HOOK, BACKEND_MODULES[backend], kind, str(out)], cwd=project,
                          env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{backend} build_{kind} failed: {proc.stderr.strip()[-2000:]}")
    return out / proc.stdout.strip().splitlines()[-1]


@dataclass(frozen=True, slots=True)
class BuiltProject:
    backend: str
    version: int
    wheel: Path
    sdist: Path


def build_project(backend: str, version: int, folder: Path) -> BuiltProject:
    """Write version ``version`` of the demo project under ``folder`` and build its wheel and sdist."""
    project = folder / f"{backend}-{version}-src"
    write_project(project, project_files(backend, version))
    out = folder / f"{backend}-{version}"
    wheel = build_with_backend(backend, "wheel", project, out)
    sdist = build_with_backend(backend, "sdist", project, out)
    return BuiltProject(backend, version, wheel, sdist)


def built_projects(folder: Path) -> dict[tuple[str, int], BuiltProject]:
    """Versions 1 and 2 of the demo project from every backend, built into ``folder`` by the first
    caller of this test run (``build_once``) and found there by the others."""
    from .oracle_support import build_once

    def build(into: Path) -> None:
        for backend in BACKEND_MODULES:
            for version in (1, 2):
                build_project(backend, version, into)

    build_once(folder, build)
    out = {}
    for backend in BACKEND_MODULES:
        for version in (1, 2):
            files = sorted((folder / f"{backend}-{version}").iterdir())
            wheel = next(p for p in files if p.suffix == ".whl")
            sdist = next(p for p in files if p.name.endswith(".tar.gz"))
            out[backend, version] = BuiltProject(backend, version, wheel, sdist)
    return out


# --- zip, byte by byte -------------------------------------------------------------------------

#: A fixed DOS timestamp (2024-01-02 03:04:06): date = (44 << 9) | (1 << 5) | 2, time = (3 << 11) | (4 << 5) | 3.
DOS_DATE: Final = (44 << 9) | (1 << 5) | 2
DOS_TIME: Final = (3 << 11) | (4 << 5) | 3
#: "Version made by" 0x031E: Unix (3) in the high byte, spec 3.0 in the low byte.
MADE_BY_UNIX: Final = 0x031E
#: External attributes of a regular file, mode 0644, as Unix zips store them (st_mode << 16).
REGULAR_644: Final = (0o100644 << 16)
FLAG_ENCRYPTED: Final = 1 << 0
FLAG_DESCRIPTOR: Final = 1 << 3
FLAG_UTF8: Final = 1 << 11


def deflate(data: bytes, level: int = 6) -> bytes:
    """Raw deflate as CPython's zipfile writes it (zlib, memLevel 8, 32 KiB window)."""
    c = zlib.compressobj(level, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


@dataclass(frozen=True, slots=True)
class ZipEntry:
    """One member as written by :func:`build_zip`.

    ``stored`` overrides the stored bytes (default: ``content`` itself for method 0, deflated at
    level 6 for method 8); ``crc``/``usize`` override what the headers say (for lying archives).
    ``descriptor`` is None, "sig" (PK\\x07\\x08 + crc + sizes) or "nosig" (crc + sizes only).
    """

    name: bytes
    content: bytes = b""
    method: int = 8
    stored: bytes | None = None
    flags: int = 0
    descriptor: str | None = None
    zip64: bool = False
    local_extra: bytes = b""
    central_extra: bytes = b""
    comment: bytes = b""
    external: int = REGULAR_644
    made_by: int = MADE_BY_UNIX
    crc: int | None = None
    usize: int | None = None

    def data(self) -> bytes:
        if self.stored is not None:
            return self.stored
        return deflate(self.content) if self.method == 8 else self.content


def extra_block(header_id: int, body: bytes) -> bytes:
    """One extra-field block: id, length, body (APPNOTE 4.5.1)."""
    return struct.pack("<HH", header_id, len(body)) + body


def build_zip(entries: Sequence[ZipEntry], *, prefix: bytes = b"", comment: bytes = b"", trailing: bytes = b"",
              zip64_end: bool = False) -> bytes:
    """A zip archive with exactly these entries, in order (offsets relative to the zip's own start,
    as ``cat stub zip`` leaves them when ``prefix`` is given)."""
    body = io.BytesIO()
    central = io.BytesIO()
    for e in entries:
        data = e.data()
        crc = zlib.crc32(e.content) if e.crc is None else e.crc
        usize = len(e.content) if e.usize is None else e.usize
        offset = body.tell()
        flags = e.flags | (FLAG_DESCRIPTOR if e.descriptor else 0)
        local_extra = e.local_extra
        if e.zip64:
            local_extra = extra_block(1, struct.pack("<QQ", 0 if e.descriptor else usize,
                                                     0 if e.descriptor else len(data))) + local_extra
        l_crc, l_csize, l_usize = (0, 0, 0) if e.descriptor else (crc, len(data), usize)
        if e.zip64:
            l_csize = l_usize = 0xFFFFFFFF
        version = 45 if e.zip64 else 20
        body.write(struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", version, flags, e.method, DOS_TIME, DOS_DATE,
                               l_crc, l_csize, l_usize, len(e.name), len(local_extra)))
        body.write(e.name + local_extra + data)
        if e.descriptor:
            sig = b"PK\x07\x08" if e.descriptor == "sig" else b""
            sizes = struct.pack("<QQ", len(data), usize) if e.zip64 else struct.pack("<II", len(data), usize)
            body.write(sig + struct.pack("<I", crc) + sizes)
        c_extra = e.central_extra
        c_csize, c_usize, c_offset = len(data), usize, offset
        if e.zip64:
            c_extra = extra_block(1, struct.pack("<QQQ", usize, len(data), offset)) + c_extra
            c_csize = c_usize = c_offset = 0xFFFFFFFF
        central.write(struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", e.made_by, version, flags, e.method,
                                  DOS_TIME, DOS_DATE, crc, c_csize, c_usize, len(e.name), len(c_extra),
                                  len(e.comment), 0, 0, e.external, c_offset))
        central.write(e.name + c_extra + e.comment)
    cd = central.getvalue()
    cd_offset = body.tell()
    out = body.getvalue() + cd
    if zip64_end:
        eocd64_at = len(out)
        out += struct.pack("<4sQHHIIQQQQ", b"PK\x06\x06", 44, 45, 45, 0, 0, len(entries), len(entries), len(cd),
                           cd_offset)
        out += struct.pack("<4sIQI", b"PK\x06\x07", 0, eocd64_at, 1)
        out += struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, len(comment))
    else:
        out += struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, len(entries), len(entries), len(cd), cd_offset,
                           len(comment))
    return prefix + out + comment + trailing


def stdlib_zip(files: Iterable[tuple[str, bytes]], method: int = zipfile.ZIP_DEFLATED, level: int | None = None) -> bytes:
    """A zip written by CPython's zipfile (what setuptools, hatchling, flit and poetry use)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method, compresslevel=level) as z:
        for name, data in files:
            info = zipfile.ZipInfo(name, (2024, 1, 2, 3, 4, 6))
            info.compress_type = method
            info.external_attr = REGULAR_644
            z.writestr(info, data)
    return buf.getvalue()


# --- maturin-style wheels --------------------------------------------------------------------

#: maturin's Generator lines before and after its switch from miniz_oxide to zlib-rs (1.10).
MATURIN_MINIZ: Final = "maturin (1.5.1)"
MATURIN_ZLIB_RS: Final = "maturin (1.16.0)"


def _zlib_ng(feed: str, sync: bool) -> CompressorParams:
    for params in BACKENDS["zlib-ng"].settings():
        if params.level == 6 and params.feed == feed and params.sync_flush == sync:
            return params
    raise LookupError(f"no zlib-ng level-6 setting with feed {feed!r}, sync {sync}")


def maturin_params(generator: str, name: str) -> CompressorParams:
    """The settings a maturin of this generation compresses member ``name`` with.

    < 1.10: miniz_oxide level 6 everywhere. >= 1.10: zlib-rs level 6 through flate2; files copied
    from disk go in 8 KiB ``io::copy`` pieces with a final sync flush, generated metadata in one
    write with the flush, RECORD field by field without it.
    """
    if generator == MATURIN_MINIZ:
        return next(p for p in BACKENDS["miniz"].settings() if p.level == 6 and not p.sync_flush)
    if name.endswith(".dist-info/RECORD"):
        return _zlib_ng("record", False)
    if ".dist-info/" in name:
        return _zlib_ng("whole", True)
    return _zlib_ng("fixed", True)


def maturin_wheel(generator: str, dist: str, version: str, files: dict[str, bytes]) -> bytes:
    """A wheel laid out like maturin's: modules, then dist-info (WHEEL, METADATA, RECORD last)."""
    info = f"{dist}-{version}.dist-info"
    members = dict(files)
    members[f"{info}/WHEEL"] = (f"Wheel-Version: 1.0\nGenerator: {generator}\nRoot-Is-Purelib: false\n"
                                "Tag: cp311-cp311-manylinux_2_17_x86_64\n").encode()
    members[f"{info}/METADATA"] = f"Metadata-Version: 2.4\nName: {dist}\nVersion: {version}\n".encode()
    record = "".join(f"{name},sha256=x,{len(data)}\n" for name, data in members.items())
    members[f"{info}/RECORD"] = (record + f"{info}/RECORD,,\n").encode()
    entries = []
    for name, data in members.items():
        stored = b"".join(recompress(maturin_params(generator, name), [data]))
        entries.append(ZipEntry(name.encode(), data, stored=stored, made_by=0x0314))
    return build_zip(entries)


# --- tar ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TarMember:
    """One tar member for :func:`tar_bytes`: ``kind`` is a tarfile type constant (REGTYPE, DIRTYPE...)."""

    name: str
    data: bytes = b""
    kind: bytes = tarfile.REGTYPE
    linkname: str = ""
    mode: int = 0o644
    pax: dict[str, str] = field(default_factory=dict)


def tar_bytes(members: Sequence[TarMember], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    """An uncompressed tar of ``members`` in tarfile's ``fmt`` (USTAR, GNU or PAX); names may hold
    surrogate escapes, written as the raw bytes they stand for."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt, encoding="utf-8", errors="surrogateescape") as t:
        for m in members:
            info = tarfile.TarInfo(m.name)
            info.type = m.kind
            info.linkname = m.linkname
            info.mode = m.mode
            info.mtime = 1_700_000_000
            info.uname = info.gname = "dpip"
            info.pax_headers = dict(m.pax)
            if m.kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
                info.devmajor, info.devminor = 1, 3
            if m.kind == tarfile.REGTYPE:
                info.size = len(m.data)
                t.addfile(info, io.BytesIO(m.data))
            else:
                t.addfile(info)
    return buf.getvalue()


def _checksum(header: bytearray) -> None:
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\x00 " % sum(header)


def gnu_sparse_header(name: str, real_size: int, segments: Sequence[tuple[int, bytes]]) -> bytes:
    """An old-GNU sparse member (typeflag 'S'): header with up to 4 map entries at byte 386
    (offset, numbytes; 12-byte octal each), isextended at 482, realsize at 483; then the data."""
    if len(segments) > 4:
        raise ValueError("this builder writes no sparse extension blocks: at most 4 segments")
    data = b"".join(chunk for _, chunk in segments)
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 1_700_000_000
    header = bytearray(info.tobuf(tarfile.GNU_FORMAT))
    header[156:157] = b"S"
    for i, (offset, chunk) in enumerate(segments):
        at = 386 + 24 * i
        header[at:at + 12] = b"%011o\x00" % offset
        header[at + 12:at + 24] = b"%011o\x00" % len(chunk)
    header[483:495] = b"%011o\x00" % real_size
    _checksum(header)
    return bytes(header) + data + bytes(-len(data) % 512)


def end_of_tar(records: int = 20) -> bytes:
    """Two zero blocks, padded to a whole record of ``records`` blocks (tarfile's default is 20)."""
    return bytes(512 * records)


# --- containers around a tar ------------------------------------------------------------------


def gzip_python(data: bytes, level: int = 9) -> bytes:
    """gzip as Python's tarfile writes ``w:gz`` (level 9 -> XFL 2, OS 255, mtime fixed)."""
    return gzip.compress(data, compresslevel=level, mtime=1_700_000_000)


def gzip_gnu(data: bytes, level: int = 6) -> bytes:
    """gzip as ``tar czf`` pipes through GNU gzip (OS byte 3), without name or time (``-n``)."""
    return subprocess.run(["gzip", "-n", f"-{level}", "-c"], input=data, capture_output=True, check=True).stdout


def bz2_python(data: bytes) -> bytes:
    return bz2.compress(data, 9)


def xz_python(data: bytes) -> bytes:
    return lzma.compress(data, preset=6)


# --- bombs ----------------------------------------------------------------------------------------

#: Zeros per repeated unit of a bomb stream: 1 MiB deflates to about 1 KiB at level 9.
BOMB_UNIT: Final = 1 << 20


def zero_bomb(size: int, head: bytes = b"") -> bytes:
    """Raw deflate of ``head`` then ``size`` zero bytes (``size`` a multiple of BOMB_UNIT), without
    compressing them all: after the first unit and a sync flush the window holds only zeros, so the
    byte-aligned output of the next unit decodes the same way wherever it is repeated."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = c.compress(head) + c.compress(bytes(BOMB_UNIT)) + c.flush(zlib.Z_SYNC_FLUSH)
    unit = c.compress(bytes(BOMB_UNIT)) + c.flush(zlib.Z_SYNC_FLUSH)
    return first + unit * (size // BOMB_UNIT - 1) + c.flush(zlib.Z_FINISH)


def gzip_wrap(deflated: bytes, crc: int = 0, size: int = 0) -> bytes:
    """A gzip member around a raw deflate stream (RFC 1952: 10-byte header, no flags, OS 255)."""
    return b"\x1f\x8b\x08\x00" + struct.pack("<I", 0) + b"\x00\xff" + deflated + struct.pack("<II", crc, size & 0xFFFFFFFF)
