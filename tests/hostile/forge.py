"""Hand-made hostile DAGs: archive roots, recipes, pages and UnixFS trees written block by block.

Nothing here goes through the importer: roots and recipes are DAG-CBOR maps written with the
canonical encoder, UnixFS nodes with the dag-pb and UnixFS encoders (``tests/dag_builders``),
and the result is a CAR, so a test feeds it to ``import-car`` and then to the read commands as
a stranger's CAR would arrive. Every generator is small on disk however much it claims: a
3 GiB file is one zero leaf linked 12,288 times, a "billion laughs" recipe one root linked a
thousand times per level.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import zstandard

from importer.compress import CompressorParams
from importer.dag.cbor import Link, encode_dag_cbor
from importer.dag.cid import DAG_CBOR
from importer.dag.dagpb import PBLink
from importer.dag.unixfs import NodeType, UnixFSData
from importer.sinks.car import encode_car_header, encode_section
from tests.dag_builders import CHUNK, DagBuilder
from tests.dag_builders import Link as FileLink

#: One deflate parameter set a recipe may name (what Python's gzip module writes at level 9).
DEFLATE_PARAMS: Final = CompressorParams("zlib", "madler-zlib", 9, mem_level=8, wbits=-15).to_dict()
#: Links per file node in the zero bombs: Kubo's default width.
WIDTH: Final = 174


@dataclass
class Forge:
    """Collects hand-made blocks; :meth:`car` writes them, roots first in the header."""

    dag: DagBuilder = field(default_factory=DagBuilder)

    def cbor(self, value: Any) -> bytes:
        """Put one DAG-CBOR block; return its CID."""
        return self.dag.put(1, DAG_CBOR, encode_dag_cbor(value))

    def file(self, data: bytes) -> FileLink:
        return self.dag.file(data)

    def zero_file(self, size: int) -> FileLink:
        """A UnixFS file of ``size`` zero bytes (a multiple of 256 KiB) from one shared leaf,
        in a balanced tree of 174-link nodes, as Kubo lays out a file of zeros."""
        assert size % CHUNK == 0 and size > 0
        level = [self.dag.file(bytes(CHUNK))] * (size // CHUNK)
        while len(level) > 1:
            groups = [level[i:i + WIDTH] for i in range(0, len(level), WIDTH)]
            level = [self.dag.node([PBLink(c.cid, b"", c.tsize) for c in g],
                                   UnixFSData(NodeType.FILE, filesize=sum(c.size for c in g),
                                              blocksizes=tuple(c.size for c in g))) for g in groups]
        return level[0]

    def directory(self, entries: dict[str, FileLink]) -> FileLink:
        return self.dag.directory(entries)

    def skeleton(self, data: bytes) -> bytes:
        """The skeleton file of a recipe: one zstd frame of ``data``."""
        return self.dag.file(zstandard.ZstdCompressor().compress(data)).cid

    def page(self, entries: Sequence[list[Any]]) -> bytes:
        return self.cbor([list(e) for e in entries])

    def recipe(self, *, skeleton: bytes, skeleton_size: int, members: Sequence[list[Any]] = (),
               pages: Sequence[bytes] | None = None, count: int | None = None, body: str = "zip",
               outer: Sequence[list[int]] = ([2],), params: Sequence[Any] = (), extra: Sequence[bytes] = (),
               tail: int = 0, version: int = 1, **more: Any) -> bytes:
        """A recipe node; ``members`` go on one page unless ``pages`` are given."""
        if pages is None:
            pages = [self.page(members)] if members else []
        node: dict[str, Any] = {
            "v": version, "body": body, "outer": [list(o) for o in outer], "skeleton": Link(skeleton),
            "skeleton_size": skeleton_size, "params": list(params), "extra": [Link(c) for c in extra],
            "pages": [Link(p) for p in pages], "members": len(members) if count is None else count, "tail": tail,
        }
        node.update(more)
        return self.cbor(node)

    def root(self, *, name: str = "hostile-1.0-py3-none-any.whl", size: int, sha256: bytes | Any = b"\0" * 32,
             tree: bytes | None = None, recipe: bytes, **more: Any) -> bytes:
        if tree is None:
            tree = self.directory({}).cid
        node: dict[str, Any] = {"dpip": 1, "kind": "archive", "name": name, "size": size, "sha256": sha256,
                                "tree": Link(tree), "recipe": Link(recipe)}
        node.update(more)
        return self.cbor(node)

    def honest_root(self, content: bytes, *, name: str = "plain-1.0-py3-none-any.whl") -> bytes:
        """A root whose recipe rebuilds ``content`` exactly: all of it skeleton."""
        recipe = self.recipe(skeleton=self.skeleton(content), skeleton_size=len(content), tail=len(content))
        return self.root(name=name, size=len(content), sha256=hashlib.sha256(content).digest(), recipe=recipe)

    def car(self, path: Path, roots: Iterable[bytes]) -> Path:
        """Write every block collected to the CARv1 ``path``."""
        root_list = list(roots)
        with open(path, "wb") as out:
            out.write(encode_car_header(root_list))
            out.writelines(encode_section(cid, block) for cid, block in self.dag.sink)
        return path


def nested_entry(root: bytes, skeleton_before: int = 0) -> list[Any]:
    """A member table entry whose content is the nested archive ``root``, copied as it is."""
    return [skeleton_before, Link(root), -1]
