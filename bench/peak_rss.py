"""The peak resident memory of a ``dpip-import`` child process, measured so that it is the child's own.

Used by the benchmarks (``run_cli``) and by the tests that cap memory. ``ru_maxrss`` (from
``wait4`` or ``getrusage``) is the wrong figure for a child started by a test or a benchmark:
Linux carries the high-water mark of the address space a process execs *from* into the new one
(``setmax_mm_hiwater_rss`` in ``exec_mmap``), and ``subprocess`` forks or vforks from the pytest
worker (or the benchmark), whose own peak after a few hundred tests is 300 MB and more. ``VmHWM`` in
``/proc/self/status`` belongs to the address space made at exec, so it counts the child alone.
The child runs :data:`CHILD_MAIN`, which runs ``dpip-import`` and writes its ``VmHWM`` (in bytes)
to the file named by :data:`PEAK_FILE_ENV` as it exits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

#: The environment variable naming the file the child writes its peak RSS to.
PEAK_FILE_ENV: Final = "DPIP_TEST_PEAK_RSS_FILE"

#: ``python -c CHILD_MAIN ARGS...`` is ``dpip-import ARGS...`` that reports its own peak RSS.
CHILD_MAIN: Final = f"""
import os, sys
from importer.cli.main import main
try:
    rc = main(sys.argv[1:])
finally:
    with open("/proc/self/status") as status:
        kib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    with open(os.environ["{PEAK_FILE_ENV}"], "w") as out:
        out.write(str(kib * 1024))
sys.exit(rc)
"""


def read_peak(path: Path) -> int:
    """The peak RSS in bytes a :data:`CHILD_MAIN` child wrote to ``path``."""
    return int(path.read_text())
