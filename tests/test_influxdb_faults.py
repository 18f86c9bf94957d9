"""InfluxStorageService against a server that fails on command: every point still ends
written, rejected or dropped, as counted, and the master-side calls never wait."""

from __future__ import annotations

import time

from twisted.internet import defer
from twisted.internet import reactor
from twisted.python import log
from twisted.trial import unittest

from buildbot_stats import stats
from tests.faultserver import FaultServer
from tests.waiting import waitUntil

SECRET = 'pa55-very-secret'


class Faults(unittest.TestCase):

    def setUp(self):
        self.server = FaultServer()
        self.addCleanup(self.server.stop)
        self.messages = []
        log.addObserver(self._observe)
        self.addCleanup(log.removeObserver, self._observe)

    def _observe(self, event):
        self.messages.append(' '.join(str(m) for m in event.get('message', ())) +
                             str(event.get('log_failure', '')))

    @defer.inlineCallbacks
    def start(self, **kwargs):
        for k, v in dict(flush_interval=0.05, retry_interval=0.05, jitter=0.0,
                         max_retry_delay=2.0, timeout=2.0, stop_timeout=1.0).items():
            kwargs.setdefault(k, v)
        backend = stats.InfluxStorageService(self.server.url, None, 'bob', SECRET, 'db', [],
                                             **kwargs)
        yield backend.startService()
        self.addCleanup(lambda: backend.stopService() if backend.running else None)
        self.backend = backend
        return backend

    def post(self, n, start=0):
        for i in range(start, start + n):
            self.backend.postStatsValue({'v': i}, 'm', {'builder_name': 'b'}, 1000.0 + i)

    def assertCounters(self, **expected):
        got = self.backend.counters.asDict()
        self.assertEqual({k: got[k] for k in expected}, expected)

    def assertNoSecretLogged(self):
        for m in self.messages:
            self.assertNotIn(SECRET, m)
        self.assertNotIn(SECRET, repr(self.backend))

    @defer.inlineCallbacks
    def test_500_then_ok_resends_the_same_batch(self):
        self.server.script = [('status', 500, b'{"error":"boom"}', {})]
        yield self.start()
        self.post(3)
        ok = yield self.backend.flush(timeout=5)
        self.assertTrue(ok)
        bodies = self.server.bodies()
        self.assertEqual(len(bodies), 2)
        self.assertEqual(bodies[0], bodies[1])
        self.assertEqual(bodies[0].count(b'\n'), 2)
        self.assertCounters(written=3, retries=1, pending=0, dropped=0)
        # credentials go in a header, never in the URL or the log
        auth = self.server.requests[0][2].getRawHeaders(b'authorization')[0]
        self.assertTrue(auth.startswith(b'Basic '))
        self.assertNotIn(SECRET.encode(), self.server.requests[0][0])
        self.assertTrue(any('HTTP 500' in m for m in self.messages))
        self.assertNoSecretLogged()

    @defer.inlineCallbacks
    def test_503_retry_after_is_honoured(self):
        self.server.script = [('status', 503, b'', {b'Retry-After': b'1'})]
        yield self.start()
        self.post(1)
        yield self.backend.flush(timeout=5)
        self.assertCounters(written=1, retries=1)
        # the retry waited what the server asked (a timer never fires early), no backoff
        gap = self.server.times[1] - self.server.times[0]
        self.assertGreaterEqual(gap, 0.95)
        self.assertTrue(any('next attempt in 1.0 s' in m for m in self.messages),
                        self.messages)

    @defer.inlineCallbacks
    def test_400_partial_write_counts_dropped_points(self):
        self.server.script = [('status', 400, b'{"error":"partial write: field type conflict:'
                               b' input field \\"v\\" ... dropped=2"}', {})]
        yield self.start()
        self.post(5)
        yield self.backend.flush(timeout=5)
        self.assertCounters(written=3, rejected=2, retries=0, pending=0)
        self.assertEqual(len(self.server.bodies()), 1)

    @defer.inlineCallbacks
    def test_413_splits_the_batch(self):
        def tooLarge(request, body):
            return (413, b'{"error":"Request Entity Too Large"}') if body.count(b'\n') >= 2 \
                else (204, b'')
        self.server.script = [('fn', tooLarge)] * 20
        # one request at a time: the halves are sent in order
        yield self.start(batch_size=8, max_in_flight=1)
        self.post(8)
        yield self.backend.flush(timeout=5)
        self.assertCounters(written=8, pending=0, rejected=0)
        sizes = [b.count(b'\n') + 1 for b in self.server.bodies()]
        self.assertEqual(sizes, [8, 4, 2, 2, 4, 2, 2])

    @defer.inlineCallbacks
    def test_401_keeps_points_logs_once_retries_slowly(self):
        self.server.script = [('status', 401, b'{"error":"authorization failed"}', {})] * 3
        yield self.start(slow_retry_interval=0.3)
        self.post(2)
        yield waitUntil(lambda: len(self.server.bodies()) >= 2, "a slow retry")
        self.assertCounters(written=0, pending=2)
        ok = yield self.backend.flush(timeout=5)          # flush tries at once
        self.assertTrue(ok)
        self.assertCounters(written=2, pending=0, dropped=0)
        errors = [m for m in self.messages if 'HTTP 401' in m and 'write failed' in m]
        self.assertEqual(len(errors), 1, errors)
        self.assertIn('check the credentials', errors[0])
        self.assertNoSecretLogged()

    @defer.inlineCallbacks
    def test_404_database_not_found_creates_it(self):
        self.server.script = [('status', 404, b'{"error":"database not found: \\"db\\""}', {})]
        yield self.start(create_database=True)
        self.post(1)
        yield self.backend.flush(timeout=5)
        paths = [p for p, _, _ in self.server.requests]
        self.assertEqual(paths, [b'/write', b'/write'])
        # the queries (/query) are recorded apart: the CREATE, and the series checks
        creates = [b for _, b, _ in self.server.queries if b.startswith(b'q=CREATE')]
        self.assertEqual(creates, [b'q=CREATE+DATABASE+%22db%22'])
        self.assertCounters(written=1, pending=0)

    @defer.inlineCallbacks
    def test_404_without_create_database_keeps_points(self):
        self.server.script = [('status', 404, b'{"error":"database not found: \\"db\\""}', {})]
        yield self.start(slow_retry_interval=0.2)
        self.post(1)
        yield waitUntil(lambda: any('create_database=True' in m for m in self.messages),
                        "the hint to set create_database")
        self.assertCounters(pending=1)
        # retried after slow_retry_interval, and the scripted 404 is over
        yield waitUntil(lambda: self.backend.counters.written == 1, "the slow retry")
        self.assertCounters(written=1, pending=0)

    @defer.inlineCallbacks
    def test_no_answer_times_out_and_retries(self):
        self.server.script = [('hang',)]
        yield self.start(timeout=0.3)
        self.post(2)
        t0 = time.monotonic()
        yield self.backend.flush(timeout=5)
        self.assertCounters(written=2, retries=1, pending=0)
        self.assertGreaterEqual(time.monotonic() - t0, 0.25)
        self.assertTrue(any('no answer within 0.3 s' in m for m in self.messages))

    @defer.inlineCallbacks
    def test_connection_reset_retries(self):
        self.server.script = [('reset',), ('reset',)]
        yield self.start()
        self.post(2)
        yield self.backend.flush(timeout=5)
        self.assertCounters(written=2, retries=2, pending=0)
        self.assertEqual(len(self.server.bodies()), 3)

    @defer.inlineCallbacks
    def test_connection_refused_keeps_points_until_server_is_back(self):
        url = self.server.url
        yield self.server.port.stopListening()
        yield self.start()
        self.post(4)
        yield waitUntil(lambda: self.backend.counters.retries >= 2, "two refused attempts")
        self.assertCounters(written=0, pending=4)
        self.assertGreaterEqual(self.backend.counters.retries, 2)
        self.assertTrue(any('Connection was refused' in m for m in self.messages))
        self.server.port = reactor.listenTCP(int(url.rsplit(':', 1)[1]), self.server.site,
                                             interface='127.0.0.1')
        ok = yield self.backend.flush(timeout=5)
        self.assertTrue(ok)
        self.assertCounters(written=4, pending=0, dropped=0)

    @defer.inlineCallbacks
    def test_stop_while_server_hangs_is_bounded(self):
        self.server.script = [('hang',)] * 10
        yield self.start(timeout=30.0, stop_timeout=0.5)
        self.post(10)
        yield waitUntil(lambda: len(self.server.requests) >= 1, "a request the server holds")
        # postStatsValue never waits, whatever the server does (its cost per point is in
        # benchmarks/spool.py); the stop is bounded (exact times: tests.test_stop_bound)
        self.post(1000, start=10)
        yield self.backend.stopService()
        self.assertCounters(written=0, dropped=1010, pending=0)
        self.assertTrue(any('1010 points not written' in m for m in self.messages))
