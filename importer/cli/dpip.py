"""``dpip``: the seed's pip wrapper: pip, pointed at a server of the store's mirror started in-process.

``dpip [OPTIONS] PIP-ARGS...`` starts ``serve`` on a free loopback port, runs the user's own pip
(``python -m pip`` of this interpreter, or ``--pip PATH``) with ``PIP-ARGS`` and ``--index-url``
pointing at it, and stops the server when pip ends, exiting with pip's code. Projects the mirror
does not hold go to ``--fallback URL`` (``$DPIP_FALLBACK``) when one is configured, through the
server, so pip sees one index; ``--pull-through`` also imports what it fetches there into the store.

``dpip pin [-r LOCK] [--cache [DIR]]`` is the seed's "pin what you installed": it imports wheels
into the store: those of a requirements lock (downloaded by the user's pip, so from its cache
when they are there, and checked against the lock's hashes), or every wheel in pip's cache
(pip caches responses of https and trusted hosts: ``dpip`` marks its server trusted for this).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ..errors import ImporterError

#: The dpip options that take a value (everything after them, up to the first other word, is dpip's).
_VALUE_OPTIONS = ("--store", "--index", "--fallback", "--pip", "--cache-dir")
_FLAG_OPTIONS = ("--pull-through", "--debug", "--quiet")
FALLBACK_ENV = "DPIP_FALLBACK"


def _pip_command(pip: str | None) -> list[str]:
    return [pip] if pip else [sys.executable, "-m", "pip"]


def split_args(argv: Sequence[str]) -> tuple[dict[str, str | bool], list[str]]:
    """dpip's own options (before the pip command) and the rest, which goes to pip untouched.

    >>> split_args(["--store", "s", "install", "-r", "req.txt"])
    ({'store': 's'}, ['install', '-r', 'req.txt'])
    """
    options: dict[str, str | bool] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, eq, value = arg.partition("=")
        if name in _VALUE_OPTIONS:
            if not eq:
                if i + 1 >= len(argv):
                    raise SystemExit(f"dpip: {name} needs a value")
                value = argv[i + 1]
                i += 1
            options[name[2:].replace("-", "_")] = value
        elif arg in _FLAG_OPTIONS:
            options[arg[2:].replace("-", "_")] = True
        else:
            break
        i += 1
    return options, list(argv[i:])


USAGE = """usage: dpip [--store DIR] [--index ROOT] [--fallback URL] [--pull-through] [--pip PATH] PIP-COMMAND [ARGS...]
       dpip pin [--store DIR] [--pip PATH] (-r LOCK | --cache [DIR])

Runs pip against a server of the dpip store's mirror, started for the duration of the command.
  --store DIR      the block store (default: $DPIP_STORE, else the user data directory)
  --index ROOT     serve this index tree instead of the store's own mirror
  --fallback URL   Simple API for projects the mirror does not hold (default: $DPIP_FALLBACK; none)
  --pull-through   import what is fetched from the fallback into the store
  --pip PATH       the pip to run (default: python -m pip of this interpreter)
  --cache-dir DIR  the server's file cache (default: <store>/serve-cache)
