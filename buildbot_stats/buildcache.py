"""What the capture consumers look up in the data API, looked up once.

Several captures consume the same ``finished`` message; without this each of them would ask
the data API for the builder's name and the build's properties.
"""

from __future__ import annotations

from collections import OrderedDict

from twisted.internet import defer


class OnceLookup:
    """A bounded memo of a Deferred-returning lookup: concurrent misses share one call."""

    def __init__(self, lookup, max_size):
        self._lookup = lookup
        self._max_size = max_size
        self._values = OrderedDict()
        self._waiting = {}
        self.misses = 0

    def get(self, key):
        if key in self._values:
            self._values.move_to_end(key)
            return defer.succeed(self._values[key])
        d = defer.Deferred()
        waiters = self._waiting.get(key)
        if waiters is not None:
            waiters.append(d)
            return d
        self._waiting[key] = [d]
        self.misses += 1
        lookup = defer.maybeDeferred(self._lookup, key)

        def done(value):
            self.put(key, value)
            for w in self._waiting.pop(key, []):
                w.callback(value)

        def failed(f):
            for w in self._waiting.pop(key, []):
                w.errback(f)

        lookup.addCallbacks(done, failed)
        return d

    def put(self, key, value):
        self._values[key] = value
        self._values.move_to_end(key)
        while len(self._values) > self._max_size:
            self._values.popitem(last=False)

    def clear(self):
        self._values.clear()
