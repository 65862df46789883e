"""Benchmark: how many deflate members of real archives the compressor registry reproduces, and how fast.

For every deflated member of each wheel (and the gzip body of each .tar.gz sdist) given, runs
``search_params`` with the hints the importer has (WHEEL ``Generator:``, gzip XFL/OS, the previous
member's winner), then ``recompress`` with the winner and checks the bytes again. Prints, per
producer: members, uncompressed MB, share of uncompressed bytes and members reproduced, attempts
per member (mean/max), and MB/s (uncompressed bytes / seconds) of search and of recompress; then
the members nothing reproduced, with the reason.

Usage: ``python -m bench.perf_compress [PATH ...] [--max-attempts N]``: PATHs are wheels, sdists
(.tar.gz, .tgz, .tar.bz2, .tar.xz) or directories of them. Without PATHs it builds one small demo wheel and sdist each with setuptools,
hatchling and flit_core (no network) and measures those.
"""

from __future__ import annotations

import argparse
import bz2
import dataclasses
import lzma
import re
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from importer.compress import ProducerHints, check_compressors, recompress, search_params

MB = 1_000_000
#: zip local file header (APPNOTE 4.3.7): 30 bytes; name and extra lengths are its last two fields.
_LOCAL_HEADER = struct.Struct("<IHHHHHIIIHH")
_DEMO_BACKENDS = {"setuptools": "setuptools.build_meta", "hatchling": "hatchling.build",
                  "flit_core": "flit_core.buildapi"}


@dataclass
class Tally:
    """Figures of one producer."""

    members: int = 0
    reproduced: int = 0
    bytes_total: int = 0
    bytes_reproduced: int = 0
    attempts: list[int] = field(default_factory=list)
    search_s: float = 0.0
    rebuild_s: float = 0.0
    winners: dict[str, int] = field(default_factory=lambda: defaultdict(int))


@dataclass(frozen=True)
class Stream:
    """One compressed stream to reproduce."""

    archive: str
    member: str
    raw: bytes
    content: bytes
    hints: ProducerHints
    producer: str
    kind: str = "deflate"


def _producer(generator: str) -> str:
    """"maturin (1.5.1)" → "maturin 1.5"; "bdist_wheel (0.43.0)" → "bdist_wheel 0.43"."""
    name = generator.split()[0] if generator else "unknown"
    match = re.search(r"(\d+)\.(\d+)", generator)
    return f"{name} {match[1]}.{match[2]}" if match else name


def iter_wheel(path: Path) -> Iterator[tuple[zipfile.ZipInfo, bytes, bytes, str]]:
    with zipfile.ZipFile(path) as zf, path.open("rb") as file:
        generator = ""
        for name in zf.namelist():
            if name.endswith(".dist-info/WHEEL"):
                for line in zf.read(name).decode("utf-8", "replace").splitlines():
                    if line.startswith("Generator:"):
                        generator = line.split(":", 1)[1].strip()
        for info in zf.infolist():
            if info.compress_type != zipfile.ZIP_DEFLATED:
                continue
            file.seek(info.header_offset)
            fields = _LOCAL_HEADER.unpack(file.read(_LOCAL_HEADER.size))
            file.seek(fields[9] + fields[10], 1)
            yield info, file.read(info.compress_size), zf.read(info), generator


def gzip_body(data: bytes) -> tuple[int, int, bytes, bytes]:
    """(XFL, OS, deflate body, content) of the first member of a gzip file (RFC 1952)."""
    flags, xfl, os_byte, pos = data[3], data[8], data[9], 10
    if flags & 0x04:
        pos += 2 + int.from_bytes(data[pos : pos + 2], "little")
    for bit in (0x08, 0x10):
        if flags & bit:
            pos = data.index(b"\x00", pos) + 1
    if flags & 0x02:
        pos += 2
    inflater = zlib.decompressobj(-15)
    content = inflater.decompress(data[pos:])
    return xfl, os_byte, data[pos : len(data) - len(inflater.unused_data)], content


def iter_streams(paths: list[Path]) -> Iterator[Stream]:
    """Every deflate stream of the archives; hints carry no ``previous`` (``measure`` adds it)."""
    for path in paths:
        if path.suffix == ".whl":
            for info, raw, content, generator in iter_wheel(path):
                hints = ProducerHints(generator=generator, member_name=info.filename)
                yield Stream(path.name, info.filename, raw, content, hints, _producer(generator))
        elif path.name.endswith((".tar.gz", ".tgz")):
            xfl, os_byte, raw, content = gzip_body(path.read_bytes())
            yield Stream(path.name, "(gzip body)", raw, content, ProducerHints(gzip_xfl=xfl, gzip_os=os_byte),
                         f"sdist gzip OS={os_byte} XFL={xfl}")
        elif path.name.endswith((".tar.bz2", ".tar.xz")):
            kind = "bz2" if path.name.endswith(".bz2") else "xz"
            raw = path.read_bytes()
            content = bz2.decompress(raw) if kind == "bz2" else lzma.decompress(raw)
            yield Stream(path.name, f"({kind} stream)", raw, content, ProducerHints(), f"sdist {kind}", kind)


