"""Waiting on what a test needs, not for a length of time: poll a condition with a generous
deadline (a loaded 2-core machine may be slow; a condition is never early).

:func:`waitUntil` waits without blocking the reactor (a Deferred). :func:`pollUntil` blocks: it
is for tests that drive other processes (a master in a subprocess, PostgreSQL, crossbar) and
have no reactor work of their own to let run meanwhile."""

from __future__ import annotations

import time

from twisted.internet import defer
from twisted.internet import reactor
from twisted.internet import task

DEADLINE = 60.0  # seconds; reached only when the condition never comes
# seconds, for another process: a master on a loaded 2-core machine takes 5-15 s to start
PROCESS_DEADLINE = 120.0


@defer.inlineCallbacks
def waitUntil(condition, what=None, timeout=DEADLINE, interval=0.01):
    """Fire once ``condition()`` is true; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting after {timeout} s for "
                                 f"{what or getattr(condition, '__name__', condition)}")
        yield task.deferLater(reactor, interval, lambda: None)


def pollUntil(condition, what=None, timeout=PROCESS_DEADLINE, interval=0.1, describe=None):
    """Block until ``condition()`` returns something true, and return it; fail with ``what``
    (and ``describe()``, e.g. a log tail) after ``timeout`` seconds. An exception raised by
    ``condition`` (a process that exited) ends the wait at once."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            extra = f": {describe()}" if describe else ""
            raise AssertionError(f"still waiting after {timeout} s for "
                                 f"{what or getattr(condition, '__name__', condition)}{extra}")
        time.sleep(interval)
