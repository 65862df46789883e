"""Real wheels and sdists (built by setuptools and hatchling) with bytes flipped, cut, duplicated or zeroed:
every mutant is either refused with one line naming the file, or imported and rebuilt byte for byte."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.archive_builders import BuiltProject, built_projects
from tests.archive_checks import sha256_file
from tests.conftest import RunCli
from tests.oracle_support import shared_dir

#: Mutants per archive: each a different edit at a different offset (a prime stride walks the
#: file, so headers, data, directories and trailers all get hit).
MUTANTS = 24
_STRIDE = 7919


def _flip(data: bytearray, at: int) -> None:
    data[at] ^= 0x20


def _cut(data: bytearray, at: int) -> None:
    del data[at:]


def _dup(data: bytearray, at: int) -> None:
    data[at:at] = data[at:at + 37]


def _zero(data: bytearray, at: int) -> None:
    data[at:at + 8] = bytes(len(data[at:at + 8]))


EDITS: tuple[Callable[[bytearray, int], None], ...] = (_flip, _cut, _dup, _zero)


def mutant(original: bytes, k: int) -> bytes:
    data = bytearray(original)
    EDITS[k % len(EDITS)](data, (k * _STRIDE + 13) % len(data))
    return bytes(data)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, int], BuiltProject]:
    return built_projects(shared_dir(tmp_path_factory) / "archive-projects")


@pytest.mark.parametrize("backend", ["setuptools", "hatchling"])
@pytest.mark.parametrize("kind", ["wheel", "sdist"])
def test_mutated_real_archive_is_refused_in_one_line_or_rebuilt_exactly(
        built: dict[tuple[str, int], BuiltProject], backend: str, kind: str, tmp_path: Path, cli: RunCli) -> None:
    project = built[backend, 1]
    original = (project.wheel if kind == "wheel" else project.sdist).read_bytes()
    store = tmp_path / "store"
    outcomes = {"refused": 0, "rebuilt": 0}
    for k in range(MUTANTS):
        path = tmp_path / f"m{k}-{(project.wheel if kind == 'wheel' else project.sdist).name}"
        path.write_bytes(mutant(original, k))
        rc, out, err = cli("auto", "--json", "--store", store, path)
        if rc == 0:
            root = out.split('"root": "', 1)[1].split('"', 1)[0]
            rebuilt = tmp_path / "rebuilt"
            rc, _, err = cli("fetch", root, "-o", rebuilt, "--store", store)
            assert rc == 0, f"mutant {k}: {err}"
            assert sha256_file(rebuilt) == sha256_file(path), f"mutant {k} rebuilt differently"
            rebuilt.unlink()
            outcomes["rebuilt"] += 1
        else:
            assert rc == 1, f"mutant {k}: exit {rc}: {err}"
            assert err.count("\n") == 1 and err.startswith(f"dpip-import auto: {path.name}: "), f"mutant {k}: {err}"
            outcomes["refused"] += 1
        path.unlink()
    assert outcomes["refused"], outcomes  # the edits are noticed (a gzip'd sdist refuses nearly all of them)
