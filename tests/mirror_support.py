"""Test support for the mirror, the server and dpip: real distributions built at test time, and a fake PEP 691 index.

The distributions: two projects, two releases each, a wheel and an sdist per release, built
with hatchling (a real PEP 517 backend, no network):

* ``alpha`` 1.0 and 2.0 (pure Python); the fake index marks ``alpha-2.0`` 's wheel yanked;
* ``beta`` 1.0 and 2.0, depending on ``alpha>=1.0``; beta 2.0 declares ``Requires-Python: >=3.99``,
  which excludes every Python that runs these tests.

:class:`FakeIndex` serves them on 127.0.0.1 as a Simple API: project pages in PEP 691 JSON or
PEP 503 HTML (by the Accept header, or forced), files with Range support, and optional faults
(a throttled file, a file whose bytes lie, a page that names another project's file). Every
request is logged, so tests can assert what the client asked.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import subprocess
import threading
import time
import venv
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import pytest

from .archive_builders import build_with_backend, write_project
from .oracle_support import build_once, shared_dir

#: Upload times the fake index reports, one per release (fixed, so pages are deterministic).
UPLOAD_TIMES: Final = {("alpha", "1.0"): "2024-01-02T03:04:05.000000Z", ("alpha", "2.0"): "2024-06-01T00:00:00.000000Z",
                       ("beta", "1.0"): "2024-02-03T00:00:00.000000Z", ("beta", "2.0"): "2024-07-01T00:00:00.000000Z"}
#: The file the fake index lists as yanked, and why.
YANKED: Final = ("alpha-2.0-py3-none-any.whl", "broken build")
#: beta 2.0's requires-python: no Python that runs these tests satisfies it (and hatchling still tags the wheel py3).
BETA2_REQUIRES: Final = ">=3.99"


def _pyproject(name: str, version: str, requires_python: str, deps: list[str]) -> bytes:
    deps_text = ", ".join(f'"{d}"' for d in deps)
    return (f'[build-system]\nrequires = ["hatchling"]\nbuild-backend = "hatchling.build"\n\n'
            f'[project]\nname = "{name}"\nversion = "{version}"\ndescription = "dpip mirror test project"\n'
            f'requires-python = "{requires_python}"\ndependencies = [{deps_text}]\n\n'
            f'[tool.hatch.build.targets.wheel]\npackages = ["{name}"]\n').encode()


def project_sources(name: str, version: str) -> dict[str, bytes]:
    requires = BETA2_REQUIRES if (name, version) == ("beta", "2.0") else ">=3.8"
    deps = ["alpha>=1.0"] if name == "beta" else []
    body = "".join(f"def f{i}(x):\n    return x * {i} + {len(version)}\n\n" for i in range(400))
    return {
        "pyproject.toml": _pyproject(name, version, requires, deps),
        f"{name}/__init__.py": f'VERSION = "{version}"\n'.encode(),
        f"{name}/core.py": body.encode(),
    }


@dataclass(frozen=True, slots=True)
class Dist:
    project: str
    version: str
    path: Path

    @property
    def filename(self) -> str:
        return self.path.name

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()

    @property
    def requires_python(self) -> str:
        return BETA2_REQUIRES if (self.project, self.version) == ("beta", "2.0") else ">=3.8"


def build_dists(folder: Path) -> list[Dist]:
    """The eight distributions (built once per test run, whichever worker asks first)."""
    def build(into: Path) -> None:
        for name in ("alpha", "beta"):
            for version in ("1.0", "2.0"):
                src = into / f"src-{name}-{version}"
                write_project(src, project_sources(name, version))
                out = into / "dist"
                build_with_backend("hatchling", "wheel", src, out)
                build_with_backend("hatchling", "sdist", src, out)

    build_once(folder, build)
    dists = []
    for path in sorted((folder / "dist").iterdir()):
        name, version = path.name.split("-")[:2]
        version = version.removesuffix(".tar.gz")
        dists.append(Dist(name, version, path))
    assert len(dists) == 8, dists
    return dists


# -- the fake index --------------------------------------------------------------------------------


@dataclass(slots=True)
class FakeIndex:
    """A Simple API on 127.0.0.1 serving ``dists``; see the module docstring."""

    dists: list[Dist]
    mode: str = "negotiate"  # "json", "html" or "negotiate" (by Accept, as PyPI)
    throttle: dict[str, float] = field(default_factory=dict)  # file name -> seconds per 64 KiB piece
    lie: set[str] = field(default_factory=set)  # file names served with one byte flipped
    declared_size: dict[str, int] = field(default_factory=dict)  # file name -> size the page claims
    yanked: dict[str, str | bool] = field(default_factory=lambda: {YANKED[0]: YANKED[1]})  # PEP 592 value
    piece: int = 64 * 1024  # bytes written between throttle pauses
    extra_files: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # project -> raw JSON entries
    log: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)  # (method, path, headers)
    port: int = 0
    _server: http.server.ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/simple/"

    def file_entry(self, d: Dist) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "filename": d.filename, "url": f"../../files/{d.filename}", "hashes": {"sha256": d.sha256},
            "size": self.declared_size.get(d.filename, d.path.stat().st_size), "upload-time": UPLOAD_TIMES[(d.project, d.version)],
            "requires-python": d.requires_python, "yanked": self.yanked.get(d.filename, False),
        }
        return entry

    def page_json(self, project: str) -> dict[str, Any]:
        files = [self.file_entry(d) for d in self.dists if d.project == project]
        files += self.extra_files.get(project, [])
        versions = sorted({d.version for d in self.dists if d.project == project})
        return {"meta": {"api-version": "1.1"}, "name": project, "versions": versions, "files": files}

    def page_html(self, project: str) -> str:
        import html

        links = []
        for f in self.page_json(project)["files"]:
            attrs = f' href="{f["url"]}#sha256={f["hashes"]["sha256"]}"'
            if f.get("requires-python"):
                attrs += f' data-requires-python="{html.escape(f["requires-python"])}"'
            if f.get("yanked"):
                attrs += f' data-yanked="{html.escape(f["yanked"] if isinstance(f["yanked"], str) else "")}"'
            links.append(f"<a{attrs}>{f['filename']}</a><br/>")
        return "<!DOCTYPE html><html><body>" + "\n".join(links) + "</body></html>"

    def start(self) -> FakeIndex:
        index = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                index.log.append(("GET", self.path, dict(self.headers.items())))
                parts = self.path.split("?")[0].strip("/").split("/")
                if len(parts) == 2 and parts[0] == "simple":
                    self._page(parts[1])
                elif len(parts) == 2 and parts[0] == "files":
                    self._file(parts[1])
                else:
                    self._send(404, "text/plain", b"not found")

            def _send(self, code: int, ctype: str, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def _page(self, project: str) -> None:
                if not any(d.project == project for d in index.dists) and project not in index.extra_files:
                    self._send(404, "text/plain", b"no such project")
                    return
                accept = self.headers.get("Accept", "")
                want_json = index.mode == "json" or (index.mode == "negotiate" and "vnd.pypi.simple.v1+json" in accept)
                if want_json:
                    self._send(200, "application/vnd.pypi.simple.v1+json", json.dumps(index.page_json(project)).encode())
                else:
                    self._send(200, "text/html", index.page_html(project).encode())

            def _file(self, name: str) -> None:
                dist = next((d for d in index.dists if d.filename == name), None)
                if dist is None:
                    self._send(404, "text/plain", b"no such file")
                    return
                data = dist.path.read_bytes()
                if name in index.lie:
                    data = data[:-10] + bytes([data[-10] ^ 1]) + data[-9:]
                start = 0
                code = 200
                headers: dict[str, str] = {"Accept-Ranges": "bytes"}
                rng = self.headers.get("Range")
                if rng and rng.startswith("bytes=") and rng.endswith("-"):
                    start = int(rng[6:-1])
                    if start >= len(data):
                        self._send(416, "text/plain", b"", {"Content-Range": f"bytes */{len(data)}"})
                        return
                    code = 206
                    headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
                body = data[start:]
                self.send_response(code)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                delay = index.throttle.get(name)
                piece = index.piece
                try:
                    for i in range(0, len(body), piece):
                        self.wfile.write(body[i:i + piece])
                        self.wfile.flush()
                        if delay:
                            time.sleep(delay)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def file_requests(self) -> list[tuple[str, dict[str, str]]]:
        return [(path, headers) for _, path, headers in self.log if path.startswith("/files/")]


def make_venv(path: Path) -> Path:
    """A fresh virtual environment with pip (ensurepip: offline); returns its python."""
    venv.EnvBuilder(with_pip=True, clear=True).create(path)
    return path / "bin" / "python"


def installed(python: Path) -> dict[str, str]:
    """Distribution name -> version installed in the venv of ``python``."""
    code = "import json, importlib.metadata as m; print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))"
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True).stdout
    return {k.lower(): v for k, v in json.loads(out).items()}


def uninstall(python: Path, *names: str) -> None:
    subprocess.run([str(python), "-m", "pip", "uninstall", "-y", "-q", *names], capture_output=True, check=False)


def pip_env(tmp: Path) -> dict[str, str]:
    """The environment pip and uv run in: no user config, no index from the caller, no cache."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1",
               UV_NO_CONFIG="1", UV_CACHE_DIR=str(tmp / "uv-cache"), XDG_CONFIG_HOME=str(tmp / "xdg"))
    return env


def uv_binary() -> str:
    """The uv test dependency's binary."""
    from uv import find_uv_bin  # type: ignore[import-untyped,unused-ignore]

    return str(find_uv_bin())


def wait_for(predicate: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.05)



def shared_dists(tmp_path_factory: pytest.TempPathFactory) -> list[Dist]:
    """The eight distributions, in the folder every xdist worker of the run shares."""
    return build_dists(shared_dir(tmp_path_factory) / "mirror-dists")


def serving(dists: list[Dist]) -> Iterator[FakeIndex]:
    """A fake index serving ``dists`` for the duration of a fixture."""
    fake = FakeIndex(list(dists)).start()
    try:
        yield fake
    finally:
        fake.stop()
