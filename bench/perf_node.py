"""Benchmark: ``push`` to a real node and ``fetch --gateway`` from our own gateway (issue 12's targets).

Figures measured in one run against baselines measured in that same run, runs interleaved:

* push throughput (MB/s of block bytes) of a generated wheel's DAG to js-ipfs (~50 MB, and a
  larger one, ~200 MB, that separates fixed costs from throughput), against posting the same
  CAR, exported to a file beforehand, to ``dag/import`` with a plain HTTP client. Every post
  pins the CAR's roots (``pin-roots``, the node's default, as ``push`` does), so both sides do
  the same work; between runs the node unpins and garbage-collects, so every run sends every
  block to a node that lacks them. Two comparisons, target at least 0.8 of the baseline's speed:

  - whole processes: ``dpip-import push`` against ``curl -F file=@wheel.car`` (the same
    multipart framing; also a ``python -c`` post with ``urllib.request``, for a baseline that
    pays an interpreter's start-up as push does);
  - in one process: :func:`importer.sinks.push.push` (the store opened, the node asked for its
    ID, the CAR generated from the store while it is sent) against ``http.client`` posting the
    file; and, for reference, that post without ``pin-roots`` (what the node does without pinning);

* the next release (one 2 MiB file changed): what push sends;
* ``fetch --gateway`` of the ~50 MB wheel into an empty store, from ``dpip-import serve-blocks``
  (one ``?format=car`` request), against ``fetch`` from the full local store;
* peak memory (RSS) of the push and of the fetch: target under 300 MB.

It needs root (a private network namespace: the node must stay strictly local) and the nodes of
``make nodes``; it re-runs itself under ``unshare -n`` with only loopback up.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

from .perf_add import run_cli

MB: Final = 1_000_000
#: The wheel: N incompressible files of 2 MiB (as compiled extensions and data are) and 400 small
#: Python modules of ~4 KB; 24 big files make ~52 MB, issue 12's "50 MB wheel", 96 ~204 MB.
BIG_FILE_BYTES: Final = 2 * 1024 * 1024
SIZES: Final = {50: 24, 200: 96}
SMALL_FILES: Final = 400
#: Runs of each measurement, interleaved; medians and bests are printed (the cores are shared
#: and the spread between runs is often 2x). Fewer for the large DAG: each run moves 200 MB.
REPEATS: Final = {50: 5, 200: 3}
#: Multipart boundary of the plain clients' uploads (any string absent from the CAR's framing).
BOUNDARY: Final = "perf-node-boundary-7d1e"
#: The whole-process urllib baseline: stream the file, as curl and push do (argv: url, car).
URLLIB_POST: Final = f"""
import os, sys, urllib.request
url, car = sys.argv[1], sys.argv[2]
head = (b'--{BOUNDARY}\\r\\nContent-Disposition: form-data; name="file"; filename="x.car"\\r\\n'
        b'Content-Type: application/vnd.ipld.car\\r\\n\\r\\n')
tail = b'\\r\\n--{BOUNDARY}--\\r\\n'
def body():
    yield head
    with open(car, 'rb') as f:
        while piece := f.read(1 << 20):
            yield piece
    yield tail
size = len(head) + os.path.getsize(car) + len(tail)
request = urllib.request.Request(url, data=body(), method='POST', headers={{
    'Content-Type': 'multipart/form-data; boundary={BOUNDARY}', 'Content-Length': str(size)}})
with urllib.request.urlopen(request, timeout=600) as answer:
    answer.read()
