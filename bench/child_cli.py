"""The real ``dpip-import`` CLI run in a child process, as the benchmarks time and use it.

A child process counts the interpreter's start-up and the store's opening the way a user's
command does, and its peak memory and CPU are its own.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence


def run_cli(args: Sequence[str]) -> None:
    """``python -m importer ARGS`` with output discarded; RuntimeError with its stderr if it fails."""
    command = [sys.executable, "-m", "importer", *args]
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.decode('utf-8', 'replace').strip()}")
