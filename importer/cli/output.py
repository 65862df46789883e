"""Where ``fetch`` writes an archive: never a path taken from data, never over a file without ``--force``.

A root's ``name`` is written by whoever made the root, so it only ever names a file in a
directory the user chose (the current one, or ``-o DIR``), and only when it is a plain wheel or
sdist file name: one path component, no ``..``, no leading dot, no NUL or control character, a
known archive suffix, and for a wheel the five or six dash-separated fields of PEP 427 (an
sdist is checked more loosely than PEP 625, which legacy sdists such as
``python-dateutil-2.8.2.tar.gz`` predate). Anything else is refused with a line saying to pass
``-o``. ``-o FILE`` writes that file, ``-o DIR`` writes ``DIR/<name>``, ``-o -`` streams to stdout.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Final

from ..errors import OutputError
from ..sinks.partfile import refuse_existing

#: File name suffixes of the archives ``fetch`` writes by their own name (wheel, sdist forms).
ARCHIVE_SUFFIXES: Final = (".whl", ".tar.gz", ".tgz", ".zip", ".tar.bz2", ".tar.xz", ".tar")
#: Longest name written without ``-o``: NAME_MAX of Linux and macOS file systems.
MAX_NAME_BYTES: Final = 255
#: PEP 427 fields (distribution, version, build tag, python/abi/platform tags) after escaping:
#: letters, digits and ``_ . + !`` (``+`` and ``!`` from local versions and epochs).
_WHEEL_FIELD: Final = re.compile(r"[A-Za-z0-9_.+!]+")
#: An sdist stem: ``name-version`` where the name may hold dashes (legacy sdists), from the
#: same characters plus ``-`` and ``~``, starting with a letter or digit.
_SDIST_STEM: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+!~-]*-[A-Za-z0-9_.+!~-]+")
STDOUT: Final = "-"


def archive_file_name_problem(name: str) -> str | None:
    """Why ``name`` is not a plain wheel or sdist file name, or None when it is one."""
    if not name:
        return "is empty"
    if "\0" in name or any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        return "holds a NUL or control character"
    if "/" in name or "\\" in name:
        return "holds a path separator"
    if ".." in name:
        return "holds '..'"
    if name.startswith("."):
        return "starts with a dot"
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        return f"is longer than {MAX_NAME_BYTES} bytes"
    suffix = next((s for s in ARCHIVE_SUFFIXES if name.lower().endswith(s)), None)
    if suffix is None:
        return f"does not end in {', '.join(ARCHIVE_SUFFIXES)}"
    stem = name[:-len(suffix)]
    if suffix == ".whl":
        fields = stem.split("-")
        if len(fields) not in (5, 6) or not all(_WHEEL_FIELD.fullmatch(f) for f in fields):
            return "is not a PEP 427 wheel name (name-version[-build]-python-abi-platform.whl)"
        if len(fields) == 6 and not fields[2][:1].isdigit():
            return "has a wheel build tag that does not start with a digit (PEP 427)"
        return None
    if not _SDIST_STEM.fullmatch(stem):
        return "is not an sdist name (name-version followed by the archive suffix)"
    return None


def archive_file_name(name: str, root: str) -> str:
    """``name`` when it may be written as it is; else an OutputError saying to pass ``-o``."""
    problem = archive_file_name_problem(name)
    if problem is not None:
        raise OutputError(repr(name)[:200], f"the archive name in root {root} {problem}, so it is not used as a "
                                            "file name; pass -o FILE (or -o DIR/FILE) to choose where to write")
    return name


def fetch_target(output: str | None, name: str, root: str, *, force: bool) -> Path | None:
    """The file ``fetch`` writes (None: stdout), after every check that can be made before work.

    ``output`` is the ``-o`` value: None (the current directory, the archive's own name), ``-``
    (stdout), an existing directory (``DIR/<name>``) or a file path whose directory exists.
    """
    if output == STDOUT:
        return None
    if output is None:
        target = Path(archive_file_name(name, root))
    elif output == "":
        raise OutputError("''", "-o needs a file, a directory, or - for stdout")
    elif os.path.isdir(output):
        target = Path(output) / archive_file_name(name, root)
    elif output.endswith(("/", os.sep)):
        raise OutputError(output, "no such directory")
    else:
        target = Path(output)
        parent = target.parent
        if not parent.is_dir():
            raise OutputError(str(parent), "no such directory")
    refuse_existing(target, force)
    return target


def printable(text: str) -> str:
    """``text`` as it is when it prints safely, else its ``repr`` (no terminal escape from data)."""
    return text if text.isprintable() else repr(text)
