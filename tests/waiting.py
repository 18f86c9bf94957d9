"""Waiting on what a test needs, not for a length of time: poll a condition with a generous
deadline (a loaded 2-core machine may be slow; a condition is never early)."""

from __future__ import annotations

import time

from twisted.internet import defer
from twisted.internet import reactor
from twisted.internet import task

DEADLINE = 60.0  # seconds; reached only when the condition never comes


@defer.inlineCallbacks
def waitUntil(condition, what=None, timeout=DEADLINE, interval=0.01):
    """Fire once ``condition()`` is true; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting after {timeout} s for "
                                 f"{what or getattr(condition, '__name__', condition)}")
        yield task.deferLater(reactor, interval, lambda: None)
