"""Benchmark: ``mirror publish`` to js-ipfs, a first publish of N real archives, then one new release.

The archives are every cached file (the benchmark's download cache, ``python -m bench download
--packages top100`` fills it) of :data:`PROJECTS`: 5 releases each, sdist and wheel, the same set
REPORT.md's mirror section measures at rest. The newest release of the first project is held
back: it is the "one release" published second. Each round (the cores are shared: rounds are
interleaved with the baseline, medians and bests printed):

1. the node is emptied (every recursive pin removed, ``repo/gc``, ``/dpip`` removed), the store
   forgets what it pushed there, and the held-back release leaves the store's index;
2. baseline: ``curl -F file=@all.car`` of one CAR holding the same DAGs (the index tree of the N
   archives and the archives, exported beforehand) to ``dag/import`` (pinning its roots), then
   the node is emptied again;
3. ``dpip-import mirror publish`` (whole command: index, pin listing, pushes in batches, MFS,
   key, IPNS): seconds, blocks and bytes sent;
4. the held-back release imported again (not timed) and ``mirror publish`` again: what one
   release costs (only its blocks and the changed pages travel).

REPORT.md's "A whole-PyPI mirror on paper" scales its publish time from these figures.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Final

from importer.archive.delta import parse_archive_name

from .download_cache import cache_dir
from .perf_add import run_cli
from .perf_node import MB, preamble, reexec_in_private_netns, start_node, timed_process, warm_bytecode

#: The projects of REPORT.md's --plain measurement (perf_serve.PLAIN_PROJECTS): 70 files, ~116 MB.
PROJECTS: Final = ("requests", "attrs", "pyparsing", "starlette", "pydantic", "pydantic_core", "sqlalchemy")
#: Rounds of the first publish and its baseline: each moves the whole set (~120 MB) twice.
ROUNDS: Final = 3


def cached_files(projects: list[str]) -> tuple[list[Path], list[Path]]:
    """(the files of the first publish, the held-back newest release of the first project)."""
    def release(path: Path) -> str:
        dist = parse_archive_name(path.name)
        return dist.version if dist else path.name

    files = sorted(p for project in projects for p in cache_dir().glob(f"{project}-*"))
    first = [p for p in files if p.name.startswith(f"{projects[0]}-")]
    if not first:
        return files, []
    from packaging.version import InvalidVersion, Version

    def key(path: Path) -> tuple[int, Any]:
        try:
            return 0, Version(release(path))
        except InvalidVersion:
            return 1, release(path)

    newest = max(release(p) for p in first if key(p)[0] == 0)
    held = [p for p in first if release(p) == newest]
    return [p for p in files if p not in held], held


def empty_node(node: Any, store: Path) -> None:
    """Every recursive pin removed, blocks collected, MFS /dpip gone; the store forgets its pushes."""
    from importer.sinks.store import BlockStore

    keys = json.loads(node.rpc("pin/ls", type="recursive"))["Keys"]
    for cid in keys:
        node.rpc("pin/rm", cid)
    node.rpc("repo/gc")
    try:
        node.rpc("files/rm", "/dpip", recursive="true")
    except OSError:
        pass  # not there
    with BlockStore(store, create=False) as s:
        s.forget_pushed(node.peer_id, [p.root for p in s.pushed_roots(node.peer_id)])


def drop_archives(store: Path, names: set[str]) -> None:
    """Take ``names`` out of the store's index (their blocks stay: re-importing them is cheap)."""
    from importer.sinks.store import BlockStore

    with BlockStore(store, create=False) as s:
        s.delete_archives([r for r in s.iter_archives() if r.name in names])


def sent(out: str) -> tuple[int, int]:
    """(blocks, bytes of blocks) of publish's ``pushed`` line."""
    line = next(line for line in out.splitlines() if line.startswith("pushed "))
    return (int(line.split(": ", 1)[1].split(" blocks")[0]),
            int(line.split(" blocks, ", 1)[1].split(" bytes")[0].replace(",", "")))