"""


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    options, rest = split_args(args)
    if not rest or rest[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0 if rest else 2
    try:
        if rest[0] == "pin":
            return run_pin(options, rest[1:])
        return run_pip(options, rest)
    except ImporterError as e:
        if options.get("debug"):
            raise
        print(f"dpip: {e}", file=sys.stderr)
        return 1


def run_pip(options: dict[str, str | bool], pip_args: list[str]) -> int:
    from ..dag.cid import parse_cid
    from ..server.launch import ServeOptions, start
    from ..sinks.store import default_store_path

    store = default_store_path(str(options["store"]) if options.get("store") else None)
    fallback = str(options.get("fallback") or os.environ.get(FALLBACK_ENV) or "") or None
    index = str(options["index"]) if options.get("index") else None
    serve = ServeOptions(store_dir=store, index_root=parse_cid(index.removeprefix("/ipfs/")) if index else None,
                         fallback=fallback, pull_through=bool(options.get("pull_through")), port=0,
                         cache_dir=Path(str(options["cache_dir"])) if options.get("cache_dir") else None)
    log_path = store / "dpip-access.log"
    store.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a", buffering=1) as log:
        running = start(serve, log)
        try:
            command = [*_pip_command(str(options["pip"]) if options.get("pip") else None), *pip_args]
            if pip_args and pip_args[0] in ("install", "download", "wheel", "index", "lock"):
                # Trusted: pip caches only responses of https or trusted hosts, and a cache that
                # holds what was installed is what `dpip pin --cache` imports later.
                command += ["--index-url", running.url, "--trusted-host", "127.0.0.1"]
            return subprocess.call(command)
        finally:
            if running.pull is not None:
                running.pull.join()
            running.stop()


def _wheel_name(path: Path) -> str | None:
    """The file name of the wheel at ``path`` (pip's cache keeps bodies under hashed names),
    from its ``.dist-info`` directory and its WHEEL file's tags; None if it is no wheel."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            infos = [n for n in z.namelist() if n.count("/") == 1 and n.endswith(".dist-info/WHEEL")]
            if len(infos) != 1:
                return None
            text = z.read(infos[0]).decode("utf-8", "replace")
    except (zipfile.BadZipFile, OSError, KeyError, ValueError):
        return None
    stem = infos[0].split("/")[0][: -len(".dist-info")]
    tags = [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Tag:")]
    build = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Build:")), None)
    if not tags or stem.count("-") != 1:
        return None
    parts = [t.split("-") for t in tags]
    if any(len(p) != 3 for p in parts):
        return None
    pys, abis, plats = (list(dict.fromkeys(p[i] for p in parts)) for i in range(3))
    if len(pys) * len(abis) * len(plats) != len(set(tags)):
        return None  # not a product of its parts: no compressed tag set names it
    build_part = f"-{build}" if build else ""
    return f"{stem}{build_part}-{'.'.join(pys)}-{'.'.join(abis)}-{'.'.join(plats)}.whl"


#: msgpack ``bin`` headers (format byte -> bytes of big-endian length that follow it).
_MSGPACK_BIN = {0xC4: 1, 0xC5: 2, 0xC6: 4}


def cached_body(data: bytes) -> bytes | None:
    """The response body of one entry of pip's HTTP cache (CacheControl's ``cc=4,`` + msgpack format,
    where the body is the ``bin`` value of the ``body`` key); None if it is not one.

    >>> cached_body(b"cc=4," + bytes([0x82, 0xa8]) + b"response" + bytes([0x81, 0xa4]) + b"body" + bytes([0xc4, 3]) + b"abc")
    b'abc'
    """
    if not data.startswith(b"cc=4,"):
        return None
    at = data.find(b"\xa4body")
    if at < 0 or at + 6 > len(data) or data[at + 5] not in _MSGPACK_BIN:
        return None
    width = _MSGPACK_BIN[data[at + 5]]
    length = int.from_bytes(data[at + 6:at + 6 + width], "big")
    start = at + 6 + width
    return data[start:start + length] if start + length <= len(data) else None


def cache_wheels(cache_dir: Path, scratch: Path) -> dict[str, Path]:
    """Wheel file name -> path of every wheel in pip's cache: built wheels (``wheels/``), downloaded
    ones kept as separate bodies (``http-v2/**/*.body``) and those inside cache entries (written to
    ``scratch``), named from their own contents."""
    found: dict[str, Path] = {}
    for path in sorted((cache_dir / "wheels").rglob("*.whl")):
        found.setdefault(path.name, path)
    for folder in ("http-v2", "http"):
        for path in sorted(p for p in (cache_dir / folder).rglob("*") if p.is_file()):
            with open(path, "rb") as f:
                head = f.read(5)
            if head[:4] == b"PK\x03\x04":
                candidate = path
            elif head == b"cc=4,":
                body = cached_body(path.read_bytes())
                if body is None or not body.startswith(b"PK\x03\x04"):
                    continue
                candidate = scratch / path.name
                candidate.write_bytes(body)
            else:
                continue
            name = _wheel_name(candidate)
            if name is not None:
                found.setdefault(name, candidate)
    return found


def _pip_cache_dir(pip: list[str]) -> Path:
    out = subprocess.run([*pip, "cache", "dir"], capture_output=True, text=True, check=False)
    if out.returncode != 0 or not out.stdout.strip():
        raise ImporterError(f"cannot find pip's cache: {' '.join(pip)} cache dir: {out.stderr.strip()[-200:]}")
    return Path(out.stdout.strip().splitlines()[-1])


def run_pin(options: dict[str, str | bool], args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="dpip pin", description="import wheels pip has into the store")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("-r", "--requirement", metavar="LOCK", help="a requirements lock (name==version --hash=...)")
    group.add_argument("--cache", nargs="?", const="", metavar="DIR", help="pip's cache (default: pip cache dir)")
    parsed = parser.parse_args(args)
    pip = _pip_command(str(options["pip"]) if options.get("pip") else None)
    from ..mirror.pin import pin_files
    from ..sinks.store import default_store_path

    store = default_store_path(str(options["store"]) if options.get("store") else None)
    if parsed.requirement:
        with tempfile.TemporaryDirectory(prefix="dpip-pin-") as tmp:
            rc = subprocess.call([*pip, "download", "--no-deps", "-r", parsed.requirement, "-d", tmp])
            if rc != 0:
                print(f"dpip pin: pip download failed with exit code {rc}", file=sys.stderr)
                return rc
            files = {p.name: p for p in Path(tmp).iterdir() if p.is_file()}
            report = pin_files(store, files)
    else:
        cache = Path(parsed.cache) if parsed.cache else _pip_cache_dir(pip)
        with tempfile.TemporaryDirectory(prefix="dpip-pin-") as tmp:
            report = pin_files(store, cache_wheels(cache, Path(tmp)))
    for line in report.lines:
        print(line)
    print(f"pinned {report.imported} new archives ({report.already} already in the store, {len(report.failed)} failed) "
          f"into {store}; index {report.index}")
    return 1 if report.failed else 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
