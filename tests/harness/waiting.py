"""Waiting for another process (a watcher, a rotation, a compressor) to get somewhere, without timing
assertions: a condition is polled until it holds or a generous limit passes, and the caller asserts it."""

from __future__ import annotations

import time
from collections.abc import Callable

LIMIT = 60.0
"""Seconds before giving up: far above what any condition takes here, so only a real failure reaches it."""


def wait_for(condition: Callable[[], bool], timeout: float = LIMIT) -> bool:
    """Poll ``condition`` every 50 ms until it is true (True) or ``timeout`` seconds passed (its last value)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()
