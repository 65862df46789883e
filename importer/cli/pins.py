"""``dpip-import pin add|rm|ls``: Kubo's recursive pins, the roots ``store gc`` keeps besides the archive index."""

from __future__ import annotations

import argparse
import json

from ..dag.cid import format_cid
from ..errors import InvalidOption, StoreError
from ..sinks.store import BlockStore, default_store_path
from .options import add_json_option, add_store_option


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = sub.add_parser("pin", help="keep DAGs in the store through `store gc` (as `ipfs pin`)",
                           description="A pin keeps every block its root reaches through `store gc`. `add` and "
                                       "`import-car` pin the roots they print unless --pin=false / "
                                       "--pin-roots=false; archives of the index need no pin.")
    actions = group.add_subparsers(dest="pin_command", metavar="ACTION", required=True)

    p = actions.add_parser("add", help="pin roots whose whole DAG is in the store",
                           description="Checks that every block the root reaches is in the store, as Kubo fetches "
                                       "them before pinning; a name already pinned moves to the new root.")
    p.add_argument("roots", nargs="+", metavar="ROOT", help="a CID, or an archive's file name or sha256 in the index")
    p.add_argument("--name", help="name of the pin (default: the CID); a name holds one root")
    add_store_option(p)
    p.set_defaults(handler=cmd_pin_add)

    p = actions.add_parser("rm", help="unpin (the blocks stay until `store gc`)")
    p.add_argument("pins", nargs="+", metavar="CID|NAME", help="a pinned CID (every pin of it) or a pin's name")
    add_store_option(p)
    p.set_defaults(handler=cmd_pin_rm)

    p = actions.add_parser("ls", help="list the pins: CID, type, name")
    add_json_option(p, "print a JSON array")
    add_store_option(p)
    p.set_defaults(handler=cmd_pin_ls)


def cmd_pin_add(args: argparse.Namespace) -> int:
    from ..sinks.gc import Root, UnfollowableBlock, mark
    from .lookup import resolve_archive

    if args.name is not None and len(args.roots) > 1:
        raise InvalidOption("--name holds one root: pin one ROOT at a time with it")
    with BlockStore(default_store_path(args.store), create=False) as store:
        roots = [resolve_archive(store, text) for text in args.roots]
        for root in roots:
            try:
                live, missing = mark(store, [Root("pin", args.name or format_cid(root), root)])
            except UnfollowableBlock as e:
                raise StoreError(str(store.path), f"cannot pin {format_cid(root)}: {e}") from None
            if missing:
                first = format_cid(min(missing))
                raise StoreError(str(store.path), f"cannot pin {format_cid(root)}: {len(missing)} of the "
                                                  f"{len(live)} blocks it reaches are not in the store "
                                                  f"(first: {first})")
        for root in roots:
            made = store.pin(root, args.name)
            print(f"pinned {format_cid(made.root)} recursively" + (f" as {made.name!r}" if args.name else ""))
    return 0


def cmd_pin_rm(args: argparse.Namespace) -> int:
    from ..dag.cid import parse_cid

    with BlockStore(default_store_path(args.store), create=False) as store:
        names = {p.name for p in store.iter_pins()}
        targets: list[tuple[str | None, bytes | None]] = []
        for text in args.pins:
            if text in names:
                targets.append((text, None))
            else:
                cid = parse_cid(text)  # not a pin's name: a CID, or an error naming what is wrong with it
                if not any(p.root == cid for p in store.iter_pins()):
                    raise StoreError(str(store.path), f"{text} is not pinned")
                targets.append((None, cid))
        for name, pinned in targets:
            for removed in store.unpin(name=name, root=pinned):
                print(f"unpinned {format_cid(removed.root)}" + (
                    f" ({removed.name!r})" if removed.name != format_cid(removed.root) else ""))
    return 0


def cmd_pin_ls(args: argparse.Namespace) -> int:
    with BlockStore(default_store_path(args.store), create=False) as store:
        pins = list(store.iter_pins())
    if args.json:
        print(json.dumps([{"cid": format_cid(p.root), "type": "recursive", "name": p.name, "pinned_at": p.pinned_at}
                          for p in pins], indent=2))
        return 0
    for p in pins:
        cid = format_cid(p.root)
        print(f"{cid} recursive" + (f" {p.name}" if p.name != cid else ""))
    return 0
