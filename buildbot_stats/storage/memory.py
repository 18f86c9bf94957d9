"""InMemoryStorageService: keeps every point in a list, for tests and for looking."""

from __future__ import annotations

from twisted.internet import defer

from buildbot_stats.point import Point
from buildbot_stats.storage.base import StatsStorageBase


class InMemoryStorageService(StatsStorageBase):
    """A backend that records every point it is given in :attr:`points`.

    Use it in your own tests of a master.cfg or of a custom step: configure it with the
    captures to test, run builds, then look at ``backend.points`` (a list of
    :class:`buildbot_stats.point.Point`) or wait for them with :meth:`waitForPoints`.
    The points are lost when the master stops.

    :param captures: the captures whose points to record
    :param name: the backend name (default ``'InMemoryStorageService'``)
    """

    def checkConfig(self, captures=None):
        pass  # captures: checked by StatsStorageBase

    def reconfigService(self, captures=None):
        return defer.succeed(None)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.points = []
        #: ``[(TestRun, cases), ...]`` handed over by CaptureTestHistory
        self.test_runs = []
        self._waiters = []

    def postStatsValue(self, post_data, series_name, context=None, timestamp=None):
        if timestamp is None and self.master is not None:
            timestamp = self.master.reactor.seconds()
        self.points.append(Point(series=series_name, tags=dict(context or {}),
                                 fields=dict(post_data), time=timestamp))
        self.counters.added += 1
        self.counters.written += 1
        self._wakeWaiters()

    def postTestResults(self, run, cases):
        self.test_runs.append((run, list(cases)))
        self.counters.added += len(cases)
        self.counters.written += len(cases)

    def pointsOf(self, series):
        """The recorded points of one series, in the order they came."""
        return [p for p in self.points if p.series == series]

    def waitForPoints(self, count):
        """A Deferred that fires (with the points) once ``count`` points were recorded."""
        d = defer.Deferred()
        self._waiters.append((count, d))
        self._wakeWaiters()
        return d

    def clear(self):
        self.points = []
        self.test_runs = []

    def _wakeWaiters(self):
        waiting = []
        for count, d in self._waiters:
            if len(self.points) >= count:
                d.callback(list(self.points))
            else:
                waiting.append((count, d))
        self._waiters = waiting
