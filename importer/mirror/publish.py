"""``mirror publish``: the mirror onto an IPFS node, its index root in MFS and under an IPNS name.

A publish of a store's mirror to a node (``--api``):

1. writes the index tree (:mod:`.tree`: incremental, the same mirror gives the same root) and pins
   it in the store as ``mirror-index``;
2. lists the node's recursive pins once (``pin/ls --stream``) and the roots recorded as pushed to
   its peer ID (:mod:`importer.sinks.pushed`): an archive recorded there and still pinned is not
   sent again, and the record of a root the node dropped is forgotten (it is sent again);
3. pushes every other archive the index names (:func:`importer.sinks.push.push`: only blocks the
   node lacks, subtracting the same project's archives already there), in batches of at most
   :data:`ROOTS_PER_PUSH` roots, a project's archives next to each other; each batch is one CAR,
   pinned by the node and recorded when it is in, so an interrupted publish resumes where it
   stopped;
4. pushes the index root last, subtracting the index root ``--mfs`` names on the node (the one
   this publication made last time, if the node pins it) and the ``.metadata`` files of the
   archives just pushed (each is the very METADATA leaf of its wheel's tree), so only the pages
   of changed projects and the directories above them travel; an index is pinned on the node
   only once every archive it names is;
5. makes ``--mfs PATH`` (default ``/dpip``) name the index root: ``files/cp /ipfs/ROOT PATH.new``,
   ``files/rm -r PATH``, ``files/mv PATH.new PATH``, ``files/flush``. Kubo and js-ipfs both move a
   source *into* an existing directory, so the old tree must go before the move; a reader of MFS
   sees the old tree, then for the span of one call nothing, then the new one, never a mix;
6. publishes ``/ipfs/ROOT`` under the IPNS key ``--key`` (default ``dpip-mirror``), made with
   ``key/gen`` (ed25519) at the start when the node lacks it (a key the node refuses costs no
   upload), with ``allow-offline`` (a node without peers keeps the record and announces it when
   it has some);
7. unpins the index root ``--mfs`` named before, if this store built and pushed it (``pin/rm``,
   as Kubo's ``pin update`` would): the archives stay pinned, and the old pages may be collected.
   A reader that resolved the name just before may meet a missing page if the node collects at
   that moment. Another publication of the same store (another ``--mfs`` and ``--key``, e.g. a
   ``--plain`` one) keeps its own root.

Nothing here reaches into the store's tables: archives come from :func:`.tree.collect_archives`,
records from the store's ``pushed_roots``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from ..dag.cid import format_cid
from ..errors import InvalidOption, RemoteError
from ..sinks.node import NodeClient, pin_key

# The CLI reads this module's defaults when it builds its parser: what publishing needs is
# imported when it runs, so that no other command pays for it at start-up.
if TYPE_CHECKING:
    from ..sinks.push import PushReport
    from ..sinks.store import BlockStore
    from .state import MirrorState
    from .tree import BuiltIndex

#: The IPNS key a mirror is published under unless ``--key`` names another.
DEFAULT_KEY: Final = "dpip-mirror"
#: Where the index root goes in the node's MFS (the seed's "kept under a name in MFS").
DEFAULT_MFS: Final = "/dpip"
#: ``name/publish --lifetime``: Kubo's default since 0.24, the Amino DHT's record expiry. A mirror
#: republished at every refresh (``sync --every --publish``) renews it long before.
DEFAULT_LIFETIME: Final = "48h"
#: Roots per push (one CAR, one ``dag/import``). Each root is one more CID in the CAR header
#: (and in ``pin/add``'s URL with ``--pin-add``: 64 CIDs of ~62 characters are ~4 KiB, well under
#: the 16 KiB header limit of Node's HTTP server that js-ipfs runs on); an interrupted publish
#: sends at most one batch again.
ROOTS_PER_PUSH: Final = 64
#: Suffix of the MFS name the new index root is copied to before it replaces the old one.
MFS_NEW_SUFFIX: Final = ".new"


@dataclass(frozen=True, slots=True)
class PublishReport:
    """What a publish did: the index root, where it went, and what travelled."""

    root: bytes
    peer: str
    key: str
    name: str
    key_made: bool
    mfs: str
    archives: int
    already: int
    forgotten: int
    unpinned: int
    pushes: tuple[PushReport, ...]
    seconds: float

    @property
    def blocks(self) -> int:
        return sum(p.blocks for p in self.pushes)

    @property
    def block_bytes(self) -> int:
        return sum(p.block_bytes for p in self.pushes)

    @property
    def car_bytes(self) -> int:
        return sum(p.car_bytes for p in self.pushes)

    @property
    def pushed_roots(self) -> int:
        return sum(len(p.roots) for p in self.pushes)


def check_mfs_path(path: str) -> str:
    """``--mfs`` without its trailing slash; InvalidOption for a relative path or the MFS root."""
    if not path.startswith("/"):
        raise InvalidOption(f"--mfs {path!r}: an MFS path starts with /")
    trimmed = path.rstrip("/")
    if not trimmed or any(part in ("", ".", "..") for part in trimmed.split("/")[1:]):
        raise InvalidOption(f"--mfs {path!r}: needs a name below / (such as {DEFAULT_MFS}), without . or ..")
    return trimmed


def _batches(roots: Sequence[bytes], size: int) -> Iterator[list[bytes]]:
    for i in range(0, len(roots), size):
        yield list(roots[i:i + size])


def mfs_root(node: NodeClient, path: str) -> bytes | None:
    """The CID the MFS ``path`` names now (``files/stat``), None if nothing or nothing we can read."""
    from ..dag.cid import parse_cid
    from ..errors import InvalidCid

    text = node.files_stat(path)
    try:
        return parse_cid(text) if text is not None else None
    except InvalidCid:
        return None


def replace_in_mfs(node: NodeClient, path: str, root: bytes, current: bytes | None) -> bool:
    """Make the MFS ``path``, which names ``current`` now, name the directory ``root`` instead
    (module docstring, step 5); False if it already did."""
    if current is not None and pin_key(current) == pin_key(root):
        return False
    parent = path.rsplit("/", 1)[0]
    if parent:
        node.files_mkdir(parent)
    staged = path + MFS_NEW_SUFFIX
    if node.files_stat(staged) is not None:
        node.files_rm(staged)  # left by a publish that stopped between its calls
    node.files_cp(f"/ipfs/{format_cid(root)}", staged)
    if node.files_stat(path) is not None:
        node.files_rm(path)
    node.files_mv(staged, path)
    node.files_flush(path)
    return True


def check_key_name(key: str) -> str:
    """``--key``: a name as ``key/gen`` takes it (the node may refuse more, e.g. Kubo ``self`` for gen)."""
    if not key or "/" in key or key.strip() != key:
        raise InvalidOption(f"--key {key!r}: a key name is a non-empty word without / or spaces around it")
    return key


def ensure_key(node: NodeClient, key: str) -> tuple[str, bool]:
    """The IPNS name of ``key`` on the node, made with ``key/gen`` when missing; and whether it was made."""
    existing = node.key_list().get(key)
    if existing is not None:
        return existing, False
    return node.key_gen(key), True


def publish(store: BlockStore, state: MirrorState, node: NodeClient, built: BuiltIndex, *,
            key: str = DEFAULT_KEY, mfs: str = DEFAULT_MFS, lifetime: str = DEFAULT_LIFETIME,
            pin_add: bool = False, progress: Callable[[int], None] | None = None,
            say: Callable[[str], None] | None = None) -> PublishReport:
    """Publish the index ``built`` from ``store`` to ``node``; see the module docstring."""
    from ..sinks.push import push
    from .tree import collect_archives

    start = time.perf_counter()
    mfs = check_mfs_path(mfs)
    check_key_name(key)
    peer = node.peer_id()
    name, made = ensure_key(node, key)  # first: a key the node refuses costs no upload
    before = mfs_root(node, mfs)  # what this publication named last time: the base of the new index
    pinned = node.pinned_roots()
    recorded = [p.root for p in store.pushed_roots(peer)]
    gone = [root for root in recorded if pin_key(root) not in pinned]
    if gone:
        store.forget_pushed(peer, gone)
    held = {root for root in recorded if pin_key(root) in pinned}
    projects, _ = collect_archives(store, state)
    names = {a.root: a.filename for archives in projects.values() for a in archives}
    archive_roots = list(dict.fromkeys(a.root for _, archives in sorted(projects.items()) for a in archives))
    missing = [root for root in archive_roots if root not in held]
    pushes: list[PushReport] = []
    for batch in _batches(missing, ROOTS_PER_PUSH):
        report = push(store, node, batch, progress=progress, pin_add=pin_add, pinned=pinned, names=names)
        pinned |= {pin_key(root) for root in batch}
        pushes.append(report)
        if say is not None:
            say(f"pushed {len(batch)} archives: {report.blocks} blocks, {report.block_bytes:,d} bytes of blocks "
                f"in {report.seconds:.2f} s")
    previous = {index.root for index in state.iter_index_roots()}
    if built.root not in held:
        hints = [before] if before is not None and pin_key(before) in pinned else []
        metadata = {facts.metadata.cid for root in missing
                    if (facts := state.archive_facts(root)) is not None and facts.metadata is not None}
        pushes.append(push(store, node, [built.root], progress=progress, pin_add=pin_add, pinned=pinned,
                           names=names, hints=hints, known=metadata))
    replace_in_mfs(node, mfs, built.root, before)
    published = node.name_publish(f"/ipfs/{format_cid(built.root)}", key, lifetime=lifetime)
    if published != name:
        raise RemoteError(node.source, f"name/publish: published to {published}, but key {key!r} is {name}", key)
    # The index this publication replaced, if this store built and pushed it: nothing else names it now.
    replaced = pin_key(before) if before is not None else None
    earlier = [root for root in held if root in previous and pin_key(root) == replaced and root != built.root]
    if earlier:
        node.pin_rm(earlier)
        store.forget_pushed(peer, earlier)
    return PublishReport(built.root, peer, key, name, made, mfs, len(archive_roots),
                         len(archive_roots) - len(missing), len(gone), len(earlier), tuple(pushes),
                         time.perf_counter() - start)


def publish_store(store_dir: str, node: NodeClient, *, plain: bool = False, key: str = DEFAULT_KEY,
                  mfs: str = DEFAULT_MFS, lifetime: str = DEFAULT_LIFETIME, pin_add: bool = False,
                  progress: Callable[[int], None] | None = None,
                  say: Callable[[str], None] | None = None) -> tuple[BuiltIndex, PublishReport]:
    """Write (and pin) the index of the store at ``store_dir``, then publish it to ``node``."""
    from ..sinks.store import BlockStore
    from .state import MirrorState
    from .tree import build_index, pin_index

    check_mfs_path(mfs)
    check_key_name(key)
    with BlockStore(store_dir, create=False) as store, MirrorState(store_dir) as state:
        built = build_index(store, state, plain=plain)
        pin_index(store, built.root)
        report = publish(store, state, node, built, key=key, mfs=mfs, lifetime=lifetime, pin_add=pin_add,
                         progress=progress, say=say)
    return built, report
