"""A real master, a real worker and real builds writing to a real InfluxDB 1.x that is down
while the builds finish: every point lands exactly once, with its build's time, when the
server comes back; and a master stopped during the outage keeps its points in the spool."""

from __future__ import annotations

import shutil
import tempfile

from twisted.internet import defer

from buildbot.process.results import SUCCESS
from buildbot.test.util.integration import RunMasterBase

from buildbot_stats import stats
from buildbot_stats.point import to_epoch_ns
from tests.servers import InfluxDB1Server
from tests.test_integration_core import masterConfig
from tests.waiting import waitUntil


def captures():
    return [
        stats.CaptureBuildStartTimeAllBuilders(),     # capture 0: build start + 0 us
        stats.CaptureBuildEndTimeAllBuilders(),       # 1: build end + 1 us
        stats.CaptureBuildDurationAllBuilders(),      # 2: build end + 2 us
        stats.CaptureProperty('alpha', 'warnings'),   # 3: build end + 3 us
        stats.CaptureData('coverage', 'alpha'),       # 4: when the step posted + 4 us
    ]


class OutageWithRealBuilds(RunMasterBase):
    proto = 'pb'

    def setUp(self):
        self.influx = InfluxDB1Server.start_new()
        self.addCleanup(self.influx.cleanup)
        self.influx.create_database('builds')

    def makeBackend(self, **kwargs):
        return stats.InfluxStorageService(
            self.influx.url, None, None, None, 'builds', captures(), flush_interval=0.1,
            retry_interval=0.2, max_retry_delay=0.5, jitter=0.0, stop_timeout=1.0, **kwargs)

    @defer.inlineCallbacks
    def runBuilds(self):
        a = yield self.doForceBuild(wantProperties=True,
                                    forceParams={'builderNames': ['alpha']})
        b = yield self.doForceBuild(wantProperties=True,
                                    forceParams={'builderNames': ['beta']})
        self.assertEqual((a['results'], b['results']), (SUCCESS, SUCCESS))
        return a, b

    def assertBuildPointsOnce(self, a, b):
        def ns(dt, us):
            return to_epoch_ns(dt.timestamp()) + us * 1000

        for build, builder in ((a, 'alpha'), (b, 'beta')):
            rows = self.influx.points('builds', f'{builder}-build-times')
            tags = {'builder_name': builder, 'build_number': str(build['number'])}
            secs = (build['complete_at'] - build['started_at']).total_seconds()
            self.assertEqual(rows, [
                dict(tags, time=ns(build['started_at'], 0),
                     **{'start-time': build['started_at'].isoformat()}),
                dict(tags, time=ns(build['complete_at'], 1),
                     **{'end-time': build['complete_at'].isoformat()}),
                dict(tags, time=ns(build['complete_at'], 2), duration=secs),
            ])
        rows = self.influx.points('builds', 'alpha-warnings')
        self.assertEqual(rows, [{'builder_name': 'alpha', 'build_number': str(a['number']),
                                 'name': 'warnings', 'value': 3,
                                 'time': ns(a['complete_at'], 3)}])
        rows = self.influx.points('builds', 'alpha-coverage')
        self.assertEqual(len(rows), 1)
        self.assertEqual((rows[0]['percent'], rows[0]['lines']), (87.5, 1200))
        # stamped when the step posted it; Buildbot keeps build times to the second
        second = 10**9
        self.assertTrue(ns(a['started_at'], 0) - second <= rows[0]['time']
                        <= ns(a['complete_at'], 4) + second)
        self.assertEqual(self.influx.measurements('builds'), [
            'alpha-build-times', 'alpha-coverage', 'alpha-warnings', 'beta-build-times'])

    @defer.inlineCallbacks
    def test_server_down_while_builds_finish_then_back(self):
        backend = self.makeBackend()
        yield self.setup_master(masterConfig(backend))
        self.influx.stop()
        a, b = yield self.runBuilds()
        svc = self.master.service_manager.namedServices['StatsService']
        yield svc.drain()  # the captures have posted their points
        yield waitUntil(lambda: backend.counters.retries >= 2, "the outage to go on a while")
        self.assertEqual(backend.counters.written, 0)
        self.assertEqual(backend.counters.pending, 8)  # alpha 5, beta 3
        self.assertGreater(backend.counters.retries, 0)

        self.influx.start()
        ok = yield backend.flush(timeout=15)
        self.assertTrue(ok)
        self.assertEqual(backend.counters.asDict()['written'], 8)
        self.assertEqual(backend.counters.pending, 0)
        self.assertEqual(backend.counters.dropped, 0)
        self.assertBuildPointsOnce(a, b)
        yield self.tested_master.shutdown()

    @defer.inlineCallbacks
    def test_master_stopped_during_outage_keeps_points_in_spool(self):
        spool_dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, spool_dir)
        backend = self.makeBackend(spool_dir=spool_dir)
        yield self.setup_master(masterConfig(backend))
        self.influx.stop()
        a, b = yield self.runBuilds()
        # the master stops while InfluxDB is still down: within stop_timeout, not for ever
        yield self.tested_master.shutdown()
        self.assertEqual((backend.counters.pending, backend.counters.dropped), (8, 0))

        # the next start of the master (here: the same backend configuration) sends them
        self.influx.start()
        again = self.makeBackend(spool_dir=spool_dir)
        yield again.startService()
        ok = yield again.flush(timeout=15)
        yield again.stopService()
        self.assertTrue(ok)
        self.assertEqual(again.counters.written, 8)
        self.assertBuildPointsOnce(a, b)
