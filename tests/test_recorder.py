"""The build data recorder of yieldMetricsValue: no read where nothing can be stored, one
write for the calls that wait, nothing lost. Buildbot's fake master (fake clock, real
in-memory database); the real-master tests of the same data are in test_history.py."""

from __future__ import annotations

from twisted.internet import defer
from twisted.python import log
from twisted.trial import unittest

from buildbot.test.util.config import ConfigErrorsMixin

from buildbot_stats import stats
from buildbot_stats.history import recorder as recorder_module
from buildbot_stats.history.reader import decodeBuildData
from buildbot_stats.history.reader import encodeBuildData
from tests.fakes import FakeMasterMixin


class RecorderTest(FakeMasterMixin, unittest.TestCase):
    @defer.inlineCallbacks
    def setUp(self):
        yield self.setUpFakeMaster()
        self.backend = stats.InMemoryStorageService(
            [stats.CaptureDataAllBuilders('coverage')], name='mem')
        # no catch-up: its checkpoints are not what these tests are about
        self.svc = stats.StatsService(storage_backends=[self.backend], catch_up=False)
        yield self.svc.setServiceParent(self.master)
        yield self.master.startService()
        self.addCleanup(self.master.stopService)
        self.recorder = self.svc.build_data_recorder
        self.writes = []  # buildid, name, values of each setBuildData call
        self.holding = False  # while True, every write waits for release()
        self.held = []
        updates = self.master.data.updates
        real = updates.setBuildData

        @defer.inlineCallbacks
        def setBuildData(buildid, name, value, source):
            self.writes.append((buildid, name, [d for _, d in decodeBuildData(value)]))
            if self.holding:
                held = defer.Deferred()
                self.held.append(held)
                yield held
            yield real(buildid, name, value, source)

        updates.setBuildData = setBuildData

    def release(self):
        held, self.held = self.held, []
        for d in held:
            d.callback(None)

    def new(self, build):
        # as Buildbot announces it, under each of its routing keys the service consumes
        mq = self.master.mq
        mq.callConsumer(('workers', str(build['workerid']), 'builds', str(build['buildid']),
                         'new'), build)
        mq.callConsumer(('builds', str(build['buildid']), 'new'), build)

    def finished(self, build):
        self.master.mq.callConsumer(('builds', str(build['buildid']), 'finished'), build)

    def call(self, build, value, name='coverage'):
        return self.svc.yieldMetricsValue(name, {'n': value}, build['buildid'])

    @defer.inlineCallbacks
    def stored(self, build, name='coverage'):
        model = yield self.master.db.build_data.getBuildData(build['buildid'], 'stats.' + name)
        return None if model is None else [d['n'] for _, d in decodeBuildData(model.value)]

    @defer.inlineCallbacks
    def test_a_build_seen_new_is_written_without_reading(self):
        build = yield self.insertBuild()
        self.new(build)
        for n in range(3):
            yield self.call(build, n)
        self.assertEqual(self.recorder.reads, 0)
        self.assertEqual(self.recorder.writes, 3)
        self.assertEqual((yield self.stored(build)), [0, 1, 2])

    @defer.inlineCallbacks
    def test_a_build_not_seen_new_is_read_once_and_keeps_what_was_stored(self):
        build = yield self.insertBuild()
        # recorded before this service started (a restart in the middle of the build)
        yield self.master.data.updates.setBuildData(
            build['buildid'], 'stats.coverage', encodeBuildData([(1.0, {'n': 'old'})]),
            'buildbot_stats')
        yield self.call(build, 0)
        yield self.call(build, 1)
        self.assertEqual(self.recorder.reads, 1)
        self.assertEqual((yield self.stored(build)), ['old', 0, 1])

    @defer.inlineCallbacks
    def test_running_builds_are_never_evicted_finished_ones_are_read_back(self):
        self.recorder._max_size = 1
        builds = []
        for _ in range(4):
            build = yield self.insertBuild()
            self.new(build)
            builds.append(build)
        # more running builds and names than the memo holds, interleaved
        for n in range(3):
            for build in builds:
                yield self.call(build, n)
                yield self.call(build, n, name='size')
        self.assertEqual(self.recorder.reads, 0)
        for build in builds:
            self.assertEqual((yield self.stored(build)), [0, 1, 2])
            self.finished(build)
        # finished: the memo keeps one series; a late call of an evicted one reads it back
        self.assertEqual(len(self.recorder._active), 0)
        self.assertEqual(len(self.recorder._memo), 1)
        self.assertEqual(self.recorder._running, {})
        yield self.call(builds[0], 'late')
        self.assertEqual(self.recorder.reads, 1)
        self.assertEqual((yield self.stored(builds[0])), [0, 1, 2, 'late'])
        self.assertEqual((yield self.stored(builds[0], 'size')), [0, 1, 2])

    @defer.inlineCallbacks
    def test_a_late_new_message_is_not_trusted(self):
        first = yield self.insertBuild()
        second = yield self.insertBuild()
        yield self.call(second, 0)
        self.recorder._max_size = 0
        yield self.call(first, 0)  # the memo keeps nothing
        self.assertEqual(self.recorder.reads, 2)
        # 'new' of builds at or below the highest recorded one (delivered late): read first
        self.new(first)
        self.new(second)
        yield self.call(second, 1)
        self.assertEqual(self.recorder.reads, 3)
        self.assertEqual((yield self.stored(second)), [0, 1])

    @defer.inlineCallbacks
    def test_calls_during_a_write_go_in_one_write_in_call_order(self):
        build = yield self.insertBuild()
        self.new(build)
        self.holding = True
        done = [self.call(build, n) for n in range(5)]
        other = self.call(build, 'x', name='size')
        # the first call's write is in flight; the four others wait for it
        self.assertEqual([d.called for d in done], [False] * 5)
        self.holding = False
        self.release()
        yield defer.gatherResults(done + [other])
        self.assertEqual(self.writes, [
            (build['buildid'], 'stats.coverage', [{'n': 0}]),
            (build['buildid'], 'stats.size', [{'n': 'x'}]),
            (build['buildid'], 'stats.coverage', [{'n': n} for n in range(5)]),
        ])
        self.assertEqual((yield self.stored(build)), [0, 1, 2, 3, 4])
        self.assertEqual(self.recorder.reads, 0)

    @defer.inlineCallbacks
    def test_each_call_fires_after_the_write_that_holds_it(self):
        build = yield self.insertBuild()
        self.new(build)
        self.holding = True
        d0 = self.call(build, 0)
        d1 = self.call(build, 1)
        self.release()
        yield d0
        # the second call's write (now in flight) holds it: not yet written
        self.assertFalse(d1.called)
        self.assertEqual((yield self.stored(build)), [0])
        self.holding = False
        self.release()
        yield d1
        self.assertEqual((yield self.stored(build)), [0, 1])

    @defer.inlineCallbacks
    def test_a_failed_write_is_counted_and_the_next_one_reads_first(self):
        build = yield self.insertBuild()
        self.new(build)
        yield self.call(build, 0)
        updates = self.master.data.updates
        working = updates.setBuildData
        updates.setBuildData = lambda *args: defer.fail(RuntimeError('database is gone'))
        yield self.call(build, 1)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(self.svc.metrics()['unrecorded_data'], 1)
        updates.setBuildData = working
        yield self.call(build, 2)
        self.assertEqual(self.recorder.reads, 1)
        self.assertEqual((yield self.stored(build)), [0, 2])

    @defer.inlineCallbacks
    def test_stop_waits_for_the_calls_being_written(self):
        build = yield self.insertBuild()
        self.new(build)
        self.holding = True
        calls = [self.call(build, n) for n in range(3)]
        stopped = self.svc.disownServiceParent()
        self.reactor.advance(60)  # whatever else the stop waits for on the clock
        self.assertFalse(stopped.called)
        self.holding = False
        self.release()
        yield stopped
        self.assertTrue(all(d.called for d in calls))
        self.assertEqual((yield self.stored(build)), [0, 1, 2])
        self.assertEqual(len(self.writes), 2)

    @defer.inlineCallbacks
    def test_stop_waits_for_a_hung_database_within_its_bound(self):
        build = yield self.insertBuild()
        self.new(build)
        self.holding = True
        call = self.call(build, 0)
        logged = []
        log.addObserver(logged.append)
        self.addCleanup(log.removeObserver, logged.append)
        stopped = self.svc.disownServiceParent()
        self.reactor.advance(recorder_module.STOP_TIMEOUT - 1)
        self.assertFalse(stopped.called)
        # the bound, and whatever else the stop waits for on the clock
        for _ in range(5):
            self.reactor.advance(60)
        yield stopped
        self.assertFalse(call.called)
        lines = [' '.join(map(str, e.get('message', ()))) for e in logged]
        self.assertTrue(any('still being recorded as build data after 120 s (about 1)' in line
                            for line in lines), lines)
        # the database answers at last: the call is written
        self.holding = False
        self.release()
        yield call
        self.assertEqual((yield self.stored(build)), [0])

    @defer.inlineCallbacks
    def test_a_reconfig_keeps_what_the_recorder_knows(self):
        build = yield self.insertBuild()
        self.new(build)
        yield self.call(build, 0)
        consumers = list(self.recorder._consumers)
        yield self.svc.reconfigServiceWithSibling(
            stats.StatsService(storage_backends=[
                stats.InMemoryStorageService([stats.CaptureDataAllBuilders('coverage')],
                                             name='mem')]))
        self.assertEqual(self.recorder._consumers, consumers)
        yield self.call(build, 1)
        self.finished(build)
        self.assertEqual(self.recorder.reads, 0)
        self.assertEqual((yield self.stored(build)), [0, 1])
        self.assertEqual(self.recorder._running, {})

    @defer.inlineCallbacks
    def test_record_data_false_writes_no_build_data(self):
        yield self.svc.reconfigServiceWithSibling(stats.StatsService(
            storage_backends=[stats.InMemoryStorageService(
                [stats.CaptureDataAllBuilders('coverage')], name='mem')],
            record_data=False))
        self.assertEqual(self.recorder._consumers, [])
        build = yield self.insertBuild()
        yield self.yieldData('coverage', {'n': 1}, build)
        self.assertEqual([p.fields for p in self.svc.backends[0].points], [{'n': 1}])
        self.assertIsNone((yield self.stored(build)))
        self.assertEqual(self.writes, [])


class ConfigTest(ConfigErrorsMixin, unittest.TestCase):
    def test_record_data_is_true_or_false(self):
        with self.assertRaisesConfigError("record_data must be True or False, got 'no'"):
            stats.StatsService(record_data='no')
        self.assertTrue(stats.StatsService().record_data)
