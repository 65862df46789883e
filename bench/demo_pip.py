"""``make demo``, the pip half: the store's archives as an index tree, served, and installed by pip with hashes.

Called by :mod:`bench.demo` once its archives are in the store: builds the index tree
(``dpip-import mirror index``), starts ``serve`` on a free loopback port, creates a fresh venv
and runs that venv's own pip with ``--require-hashes --index-url http://127.0.0.1:PORT/simple/``
on the newest wheel, then says (from the server's access log and the venv) what pip asked for
and what it got. No network: pip is given no other index and no find-links.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tempfile
import venv
from pathlib import Path

from importer.dag.cid import format_cid, parse_cid
from importer.dag.reader import iter_file, resolve
from importer.mirror.tree import build_store_index
from importer.server.launch import ServeOptions, start
from importer.sinks.store import BlockStore


def _clean_env(tmp: Path) -> dict[str, str]:
    """pip with no user configuration and no index but the one on its command line."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1",
               XDG_CONFIG_HOME=str(tmp / "xdg"))
    return env


def demo_pip(store: Path, wheel: Path, step: int) -> list[str]:
    """Index, serve and pip-install ``wheel`` (already imported into ``store``); return the summary sentences
    of what it measured."""
    project = wheel.name.split("-")[0].replace("_", "-").lower()
    version = wheel.name.split("-")[1]
    sha256 = hashlib.sha256(wheel.read_bytes()).hexdigest()
    print(f"{step}. dpip-import mirror index: the store's archives as a PEP 503/691 tree:")
    built = build_store_index(str(store))
    root = format_cid(built.root)
    print(f"   index {root}: {len(built.projects)} projects, {built.files} files")
    with BlockStore(store, create=False) as s:
        page = json.loads(b"".join(iter_file(s, resolve(s, parse_cid(root), f"simple/{project}/index.json"))))
    entry = next(f for f in page["files"] if f["filename"] == wheel.name)
    print(f"   simple/{project}/index.json names {wheel.name}: sha256 {entry['hashes']['sha256'][:16]}..., "
          f"archive root {entry['_dpip-root']}, metadata {entry.get('_dpip-metadata')}")
    with tempfile.TemporaryDirectory(prefix="dpip-demo-pip-") as tmp_name:
        tmp = Path(tmp_name)
        log = io.StringIO()
        running = start(ServeOptions(store, index_root=built.root, port=0, cache_dir=tmp / "cache"), log)
        try:
            print(f"{step + 1}. dpip-import serve at {running.url}; a fresh venv; its pip installs "
                  f"{project}=={version} with --require-hashes:")
            venv.EnvBuilder(with_pip=True).create(tmp / "venv")
            python = tmp / "venv" / "bin" / "python"
            req = tmp / "requirements.txt"
            req.write_text(f"{project}=={version} --hash=sha256:{sha256}\n")
            proc = subprocess.run([str(python), "-m", "pip", "install", "--no-cache-dir", "--require-hashes",
                                   "--only-binary", ":all:", "--index-url", running.url, "-r", str(req)],
                                  capture_output=True, text=True, env=_clean_env(tmp), check=False)
            if proc.returncode != 0:
                raise SystemExit(f"pip install failed: {proc.stderr.strip()[-2000:]}")
            shown = subprocess.run([str(python), "-m", "pip", "show", project], capture_output=True, text=True,
                                   env=_clean_env(tmp), check=True).stdout
        finally:
            running.stop()
    lines = log.getvalue().splitlines()
    for line in lines:
        print("   access log: " + line.split("] ", 1)[1])
    installed = next(line.split(":", 1)[1].strip() for line in shown.splitlines() if line.startswith("Version:"))
    page_line = next(line for line in lines if f'"GET /simple/{project}/"' in line)
    file_line = next(line for line in lines if f"/{wheel.name}\"" in line)
    sentence = (f"pip asked serve for the project page and got {page_line.split()[6]}; it installed {project} "
                f"{installed} from {wheel.name}, rebuilt from the store's blocks ({file_line.split()[5]} bytes, its "
                "sha256 checked by the server as it streamed and by pip against the hash in the requirements).")
    return [sentence]
