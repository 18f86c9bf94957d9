"""Stopping the StatsService, backends included, takes at most the largest ``stop_timeout``
among its backends (plus the time to write the spool files), whatever the backends' state.

The bound is checked exactly on Buildbot's fake clock, then on a real master whose InfluxDB
hangs (SIGSTOP) and whose SQLite file is locked by another program.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
import time

from twisted.internet import defer
from twisted.trial import unittest

from buildbot.process.results import SUCCESS
from buildbot.test.util.integration import RunMasterBase

from buildbot_stats import stats
from buildbot_stats.delivery import spool as spoolmod
from tests.fakes import FakeMasterMixin
from tests.servers import InfluxDB1Server
from tests.test_integration_core import masterConfig


class HungClient:
    """A treq client whose server accepts every request and never answers; ``requests``
    counts the writes (the backend's series checks ask ``/query``: they hang too)."""

    def __init__(self):
        self.requests = 0

    def request(self, method, url, **kwargs):
        if '/write' in url:
            self.requests += 1
        return defer.Deferred()


class OneBoundOnTheFakeClock(FakeMasterMixin, unittest.TestCase):
    @defer.inlineCallbacks
    def setUp(self):
        yield self.setUpFakeMaster()

    def influx(self, name, stop_timeout, client):
        return stats.InfluxStorageService(
            'influx.invalid', None, None, None, 'db', [stats.CaptureBuildDurationAllBuilders()],
            name=name, http_client=client, flush_interval=0.5, timeout=60.0,
            stop_timeout=stop_timeout)

    @defer.inlineCallbacks
    def test_hung_backends_stop_within_the_largest_stop_timeout(self):
        fast, slow = HungClient(), HungClient()
        a = self.influx('a', 3.0, fast)
        b = self.influx('b', 7.0, slow)
        mem = stats.InMemoryStorageService([stats.CaptureBuildDurationAllBuilders()],
                                           name='mem')
        svc = yield self.startStats([a, b, mem])
        self.assertEqual(svc.stopBound(), 10.0)  # the in-memory backend's default
        yield self.finishBuild((yield self.insertBuild()))
        self.reactor.advance(1.0)  # one batch each, in flight, never answered
        self.assertEqual((fast.requests, slow.requests), (1, 1))

        stopping = svc.disownServiceParent()
        self.reactor.advance(2.99)
        self.assertEqual(a.counters.dropped, 0)
        self.reactor.advance(0.01)
        # 'a' gave up at its own stop_timeout: one flush, not two
        self.assertEqual(a.counters.dropped, 1)
        self.assertFalse(a.running)
        self.reactor.advance(3.99)
        self.assertNoResult(stopping)
        self.reactor.advance(0.01)
        self.successResultOf(stopping)  # 7 s: 'b's stop_timeout, not 3 + 3 nor 7 + 7
        self.assertEqual(b.counters.dropped, 1)
        self.assertEqual(len(mem.points), 1)
        self.assertEqual((fast.requests, slow.requests), (1, 1))

    @defer.inlineCallbacks
    def test_the_bound_includes_the_captures_still_running(self):
        gate = defer.Deferred()

        class Stuck(stats.Capture):
            def consumer(self, routingKey, msg):
                return gate  # a data API look-up that never answers

        client = HungClient()
        a = self.influx('a', 4.0, client)
        a.captures = [Stuck(('builders', None, 'builds', None, 'finished'), None)]
        svc = yield self.startStats([a])
        self.reactor.advance(0)  # the catch-up at start has run (nothing to replay)
        self.master.mq.callConsumer(('builders', '79', 'builds', '1', 'finished'),
                                    {'masterid': None})
        stopping = svc.disownServiceParent()
        self.reactor.advance(3.99)
        self.assertNoResult(stopping)
        self.reactor.advance(0.01)
        self.successResultOf(stopping)
        gate.callback(None)

    @defer.inlineCallbacks
    def test_flush_fires_true_or_false_for_every_backend(self):
        client = HungClient()
        a = self.influx('a', 3.0, client)
        mem = stats.InMemoryStorageService([], name='mem')
        yield self.startStats([a, mem])
        a.postStatsValue({'v': 1}, 's', {}, 1.0)
        d = a.flush(timeout=2.0)
        self.reactor.advance(2.0)
        self.assertIs(self.successResultOf(d), False)
        self.assertIs(self.successResultOf(mem.flush(1.0)), True)
        self.assertIs(self.successResultOf(stats.InfluxStorageService(
            'h', None, None, None, 'db', []).flush()), True)  # not started: nothing pending
        stopping = self.svc.disownServiceParent()
        self.reactor.advance(3.0)
        self.successResultOf(stopping)


class OneBoundOnARealMaster(RunMasterBase):
    """InfluxDB hangs (SIGSTOP: connections accepted, nothing answered), a spool is set, and
    another program holds the SQLite file's write lock while the master stops."""

    proto = 'pb'
    timeout = 120

    def setUp(self):
        self.influx = InfluxDB1Server.start_new()
        self.addCleanup(self.influx.cleanup)
        self.influx.create_database('db')
        self.tmp = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.tmp)

    @defer.inlineCallbacks
    def test_hung_influxdb_and_locked_sqlite(self):
        capture = [stats.CaptureBuildDurationAllBuilders()]
        influx = stats.InfluxStorageService(
            self.influx.url, None, None, None, 'db', capture, name='influx',
            spool_dir=os.path.join(self.tmp, 'spool'), flush_interval=0.1, timeout=60.0,
            stop_timeout=2.0)
        path = os.path.join(self.tmp, 'stats.sqlite')
        lite = stats.SQLiteStorageService(path, capture, name='sqlite', stop_timeout=3.0,
                                          flush_interval=0.1)
        cfg = masterConfig(influx)
        cfg['services'] = [stats.StatsService(storage_backends=[influx, lite],
                                              name='StatsService')]
        yield self.setup_master(cfg)
        svc = self.master.service_manager.namedServices['StatsService']
        self.assertEqual(svc.stopBound(), 3.0)

        self.influx.pause()
        self.addCleanup(self.influx.resume)
        other = sqlite3.connect(path, isolation_level=None)
        self.addCleanup(other.close)
        other.execute("BEGIN EXCLUSIVE")
        for builder in ('alpha', 'beta'):
            build = yield self.doForceBuild(forceParams={'builderNames': [builder]})
            self.assertEqual(build['results'], SUCCESS)
        yield svc.drain()
        self.assertEqual((influx.counters.added, lite.counters.added), (2, 2))

        flushes = []
        for name, owner in (('influx', influx._writer), ('sqlite', lite)):
            def recorded(timeout=None, _name=name, _flush=owner.flush):
                flushes.append((_name, timeout))
                return _flush(timeout)
            owner.flush = recorded

        t0 = time.monotonic()
        yield svc.disownServiceParent()
        elapsed = time.monotonic() - t0
        # one flush per backend, within the one bound (before: InfluxDB flushed twice, 2 + 2
        # s, and SQLite 3 + 3 s plus a write waiting busy_timeout=5 s for the lock); the
        # exact times are checked on the fake clock above
        self.assertEqual(sorted(name for name, _ in flushes), ['influx', 'sqlite'])
        budgets = dict(flushes)
        self.assertLessEqual(budgets['influx'], 2.0)  # its own stop_timeout
        self.assertLessEqual(budgets['sqlite'], 3.0)  # what is left of the bound
        self.assertGreater(budgets['sqlite'], 0.0)
        self.assertGreaterEqual(elapsed, 2.9)  # both waited: no timer fires early
        self.assertLess(elapsed, 60)           # and nothing hung
        self.assertEqual((influx.counters.pending, influx.counters.dropped), (2, 0))
        self.assertEqual((lite.counters.written, lite.counters.dropped), (0, 2))
        files = sorted(os.listdir(os.path.join(self.tmp, 'spool')))
        lines = []
        for name in files:
            with open(os.path.join(self.tmp, 'spool', name), 'rb') as f:
                lines += spoolmod.decodeFile(f.read())
        self.assertEqual(len(lines), 2)
        yield self.tested_master.shutdown()
