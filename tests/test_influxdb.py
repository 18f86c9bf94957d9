"""InfluxStorageService against a real InfluxDB 1.x started by the test."""

from __future__ import annotations

import time

from twisted.internet import defer
from twisted.trial import unittest

from buildbot_stats import stats
from buildbot_stats.point import to_epoch_ns
from tests.servers import InfluxDB1Server


class RealInfluxDB1(unittest.TestCase):

    def setUp(self):
        self.influx = InfluxDB1Server.shared()
        self.db = f"t{int(time.time() * 1000) % 10**9}_{id(self) % 10**6}"
        self.influx.create_database(self.db)

    @defer.inlineCallbacks
    def startBackend(self, **kwargs):
        kwargs.setdefault('flush_interval', 0.05)
        backend = stats.InfluxStorageService(
            self.influx.url, None, None, None, self.db, [], **kwargs)
        yield backend.startService()
        self.addCleanup(lambda: backend.stopService() if backend.running else None)
        return backend

    @defer.inlineCallbacks
    def test_points_land_with_exact_times_and_types(self):
        backend = yield self.startBackend()
        t0 = 1_700_000_000.123456
        backend.postStatsValue({'duration': 12.5, 'start-time': '2024-01-01T00:00:00+00:00'},
                               'alpha-build-times',
                               {'builder_name': 'alpha', 'build_number': '7'}, t0)
        backend.postStatsValue({'name': 'warnings', 'value': 3}, 'alpha-warnings',
                               {'builder_name': 'alpha', 'build_number': '7'}, t0 + 1e-6)
        ok = yield backend.flush(timeout=10)
        self.assertTrue(ok)
        self.assertEqual(backend.counters.asDict(), {
            'added': 2, 'written': 2, 'rejected': 0, 'dropped': 0, 'retries': 0,
            'pending': 0})
        rows = self.influx.points(self.db, 'alpha-build-times')
        self.assertEqual(rows, [{
            'time': to_epoch_ns(t0), 'duration': 12.5,
            'start-time': '2024-01-01T00:00:00+00:00',
            'builder_name': 'alpha', 'build_number': '7'}])
        rows = self.influx.points(self.db, 'alpha-warnings')
        self.assertEqual(rows[0]['time'], to_epoch_ns(t0) + 1000)
        self.assertEqual(rows[0]['value'], 3)
        self.assertEqual(self.influx.field_types(self.db, 'alpha-warnings'),
                         {'name': 'string', 'value': 'integer'})

    @defer.inlineCallbacks
    def test_many_points_in_batches_nothing_lost(self):
        backend = yield self.startBackend(batch_size=1000)
        n = 20_000
        t0 = 1_600_000_000.0
        for i in range(n):
            backend.postStatsValue({'value': i}, 'bulk', {'builder_name': f'b{i % 7}'},
                                   t0 + i * 1e-3)
        ok = yield backend.flush(timeout=60)
        self.assertTrue(ok)
        self.assertEqual(backend.counters.written, n)
        self.assertEqual(backend.counters.pending, 0)
        answer = self.influx.query('SELECT count(value), sum(value) FROM bulk', db=self.db)
        _, count, total = answer['results'][0]['series'][0]['values'][0]
        self.assertEqual((count, total), (n, n * (n - 1) // 2))
        # what postStatsValue costs per point is measured by benchmarks/spool.py and
        # benchmarks/throughput.py, not asserted here

    @defer.inlineCallbacks
    def test_sent_twice_lands_once(self):
        backend = yield self.startBackend()
        for _ in range(2):
            backend.postStatsValue({'value': 1.5}, 'twice', {'builder_name': 'a'}, 1234.5)
            yield backend.flush(timeout=10)
        self.assertEqual(backend.counters.written, 2)
        self.assertEqual(len(self.influx.points(self.db, 'twice')), 1)

    @defer.inlineCallbacks
    def test_bad_points_rejected_at_post_others_go_through(self):
        backend = yield self.startBackend()
        backend.postStatsValue({}, 'empty', {'builder_name': 'a', 'build_number': '3'}, 1.0)
        backend.postStatsValue({'v': 1}, 'fine', {}, 2.0)
        backend.postStatsValue({'v': 1}, 'fine', {}, 'not a time')
        yield backend.flush(timeout=10)
        self.assertEqual(backend.counters.asDict(), {
            'added': 3, 'written': 1, 'rejected': 2, 'dropped': 0, 'retries': 0,
            'pending': 0})
        self.assertEqual(len(self.influx.points(self.db, 'fine')), 1)

    @defer.inlineCallbacks
    def test_type_conflict_is_a_counted_partial_write(self):
        backend = yield self.startBackend()
        backend.postStatsValue({'value': 1.5}, 'conflict', {}, 10.0)
        yield backend.flush(timeout=10)
        # same field, now a string: InfluxDB refuses this one point, keeps the others
        backend.postStatsValue({'value': 'text'}, 'conflict', {}, 11.0)
        backend.postStatsValue({'value': 2.5}, 'conflict', {}, 12.0)
        yield backend.flush(timeout=10)
        self.assertEqual((backend.counters.written, backend.counters.rejected,
                          backend.counters.pending), (2, 1, 0))
        self.assertEqual([r['value'] for r in self.influx.points(self.db, 'conflict')],
                         [1.5, 2.5])

    @defer.inlineCallbacks
    def test_creates_missing_database(self):
        backend = stats.InfluxStorageService(
            self.influx.url, None, None, None, self.db + '_new', [], create_database=True,
            flush_interval=0.05)
        yield backend.startService()
        backend.postStatsValue({'v': 1}, 'm', {}, 5.0)
        ok = yield backend.flush(timeout=10)
        yield backend.stopService()
        self.assertTrue(ok)
        self.assertEqual(len(self.influx.points(self.db + '_new', 'm')), 1)
        self.assertEqual(backend.counters.retries, 1)

    @defer.inlineCallbacks
    def test_full_url_and_port_forms(self):
        host, port = self.influx.host, self.influx.port
        for url, p in ((host, port), (f'http://{host}', port), (f'http://{host}:{port}', None),
                       (f'http://{host}:{port}/', port)):
            backend = stats.InfluxStorageService(url, p, None, None, self.db, [],
                                                 flush_interval=0.05, name=f'b{url}')
            yield backend.startService()
            backend.postStatsValue({'v': 1}, 'forms', {'url': url}, 7.0)
            yield backend.stopService()
            self.assertEqual(backend.counters.written, 1, url)
        self.assertEqual(len(self.influx.points(self.db, 'forms')), 4)
