"""Shared fixtures: run the CLI in-process and build small file trees."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from importer.cli.main import main

from .oracle_support import shared_dir


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Remove the data the xdist workers shared (generated trees and wheels, oracle answers:
    about 550 MB) whatever the outcome. pytest keeps a failed run's temporary directories
    (``tmp_path_retention_policy``) for their tests, and this data belongs to none of them; it is
    made again by the next run. Only the controller (or a run without xdist) removes it, once
    every worker is done."""
    factory = getattr(session.config, "_tmp_path_factory", None)
    if os.environ.get("PYTEST_XDIST_WORKER") or not isinstance(factory, pytest.TempPathFactory):
        return
    shutil.rmtree(shared_dir(factory), ignore_errors=True)


@pytest.fixture
def store_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh embedded store for the test; also set as $DPIP_STORE so nothing touches the user's."""
    path = tmp_path / "store"
    monkeypatch.setenv("DPIP_STORE", str(path))
    return path


@pytest.fixture(autouse=True)
def _isolated_store(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    # No test may write into the real user data directory.
    if "DPIP_STORE" not in os.environ:
        monkeypatch.setenv("DPIP_STORE", str(tmp_path_factory.mktemp("default-store")))


RunCli = Callable[..., tuple[int, str, str]]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> RunCli:
    """Run ``dpip-import`` in-process: ``rc, out, err = cli("add", "-Q", path)``."""

    def run(*argv: str | os.PathLike[str]) -> tuple[int, str, str]:
        capsys.readouterr()
        rc = main([os.fspath(a) for a in argv])
        captured = capsys.readouterr()
        return rc, captured.out, captured.err

    return run
