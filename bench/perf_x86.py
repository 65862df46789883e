"""Benchmark: what each form of the x86 filter (:mod:`importer.sinks.x86`) saves on rebuilt native code, and its speed.

For each pair of wheels (previous, new release), the shared libraries (``.so``) present in both
that changed, the new one at least :data:`MIN_LIBRARY` bytes. Prints, per pair and from the same run:

* whole-file deltas: each new library zstd-compressed at level 19 against its old version as a
  raw-content dictionary (long-distance matching, a 128 MiB window), unfiltered and with both
  sides filtered in form 1 and in form 2; the ratios to the unfiltered delta;
* the store's deltas: each 256 KiB leaf of the new library against its references in the old one
  (:func:`importer.sinks.delta.reference_span`), as :func:`importer.sinks.delta.encode_payload`
  makes them at import (zstd level 3; the smaller of plain and filtered) in each form;
* the new libraries compressed alone at level 19, filtered in each form;
* the compiled kernel's speed over the new libraries in MB/s, ``encode`` and ``decode`` in each
  form (CPU time, best of :data:`SPEED_ROUNDS`, the forms alternating), and that every library
  round-trips.

    python -m bench.perf_x86 [OLD.whl NEW.whl ...]

Without arguments, the pairs of :data:`DEFAULT_PAIRS` (wheels of the top100 lock) from the download cache.
"""

from __future__ import annotations

import argparse
import sys
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import zstandard

from importer.dag.reader import LeafSpan
from importer.sinks import x86
from importer.sinks.delta import DELTA_LEVEL, encode_payload, reference_span

from .download_cache import cache_dir

#: The four pairs the x86 module's table was measured on: Cython, C, C++ and Rust libraries.
DEFAULT_PAIRS: Final = (
    ("pandas-3.1.0-cp312-cp312-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl",
     "pandas-3.1.1-cp312-cp312-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl"),
    ("numpy-2.5.4-cp312-cp312-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl",
     "numpy-2.5.5-cp312-cp312-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl"),
    ("grpcio-1.85.1-cp312-cp312-manylinux2014_x86_64.manylinux_2_17_x86_64.whl",
     "grpcio-1.85.3-cp312-cp312-manylinux2014_x86_64.manylinux_2_17_x86_64.whl"),
    ("cryptography-50.0.1-cp311-abi3-manylinux2014_x86_64.manylinux_2_17_x86_64.whl",
     "cryptography-50.0.2-cp311-abi3-manylinux2014_x86_64.manylinux_2_17_x86_64.whl"),
)
#: Smaller libraries are left out (as in the prototypes the table was first measured with): a few
#: KB of code, mostly headers and symbols, say little about the filter.
MIN_LIBRARY: Final = 100_000
#: zstd level of the whole-file deltas and of the libraries alone: the strongest regular level.
LEVEL: Final = 19
#: Window of the whole-file deltas: 2**27 = 128 MiB, more than any library here and its old version.
WINDOW_LOG: Final = 27
#: Leaves of the store's deltas (the default chunker's 256 KiB).
LEAF: Final = 256 * 1024
#: Rounds of the speed measure; the best is kept (2 shared cores: the others are noise).
SPEED_ROUNDS: Final = 15


def changed_libraries(old: Path, new: Path) -> list[tuple[str, bytes, bytes]]:
    """``(name, old bytes, new bytes)`` of the shared libraries in both wheels that changed."""
    found = []
    with zipfile.ZipFile(old) as a, zipfile.ZipFile(new) as b:
        for name in sorted(set(a.namelist()) & set(b.namelist())):
            if not (name.endswith(".so") or ".so." in name):
                continue
            before, after = a.read(name), b.read(name)
            if before != after and len(after) >= MIN_LIBRARY:
                found.append((name, before, after))
    return found


