"""The per-test answers as counts per builder, for ``/metrics``: how many tests are flaky,
failing now and getting slower, by the same analysis as the page and ``buildbot-stats
tests`` (never a test name as a label).

Read from the store the page reads (:class:`~buildbot_stats.reading.source.Source`), in a
thread of the reactor's pool, at most once per :data:`MAX_AGE` seconds: a scrape in
between gets the numbers kept.
"""

from __future__ import annotations

import collections

from twisted.internet import defer
from twisted.internet import threads
from twisted.python import log

from buildbot_stats.reading.source import Source
from buildbot_stats.storage.sqlite.schema import StoreError

#: seconds the counts are kept before a scrape reads them again
MAX_AGE = 300.0
#: the range they are computed over: the last week's builds
WINDOW = 7 * 86400.0
#: the capture whose points they are computed from
CAPTURE = 'CaptureTestHistory'
#: what is counted, from the tables of :meth:`~buildbot_stats.reading.tests.TestQueries.
#: testAnswers`
COUNTED = {'flaky': 'flaky', 'failing': 'new_failures', 'slowing': 'slowing'}


def countsByBuilder(answers):
    """``{builder: {'flaky': n, 'failing': n, 'slowing': n}}`` of ``testAnswers``' tables
    (every builder with test results in the range, 0 where none)."""
    out = collections.defaultdict(lambda: dict.fromkeys(COUNTED, 0))
    for builder in answers.get('builders', ()):
        out[builder]  # noqa: B018 (a builder with nothing to count is 0, not absent)
    for what, table in COUNTED.items():
        for row in answers.get(table, ()):
            out[row['builder']][what] += 1
    return dict(out)


class TestGauges:
    """The counts of one StatsService's store, kept for :data:`MAX_AGE` seconds.

    :param service: the StatsService (its backends say which store to read)
    """

    __test__ = False  # not a test case, whatever pytest thinks of the name

    def __init__(self, service, max_age=MAX_AGE, window=WINDOW):
        self.service = service
        self.max_age, self.window = max_age, window
        self.counts = None
        self.read_at = None
        self._reading = None
        self.errors = 0

    def wanted(self):
        """True when a backend of the service runs :class:`CaptureTestHistory`."""
        names = Source(service=self.service).captureNames() or set()
        return CAPTURE in names

    def current(self, reactor):
        """A Deferred of the counts (None when there is nothing to read), read again when
        older than ``max_age``; concurrent callers share one read."""
        now = reactor.seconds()
        if self.read_at is not None and 0 <= now - self.read_at < self.max_age:
            return defer.succeed(self.counts)
        if not self.wanted():
            return defer.succeed(None)
        if self._reading is None:
            basedir = getattr(self.service.master, 'basedir', None)
            source = Source(service=self.service, basedir=basedir)
            self._reading = threads.deferToThreadPool(
                reactor, reactor.getThreadPool(), self.read, source, now)
            self._reading.addBoth(self._done, now)
        d = defer.Deferred()
        self._reading.addBoth(lambda result: (d.callback(self.counts), result)[1])
        return d

    def read(self, source, now):
        """In a thread: the counts of the store behind ``source``."""
        with source.open() as reader:
            answers = reader.testAnswers(None, now - self.window, None, limit=10 ** 6)
        return countsByBuilder(answers)

    def _done(self, result, now):
        self._reading = None
        if isinstance(result, dict):
            self.counts, self.read_at = result, now
            return None
        self.errors += 1
        # a store not written yet is no error worth more than a line
        if self.errors == 1 or not result.check(StoreError):
            log.msg(f"buildbot_stats: the test counts of /metrics cannot be read: "
                    f"{result.getErrorMessage()}")
        self.read_at = now  # tried: not again before max_age
        return None