"""


def make_wheel(folder: Path, version: int = 1, big_files: int = SIZES[50]) -> Path:
    """The benchmark's wheel; version 2 differs from 1 in one 2 MiB file (``_lib00.so``) only."""
    rng = random.Random(20261207)
    path = folder / f"dpip_perf-{version}.0-cp311-cp311-linux_x86_64.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for i in range(big_files):
            data = rng.randbytes(BIG_FILE_BYTES)
            if i == 0 and version > 1:
                data = random.Random(version).randbytes(BIG_FILE_BYTES)
            z.writestr(zipfile.ZipInfo(f"dpip_perf/_lib{i:02}.so", (2026, 12, 7, 0, 0, 0)), data,
                       compress_type=zipfile.ZIP_STORED)
        for i in range(SMALL_FILES):
            lines = [f"def f_{i}_{j}(x):\n    return x * {rng.randrange(10**6)} + {j}\n\n" for j in range(60)]
            z.writestr(zipfile.ZipInfo(f"dpip_perf/mod{i:03}.py", (2026, 12, 7, 0, 0, 0)), "".join(lines),
                       compress_type=zipfile.ZIP_DEFLATED)
        info = f"dpip_perf-{version}.0.dist-info"
        z.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: dpip-perf\nVersion: {version}.0\n")
        z.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: false\nTag: cp311-cp311-linux_x86_64\n")
        z.writestr(f"{info}/RECORD", "")
    return path


def post_car(port: int, car: Path, *, pin_roots: bool = True) -> float:
    """Seconds to POST ``car`` to ``dag/import`` with ``http.client`` (chunked, the file read in 1 MiB
    pieces, as push sends its CAR)."""
    head = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.car\"\r\n"
            "Content-Type: application/vnd.ipld.car\r\n\r\n").encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()

    def body() -> Iterator[bytes]:
        yield head
        with open(car, "rb") as f:
            while piece := f.read(1024 * 1024):
                yield piece
        yield tail

    start = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    conn.request("POST", f"/api/v0/dag/import?pin-roots={str(pin_roots).lower()}", body=body(),
                 headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}, encode_chunked=True)
    answer = conn.getresponse()
    answer.read()
    conn.close()
    if answer.status != 200:
        raise SystemExit(f"plain dag/import answered HTTP {answer.status}")
    return time.perf_counter() - start


def timed_process(argv: list[str]) -> float:
    """Wall seconds of a whole process (start-up included), which must succeed."""
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def push_in_process(api: str, store: Path, root: str) -> float:
    """Seconds of :func:`push` in this process: the store opened, the node asked, the CAR sent and pinned."""
    from importer.dag.cid import parse_cid
    from importer.sinks.node import NodeClient
    from importer.sinks.push import push
    from importer.sinks.store import BlockStore
    from importer.sinks.transport import parse_endpoint

    start = time.perf_counter()
    with BlockStore(store, create=False) as s:
        node = NodeClient(parse_endpoint(api, "--api"))
        try:
            push(s, node, [parse_cid(root)])
        finally:
            node.close()
    return time.perf_counter() - start


def forget(node: Any, store: Path, roots: list[str]) -> None:
    """Make the node lack the DAGs again (unpin, garbage-collect) and the store forget the pushes."""
    from importer.dag.cid import parse_cid
    from importer.sinks.store import BlockStore

    for root in roots:
        try:
            node.rpc("pin/rm", root)
        except OSError:
            pass  # not pinned
    node.rpc("repo/gc")
    with BlockStore(store, create=False) as s:
        s.forget_pushed(node.peer_id, [parse_cid(root) for root in roots])


def summary(what: str, block_bytes: int, times: list[float]) -> str:
    best, median = min(times), statistics.median(times)
    return (f"  {what:<62} {block_bytes / MB / median:6.1f} MB/s (median {median:.2f} s, best {best:.2f} s; "
            f"all {', '.join(f'{t:.2f}' for t in times)})")


def ratio(baseline: list[float], times: list[float]) -> str:
    return (f"{statistics.median(baseline) / statistics.median(times):.2f} (medians), "
            f"{min(baseline) / min(times):.2f} (bests)")


