"""``python -m bench.perf_hostile``: what hostile roots and CARs cost the read commands.

Each case is built by ``tests/hostile/forge.py`` (hand-made blocks, a small CAR however much it
claims), imported with ``import-car`` into a temporary store and read by the CLI in a child
process, which reports its wall time, peak RSS and the bytes it wrote (``wchar`` of
``/proc/self/io``: every byte passed to write(2), stdout and stderr included). The child runs
under a 1 GiB file-size cap and a timeout, so a case that does not stop shows as killed.

``--baseline SRC`` runs the same cases a second time with another checkout's ``importer``
package first on ``sys.path`` (e.g. ``/work/main``), to print before and after in one run.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

from importer.dag.cid import format_cid

#: The wrapper around ``importer.cli.main.main``: caps the file size, runs the command, then
#: writes ``{"rc", "wchar", "maxrss"}`` on the descriptor ``$PERF_HOSTILE_FD`` names.
_CHILD: Final = """
import json, os, resource, sys
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 30, 1 << 30))
from importer.cli.main import main
try:
    rc = main(sys.argv[1:])
except BaseException as e:
    print(f"{type(e).__name__}: {e}"[:300], file=sys.stderr)
    rc = "exception"
sys.stdout.flush()
io = dict(line.split(": ") for line in open("/proc/self/io").read().splitlines())
with os.fdopen(int(os.environ["PERF_HOSTILE_FD"]), "w") as out:
    json.dump({"rc": rc, "wchar": int(io["wchar"]),
               "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}, out)
"""
#: A case that has not ended after this long is reported as "timeout" (and killed).
TIMEOUT_S: Final = 60.0
#: The many-stream import is real work (a gzip search per stream): ~2.5 min for 100,000 streams.
IMPORT_TIMEOUT_S: Final = 1800.0


def run(args: Sequence[str], cwd: Path, src: Path | None, timeout: float = TIMEOUT_S) -> dict[str, object]:
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = f"{src}{os.pathsep}{env.get('PYTHONPATH', '')}"
    read, write = os.pipe()
    env["PERF_HOSTILE_FD"] = str(write)
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, *args], cwd=cwd, env=env, pass_fds=(write,),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    os.close(write)
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        os.close(read)
        return {"result": f"timeout after {timeout:.0f} s (killed)", "wall_s": timeout}
    wall = time.perf_counter() - start
    with os.fdopen(read) as f:
        report = f.read()
    figures: dict[str, object] = json.loads(report) if report else {"rc": f"signal {-proc.returncode}"}
    lines = err.decode("utf-8", "replace").strip().splitlines()
    figures.update(wall_s=round(wall, 2), stderr=(lines[-1][:160] if lines else ""), stderr_lines=len(lines))
    return figures


def cases(work: Path) -> dict[str, tuple[Path, list[str]]]:
    """Name -> (store, command) of every case, its inputs built and imported once."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.hostile.forge import Forge, nested_entry

    built: dict[str, tuple[Path, list[str]]] = {}

    def store_of(name: str, forge: Forge, root: bytes) -> Path:
        store = work / f"store-{name}"
        car = forge.car(work / f"{name}.car", [root])
        subprocess.run([sys.executable, "-m", "importer", "import-car", "--store", str(store), str(car)],
                       check=True, stdout=subprocess.DEVNULL)
        car.unlink()
        return store

    def add(name: str, build: Callable[[Forge], bytes], command: str, *extra: str) -> None:
        forge = Forge()
        root = build(forge)
        built[name] = (store_of(name, forge, root), [command, format_cid(root), *extra])

    def laughs(per_level: int, honest: bool) -> Callable[[Forge], bytes]:
        def build(forge: Forge) -> bytes:
            level, size = forge.honest_root(b"hello world" * 10), 110
            for _ in range(3):
                size *= per_level
                recipe = forge.recipe(skeleton=forge.skeleton(b""), skeleton_size=0,
                                      members=[nested_entry(level)] * per_level)
                level = forge.root(size=size if honest else 200, recipe=recipe)
            return level
        return build

    def liar(forge: Forge) -> bytes:
        recipe = forge.recipe(skeleton=forge.skeleton(b""), skeleton_size=0, members=[[0, "big", -1]])
        return forge.root(size=123, tree=forge.directory({"big": forge.zero_file(3 << 30)}).cid, recipe=recipe)

    def pages(forge: Forge) -> bytes:
        page = forge.page([[0, -1, -1]] * 3000)
        recipe = forge.recipe(skeleton=forge.skeleton(b""), skeleton_size=0, pages=[page] * 300, count=900_000)
        return forge.root(size=0, recipe=recipe)

    def deep(forge: Forge) -> bytes:
        node = forge.directory({"leaf.txt": forge.file(b"bottom\n")})
        for _ in range(1500):
            node = forge.directory({"d": node})
        return node.cid

    add("billion laughs, honest sizes (verify)", laughs(1000, True), "verify")
    add("billion laughs, sizes say 200 (verify)", laughs(1000, False), "verify")
    add("small laughs 10^3, sizes say 200 (verify)", laughs(10, False), "verify")
    add("root says 123 bytes, tree file 3 GiB (fetch)", liar, "fetch", "-o", "out.zip")
    add("page listed 300 times (verify)", pages, "verify")
    add("1,500 nested directories (get)", deep, "get", "-o", "deep")
    return built


def largest_block(stream_count: int, work: Path, src: Path | None) -> dict[str, object]:
    """Import an sdist whose tar is cut into ``stream_count`` gzip streams (as a hostile or odd
    packer may write it); report the store's largest block and the recipe's version."""
    import io
    import tarfile

    from importer.dag.cbor import decode_dag_cbor
    from importer.sinks.store import BlockStore

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for i in range(max(50, stream_count // 500)):  # ~1 KiB of tar each: ~2 bytes per stream
            data = b"line %d\n" % i * 3
            info = tarfile.TarInfo(f"multi-1.0/f{i}.txt")
            info.size, info.mtime = len(data), 0
            tar.addfile(info, io.BytesIO(data))
    body = buffer.getvalue()
    step = max(1, len(body) // stream_count)
    sdist = work / "multi-1.0.tar.gz"
    sdist.write_bytes(b"".join(gzip.compress(body[i:i + step], 9, mtime=0) for i in range(0, len(body), step)))
    store = work / f"store-multi-{'baseline' if src else 'this'}"
    figures = run(["auto", "--store", str(store), str(sdist)], work, src, IMPORT_TIMEOUT_S)
    figures["streams"] = len(range(0, len(body), step))
    if figures.get("rc") != 0:
        return figures
    with BlockStore(store, create=False) as opened:
        figures["largest_block"] = max(len(opened.get(cid)) for cid in opened.iter_cids())
        root = next(record.root for record in opened.iter_archives())
        figures["recipe_version"] = decode_dag_cbor(opened.get(bytes(decode_dag_cbor(opened.get(root))["recipe"])))["v"]
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.perf_hostile", description=__doc__)
    parser.add_argument("--baseline", type=Path, help="another checkout to run the same cases with")
    parser.add_argument("--streams", type=int, default=20_000, help="gzip streams of the multi-stream sdist")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="perf-hostile-") as folder:
        work = Path(folder)
        out = work / "out"
        for name, (store, command) in cases(work).items():
            for label, src in (("this", None), ("baseline", args.baseline)):
                if label == "baseline" and src is None:
                    continue
                out.mkdir(exist_ok=True)
                figures = run([*command, "--store", str(store)], out, src)
                print(json.dumps({"case": name, "code": label, **figures}), flush=True)
                subprocess.run(["rm", "-rf", str(out)], check=True)  # rm recurses without Python's limit
        for label, src in (("this", None), ("baseline", args.baseline)):
            if label == "baseline" and src is None:
                continue
            figures = largest_block(args.streams, work, src)
            print(json.dumps({"case": f"sdist of {args.streams} gzip streams (import)", "code": label, **figures}),
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
