"""``--every DURATION``: the seed's refresh daemon, one refresh after another, stopped cleanly by SIGTERM.

Refreshes never overlap: they run one after the other in this thread, and the store's sync lock
keeps any other process from starting one beside them. SIGTERM (and SIGINT) only set an event:
a refresh in progress stops after the archive it is importing (every archive is then either
recorded whole or not at all), the wait between refreshes ends at once, and the process exits 0.
"""

from __future__ import annotations

import re
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Final

from ..errors import InvalidOption

_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}
#: Shortest interval accepted: below a second the daemon would only spin on an idle index.
MIN_INTERVAL_S: Final = 1.0


def parse_duration(text: str, option: str = "--every") -> float:
    """``90``, ``90s``, ``15m``, ``1h``, ``1d`` or a sum like ``1h30m``, in seconds.

    >>> parse_duration("1h30m"), parse_duration("45")
    (5400.0, 45.0)
    """
    parts = re.findall(r"(\d+(?:\.\d+)?)([smhd]?)", text.strip())
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        raise InvalidOption(f"{option} must be a duration such as 30s, 15m, 1h or 1h30m, got {text!r}")
    seconds = sum(float(n) * _UNITS[u or "s"] for n, u in parts)
    if seconds < MIN_INTERVAL_S:
        raise InvalidOption(f"{option} must be at least {MIN_INTERVAL_S:g} s, got {text!r}")
    return seconds


def run_every(interval: float, refresh: Callable[[threading.Event], None], stop: threading.Event | None = None) -> int:
    """Call ``refresh(stop)`` now and then every ``interval`` seconds (start to start) until stopped."""
    stop = stop or threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        import time

        while not stop.is_set():
            started = time.monotonic()
            refresh(stop)
            stop.wait(max(0.0, interval - (time.monotonic() - started)))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