def bench_push(work: Path, node: Any, size: int) -> tuple[Path, str]:
    """Push of the ``size`` MB wheel against the plain posts; returns the store and the root."""
    folder = work / f"push-{size}"
    folder.mkdir()
    wheel = make_wheel(folder, big_files=SIZES[size])
    store = folder / "store"
    _, _, out = run_cli(["wheel", "--store", str(store), str(wheel)])
    root = out.split()[1]
    car = folder / "wheel.car"
    run_cli(["export", "--store", str(store), root, "-o", str(car)])
    from importer.sinks.car import read_car

    block_bytes = sum(len(b) for _, b in read_car(car))
    url = f"http://127.0.0.1:{node.ports['api']}/api/v0/dag/import"
    print(f"{size} MB wheel: {wheel.stat().st_size / MB:.1f} MB, {block_bytes / MB:.1f} MB of blocks, "
          f"CAR {car.stat().st_size / MB:.1f} MB")
    runs: dict[str, Callable[[], float]] = {
        "curl -F file=@wheel.car (whole process)":
            lambda: timed_process(["curl", "-sS", "-f", "-o", "/dev/null", "-X", "POST", "-F",
                                   f"file=@{car};type=application/vnd.ipld.car", url]),
        "python -c urllib.request post (whole process)":
            lambda: timed_process([sys.executable, "-c", URLLIB_POST, url, str(car)]),
        "dpip-import push (whole process)":
            lambda: run_cli(["push", "--api", node.api, "--store", str(store), root])[0],
        "http.client post of the CAR file (in process)": lambda: post_car(node.ports["api"], car),
        "push() (in process)": lambda: push_in_process(node.api, store, root),
        "http.client post, no pin-roots (in process, reference)":
            lambda: post_car(node.ports["api"], car, pin_roots=False),
    }
    if shutil.which("curl") is None:
        del runs["curl -F file=@wheel.car (whole process)"]
    times: dict[str, list[float]] = {what: [] for what in runs}
    for _ in range(REPEATS[size]):
        for what, run in runs.items():
            forget(node, store, [root])
            times[what].append(run())
    forget(node, store, [root])
    for what, ts in times.items():
        print(summary(what, block_bytes, ts))
    whole = times["dpip-import push (whole process)"]
    if "curl -F file=@wheel.car (whole process)" in times:
        print(f"  push / curl, whole processes (target >= 0.80): "
              f"{ratio(times['curl -F file=@wheel.car (whole process)'], whole)}")
    print(f"  push / python urllib post, whole processes: "
          f"{ratio(times['python -c urllib.request post (whole process)'], whole)}")
    print(f"  push() / http.client post, in process (target >= 0.80): "
          f"{ratio(times['http.client post of the CAR file (in process)'], times['push() (in process)'])}")
    _, peak, _ = run_cli(["push", "--api", node.api, "--store", str(store), root])
    print(f"  push peak RSS {peak / MB:.0f} MB (target < 300)")
    return store, root


def bench_next_release(work: Path, node: Any, store: Path, root: str) -> None:
    """The node holds release 1; release 2 changes one 2 MiB file: what push sends."""
    wheel2 = make_wheel(work, 2)
    _, _, out = run_cli(["wheel", "--store", str(store), str(wheel2)])
    new_line = next(line for line in out.splitlines() if "new in this store" in line)
    new_bytes = int(new_line.split(" of ")[-2].rsplit(" ", 1)[-1].replace(",", ""))
    _, _, out = run_cli(["push", "--api", node.api, "--store", str(store), out.split()[1]])
    sent = int(out.splitlines()[-1].split(" blocks, ")[1].split(" bytes")[0].replace(",", ""))
    print(f"next release (one 2 MiB file changed): {new_bytes / MB:.2f} MB of new blocks in the store, "
          f"push sent {sent / MB:.2f} MB of blocks")


def wait_for_gateway(port: int, deadline_s: float = 120.0) -> None:
    """Wait until serve-blocks answers the spec's probe (``/ipfs/bafkqaaa?format=raw``)."""
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/ipfs/bafkqaaa?format=raw")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"serve-blocks did not answer on port {port} within {deadline_s:g} s")
        time.sleep(0.2)


