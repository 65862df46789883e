"""Archive readers: split wheels and sdists into members and the exact skeleton bytes between them.

``base`` holds the records (:class:`Member`, :class:`Skeleton`, :class:`Gap`, :class:`Limits`)
and format sniffing; ``zip`` reads zips and wheels and ``inflate`` streams their members; ``tar``
reads tar streams; ``compressed`` unwraps the gzip, bzip2 and xz containers around them;
``names`` decides which members can live in the tree; ``auto`` picks the readers by content.
"""

from .base import DEFAULT_LIMITS, ArchiveSource, Gap, Limits, Member, Skeleton, detect_format

__all__ = ["DEFAULT_LIMITS", "ArchiveSource", "Gap", "Limits", "Member", "Skeleton", "detect_format"]
