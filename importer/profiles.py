"""Import settings: the IPIP-499 profiles and how Kubo resolves flags against them.

A profile is a preset of Kubo's ``Import.*`` config (kubo ``config/profile.go``, boxo
``ipld/unixfs/io/profile.go``). Resolution follows kubo ``core/commands/add.go``: an explicit
flag wins; otherwise the profile's value; otherwise Kubo's built-in default. Two rules tie
options together:

* raw leaves default to ``cid_version > 0`` unless a flag or the profile sets them;
* ``--preserve-mode``/``--preserve-mtime`` turn raw leaves off (an explicit
  ``--raw-leaves=true`` with them is an error), since only dag-pb nodes can carry metadata.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final, Literal

from .chunkers.base import DEFAULT_BLOCK_SIZE, MiB
from .dag.directory import DEFAULT_HAMT_FANOUT, DEFAULT_HAMT_THRESHOLD, DirectorySettings, SizeEstimation
from .errors import InvalidOption

Layout = Literal["balanced", "trickle"]

#: boxo ``helpers.DefaultLinksPerBlock``: 8192 // 47 = 174, i.e. an 8 KiB block budget divided by
#: 47 bytes per link (34-byte hash + 8-byte size + 5 bytes of protobuf framing).
DEFAULT_FILE_MAX_LINKS: Final = 8192 // 47


@dataclass(frozen=True, slots=True)
class Profile:
    """A named preset; ``raw_leaves=None`` means "follow the CID version" (Kubo's default)."""

    name: str
    cid_version: int
    raw_leaves: bool | None
    chunker: str
    max_file_links: int
    hamt_threshold: int
    hamt_fanout: int
    size_estimation: SizeEstimation
    layout: Layout = "balanced"


#: Kubo with an untouched config: what ``ipfs add`` does when no profile was applied.
KUBO_DEFAULT: Final = Profile(
    name="kubo-default", cid_version=0, raw_leaves=None, chunker=f"size-{DEFAULT_BLOCK_SIZE}",
    max_file_links=DEFAULT_FILE_MAX_LINKS, hamt_threshold=DEFAULT_HAMT_THRESHOLD,
    hamt_fanout=DEFAULT_HAMT_FANOUT, size_estimation="links",
)

UNIXFS_V0_2015: Final = replace(KUBO_DEFAULT, name="unixfs-v0-2015", raw_leaves=False)

#: IPIP-499's modern profile: CIDv1, raw leaves, 1 MiB chunks, 1024 links, exact block sizing.
UNIXFS_V1_2025: Final = Profile(
    name="unixfs-v1-2025", cid_version=1, raw_leaves=True, chunker=f"size-{1 * MiB}",
    max_file_links=1024, hamt_threshold=DEFAULT_HAMT_THRESHOLD, hamt_fanout=DEFAULT_HAMT_FANOUT,
    size_estimation="block",
)

PROFILES: Final = {
    "unixfs-v0-2015": UNIXFS_V0_2015,
    "legacy-cid-v0": UNIXFS_V0_2015,  # Kubo's older name, kept as an alias by IPIP-499
    "unixfs-v1-2025": UNIXFS_V1_2025,
}


@dataclass(frozen=True, slots=True)
class ImportSettings:
    """Everything that decides the bytes of an import, fully resolved."""

    cid_version: int
    raw_leaves: bool
    chunker: str
    layout: Layout
    max_file_links: int
    directory: DirectorySettings
    preserve_mode: bool = False
    preserve_mtime: bool = False
    hidden: bool = False
    profile: str = KUBO_DEFAULT.name


def get_profile(name: str | None) -> Profile:
    if name is None:
        return KUBO_DEFAULT
    try:
        return PROFILES[name]
    except KeyError:
        known = ", ".join(sorted(PROFILES))
        raise InvalidOption(f"unknown profile {name!r} (known: {known})") from None


def resolve_settings(
    *,
    profile: str | None = None,
    cid_version: int | None = None,
    raw_leaves: bool | None = None,
    chunker: str | None = None,
    trickle: bool | None = None,
    max_file_links: int | None = None,
    hamt_threshold: int | None = None,
    hamt_fanout: int | None = None,
    size_estimation: SizeEstimation | None = None,
    max_directory_links: int | None = None,
    preserve_mode: bool = False,
    preserve_mtime: bool = False,
    hidden: bool = False,
) -> ImportSettings:
    """Combine explicit options (``None`` = not given) with a profile, as Kubo does."""
    base = get_profile(profile)
    version = base.cid_version if cid_version is None else cid_version
    if version not in (0, 1):
        raise InvalidOption(f"unknown CID version {version} (0 or 1)")
    if raw_leaves is None:
        leaves = base.raw_leaves if base.raw_leaves is not None else version > 0
    else:
        leaves = raw_leaves
    if preserve_mode or preserve_mtime:
        if raw_leaves:
            raise InvalidOption("--raw-leaves cannot be used with --preserve-mode or --preserve-mtime: "
                                "raw blocks cannot carry mode or mtime")
        leaves = False
    links = base.max_file_links if max_file_links is None else max_file_links
    if links < 2:
        raise InvalidOption(f"--max-file-links must be at least 2, got {links}")
    directory = DirectorySettings(
        cid_version=version,
        hamt_threshold=base.hamt_threshold if hamt_threshold is None else hamt_threshold,
        hamt_fanout=base.hamt_fanout if hamt_fanout is None else hamt_fanout,
        size_estimation=base.size_estimation if size_estimation is None else size_estimation,
        max_links=max_directory_links or 0,
    )
    directory.validate()
    return ImportSettings(
        cid_version=version,
        raw_leaves=leaves,
        chunker=base.chunker if chunker is None else chunker,
        layout="trickle" if trickle else base.layout,
        max_file_links=links,
        directory=directory,
        preserve_mode=preserve_mode,
        preserve_mtime=preserve_mtime,
        hidden=hidden,
        profile=base.name,
    )
