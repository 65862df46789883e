"""``dpip``: pip run against a server of the store started in-process; ``dpip pin``: wheels pip has, into the store."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from importer.cli.dpip import _wheel_name, main, split_args
from importer.mirror.state import MirrorState
from importer.sinks.store import BlockStore

from .mirror_support import Dist, FakeIndex, installed, make_venv, pip_env, shared_dists


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> list[Dist]:
    return shared_dists(tmp_path_factory)


@pytest.fixture(scope="module")
def venv_python(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("dpip-venv")
    yield make_venv(path / "venv")
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def clean_pip_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """dpip runs pip with this process's environment: make it the hermetic one."""
    env = pip_env(tmp_path)
    for key in list(os.environ):
        if key.startswith(("PIP_", "UV_")):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def test_split_args_keeps_dpip_options_before_the_pip_command() -> None:
    assert split_args(["--store=s", "--pull-through", "install", "--index", "x"]) == (
        {"store": "s", "pull_through": True}, ["install", "--index", "x"])


def test_dpip_install_runs_the_users_pip_against_the_store(dists: list[Dist], venv_python: Path, tmp_path: Path,
                                                           clean_pip_env: dict[str, str]) -> None:
    store = tmp_path / "store"
    fake = FakeIndex(list(dists)).start()
    try:
        from importer.cli.main import main as dpip_import

        assert dpip_import(["mirror", "sync", "--packages", "alpha", "beta", "--index-url", fake.url,
                            "--store", str(store), "--no-progress", "--no-index"]) == 0
    finally:
        fake.stop()
    wheel = next(d for d in dists if d.filename == "alpha-1.0-py3-none-any.whl")
    req = tmp_path / "req.txt"
    req.write_text(f"alpha==1.0 --hash=sha256:{wheel.sha256}\n")
    rc = main(["--store", str(store), "--pip", str(venv_python.parent / "pip"), "install", "--no-cache-dir",
               "--require-hashes", "-r", str(req)])
    assert rc == 0
    assert installed(venv_python)["alpha"] == "1.0"
    log = (store / "dpip-access.log").read_text()
    assert f'"GET /simple/alpha/{wheel.filename}" 200 {wheel.path.stat().st_size} ' in log
    subprocess.run([str(venv_python), "-m", "pip", "uninstall", "-y", "-q", "alpha"], check=True)


def test_dpip_pin_imports_the_wheels_of_pips_cache(dists: list[Dist], venv_python: Path, tmp_path: Path,
                                                   clean_pip_env: dict[str, str]) -> None:
    from importer.cli.main import main as dpip_import
    from importer.server.launch import ServeOptions, start

    fake = FakeIndex(list(dists)).start()
    try:
        assert dpip_import(["mirror", "sync", "--packages", "alpha", "beta", "--index-url", fake.url,
                            "--store", str(tmp_path / "served"), "--no-progress"]) == 0
    finally:
        fake.stop()
    # pip caches what serve sends (files are named by their sha256: immutable) from a trusted host,
    # as dpip makes the server.
    running = start(ServeOptions(tmp_path / "served", port=0, cache_dir=tmp_path / "serve-cache"))
    cache = tmp_path / "pip-cache"
    try:
        result = subprocess.run([str(venv_python), "-m", "pip", "download", "--cache-dir", str(cache), "--no-deps",
                                 "-d", str(tmp_path / "dl"), "--index-url", running.url, "--trusted-host", "127.0.0.1",
                                 "alpha==1.0", "beta==1.0",
                                 "--only-binary", ":all:"], capture_output=True, text=True, env=clean_pip_env,
                                check=False)
    finally:
        running.stop()
    assert result.returncode == 0, result.stderr
    store = tmp_path / "store"
    assert main(["--store", str(store), "pin", "--cache", str(cache)]) == 0
    expected = {d.filename: d.sha256 for d in dists if d.version == "1.0" and d.filename.endswith(".whl")}
    with BlockStore(store, create=False) as s:
        assert {r.name: r.sha256.hex() for r in s.iter_archives()} == expected
    with MirrorState(store) as state:
        assert {r.filename for r in state.files()} == set(expected)
        assert state.latest_index() is not None
    assert main(["--store", str(store), "pin", "--cache", str(cache)]) == 0  # again: nothing new


def test_wheel_name_is_read_from_the_wheels_own_metadata(dists: list[Dist], tmp_path: Path) -> None:
    for d in dists:
        if d.filename.endswith(".whl"):
            body = tmp_path / "0123456789abcdef.body"
            shutil.copy(d.path, body)
            assert _wheel_name(body) == d.filename
    (tmp_path / "junk.body").write_bytes(b"PK\x03\x04 not a zip")
    assert _wheel_name(tmp_path / "junk.body") is None
