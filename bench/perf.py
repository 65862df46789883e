"""``make perf``: every speed and memory benchmark of the project, one after the other.

Each section is its own module (runnable alone with ``python -m bench.perf_<name>``) and prints
its figures next to a baseline measured in the same run, because these machines are shared and
noisy: ratios, not absolute numbers, are what the targets are about.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import time

#: (module, what it measures), in the order the issues list them.
SECTIONS = (
    ("bench.perf_add", "add -Q -n of 1 GiB vs read+sha256; CDC chunkers inside add; Kubo"),
    ("bench.perf_chunkers", "rabin, buzhash, fastcdc kernels vs hashlib sha256"),
    ("bench.perf_store", "embedded store write/read throughput"),
    ("bench.perf_compress", "compressor search and replay"),
    ("bench.perf_archive", "archive import and fetch vs plain recompression on all cores"),
    ("bench.perf_nested", "wheel --open-nested vs plain import of five botocore wheels"),
    ("bench.perf_delta", "import with --delta vs --no-delta: time, bytes at rest, fetch, cold reads"),
    ("bench.perf_x86", "the x86 filter's forms 1 and 2 on changed .so files: delta bytes, kernel MB/s"),
    ("bench.perf_hostile", "hostile roots and recipes: time, memory and bytes written per refusal"),
    ("bench.perf_gc", "store gc of 100,000 garbage blocks vs one delete transaction per block; free pages"),
    ("bench.perf_serve", "pip install through serve vs http.server; rebuild MB/s; serve memory on a 100 MB wheel"),
    ("bench.perf_node", "push to js-ipfs vs a plain HTTP post of the CAR; fetch --gateway vs local fetch; memory"),
    ("bench.perf_publish", "mirror publish to js-ipfs: a first publish of 70 real archives, then one release"),
)


def main() -> int:
    failed = []
    for module_name, what in SECTIONS:
        print(f"\n=== {module_name}: {what}", flush=True)
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError:
            print("(not available)")
            continue
        start = time.perf_counter()
        try:
            # Sections take argv (their defaults are the settings) or nothing.
            rc = module.main([]) if inspect.signature(module.main).parameters else module.main()
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else 1
        if rc:
            failed.append(module_name)
        print(f"({time.perf_counter() - start:.1f} s)", flush=True)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
