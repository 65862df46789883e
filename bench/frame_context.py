"""``python -m bench.frame_context``: how much a first release loses to frames, and what a shared base would win back.

A store compresses a release's first version in frames (1 MiB in cold packs) so that one block
is read by decoding one frame; one ``zstd -19 --long=31`` stream over the whole tar sees every
file at once. This prints, for one sdist or wheel, its unique member files concatenated in archive
order (the order the store writes them) and compressed at ``--level``:

* in frames of each ``--frame-sizes`` (each frame alone, as cold packs make them);
* in frames of the first size, each made with the first ``--base`` bytes of the same content as a
  raw-content zstd dictionary (the frames inside the base compressed alone): what a store-wide
  "base" that cold frames refer to, as a git pack's deltas refer to their bases, would give
  while a read still decodes one small frame;
* as one frame with a window over everything (``--long=31``): what a single stream reaches.

    python -m bench.frame_context ~/.cache/dpip-bench/sqlalchemy-2.1.5.tar.gz
"""

from __future__ import annotations

import argparse
import tarfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import zstandard

from .report import MiB

#: zstd's largest window (2 GiB), what ``zstd --long=31`` uses.
LONG_WINDOW_LOG: Final = 31


def unique_members(archive: Path) -> list[bytes]:
    """The archive's regular members in archive order, each distinct content once (as the store dedups)."""
    if archive.name.endswith((".whl", ".zip")):
        with zipfile.ZipFile(archive) as zf:
            contents = [zf.read(info) for info in zf.infolist() if not info.is_dir()]
    else:
        with tarfile.open(archive) as tf:
            contents = []
            for member in tf:
                handle = tf.extractfile(member) if member.isfile() else None
                if handle is not None:
                    contents.append(handle.read())
    seen: set[bytes] = set()
    unique = []
    for data in contents:
        if data not in seen:
            seen.add(data)
            unique.append(data)
    return unique


def frames(members: list[bytes], size: int) -> Iterator[bytes]:
    """Members grouped in order into frames that close once they hold ``size`` bytes."""
    current = bytearray()
    for data in members:
        current += data
        if len(current) >= size:
            yield bytes(current)
            current = bytearray()
    if current:
        yield bytes(current)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.frame_context", description=__doc__.split("\n")[0])
    parser.add_argument("archive", type=Path)
    parser.add_argument("--level", type=int, default=19)
    parser.add_argument("--frame-sizes", type=int, nargs="+", default=[1, 8], metavar="MIB")
    parser.add_argument("--base", type=int, default=8, metavar="MIB", help="raw-content dictionary size (default 8)")
    args = parser.parse_args(argv)
    members = unique_members(args.archive)
    content = b"".join(members)
    print(f"{args.archive.name}: {len(members):,} unique files, {len(content):,} B, zstd level {args.level}")
    plain = zstandard.ZstdCompressor(level=args.level)
    for mib in args.frame_sizes:
        start = time.perf_counter()
        size = sum(len(plain.compress(frame)) for frame in frames(members, mib * MiB))
        print(f"  frames of {mib} MiB: {size:,} B ({time.perf_counter() - start:.0f} s)")
    first = args.frame_sizes[0] * MiB
    base = zstandard.ZstdCompressionDict(content[:args.base * MiB], dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    with_base = zstandard.ZstdCompressor(level=args.level, dict_data=base)
    start, size, offset = time.perf_counter(), 0, 0
    for frame in frames(members, first):
        size += len((plain if offset < args.base * MiB else with_base).compress(frame))
        offset += len(frame)
    print(f"  frames of {args.frame_sizes[0]} MiB with the first {args.base} MiB as a raw-content base: "
          f"{size:,} B ({time.perf_counter() - start:.0f} s)")
    params = zstandard.ZstdCompressionParameters.from_level(args.level, window_log=LONG_WINDOW_LOG, enable_ldm=True)
    start = time.perf_counter()
    size = len(zstandard.ZstdCompressor(compression_params=params).compress(content))
    print(f"  one frame, --long={LONG_WINDOW_LOG}: {size:,} B ({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
