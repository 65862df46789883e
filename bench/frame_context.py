"""``python -m bench.frame_context``: how much content loses to frames, and what a dictionary or a shared base changes.

A store compresses a release's first version in frames (1 MiB in cold packs) so that one block
is read by decoding one frame; one ``zstd -19 --long=31`` stream over the whole tar sees every
file at once. The content is either one sdist or wheel (its unique member files in archive order,
the order the store writes them) or a store directory (its blocks in the order they were
written, every block but deltas as cold packs frame them; ``--all-blocks`` with deltas' blocks
too). It is compressed at ``--level``:

* in frames of each ``--frame-sizes`` (each frame alone, as cold packs make them);
* with ``--dictionary``, the same frames made with the store's newest dictionary (the one the
  package ships for an archive or a store that has trained none): what
  :data:`importer.sinks.packs.COLD_PLAIN_FROM` was set from;
* in frames of each size, each made with the first ``--base`` MiB of the same content as a
  raw-content zstd dictionary (the frames inside the base compressed alone): what a
  "base" that cold frames refer to, as a git pack's deltas refer to their bases, would give
  while a read still decodes one small frame;
* as one frame with a window over everything (``--long=31``): what a single stream reaches.

    python -m bench.frame_context ~/.cache/dpip-bench/sqlalchemy-2.1.5.tar.gz
    python -m bench.frame_context STORE_DIR --frame-sizes 128KiB 512KiB 1MiB 2MiB 8MiB --dictionary --no-base --no-long
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

from importer.sinks.atrest import shipped_dictionary
from importer.sinks.packs import frame_size
from importer.sinks.store import BlockStore

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


def store_blocks(store_dir: Path, *, all_blocks: bool = False) -> list[bytes]:
    """A store's blocks in the order they were written; deltas' blocks left out unless ``all_blocks``
    (cold packs frame every block but deltas)."""
    with BlockStore(store_dir, create=False) as store:
        deltas = set() if all_blocks else {cid for cid, _, _ in store.iter_deltas()}
        return [store.get(cid) for cid in store.cids_in_written_order() if cid not in deltas]


def store_dictionary(store_dir: Path | None) -> bytes | None:
    """The dictionary new frames of ``store_dir`` would be made with: its newest, else the shipped one."""
    if store_dir is not None:
        with BlockStore(store_dir, create=False) as store:
            trained = store.dictionaries()
        if trained:
            return trained[-1].data
    return shipped_dictionary()


def framed_bytes(members: list[bytes], size: int, compressor: zstandard.ZstdCompressor,
                 base: zstandard.ZstdCompressor | None = None, base_bytes: int = 0) -> int:
    """Bytes of ``members`` in frames of ``size``, each made by ``compressor``; with ``base``, the
    frames that start past the first ``base_bytes`` are made by it instead."""
    total = offset = 0
    for frame in frames(members, size):
        total += len((base if base is not None and offset >= base_bytes else compressor).compress(frame))
        offset += len(frame)
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.frame_context", description=__doc__.split("\n")[0])
    parser.add_argument("source", type=Path, help="an sdist or wheel, or a store directory")
    parser.add_argument("--level", type=int, default=19)
    parser.add_argument("--frame-sizes", type=frame_size, nargs="+", default=[MiB, 8 * MiB], metavar="SIZE",
                        help="e.g. 128KiB 1MiB 32MiB, or bytes (default 1MiB 8MiB)")
    parser.add_argument("--base", type=frame_size, default=8 * MiB, metavar="SIZE", help="raw-content base (default 8MiB)")
    parser.add_argument("--no-base", action="store_true", help="skip the frames made against a base")
    parser.add_argument("--dictionary", action="store_true", help="also the frames made with the store's dictionary")
    parser.add_argument("--no-long", action="store_true", help="skip the one frame with a 2 GiB window")
    parser.add_argument("--all-blocks", action="store_true", help="a store: deltas' blocks too")
    args = parser.parse_args(argv)
    store_dir = args.source if args.source.is_dir() else None
    members = store_blocks(store_dir, all_blocks=args.all_blocks) if store_dir else unique_members(args.source)
    content = b"".join(members)
    what = "blocks" if store_dir else "unique files"
    print(f"{args.source.name}: {len(members):,} {what}, {len(content):,} B, zstd level {args.level}")
    plain = zstandard.ZstdCompressor(level=args.level, write_checksum=False)
    dictionary = store_dictionary(store_dir) if args.dictionary else None
    with_dictionary = None if dictionary is None else zstandard.ZstdCompressor(
        level=args.level, write_checksum=False,
        dict_data=zstandard.ZstdCompressionDict(dictionary, dict_type=zstandard.DICT_TYPE_FULLDICT))
    base = zstandard.ZstdCompressor(level=args.level, write_checksum=False, dict_data=zstandard.ZstdCompressionDict(
        content[:args.base], dict_type=zstandard.DICT_TYPE_RAWCONTENT))
    for size in args.frame_sizes:
        label = f"{size // MiB} MiB" if size % MiB == 0 else f"{size // 1024} KiB"
        start = time.perf_counter()
        line = f"  frames of {label}: {framed_bytes(members, size, plain):,} B"
        if with_dictionary is not None:
            line += f", with the dictionary {framed_bytes(members, size, with_dictionary):,} B"
        if not args.no_base:
            line += (f", with the first {args.base // MiB} MiB as a raw-content base "
                     f"{framed_bytes(members, size, plain, base, args.base):,} B")
        print(f"{line} ({time.perf_counter() - start:.0f} s)", flush=True)
    if not args.no_long:
        params = zstandard.ZstdCompressionParameters.from_level(args.level, window_log=LONG_WINDOW_LOG, enable_ldm=True)
        start = time.perf_counter()
        size = len(zstandard.ZstdCompressor(compression_params=params).compress(content))
        print(f"  one frame, --long={LONG_WINDOW_LOG}: {size:,} B ({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
