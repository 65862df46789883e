"""``push``: DAGs from the embedded store to an IPFS node, as one CARv1 through ``dag/import``.

A push of ROOTS to a node:

1. asks the node for its peer ID (``id``): pushes are recorded per peer, not per address;
2. finds what the node already holds: the roots recorded for that peer that are related to each
   root (:func:`push_bases`, plus the caller's ``hints``) and still pinned there (``pin/ls``, or
   the caller's listing of the node's pins; a record whose root is no longer pinned is dropped),
   and the blocks reachable from them (:func:`known_blocks`). A first push to a node reads
   nothing of the store but the DAGs it sends;
3. streams one CARv1 whose header lists ROOTS and whose sections are their DAGs in ``dag
   export`` order, each block once, minus every block the node already holds with its whole
   sub-DAG. The CAR is generated while it is uploaded (chunks of :data:`CHUNK_BYTES`), so a push
   holds one chunk and the set of CIDs seen, never the DAG;
4. has the node pin ROOTS recursively once the CAR is in (``dag/import``'s ``pin-roots``, in the
   same call; with ``pin_add``, a ``pin/add`` after it, which an IPFS Cluster proxy turns into a
   cluster pin), and only then records them for the peer. A node that dies mid-push leaves
   nothing recorded, and the next push sends the CAR again;
5. with ``mfs``, links each archive's tree into MFS as ``MFS/<project>/<file name>``
   (``files/mkdir -p``, ``files/cp /ipfs/<tree>``): MFS holds UnixFS, so the tree, not the
   DAG-CBOR root, goes there.

So the next release of a project sends only what is new in it: the blocks of files that changed,
the directories above them and its root and recipe.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Final

from ..dag.cid import DAG_PB, IDENTITY, RAW, cid_codec, format_cid, split_cid
from ..dag.dagpb import decode_node
from ..errors import BlockNotFound, ImporterError, InvalidOption, RemoteError
from .car import encode_car_header, encode_section, iter_dag, iter_links
from .node import NodeClient, pin_key
from .store import BlockStore

#: CAR bytes handed to the HTTP connection at a time: 1 MiB makes the per-chunk cost (a chunk
#: header, a send call) negligible and is what a push holds of the CAR at once.
CHUNK_BYTES: Final = 1024 * 1024
#: Roots already on the node whose DAGs are subtracted from a push, newest first. The previous
#: release of a project shares the most with the next; older ones add little, and each costs a
#: walk of its DAG's inner blocks.
MAX_BASES: Final = 8
#: A dag-pb link whose Tsize (the bytes of its whole sub-DAG, as Kubo counts) lies in
#: ``[UNREAD_MIN, UNREAD_MAX]`` is known by its CID without reading its block. Such a sub-DAG is
#: nearly always one leaf (a 256 KiB chunk of a file, or a file of one block), whose reading
#: (decompress, hash) is the whole cost of walking a base; below 64 KiB reading is cheap, and
#: directories, whose unchanged children must be known, are mostly that small. What not reading
#: can cost: if such a sub-DAG was a directory that changed, its unchanged part is sent again,
#: at most 256 KiB; never is a block the node lacks left out.
UNREAD_MIN: Final = 64 * 1024
UNREAD_MAX: Final = 256 * 1024 + 64


@dataclass(frozen=True, slots=True)
class PushReport:
    """What one push did: the node, the roots pinned, what was sent and the MFS paths written."""

    peer: str
    roots: tuple[bytes, ...]
    bases: int
    blocks: int
    block_bytes: int
    car_bytes: int
    seconds: float
    #: Of ``seconds``, the ``dag/import`` upload: the CAR made and sent, and the node's answer.
    upload_seconds: float = 0.0
    mfs_paths: tuple[str, ...] = ()


def _is_identity(cid: bytes) -> bool:
    return split_cid(cid)[2] == IDENTITY


def known_blocks(store: BlockStore, bases: Sequence[bytes]) -> set[bytes]:
    """CIDs of blocks that pinning ``bases`` keeps on the node, as far as cheaply known.

    Blocks are read from the store to follow their links, except raw leaves and sub-DAGs sized
    like a leaf (:data:`UNREAD_MIN` to :data:`UNREAD_MAX`), known by the links to them; a part
    of a base no longer in the store is known only by its CID. Knowing less only means sending
    more, never less.
    """
    known: set[bytes] = set()
    stack = list(bases)
    while stack:
        cid = stack.pop()
        if cid in known:
            continue
        known.add(cid)
        codec = cid_codec(cid)
        if codec == RAW or _is_identity(cid):
            continue
        try:
            block = store.get(cid)
        except BlockNotFound:
            continue
        if codec == DAG_PB:
            for link in decode_node(block, format_cid(cid)).links:
                if link.cid in known:
                    continue
                if UNREAD_MIN <= link.tsize <= UNREAD_MAX:
                    known.add(link.cid)
                else:
                    stack.append(link.cid)
        else:
            stack.extend(iter_links(cid, block))
    return known


def push_bases(recorded: Sequence[bytes], root: bytes, names: Mapping[bytes, str]) -> list[bytes]:
    """The roots of ``recorded`` (a node's, newest push first) that a push of ``root`` subtracts.

    ``root`` itself if it was pushed before; then, for an archive of the index (``names``: root
    -> file name), the pushed archives of the same project, and for anything else the newest
    roots pushed to the node. At most :data:`MAX_BASES`.
    """
    from ..archive.delta import parse_archive_name  # here: only pushes to a node with records need it

    first = [root] if root in recorded else []
    pushed = [r for r in recorded if r != root]
    name = names.get(root)
    this = parse_archive_name(name) if name else None
    if this is not None:
        same = []
        for other_root in pushed:
            other_name = names.get(other_root)
            other = parse_archive_name(other_name) if other_name else None
            if other is not None and other.project == this.project:
                same.append(other_root)
        pushed = same
    return (first + pushed)[:MAX_BASES]


def mfs_path(store: BlockStore, mfs: str, root: bytes) -> tuple[str, bytes]:
    """``(MFS/<project>/<file name>, tree CID)`` of an archive root; InvalidOption for anything else."""
    from ..archive.delta import parse_archive_name
    from ..archive.recipe import read_root

    try:
        archive = read_root(store, root)
    except ImporterError as e:
        raise InvalidOption(f"--mfs links archives into MFS, and {format_cid(root)} is not one ({e})") from None
    dist = parse_archive_name(archive.name)
    if dist is None or "/" in archive.name or archive.name in ("", ".", ".."):
        raise InvalidOption(f"--mfs: {archive.name!r} ({format_cid(root)}) is not a wheel or sdist file name")
    return f"{mfs.rstrip('/')}/{dist.project}/{archive.name}", archive.tree


class _CarStream:
    """The CAR of a push, produced in chunks as the HTTP connection asks for them; counts as it goes."""

    def __init__(self, store: BlockStore, roots: Sequence[bytes], known: set[bytes],
                 progress: Callable[[int], None] | None) -> None:
        self.store = store
        self.roots = roots
        self.seen = set(known)
        self.progress = progress
        self.blocks = 0
        self.block_bytes = 0
        self.car_bytes = 0

    def __iter__(self) -> Iterator[bytes]:
        buffer = bytearray(encode_car_header(self.roots))
        for root in self.roots:
            for cid, block in iter_dag(self.store, root, self.seen):
                if _is_identity(cid):
                    continue  # its bytes are in its CID; Kubo keeps no block for it
                buffer += encode_section(cid, block)
                self.blocks += 1
                self.block_bytes += len(block)
                if len(buffer) >= CHUNK_BYTES:
                    yield self._emit(buffer)
                    buffer = bytearray()
        if buffer:
            yield self._emit(buffer)

    def _emit(self, buffer: bytearray) -> bytes:
        self.car_bytes += len(buffer)
        if self.progress is not None:
            self.progress(len(buffer))
        return bytes(buffer)


def push(store: BlockStore, node: NodeClient, roots: Sequence[bytes], *, mfs: str | None = None,
         progress: Callable[[int], None] | None = None, pin_add: bool = False, hints: Sequence[bytes] = (),
         pinned: AbstractSet[bytes] | None = None, names: Mapping[bytes, str] | None = None,
         known: AbstractSet[bytes] = frozenset()) -> PushReport:
    """Push the DAGs of ``roots`` from ``store`` to ``node``, pin them and record them (module docstring).

    ``hints``: the roots to subtract instead of those :func:`push_bases` chooses, if the node pins
    them (``mirror publish`` names the previous index root for the next one); ``pinned``: the node's
    recursive pins as :func:`~importer.sinks.node.pin_key` keys, when the caller listed them
    (else each candidate base is asked with ``pin/ls``); ``names``: root -> archive file name,
    when the caller has it (else read from the store's index, and only if the node has records);
    ``known``: CIDs the caller knows the node holds with their whole sub-DAGs, not sent either.
    """
    start = time.perf_counter()
    roots = list(dict.fromkeys(roots))
    if mfs is not None and not mfs.startswith("/"):
        raise InvalidOption(f"--mfs {mfs!r}: an MFS path starts with /")
    for root in roots:
        if not store.has(root) and not _is_identity(root):
            raise BlockNotFound(format_cid(root), str(store.path))
    links = [mfs_path(store, mfs, root) for root in roots] if mfs is not None else []
    peer = node.peer_id()
    bases = _held_bases(store, node, peer, roots, hints, pinned, names)
    car = _CarStream(store, roots, known_blocks(store, bases) | known, progress)
    upload_start = time.perf_counter()
    try:
        node.dag_import(car, pin_roots=not pin_add)
    except RemoteError as e:
        raise RemoteError(e.source, f"{e.reason} ({car.blocks} blocks, {car.car_bytes:,d} CAR bytes "
                                    "sent; nothing recorded as pushed)", e.cid) from None
    upload_seconds = time.perf_counter() - upload_start
    if pin_add:
        node.pin_add(roots)
    store.record_pushed(peer, roots, time.time())
    paths = []
    for path, tree in links:
        _link_into_mfs(node, path, tree)
        paths.append(path)
    return PushReport(peer, tuple(roots), len(bases), car.blocks, car.block_bytes, car.car_bytes,
                      time.perf_counter() - start, upload_seconds, tuple(paths))


def _held_bases(store: BlockStore, node: NodeClient, peer: str, roots: Sequence[bytes], hints: Sequence[bytes],
                pinned: AbstractSet[bytes] | None, names: Mapping[bytes, str] | None) -> list[bytes]:
    """The roots whose DAGs ``node`` holds and a push of ``roots`` subtracts; records of roots the
    node no longer pins are dropped on the way."""
    recorded = [p.root for p in store.pushed_roots(peer)]
    if hints:
        candidates = list(dict.fromkeys(hints))
    elif recorded:
        if names is None:
            names = {record.root: record.name for record in store.iter_archives()}
        candidates = list(dict.fromkeys(base for root in roots for base in push_bases(recorded, root, names)))
    else:
        return []  # a first push to this node: nothing to subtract, and no need to read the index
    held = {base: (pin_key(base) in pinned) if pinned is not None else node.is_pinned(base) for base in candidates}
    gone = [base for base, is_held in held.items() if not is_held and base in recorded]
    if gone:
        store.forget_pushed(peer, gone)
    return [base for base, is_held in held.items() if is_held]


def _link_into_mfs(node: NodeClient, path: str, tree: bytes) -> None:
    """Make ``path`` name ``tree`` in MFS: create its parents, replace whatever else is there."""
    cid = format_cid(tree)
    existing = node.files_stat(path)
    if existing == cid:
        return
    if existing is not None:
        node.files_rm(path)
    node.files_mkdir(path.rsplit("/", 1)[0] or "/")
    node.files_cp(f"/ipfs/{cid}", path)