def bench_fetch(work: Path, store: Path, root: str, wheel: Path) -> None:
    from tests.node_support import free_port

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "importer", "serve-blocks", "--store", str(store),
                               "--port", str(port)], stderr=subprocess.DEVNULL)
    try:
        wait_for_gateway(port)
        remote, local, remote_rss, local_rss = [], [], [], []
        for i in range(REPEATS[50]):
            empty = work / f"empty-{i}"
            seconds, peak, _ = run_cli(["fetch", "--gateway", f"http://127.0.0.1:{port}", "--store", str(empty),
                                        root, "-o", str(work / "out-remote.whl"), "--force"])
            remote.append(seconds)
            remote_rss.append(peak)
            shutil.rmtree(empty)
            seconds, peak, _ = run_cli(["fetch", "--store", str(store), root, "-o", str(work / "out-local.whl"),
                                        "--force"])
            local.append(seconds)
            local_rss.append(peak)
        for out_file in ("out-remote.whl", "out-local.whl"):
            if (work / out_file).read_bytes() != wheel.read_bytes():
                raise SystemExit(f"{out_file} differs from the wheel")
        size = wheel.stat().st_size / MB
        for what, times, peaks in (("fetch from the full local store:", local, local_rss),
                                   ("fetch --gateway (serve-blocks) into an empty store:", remote, remote_rss)):
            median = statistics.median(times)
            print(f"{what:<56} {size / median:6.1f} MB/s of archive (median of {len(times)}: {median:.2f} s, best "
                  f"{min(times):.2f} s; peak RSS {max(peaks) / MB:.0f} MB, target < 300)")
        print(f"fetch --gateway / local fetch time: {statistics.median(remote) / statistics.median(local):.2f} "
              f"(medians), {min(remote) / min(local):.2f} (bests)")
    finally:
        server.terminate()
        server.wait(30)


def start_node(work: Path) -> Any:
    """A js-ipfs daemon in ``work`` (this process must already be in a private network namespace)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.node_support import JsIpfs, locate_nodes, require_private_netns

    require_private_netns()
    node = JsIpfs(locate_nodes(), work / "jsipfs")
    node.init()
    node.start()
    return node


def inside(work: Path, sizes: list[int]) -> int:
    import importer.sinks.node
    import importer.sinks.push  # noqa: F401  (imported before timing: a long-running caller has them)

    node = start_node(work)
    warm_bytecode()
    try:
        stores = {size: bench_push(work, node, size) for size in sizes}
        if 50 in stores:
            store, root = stores[50]
            run_cli(["push", "--api", node.api, "--store", str(store), root])
            bench_next_release(work / "push-50", node, store, root)
    finally:
        node.stop()
    if 50 in stores:
        bench_fetch(work, *stores[50], work / "push-50" / "dpip_perf-1.0-cp311-cp311-linux_x86_64.whl")
    return 0


def reexec_in_private_netns(module: str, work: str, *args: str) -> int:
    """Run ``python -m MODULE --inside WORK ARGS`` under ``unshare -n`` with only loopback up.

    Python processes started there keep their bytecode (in ``WORK/pycache``), as an installed
    ``dpip-import`` has it: with ``PYTHONDONTWRITEBYTECODE`` set (as on these machines), every
    process would compile its ~100 modules again, ~0.15 s that no user pays.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(Path(work) / "pycache")
    return subprocess.run(["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$0" "$@"', sys.executable,
                           "-m", module, "--inside", work, *args], env=env, check=False).returncode


def warm_bytecode() -> None:
    """Compile (and cache) the modules the timed processes import, before any is timed."""
    run_cli(["push", "--help"])
    subprocess.run([sys.executable, "-c", "import urllib.request"], check=True)


def preamble() -> str | None:
    """None when a node can be run here, else why not; prints the run's commit and load."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return "needs root and unshare (the node runs in a private network namespace): not measured"
    if not os.environ.get("DPIP_NODES"):
        return "DPIP_NODES is not set: run `make nodes` (make perf sets it): not measured"
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            check=False).stdout.strip()
    print(f"commit {commit or '?'}, {time.strftime('%Y-%m-%d %H:%M')}, load average "
          f"{json.dumps([round(x, 2) for x in os.getloadavg()])}, {os.cpu_count()} cores")
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.perf_node", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="50,200", help="wheel sizes in MB to push (50, 200; default both)")
    parser.add_argument("--inside", metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    if any(s not in SIZES for s in sizes):
        parser.error(f"--sizes: each of {sorted(SIZES)}")
    if args.inside:
        return inside(Path(args.inside), sizes)
    why_not = preamble()
    if why_not is not None:
        print(why_not)
        return 0
    with tempfile.TemporaryDirectory(prefix="perf-node-") as work:
        return reexec_in_private_netns("bench.perf_node", work, "--sizes", args.sizes)


if __name__ == "__main__":
    raise SystemExit(main())
