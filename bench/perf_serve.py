"""``python -m bench.perf_serve``: the mirror and pip, timed (issue 13's benchmark).

1. **pip through serve vs a static index**: the newest wheel of each of :data:`PROJECTS` (from the
   benchmark's download cache, ``python -m bench download --packages top100`` fills it) is imported
   into a fresh store and indexed; the same files are laid out as a PEP 503 directory served by
   ``python -m http.server``. One ``pip install --no-deps --no-cache-dir --require-hashes --target``
   of the set runs against each, rounds interleaved: the static server, ``serve`` with a cold file
   cache (a new cache directory each round: every wheel rebuilt from blocks) and ``serve`` warm
   (same cache again). Target: warm at least 0.8 of the static server's speed.
2. **rebuild MB/s**: every wheel rebuilt from the store in this process (``iter_archive``).
3. **memory**: ``serve`` (a child process) serving one generated 100 MB wheel to 4 clients at
   once, cache on (one rebuild, three readers of the cache) and off (four rebuilds); the child's
   peak RSS (``VmHWM``). Target: under 300 MB.
4. **sync** (real PyPI, ``--sync``): ``mirror sync --packages smoke --versions 10`` into a fresh store, then
   the same again with nothing new, both timed.
"""

from __future__ import annotations

import argparse
import hashlib
import html
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from .download_cache import cache_dir

#: Projects whose newest cached wheel makes the install set (pure and native, 40 MB together).
PROJECTS: Final = ("requests", "attrs", "pyparsing", "starlette", "pydantic", "pydantic_core", "sqlalchemy", "numpy")
#: Target of the wheels in the set (they are cp312 manylinux wheels): pip installs them with --target.
PIP_TARGET_ARGS: Final = ("--python-version", "3.12", "--platform", "manylinux_2_28_x86_64", "--platform",
                          "manylinux_2_17_x86_64", "--only-binary", ":all:", "--implementation", "cp", "--abi", "cp312")
#: Projects whose cached files (5 releases, sdist + wheel) measure what --plain costs at rest.
PLAIN_PROJECTS: Final = ("requests", "attrs", "pyparsing", "starlette", "pydantic", "pydantic_core", "sqlalchemy")
#: Releases per project of the timed sync: the smoke dataset's own depth (datasets/smoke.lock.json).
SYNC_VERSIONS: Final = 10
#: Size of the generated wheel of the memory test (the issue's figure).
BIG_WHEEL_BYTES: Final = 100 * 1000 * 1000


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _pip_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", XDG_CONFIG_HOME=str(tmp / "xdg"))
    return env


def pick_wheels(projects: Sequence[str]) -> list[Path]:
    found = []
    for project in projects:
        wheels = sorted(cache_dir().glob(f"{project}-*.whl"), key=lambda p: p.stat().st_mtime)
        if wheels:
            found.append(max(wheels, key=lambda p: [int(x) if x.isdigit() else 0 for x in p.name.split("-")[1].split(".")]))
    return found


def _dpip(*args: str) -> str:
    return subprocess.run([sys.executable, "-m", "importer", *args], capture_output=True, text=True,
                          check=True).stdout


def _static_index(wheels: Sequence[Path], root: Path) -> None:
    """A PEP 503 directory of ``wheels`` (as ``python -m http.server`` serves it)."""
    (root / "files").mkdir(parents=True)
    projects: dict[str, list[Path]] = {}
    for w in wheels:
        shutil.copy(w, root / "files" / w.name)
        projects.setdefault(w.name.split("-")[0].replace("_", "-").lower(), []).append(w)
    for project, files in projects.items():
        page = root / "simple" / project
        page.mkdir(parents=True)
        links = "".join(f'<a href="../../files/{html.escape(f.name)}#sha256='
                        f'{hashlib.sha256(f.read_bytes()).hexdigest()}">{html.escape(f.name)}</a><br/>\n'
                        for f in files)
        (page / "index.html").write_text(f"<!DOCTYPE html><html><body>\n{links}</body></html>\n")


def _requirements(wheels: Sequence[Path], path: Path) -> None:
    lines = []
    for w in wheels:
        name, version = w.name.split("-")[:2]
        lines.append(f"{name}=={version} --hash=sha256:{hashlib.sha256(w.read_bytes()).hexdigest()}")
    path.write_text("\n".join(lines) + "\n")


def _pip_install(url: str, req: Path, tmp: Path) -> float:
    target = tmp / "target"
    shutil.rmtree(target, ignore_errors=True)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-cache-dir",
                           "--require-hashes", "--target", str(target), *PIP_TARGET_ARGS, "--index-url", url, "-r",
                           str(req)], env=_pip_env(tmp), check=False, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"pip install from {url} failed: {done.stderr.strip()[-1500:]}")
    seconds = time.perf_counter() - start
    shutil.rmtree(target, ignore_errors=True)
    return seconds