def whole_delta(reference: bytes, data: bytes) -> int:
    """Bytes of ``data`` at :data:`LEVEL` against ``reference`` as a raw-content dictionary."""
    params = zstandard.ZstdCompressionParameters.from_level(
        LEVEL, source_size=len(data), dict_size=len(reference), window_log=WINDOW_LOG, enable_ldm=True)
    dictionary = zstandard.ZstdCompressionDict(reference, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    return len(zstandard.ZstdCompressor(dict_data=dictionary, compression_params=params).compress(data))


def leaves(data: bytes) -> list[LeafSpan]:
    """``data`` cut in :data:`LEAF` leaves, each named by its index (the references need only names)."""
    return [LeafSpan(at, min(LEAF, len(data) - at), at.to_bytes(8, "big")) for at in range(0, len(data), LEAF)]


def store_deltas(old: bytes, new: bytes, form: int) -> int:
    """Bytes of the store's delta payloads of ``new``'s leaves against ``old``'s, in ``form``."""
    old_leaves = leaves(old)
    blocks = {leaf.cid: old[leaf.offset:leaf.offset + leaf.length] for leaf in old_leaves}
    total = 0
    for leaf in leaves(new):
        refs = reference_span(leaf.offset, leaf.length, len(new), old_leaves, len(old))
        block = new[leaf.offset:leaf.offset + leaf.length]
        total += len(encode_payload(block, refs, [blocks[ref] for ref in refs], 1, form=form))
    return total


def speeds(data: bytes) -> dict[str, float]:
    """MB/s of the compiled kernel over ``data``, encode and decode in each form, best of the rounds;
    in the thread's CPU time, so that a neighbour on the shared cores takes no share of it."""
    kernel = x86._kernel()
    best: dict[str, float] = {}
    for _ in range(SPEED_ROUNDS):
        for form in x86.FORMS:
            for name, sign in (("encode", 1), ("decode", -1)):
                start = time.thread_time()
                kernel(data, sign, form)
                elapsed = time.thread_time() - start
                key = f"{name} form {form}"
                best[key] = min(best.get(key, elapsed), elapsed)
    return {key: len(data) / seconds / 1e6 for key, seconds in best.items()}


def measure(old: Path, new: Path) -> None:
    libraries = changed_libraries(old, new)
    if not libraries:
        print(f"{new.name}: no changed library of {MIN_LIBRARY} bytes or more")
        return
    whole = {0: 0, 1: 0, 2: 0}
    alone = {1: 0, 2: 0}
    store = {1: 0, 2: 0}
    alone_compressor = zstandard.ZstdCompressor(level=LEVEL)
    for _, before, after in libraries:
        for form in x86.FORMS:
            filtered = x86.encode(after, form)
            if x86.decode(filtered, form) != after:
                raise SystemExit(f"{new.name}: form {form} does not round-trip")
            whole[form] += whole_delta(x86.encode(before, form), filtered)
            alone[form] += len(alone_compressor.compress(filtered))
            store[form] += store_deltas(before, after, form)
        whole[0] += whole_delta(before, after)
    size = sum(len(after) for _, _, after in libraries)
    print(f"{old.name} -> {new.name}: {len(libraries)} libraries, {size:,} bytes")
    print(f"  whole-file delta, level {LEVEL}: unfiltered {whole[0]:,}; form 1 {whole[1]:,} "
          f"({whole[1] / whole[0]:.3f}); form 2 {whole[2]:,} ({whole[2] / whole[0]:.3f})")
    print(f"  store deltas (256 KiB leaves, level {DELTA_LEVEL}): form 1 {store[1]:,}; form 2 {store[2]:,} "
          f"({store[2] / store[1]:.3f} of form 1)")
    print(f"  alone, level {LEVEL}: form 1 {alone[1]:,}; form 2 {alone[2]:,} ({alone[2] / alone[1]:.3f} of form 1)")
    figures = speeds(b"".join(after for _, _, after in libraries))
    print("  kernel, MB/s: " + ", ".join(f"{key} {value:.0f}" for key, value in figures.items()))
    sys.stdout.flush()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.perf_x86", description=__doc__.splitlines()[0])
    parser.add_argument("wheels", nargs="*", type=Path, help="pairs of wheels: previous, new, previous, new...")
    args = parser.parse_args(argv)
    if len(args.wheels) % 2:
        parser.error("wheels come in pairs (previous, new)")
    pairs = (list(zip(args.wheels[::2], args.wheels[1::2])) if args.wheels
             else [(cache_dir() / a, cache_dir() / b) for a, b in DEFAULT_PAIRS])
    missing = [str(path) for pair in pairs for path in pair if not path.is_file()]
    if missing:
        print(f"perf_x86: not found (wheels of the top100 lock, which `make bench` downloads): {', '.join(missing)}", file=sys.stderr)
        return 1
    for old, new in pairs:
        measure(old, new)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
