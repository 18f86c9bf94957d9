"""The build-data record of yieldMetricsValue: one row per build, written when the build
finishes, builds ending together in one transaction, nothing lost at a stop. Buildbot's fake
master (fake clock, real in-memory database); the real-master tests of the same data are in
test_history.py, its cost in benchmarks/burst.py and benchmarks/service_cost.py."""

from __future__ import annotations

import json

from twisted.internet import defer
from twisted.python import log
from twisted.trial import unittest

from buildbot.test.util.config import ConfigErrorsMixin

from buildbot_stats import stats
from buildbot_stats.history import recorder as recorder_module
from buildbot_stats.history.builddata import RECORD_NAME
from buildbot_stats.history.builddata import decodeRecord
from buildbot_stats.messages import BUILD_FINISHED
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
        self.transactions = []  # the builds of each transaction of the recorder
        self.holding = False  # while True, every transaction waits for release()
        self.held = []
        pool = self.master.db.pool
        real = pool.do

        @defer.inlineCallbacks
        def do(callable, *args):
            if callable == self.recorder._thdWrite:
                self.transactions.append(sorted(args[-1]))
                if self.holding:
                    held = defer.Deferred()
                    self.held.append(held)
                    yield held
            result = yield real(callable, *args)
            return result

        pool.do = do

    def release(self):
        held, self.held = self.held, []
        for d in held:
            d.callback(None)

    @defer.inlineCallbacks
    def running(self):
        """A build that has not ended (its 'new' message seen by the look-ups)."""
        build = yield self.insertBuild(complete_at=None)
        self.master.mq.callConsumer(('builds', str(build['buildid']), 'new'), build)
        return build

    def finished(self, build):
        # the one routing key the service consumes a build's end under
        self.master.mq.callConsumer(
            ('builders', str(build['builderid']), 'builds', str(build['buildid']), 'finished'),
            build)

    def call(self, build, value, name='coverage'):
        return self.svc.yieldMetricsValue(name, {'n': value}, build['buildid'])

    @defer.inlineCallbacks
    def stored(self, build):
        """{data name: [n, ...]} of the build's row, None without one."""
        model = yield self.master.db.build_data.getBuildData(build['buildid'], RECORD_NAME)
        if model is None:
            return None
        return {name: [d['n'] for _, d in values]
                for name, values in decodeRecord(model.value).items()}

    def waitInterval(self):
        self.reactor.advance(recorder_module.WRITE_INTERVAL)

    @defer.inlineCallbacks
    def test_a_build_is_written_once_when_it_finishes_with_every_data_name(self):
        build = yield self.running()
        for n in range(3):
            d = self.call(build, n)
            # the step does not wait for the database
            self.assertTrue(d.called)
            self.call(build, n * 10, name='size')
        self.waitInterval()
        self.assertEqual(self.transactions, [])
        self.assertIsNone((yield self.stored(build)))
        self.finished(build)
        self.assertEqual(self.transactions, [])  # it waits for the builds ending with it
        self.waitInterval()
        self.assertEqual(self.transactions, [[build['buildid']]])
        self.assertEqual((yield self.stored(build)), {'coverage': [0, 1, 2], 'size': [0, 10, 20]})
        self.assertEqual((self.recorder.writes, self.recorder.rows), (1, 1))
        model = yield self.master.db.build_data.getBuildData(build['buildid'], RECORD_NAME)
        self.assertEqual(model.source, 'buildbot_stats')
        self.assertEqual(model.length, len(model.value))

    @defer.inlineCallbacks
    def test_builds_ending_within_the_interval_share_one_transaction(self):
        builds = []
        for _ in range(5):
            build = yield self.running()
            self.call(build, build['buildid'])
            builds.append(build)
        for build in builds:
            self.finished(build)
            self.reactor.advance(recorder_module.WRITE_INTERVAL / 10)
        self.waitInterval()
        self.assertEqual(self.transactions, [sorted(b['buildid'] for b in builds)])
        for build in builds:
            self.assertEqual((yield self.stored(build)), {'coverage': [build['buildid']]})

    @defer.inlineCallbacks
    def test_more_builds_than_a_batch_are_written_at_once_in_batches(self):
        self.patch(recorder_module, 'MAX_BATCH', 2)
        builds = []
        for _ in range(5):
            build = yield self.running()
            self.call(build, 1)
            builds.append(build)
        for build in builds:
            self.finished(build)
        ids = [b['buildid'] for b in builds]
        # two full batches without waiting for the interval; the last one waits for it
        self.assertEqual(self.transactions, [ids[:2], ids[2:4]])
        self.waitInterval()
        self.assertEqual(self.transactions, [ids[:2], ids[2:4], ids[4:]])

    @defer.inlineCallbacks
    def test_a_call_after_the_end_is_appended_to_the_stored_row(self):
        build = yield self.running()
        self.call(build, 0)
        self.finished(build)
        self.waitInterval()
        self.call(build, 'late')
        # a finished build, seen through the data API (the look-ups had not seen it)
        done = yield self.insertBuild()
        self.call(done, 'after')
        self.waitInterval()
        self.assertEqual(self.transactions, [[build['buildid']],
                                             sorted([build['buildid'], done['buildid']])])
        self.assertEqual((yield self.stored(build)), {'coverage': [0, 'late']})
        self.assertEqual((yield self.stored(done)), {'coverage': ['after']})
        self.assertEqual(self.recorder._held, {})

    @defer.inlineCallbacks
    def test_past_the_bound_of_running_builds_the_oldest_is_written_as_it_stands(self):
        self.patch(recorder_module, 'MAX_RUNNING', 2)
        first, second, third = (yield self.running()), (yield self.running()), \
            (yield self.running())
        self.call(first, 0)
        self.call(second, 0)
        self.call(first, 1)  # first is now the one called last
        self.call(third, 0)  # the bound: second goes
        self.assertEqual(sorted(self.recorder._held), sorted([first['buildid'],
                                                              third['buildid']]))
        self.waitInterval()
        self.assertEqual((yield self.stored(second)), {'coverage': [0]})
        self.call(second, 1)
        self.finished(second)
        self.waitInterval()
        self.assertEqual((yield self.stored(second)), {'coverage': [0, 1]})

    @defer.inlineCallbacks
    def test_a_failed_write_is_counted_and_logged_and_the_next_ones_go_on(self):
        build, other = (yield self.running()), (yield self.running())
        self.call(build, 0)
        self.call(build, 1)
        pool = self.master.db.pool
        working = pool.do
        pool.do = lambda *args: defer.fail(RuntimeError('database is gone'))
        self.finished(build)
        self.waitInterval()
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(self.svc.metrics()['unrecorded_data'], 2)
        pool.do = working
        self.call(other, 2)
        self.finished(other)
        self.waitInterval()
        self.assertEqual((yield self.stored(other)), {'coverage': [2]})
        self.assertIsNone((yield self.stored(build)))

    @defer.inlineCallbacks
    def test_a_row_of_that_name_that_is_not_ours_is_left_alone(self):
        build = yield self.running()
        yield self.master.data.updates.setBuildData(build['buildid'], RECORD_NAME,
                                                    b'someone else', 'another plugin')
        self.call(build, 0)
        logged = []
        log.addObserver(logged.append)
        self.addCleanup(log.removeObserver, logged.append)
        self.finished(build)
        self.waitInterval()
        model = yield self.master.db.build_data.getBuildData(build['buildid'], RECORD_NAME)
        self.assertEqual(model.value, b'someone else')
        self.assertEqual(self.svc.metrics()['unrecorded_data'], 1)
        self.assertTrue(any('is not buildbot_stats\' record' in ' '.join(
            map(str, e.get('message', ()))) for e in logged))

    @defer.inlineCallbacks
    def test_the_stop_writes_running_builds_too(self):
        running, ended = (yield self.running()), (yield self.running())
        self.call(running, 0)
        self.call(ended, 1)
        self.finished(ended)
        self.holding = True
        stopped = self.svc.disownServiceParent()
        # at once, not after the interval; one transaction while the database waits
        self.assertEqual(self.transactions, [sorted([running['buildid'], ended['buildid']])])
        self.reactor.advance(60)  # whatever else the stop waits for on the clock
        self.assertFalse(stopped.called)
        self.holding = False
        self.release()
        yield stopped
        self.assertEqual((yield self.stored(running)), {'coverage': [0]})
        self.assertEqual((yield self.stored(ended)), {'coverage': [1]})

    @defer.inlineCallbacks
    def test_the_stop_waits_for_a_hung_database_within_its_bound(self):
        build = yield self.running()
        self.call(build, 0)
        self.holding = True
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
        lines = [' '.join(map(str, e.get('message', ()))) for e in logged]
        self.assertTrue(any('still being recorded as build data after 120 s' in line
                            for line in lines), lines)
        # the database answers at last: the call is written
        self.holding = False
        self.release()
        self.assertEqual((yield self.stored(build)), {'coverage': [0]})

    @defer.inlineCallbacks
    def test_a_reconfig_keeps_what_is_held_and_the_one_consumer(self):
        build = yield self.running()
        self.call(build, 0)
        consumers = [q for q in self.master.mq.qrefs if tuple(q.filter) == BUILD_FINISHED]
        yield self.svc.reconfigServiceWithSibling(
            stats.StatsService(storage_backends=[
                stats.InMemoryStorageService([stats.CaptureDataAllBuilders('coverage')],
                                             name='mem')]))
        self.assertEqual([q for q in self.master.mq.qrefs
                          if tuple(q.filter) == BUILD_FINISHED], consumers)
        self.assertEqual(len(consumers), 1)
        self.call(build, 1)
        self.finished(build)
        self.waitInterval()
        self.assertEqual((yield self.stored(build)), {'coverage': [0, 1]})
        self.assertEqual(self.transactions, [[build['buildid']]])

    @defer.inlineCallbacks
    def test_record_data_false_records_nothing_and_writes_what_was_held(self):
        build = yield self.running()
        self.call(build, 0)
        yield self.svc.reconfigServiceWithSibling(stats.StatsService(
            storage_backends=[stats.InMemoryStorageService(
                [stats.CaptureDataAllBuilders('coverage')], name='mem')],
            record_data=False))
        # nothing follows the builds' end any more: the recorder does not consume it
        self.assertEqual([q for q in self.master.mq.qrefs
                          if tuple(q.filter) == BUILD_FINISHED], [])
        self.waitInterval()
        self.assertEqual((yield self.stored(build)), {'coverage': [0]})
        other = yield self.running()
        yield self.yieldData('coverage', {'n': 1}, other)
        self.assertEqual([p.fields for p in self.svc.backends[0].points], [{'n': 1}])
        self.waitInterval()
        self.assertIsNone((yield self.stored(other)))
        self.assertEqual(len(self.transactions), 1)

    @defer.inlineCallbacks
    def test_the_record_is_what_the_step_posted_at_the_call(self):
        build = yield self.running()
        data = {'n': 1}
        self.svc.yieldMetricsValue('coverage', data, build['buildid'])
        data['n'] = 2  # the step reuses its dict
        self.finished(build)
        self.waitInterval()
        self.assertEqual((yield self.stored(build)), {'coverage': [1]})

    @defer.inlineCallbacks
    def test_the_row_is_the_documented_json(self):
        build = yield self.running()
        self.reactor.advance(100)
        yield self.yieldData('coverage', {'percent': 87.5}, build)
        self.finished(build)
        self.waitInterval()
        model = yield self.master.db.build_data.getBuildData(build['buildid'], RECORD_NAME)
        doc = json.loads(model.value)
        timestamp = doc['data']['coverage'][0].pop('timestamp')
        self.assertEqual(doc, {'format': 2, 'data': {'coverage': [
            {'post_data': {'percent': 87.5}}]}})
        # the time the live point carries (less its capture's offset)
        self.assertAlmostEqual(
            timestamp, self.backend.points[0].time - self.backend.captures[0]._time_offset,
            places=6)


class ConfigTest(ConfigErrorsMixin, unittest.TestCase):
    def test_record_data_is_true_or_false(self):
        with self.assertRaisesConfigError("record_data must be True or False, got 'no'"):
            stats.StatsService(record_data='no')
        self.assertTrue(stats.StatsService().record_data)
