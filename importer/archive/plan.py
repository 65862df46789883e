"""Checking a root before it is rebuilt, and the bounds a rebuild keeps while it runs.

Roots and recipes may come from strangers, so work is bounded before it starts and while it
runs: every archive root reachable through nested members is read and checked first
(:class:`RebuildPlan`: no cycle, at most MAX_NESTING_DEPTH levels, skeleton no larger than what
it lands in), and the bytes the declared sizes add up to across all levels, with each nested
root counted as often as it is used, must stay within :attr:`RebuildLimits.max_work` ("billion
laughs" recipes are refused here, before any work). While running, no archive may produce more
than its declared size and no body more than its outer streams declare (:func:`bounded`), and
the file contents read from trees add up to at most :attr:`RebuildLimits.max_total_size`
(:class:`ContentBudget`), the budget the importer allows the same archive across its nesting
levels.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Final

from ..dag.cid import format_cid
from ..errors import ImporterError, InvalidBlock, RebuildLimit
from ..sinks.base import BlockSource
from ..sources.base import DEFAULT_LIMITS
from .nested import MAX_NESTING_DEPTH
from .recipe import ArchiveRoot, Recipe, read_recipe, read_root


@dataclass(frozen=True, slots=True)
class RebuildLimits:
    """Bounds on one rebuild, across all its nesting levels.

    ``max_total_size`` bounds the file contents read from trees and extra files: the importer's
    own budget (``Limits.max_total_size``, 16 GiB), so a root the importer could have made never
    hits it. ``max_work`` bounds the bytes the roots and recipes *declare* (each archive's size
    and body, nested ones once per use): four times that budget leaves room for the archive
    bytes, the bodies and their skeletons on top of the contents, while a recipe that nests one
    root in another a thousand times over declares exabytes and is refused before any work.
    """

    max_total_size: int = DEFAULT_LIMITS.max_total_size
    max_work: int = 4 * DEFAULT_LIMITS.max_total_size


DEFAULT_REBUILD_LIMITS: Final = RebuildLimits()


@dataclass(frozen=True, slots=True)
class Planned:
    """One archive root of a rebuild, checked: its recipe, body bound, declared work, nesting height."""

    cid: bytes
    root: ArchiveRoot
    recipe: Recipe
    outer_skeleton: int
    body_limit: int
    work: int
    height: int


class RebuildPlan:
    """Every archive root a rebuild reaches, read and checked before the first byte is produced.

    The walk is recursive but bounded by MAX_NESTING_DEPTH (the importer opens no deeper), and
    each distinct root is read once however often it is used.
    """

    def __init__(self, source: BlockSource, root_cid: bytes, limits: RebuildLimits = DEFAULT_REBUILD_LIMITS) -> None:
        self.source = source
        self.limits = limits
        self.archives: dict[bytes, Planned] = {}
        self.top = self._plan(root_cid, ())

    def _plan(self, cid: bytes, path: tuple[bytes, ...]) -> Planned:
        depth = len(path)
        if cid in path:
            chain = " -> ".join(format_cid(c) for c in (*path[path.index(cid):], cid))
            raise RebuildLimit(format_cid(path[0]), f"nested archive roots form a cycle: {chain}")
        planned = self.archives.get(cid)
        if planned is None:
            planned = self._read(cid, path)
        if depth + planned.height > MAX_NESTING_DEPTH:
            raise RebuildLimit(format_cid(path[0] if path else cid),
                               f"archives nest more than {MAX_NESTING_DEPTH} levels deep (at {format_cid(cid)})")
        return planned

    def _read(self, cid: bytes, path: tuple[bytes, ...]) -> Planned:
        where = format_cid(cid)
        if len(path) > MAX_NESTING_DEPTH:
            raise RebuildLimit(format_cid(path[0]), f"archives nest more than {MAX_NESTING_DEPTH} levels deep "
                                                    f"(at {where})")
        root = read_root(self.source, cid)
        recipe = read_recipe(self.source, root.recipe)
        outer_len = sum(item for item in recipe.outer if isinstance(item, int))
        body_limit = recipe.body_size
        if body_limit is None:
            body_limit = root.size  # the file holds the body as it is
        if outer_len > recipe.skeleton_size:
            raise InvalidBlock(format_cid(root.recipe), f"outer skeleton runs ({outer_len} bytes) exceed the skeleton "
                                                        f"({recipe.skeleton_size})")
        if recipe.skeleton_size > root.size + body_limit:
            # Every skeleton byte lands in the file or in the body: a larger frame is a bomb.
            raise RebuildLimit(where, f"skeleton of {recipe.skeleton_size:,d} bytes is larger than the "
                                      f"{root.size:,d}-byte archive and its {body_limit:,d}-byte body together")
        work = root.size + body_limit
        height = 0
        uses = Counter(m.source for m in recipe.members if isinstance(m.source, bytes))
        for child_cid, count in uses.items():
            child = self._plan(child_cid, (*path, cid))
            height = max(height, child.height + 1)
            work += count * child.work
            if work > self.limits.max_work:
                break
        if work > self.limits.max_work:
            raise RebuildLimit(where, f"declares more than {self.limits.max_work:,d} bytes of work across its "
                                      "nested archives (each counted once per use)")
        planned = self.archives[cid] = Planned(cid, root, recipe, outer_len, body_limit, work, height)
        return planned


class ContentBudget:
    """File content bytes a rebuild may still read, shared by every nesting level."""

    def __init__(self, root: str, limit: int) -> None:
        self.root = root
        self.limit = limit
        self.left = limit

    def count(self, pieces: Iterable[bytes]) -> Iterator[bytes]:
        for piece in pieces:
            self.left -= len(piece)
            if self.left < 0:
                raise RebuildLimit(self.root, f"reads more than {self.limit:,d} bytes of file contents "
                                              "(--max-total-size)")
            yield piece


def bounded(pieces: Iterable[bytes], limit: int, fail: Callable[[int], ImporterError]) -> Iterator[bytes]:
    """``pieces`` as long as they add up to at most ``limit`` bytes; past it, ``fail(limit)``."""
    total = 0
    iterator = iter(pieces)
    try:
        for piece in iterator:
            total += len(piece)
            if total > limit:
                raise fail(limit)
            yield piece
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()  # stop the producer (and its threads) now, not when it is collected