def inside(work: Path, projects: list[str]) -> int:
    files, held = cached_files(projects)
    if not files or not held:
        print("(no cached files: run python -m bench download --packages top100)")
        return 0
    store = work / "store"
    start = time.perf_counter()
    run_cli(["auto", "--store", str(store), *map(str, files), *map(str, held)])
    print(f"{len(files)} archives ({sum(f.stat().st_size for f in files) / MB:.1f} MB) + one release of "
          f"{projects[0]} held back ({len(held)} files, {sum(f.stat().st_size for f in held) / MB:.1f} MB); "
          f"imported in {time.perf_counter() - start:.0f} s (not part of the figures)")
    names = {p.name for p in held}
    drop_archives(store, names)
    _, _, out = run_cli(["mirror", "index", "--store", str(store)])
    from importer.dag.cid import parse_cid
    from importer.sinks.car import export_car
    from importer.sinks.store import BlockStore

    root = parse_cid(out.split()[1].rstrip(":"))
    car = work / "all.car"
    with BlockStore(store, create=False) as s:
        summary = export_car(s, [root, *(r.root for r in s.iter_archives())], car)
    print(f"first publish moves {summary.blocks} blocks, CAR {car.stat().st_size / MB:.1f} MB")
    node = start_node(work)
    warm_bytecode()
    url = f"http://127.0.0.1:{node.ports['api']}/api/v0/dag/import"
    plain, first, release = [], [], []
    first_sent = release_sent = (0, 0)
    try:
        for _ in range(ROUNDS):
            empty_node(node, store)
            drop_archives(store, names)
            plain.append(timed_process(["curl", "-sS", "-f", "-o", "/dev/null", "-X", "POST", "-F",
                                        f"file=@{car};type=application/vnd.ipld.car", url]))
            empty_node(node, store)
            seconds, _, out = run_cli(["mirror", "publish", "--api", node.api, "--store", str(store)])
            first.append(seconds)
            first_sent = sent(out)
            run_cli(["auto", "--store", str(store), *map(str, held)])
            seconds, _, out = run_cli(["mirror", "publish", "--api", node.api, "--store", str(store)])
            release.append(seconds)
            release_sent = sent(out)
    finally:
        node.stop()

    def line(what: str, size: int, times: list[float]) -> str:
        median = statistics.median(times)
        return (f"  {what:<58} {size / MB / median:6.1f} MB/s of blocks (median {median:.2f} s, best "
                f"{min(times):.2f} s; all {', '.join(f'{t:.2f}' for t in times)})")

    print(line("curl -F file=@all.car to dag/import (baseline):", first_sent[1], plain))
    print(line(f"mirror publish, first ({first_sent[0]} blocks, {first_sent[1] / MB:.1f} MB):", first_sent[1], first))
    print(f"  first publish / baseline speed: {statistics.median(plain) / statistics.median(first):.2f} (medians), "
          f"{min(plain) / min(first):.2f} (bests)")
    print(f"  mirror publish, one release ({release_sent[0]} blocks, {release_sent[1] / MB:.2f} MB sent): median "
          f"{statistics.median(release):.2f} s, best {min(release):.2f} s; all {', '.join(f'{t:.2f}' for t in release)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.perf_publish", description=__doc__.splitlines()[0])
    parser.add_argument("projects", nargs="*", default=list(PROJECTS),
                        help="projects of the download cache to publish (default: REPORT.md's seven)")
    parser.add_argument("--inside", metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.inside:
        return inside(Path(args.inside), args.projects)
    if shutil.which("curl") is None:
        print("curl not found (the baseline post): not measured")
        return 0
    why_not = preamble()
    if why_not is not None:
        print(why_not)
        return 0
    with tempfile.TemporaryDirectory(prefix="perf-publish-") as work:
        return reexec_in_private_netns("bench.perf_publish", work, *args.projects)


if __name__ == "__main__":
    raise SystemExit(main())

