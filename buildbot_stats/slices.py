"""Work done on the reactor a slice at a time: what every slice shares.

Python's cyclic garbage collector is paused during a slice (:func:`cyclicGCPaused`): a
slice allocates many small objects (a scrape's samples, a report's test cases); a young
collection during the slice promotes those still alive to the older generations, and enough
of them trigger a full collection of the master's whole heap, 50 ms and more on the reactor.
The objects a slice leaves behind are freed by reference counting, not by the collector.
"""

from __future__ import annotations

import contextlib
import gc


@contextlib.contextmanager
def cyclicGCPaused():
    """Python's cyclic garbage collector off for the block (when it was on).

    A piece of a scrape allocates a sample object and a label dict per sample. A young
    collection that happens while a piece is being written promotes the piece's live objects
    to the older generations, and enough of those trigger a full collection of the master's
    whole heap: 50 ms and more on the reactor with 500 builders x 20 steps (the benchmark).
    The piece's objects are freed by reference counting when it is written, not by the
    collector: with the collector off for the piece (about 2 ms), none of them is promoted.
    """
    was_enabled = gc.isenabled()
    if was_enabled:
        gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
