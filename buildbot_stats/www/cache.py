"""The rendered views of the Statistics page, kept while the store does not change.

A view of a large store costs a few hundred milliseconds of CPU (SQLite parses every point's
JSON, the page computes medians, percentiles and trends); a maintainer clicking between the
ranges and builders, or several people opening the page, ask for the same views again. An
entry is used again only while the store's state (:meth:`StoreReader.stateKey`: the file,
its schema version, its number of points and its highest row id) is the one it was read at,
and for at most ``max_age`` seconds (the window of a range such as 24 h moves with the
clock). A reader without a state key (InfluxDB: the server does the work) is not cached.

The page runs in the web server's thread pool: the cache is shared by its threads, under a
lock; two threads missing the same view at once both read it (no thread waits on another).
"""

from __future__ import annotations

import collections
import threading

MAX_AGE = 60.0  # seconds an entry is used for at most
MAX_ENTRIES = 32  # views kept (each is one HTML page, 50 to 400 kB for 100,000 points)


class ViewCache:
    """``{key: (time, html)}``, the least recently used dropped beyond ``max_entries``."""

    def __init__(self, max_entries=MAX_ENTRIES, max_age=MAX_AGE):
        self.max_entries, self.max_age = max_entries, max_age
        self.entries = collections.OrderedDict()
        self.lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key, now):
        """The text stored under ``key`` no more than ``max_age`` before ``now``, or None."""
        with self.lock:
            entry = self.entries.get(key)
            if entry is None or not 0 <= now - entry[0] < self.max_age:
                if entry is not None:
                    del self.entries[key]
                self.misses += 1
                return None
            self.entries.move_to_end(key)
            self.hits += 1
            return entry[1]

    def put(self, key, now, text):
        with self.lock:
            self.entries[key] = (now, text)
            self.entries.move_to_end(key)
            while len(self.entries) > self.max_entries:
                self.entries.popitem(last=False)

    def clear(self):
        with self.lock:
            self.entries.clear()