def build_demo(out: Path) -> list[Path]:
    """A demo wheel and sdist per build backend, built offline in ``out``."""
    built = []
    for backend, module in _DEMO_BACKENDS.items():
        root = out / backend
        pkg = root / "demo_pkg"
        pkg.mkdir(parents=True)
        (root / "pyproject.toml").write_text(
            f'[build-system]\nrequires = ["{backend}"]\nbuild-backend = "{module}"\n\n'
            '[project]\nname = "demo-pkg"\nversion = "1.0"\ndescription = "demo"\n')
        (pkg / "__init__.py").write_text('"""demo."""\n')
        (pkg / "big.py").write_text("".join(f"VALUE_{i} = {i * 7919 % 100003}\n" for i in range(60_000)))
        dist = out / f"dist-{backend}"  # each backend its own: hatchling and flit name wheels alike
        dist.mkdir()
        for hook in ("build_wheel", "build_sdist"):
            code = f"import {module} as b; print(b.{hook}({str(dist)!r}))"
            result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True,
                                    check=True)
            built.append(dist / result.stdout.strip().splitlines()[-1])
    return built


def collect(args: list[str]) -> list[Path]:
    paths: list[Path] = []
    for arg in args:
        path = Path(arg).expanduser()
        if path.is_dir():
            paths += sorted(p for p in path.rglob("*") if p.name.endswith((".whl", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")))
        else:
            paths.append(path)
    return paths


def measure(paths: list[Path], max_attempts: int | None) -> tuple[dict[str, Tally], list[str]]:
    tallies: dict[str, Tally] = defaultdict(Tally)
    misses: list[str] = []
    archive, previous = "", None
    for stream in iter_streams(paths):
        if stream.archive != archive:  # the previous winner is only a hint within one archive
            archive, previous = stream.archive, None
        tally = tallies[stream.producer]
        hints = dataclasses.replace(stream.hints, previous=previous)
        start = time.perf_counter()
        result = search_params(stream.raw, stream.content, stream.kind, hints, max_attempts=max_attempts)
        tally.search_s += time.perf_counter() - start
        tally.members += 1
        tally.bytes_total += len(stream.content)
        tally.attempts.append(len(result.attempts))
        previous = result.params or previous
        if result.params is None:
            misses.append(f"{stream.archive} {stream.member} ({len(stream.content):,} B): {result.reason}")
            continue
        start = time.perf_counter()
        rebuilt = b"".join(recompress(result.params, [stream.content]))
        tally.rebuild_s += time.perf_counter() - start
        if rebuilt != stream.raw:
            raise SystemExit(f"{stream.archive} {stream.member}: recompress differs from the search result")
        tally.reproduced += 1
        tally.bytes_reproduced += len(stream.content)
        tally.winners[result.params.label] += 1
    return tallies, misses


def report(tallies: dict[str, Tally], misses: list[str]) -> None:
    head = (f"{'producer':<26} {'members':>8} {'MB':>8} {'bytes %':>8} {'members %':>9} {'att mean':>8} "
            f"{'att max':>7} {'find MB/s':>9} {'rebuild MB/s':>12}  winners")
    print(head)
    print("-" * len(head))
    total = Tally()
    for producer, t in sorted(tallies.items()):
        _row(producer, t)
        total.members += t.members
        total.reproduced += t.reproduced
        total.bytes_total += t.bytes_total
        total.bytes_reproduced += t.bytes_reproduced
        total.attempts += t.attempts
        total.search_s += t.search_s
        total.rebuild_s += t.rebuild_s
    print("-" * len(head))
    _row("all", total)
    if misses:
        print(f"\nnot reproduced ({len(misses)}):")
        for line in misses[:40]:
            print("  " + line)


def _row(producer: str, t: Tally) -> None:
    share = 100 * t.bytes_reproduced / t.bytes_total if t.bytes_total else 100.0
    members = 100 * t.reproduced / t.members if t.members else 100.0
    mean = sum(t.attempts) / len(t.attempts) if t.attempts else 0.0
    find = t.bytes_total / MB / t.search_s if t.search_s else 0.0
    rebuild = t.bytes_reproduced / MB / t.rebuild_s if t.rebuild_s else 0.0
    winners = ", ".join(f"{k} x{v}" for k, v in sorted(t.winners.items(), key=lambda kv: -kv[1]))
    print(f"{producer:<26} {t.members:>8} {t.bytes_total / MB:>8.2f} {share:>8.2f} {members:>9.1f} {mean:>8.2f} "
          f"{max(t.attempts, default=0):>7} {find:>9.1f} {rebuild:>12.1f}  {winners}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("paths", nargs="*", help="wheels, .tar.gz sdists, or directories of them")
    parser.add_argument("--max-attempts", type=int, default=None, help="cap on settings tried per member")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        paths = collect(args.paths) if args.paths else build_demo(Path(tmp))
        print(f"{len(paths)} archives: {', '.join(p.name for p in paths)}")
        start = time.perf_counter()
        statuses = check_compressors()
        print(f"golden check of {sum(s.checked for s in statuses.values())} settings: "
              f"{time.perf_counter() - start:.2f} s; unusable: "
              f"{[f'{n}: {s.reason}' for n, s in statuses.items() if not s.usable] or 'none'}\n")
        tallies, misses = measure(paths, args.max_attempts)
    report(tallies, misses)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