class _Serve:
    """``dpip-import serve`` as a child process."""

    def __init__(self, store: Path, cache: Path, cache_size: int = 2 * 1024**3) -> None:
        self.port = _free_port()
        self.proc = subprocess.Popen([sys.executable, "-m", "importer", "serve", "--store", str(store), "--port",
                                      str(self.port), "--cache-dir", str(cache), "--cache-size", str(cache_size),
                                      "--access-log", os.devnull], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{self.port}/simple/"
        _wait_http(self.url)

    def peak_rss(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        return 0

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def bench_pip(tmp: Path, rounds: int) -> None:
    wheels = pick_wheels(PROJECTS)
    if len(wheels) < 2:
        print("(no wheels in the benchmark cache: run python -m bench download --packages top100)")
        return
    total = sum(w.stat().st_size for w in wheels)
    print(f"install set: {len(wheels)} wheels, {total / 1e6:.1f} MB ({', '.join(w.name for w in wheels)})")
    store = tmp / "store"
    _dpip("auto", "--store", str(store), *map(str, wheels))
    static = tmp / "static"
    _static_index(wheels, static)
    req = tmp / "requirements.txt"
    _requirements(wheels, req)
    port = _free_port()
    http = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory",
                             str(static)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    static_url = f"http://127.0.0.1:{port}/simple/"
    times: dict[str, list[float]] = {"static": [], "cold": [], "warm": []}
    try:
        _wait_http(static_url)
        for r in range(rounds):
            times["static"].append(_pip_install(static_url, req, tmp))
            serve = _Serve(store, tmp / f"cache-{r}")
            try:
                times["cold"].append(_pip_install(serve.url, req, tmp))
                times["warm"].append(_pip_install(serve.url, req, tmp))
            finally:
                serve.stop()
            shutil.rmtree(tmp / f"cache-{r}", ignore_errors=True)
    finally:
        http.terminate()
        http.wait()
    med = {k: statistics.median(v) for k, v in times.items()}
    for k in ("static", "cold", "warm"):
        print(f"pip install via {k:6s}: median {med[k]:.2f} s of {', '.join(f'{t:.2f}' for t in times[k])}")
    print(f"serve warm / http.server speed: {med['static'] / med['warm']:.2f} (target >= 0.8); "
          f"cold: {med['static'] / med['cold']:.2f}")
    from importer.archive.rebuild import iter_archive
    from importer.sinks.store import BlockStore

    with BlockStore(store, create=False) as s:
        records = list(s.iter_archives())
        start = time.perf_counter()
        rebuilt = sum(len(piece) for r in records for piece in iter_archive(s, r.root)[1])
        seconds = time.perf_counter() - start
    print(f"rebuild from the store: {rebuilt / 1e6:.1f} MB in {seconds:.2f} s = {rebuilt / 1e6 / seconds:.1f} MB/s")


def _big_wheel(path: Path) -> None:
    """A 100 MB wheel: one incompressible 96 MB library and a few small files, deflated."""
    rng = random.Random(13)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("big/__init__.py", "")
        z.writestr("big/lib.so", rng.randbytes(BIG_WHEEL_BYTES - 4 * 1000 * 1000))
        z.writestr("big/data.txt", "\n".join(str(rng.random()) for _ in range(200_000)))
        z.writestr("big-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: big\nVersion: 1.0\n")
        z.writestr("big-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: perf_serve\nRoot-Is-Purelib: false\n"
                                              "Tag: py3-none-any\n")
        z.writestr("big-1.0.dist-info/RECORD", "")


def _fetch(url: str, out: list[str]) -> None:
    digest = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=600) as response:
        while piece := response.read(1 << 20):
            digest.update(piece)
    out.append(digest.hexdigest())


def bench_memory(tmp: Path) -> None:
    wheel = tmp / "big-1.0-py3-none-any.whl"
    _big_wheel(wheel)
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    store = tmp / "big-store"
    _dpip("auto", "--store", str(store), str(wheel))
    wheel.unlink()
    for label, size in (("cache on", 2 * 1024**3), ("cache off", 0)):
        serve = _Serve(store, tmp / "big-cache", size)
        try:
            url = f"{serve.url}big/big-1.0-py3-none-any.whl"
            results: list[str] = []
            start = time.perf_counter()
            threads = [threading.Thread(target=_fetch, args=(url, results)) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            seconds = time.perf_counter() - start
            peak = serve.peak_rss()
        finally:
            serve.stop()
            shutil.rmtree(tmp / "big-cache", ignore_errors=True)
        ok = results == [sha] * 4
        print(f"serve, 100 MB wheel to 4 clients at once ({label}): peak RSS {peak / 1e6:.0f} MB (target < 300), "
              f"{seconds:.1f} s, all 4 sha256 {'match' if ok else 'DIFFER'}")


def bench_sync(tmp: Path) -> None:
    store = tmp / "sync-store"
    for label in ("first sync", "re-sync, nothing new"):
        start = time.perf_counter()
        out = _dpip("mirror", "sync", "--packages", "smoke", "--versions", str(SYNC_VERSIONS), "--store", str(store),
                    "--no-progress")
        seconds = time.perf_counter() - start
        line = next(line for line in out.splitlines() if line.startswith("synced"))
        print(f"{label}: {seconds:.1f} s wall ({line})")
    disk = sum(p.stat().st_size for p in store.iterdir() if p.is_file())
    print(f"store directory after the sync: {disk / 1e6:.1f} MB (blocks + mirror state), "
          f"{int(_stats(store)['blocks']):,d} blocks")


def _stats(store: Path) -> dict[str, float]:
    import json as _json

    data = _json.loads(_dpip("store", "stats", "--json", "--store", str(store)))
    return {"blocks": data["blocks"], "logical_bytes": data["logical_bytes"],
            "at_rest_bytes": data["stored_bytes"] + data["dictionary_bytes"], "disk_bytes": data["file_bytes"]}


def bench_plain(tmp: Path, projects: Sequence[str]) -> None:
    """What the index tree costs at rest, and what ``--plain`` adds, on every cached file of ``projects``."""
    files = sorted(p for project in projects for p in cache_dir().glob(f"{project}-*")
                   if not p.name.endswith(".part") and p.is_file())
    if not files:
        print("(no cached files for --plain-cost)")
        return
    archives = sum(f.stat().st_size for f in files)
    store = tmp / "plain-store"
    start = time.perf_counter()
    _dpip("auto", "--store", str(store), *map(str, files))
    imported = time.perf_counter() - start
    base = _stats(store)
    start = time.perf_counter()
    _dpip("mirror", "index", "--store", str(store))
    indexed = time.perf_counter() - start
    index = _stats(store)
    start = time.perf_counter()
    _dpip("mirror", "index", "--plain", "--store", str(store))
    plain_s = time.perf_counter() - start
    plain = _stats(store)

    def row(label: str, now: dict[str, float], before: dict[str, float], seconds: float) -> str:
        return (f"{label:22s} +{now['blocks'] - before['blocks']:>7,.0f} blocks, "
                f"+{(now['logical_bytes'] - before['logical_bytes']) / 1e6:>8.2f} MB logical, "
                f"+{(now['at_rest_bytes'] - before['at_rest_bytes']) / 1e6:>8.2f} MB at rest, "
                f"store file {now['disk_bytes'] / 1e6:.1f} MB, {seconds:.1f} s")

    print(f"--plain cost on {len(files)} archives of {', '.join(projects)}: {archives / 1e6:.1f} MB of archives")
    print(f"{'imported (auto)':22s} {base['blocks']:>8,.0f} blocks, {base['logical_bytes'] / 1e6:>9.2f} MB logical, "
          f"{base['at_rest_bytes'] / 1e6:>9.2f} MB at rest, store file {base['disk_bytes'] / 1e6:.1f} MB, "
          f"{imported:.1f} s")
    print(row("mirror index", index, base, indexed))
    print(row("mirror index --plain", plain, index, plain_s))
    print(f"--plain adds {(plain['at_rest_bytes'] - index['at_rest_bytes']) / archives:.3f} x the archives' bytes "
          f"at rest; the structural store holds them in {base['at_rest_bytes'] / archives:.3f} x")
    # The store's half of a publish: every block of the store read, checked and written as one CAR
    # (the archives' DAGs and the plain index), as a push to a node would send them.
    from importer.mirror.state import MirrorState

    with MirrorState(store) as state:
        roots = [r.root for r in state.iter_index_roots()]
    from importer.dag.cid import format_cid

    start = time.perf_counter()
    _dpip("export", "--store", str(store), format_cid(roots[-1]), "-o", str(tmp / "index.car"))
    seconds = time.perf_counter() - start
    size = (tmp / "index.car").stat().st_size
    (tmp / "index.car").unlink()
    print(f"export of the --plain index tree as a CAR: {size / 1e6:.1f} MB in {seconds:.2f} s "
          f"= {size / 1e6 / seconds:.1f} MB/s ({plain['blocks'] - base['blocks']:,.0f} index blocks)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.perf_serve", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sync", action="store_true", help="also time a sync of the smoke dataset from PyPI")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--only-memory", action="store_true")
    parser.add_argument("--only-sync", action="store_true")
    parser.add_argument("--plain-cost", nargs="*", metavar="PROJECT",
                        help="measure the index tree and --plain at rest on the cached files of these projects")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="perf-serve-") as name:
        tmp = Path(name)
        if args.only_sync:
            bench_sync(tmp)
            return 0
        if args.plain_cost is not None:
            bench_plain(tmp, args.plain_cost or PLAIN_PROJECTS)
            return 0
        if not args.only_memory:
            bench_pip(tmp, args.rounds)
        if not args.skip_memory:
            bench_memory(tmp)
        if args.sync:
            bench_sync(tmp)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
