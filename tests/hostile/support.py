"""Running the CLI against hostile input: in a child process, under limits, with the one-line check.

A child process is what proves the bounds: a memory or file-size limit set with ``setrlimit``
before ``exec`` applies to the command alone, a hang ends at the timeout (the test fails, the
child is killed), and the exit code and streams are exactly what a user sees.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Final

from importer.dag.cid import format_cid
from tests.oracle_support import dpip_import_executable

from .forge import Forge

#: A guard, not a timing: every hostile command here ends in well under a second on an idle
#: machine; 120 s only catches a hang (or a bound that does not hold) on a loaded one.
HANG_TIMEOUT_S: Final = 120
MiB: Final = 1024 * 1024


#: Sets the address-space and file-size limits given as its first two arguments (0: none), then
#: becomes the command that follows: the limits apply to that command alone, and no
#: ``preexec_fn`` runs in the (threaded) test process.
_LAUNCHER: Final = (
    "import os, resource, sys\n"
    "for limit, value in ((resource.RLIMIT_AS, int(sys.argv[1])), (resource.RLIMIT_FSIZE, int(sys.argv[2]))):\n"
    "    if value:\n"
    "        resource.setrlimit(limit, (value, value))\n"
    "os.execv(sys.argv[3], sys.argv[3:])\n"
)


def cli_argv(*args: str | os.PathLike[str], memory: int | None = None, file_size: int | None = None) -> list[str]:
    """The argv that runs ``dpip-import ARGS`` under the given limits."""
    exe = str(dpip_import_executable())
    return [sys.executable, "-c", _LAUNCHER, str(memory or 0), str(file_size or 0), exe, *(os.fspath(a) for a in args)]


def run_cli(*args: str | os.PathLike[str], cwd: Path | None = None, memory: int | None = None,
            file_size: int | None = None, umask: int = -1,
            timeout: float = HANG_TIMEOUT_S) -> subprocess.CompletedProcess[bytes]:
    """``dpip-import ARGS`` in a child process; stdout as bytes, stderr as bytes."""
    return subprocess.run(cli_argv(*args, memory=memory, file_size=file_size), cwd=cwd, capture_output=True,
                          timeout=timeout, check=False, umask=umask)


def one_line_error(proc: subprocess.CompletedProcess[bytes]) -> str:
    """The one stderr line of a failed command (asserting there is exactly one, no traceback)."""
    err = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 1, (proc.returncode, err)
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    return lines[0]


def import_car(forge: Forge, tmp_path: Path, *roots: bytes) -> Path:
    """Write the forge's blocks to a CAR, import it into a fresh store; return the store."""
    store = tmp_path / "store"
    car = forge.car(tmp_path / "hostile.car", roots)
    proc = run_cli("import-car", "--store", store, car)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode().split() == [format_cid(r) for r in roots]
    car.unlink()
    return store


def files_under(folder: Path) -> list[str]:
    """Every path below ``folder`` (links not followed), sorted, relative."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            found.append(os.path.relpath(os.path.join(dirpath, name), folder))
    return sorted(found)
