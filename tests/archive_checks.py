"""The round trip every archive test asserts: import into a store, fetch back, sha256 equal, verify ok."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from .conftest import RunCli


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while piece := f.read(1 << 20):
            digest.update(piece)
    return digest.hexdigest()


def import_json(cli: RunCli, path: Path, store: Path, *flags: str, kind: str = "auto") -> dict[str, Any]:
    """``dpip-import <kind> --json --verbose`` of one file; its JSON object (fails on a non-zero exit)."""
    rc, out, err = cli(kind, "--json", "--verbose", "--store", store, *flags, path)
    assert rc == 0, f"import of {path.name} failed: {err.strip()}"
    lines = out.strip().splitlines()
    assert len(lines) == 1, out
    result: dict[str, Any] = json.loads(lines[0])
    return result


def assert_roundtrip(cli: RunCli, path: Path, store: Path, *flags: str, kind: str = "auto") -> dict[str, Any]:
    """Import ``path`` into ``store``, fetch it to a new file, and check sha256 and ``verify``.

    Returns the import's JSON summary. Fetching writes next to the store, never over ``path``.
    """
    original = sha256_file(path)
    summary = import_json(cli, path, store, *flags, kind=kind)
    assert summary["sha256"] == original
    assert summary["size"] == path.stat().st_size
    out = store.parent / f"fetched-{summary['root'][-12:]}-{path.name}"
    rc, _, err = cli("fetch", summary["root"], "-o", out, "--store", store)
    assert rc == 0, f"fetch of {path.name} failed: {err.strip()}"
    assert sha256_file(out) == original, f"{path.name}: the rebuilt archive differs"
    os.unlink(out)
    rc, verified, err = cli("verify", summary["root"], "--store", store)
    assert rc == 0, f"verify of {path.name} failed: {err.strip()}"
    assert verified.startswith("ok ") and original in verified
    return summary
