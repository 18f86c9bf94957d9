"""Counters that tell an operator what happened to every point."""

from __future__ import annotations


class DeliveryCounters:
    """What happened to the points handed to a backend.

    * ``added``: points accepted by ``postStatsValue``
    * ``written``: points the storage confirmed
    * ``rejected``: points refused for their content (bad value, refused by the server);
      never retried
    * ``dropped``: points discarded for lack of room (buffer or spool full) or time (stop)
    * ``retries``: write attempts repeated after a failure
    * ``pending``: points accepted and not yet written, rejected or dropped

    ``limit_rejected``, the part of ``rejected`` that a server refused because a cardinality
    limit was reached (InfluxDB's ``max-series-per-database``...), is kept beside them; a
    backend that can meet such a limit adds it to its ``metrics()`` (the others never see
    one), so it is not among :attr:`names`.
    """

    names = ('added', 'written', 'rejected', 'dropped', 'retries')

    def __init__(self):
        self.added = 0
        self.written = 0
        self.rejected = 0
        self.dropped = 0
        self.retries = 0
        self.limit_rejected = 0

    @property
    def pending(self):
        return self.added - self.written - self.rejected - self.dropped

    def asDict(self):
        d = {n: getattr(self, n) for n in self.names}
        d['pending'] = self.pending
        return d

    def __repr__(self):
        return "<DeliveryCounters {}>".format(
            " ".join(f"{k}={v}" for k, v in self.asDict().items())
        )
