"""``make demo`` runs end to end in a store of its own and ends with sentences made of what it measured."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench import demo
from importer.sinks.store import BlockStore


def test_demo_uses_its_own_store_and_states_only_measured_figures(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "demo-store"
    assert demo.main(["--store", str(store)]) == 0
    out = capsys.readouterr().out
    assert f"into a fresh store of the demo's own: {store}\n" in out
    sizes = [int(m.replace(",", "")) for m in re.findall(r"^   \S+\.(?:whl|tar\.gz) +([\d,]+) bytes$", out, re.MULTILINE)]
    at_rest = [int(m.replace(",", "")) for m in re.findall(r"logical bytes, ([\d,]+) bytes at rest$", out, re.MULTILINE)]
    assert len(sizes) == len(at_rest) == 4
    database = int(re.findall(r"its database file ([\d,]+) bytes$", out, re.MULTILINE)[0].replace(",", ""))
    assert (f"The 4 archives ({sum(sizes):,d} bytes as files) took {sum(at_rest):,d} bytes at rest in the store, "
            f"{sum(sizes) / sum(at_rest):.2f}x less than the files themselves; the store's database file is "
            f"{database:,d} bytes ({sum(sizes) / database:.2f}x less).") in out
    assert "4 of 4 archives came back byte-identical" in out and "DIFFERENT" not in out
    with BlockStore(store, create=False) as opened:  # the first wheel was deleted and collected
        assert len(list(opened.iter_archives())) == 3


def test_demo_refuses_a_store_that_is_not_empty(tmp_path: Path) -> None:
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("")
    with pytest.raises(SystemExit, match="not empty"):
        demo.main(["--store", str(tmp_path / "used")])
