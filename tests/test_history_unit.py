"""Replay, build data recording and catch-up marks on Buildbot's fake master (fake clock, real
in-memory database). The real-master tests are in test_history.py."""

from __future__ import annotations

import datetime
import json

from twisted.internet import defer
from twisted.python import log
from twisted.trial import unittest


from buildbot.test.util.config import ConfigErrorsMixin

from buildbot_stats import stats
from buildbot_stats.history import catchup
from buildbot_stats.history import recorder
from buildbot_stats.history.builddata import RECORD_NAME
from buildbot_stats.history.builddata import decodeRecord
from buildbot_stats.history.reader import BuildReader
from buildbot_stats.history.replay import Replayer
from tests.fakes import COMPLETE_AT
from tests.fakes import MASTERID
from tests.fakes import FakeMasterMixin


def captures():
    return [
        stats.CaptureBuildStartTimeAllBuilders(),
        stats.CaptureBuildDuration('alpha'),
        stats.CapturePropertyAllBuilders('warnings'),
        stats.CaptureDataAllBuilders('coverage'),
        stats.CaptureBuildResults(),
        stats.CaptureQueueTimes(),
    ]


def key(p):
    return (p.series, sorted(p.fields.items()), sorted(p.tags.items()),
            round(p.time * 1e6))


class ReplayTest(FakeMasterMixin, unittest.TestCase):
    @defer.inlineCallbacks
    def setUp(self):
        yield self.setUpFakeMaster()
        self.backend = stats.InMemoryStorageService(captures(), name='mem')
        yield self.startStats([self.backend])

    def replay(self, **kwargs):
        reader = BuildReader(self.master.db, **kwargs)
        # one slice for everything: the fake clock does not run by itself
        return Replayer(self.svc, reader, self.reactor, slice_seconds=3600).run()

    @defer.inlineCallbacks
    def test_replayed_points_are_the_live_points(self):
        live = []
        for number, builder in enumerate((79, 80, 79)):
            build = yield self.insertBuild(builderid=builder, properties={'warnings': number})
            self.reactor.advance(1.5)
            yield self.yieldData('coverage', {'percent': 80.0 + number}, build)
            yield self.yieldData('coverage', {'percent': 90.0 + number}, build)
            yield self.finishBuild(build)
        # the build data record is written once the builds finished
        self.reactor.advance(recorder.WRITE_INTERVAL)
        live = sorted(map(key, self.backend.points))
        # start time, warnings, results, queue times of 3 builds; 2 alpha durations; 6 coverage
        self.assertEqual(len(live), 3 * 4 + 2 + 6)
        self.backend.clear()

        result = yield self.replay()
        self.assertEqual(sorted(map(key, self.backend.points)), live)
        self.assertEqual((result.builds, result.builds_without_data, result.data_values),
                         (3, 0, 6))
        self.assertEqual(result.backends['mem']['added'], len(live))
        self.assertEqual(self.svc.capture_errors, 0)

    @defer.inlineCallbacks
    def test_build_data_holds_every_call_in_order(self):
        build = yield self.insertBuild()
        yield self.yieldData('coverage', {'percent': 1.5}, build)
        self.reactor.advance(2)
        yield self.yieldData('coverage', {'percent': 2.5, 'name': 'x'}, build)
        self.reactor.advance(recorder.WRITE_INTERVAL)
        model = yield self.master.db.build_data.getBuildData(build['buildid'], RECORD_NAME)
        self.assertEqual(model.source, 'buildbot_stats')
        # the time of each call, as the live point has it (less the capture's offset)
        offset = self.backend.captures[3]._time_offset
        times = [p.time - offset for p in self.backend.points]
        recorded = decodeRecord(model.value)['coverage']
        self.assertEqual([d for _, d in recorded], [{'percent': 1.5}, {'percent': 2.5, 'name': 'x'}])
        self.assertEqual([round(t, 6) for t, _ in recorded], [round(t, 6) for t in times])
        self.assertEqual(round(recorded[1][0] - recorded[0][0], 6), 2.0)

    @defer.inlineCallbacks
    def test_the_rows_of_earlier_versions_are_replayed_too(self):
        # stats.<data_name>, one row per name, as versions before this one wrote them
        def old(*values):
            return json.dumps({'format': 1, 'values': [
                {'timestamp': t, 'post_data': {'percent': p}} for t, p in values]}).encode()

        updates = self.master.data.updates
        before = yield self.insertBuild(properties={'warnings': 0})
        yield updates.setBuildData(before['buildid'], 'stats.coverage',
                                   old((1000.0, 10.0), (1001.0, 11.0)), 'buildbot_stats')
        # a build with both (its master upgraded in between), and one that is not ours
        both = yield self.insertBuild(properties={'warnings': 0})
        yield updates.setBuildData(both['buildid'], 'stats.coverage', old((2000.0, 20.0)),
                                   'buildbot_stats')
        yield self.yieldData('coverage', {'percent': 21.0}, both)
        yield updates.setBuildData(both['buildid'], 'stats.other', b'not json',
                                   'buildbot_stats')
        yield updates.setBuildData(both['buildid'], 'unrelated', b'not ours', 'someone')
        self.reactor.advance(recorder.WRITE_INTERVAL)
        self.backend.clear()

        result = yield self.replay()
        coverage = [(round(p.time), p.fields['percent']) for p in self.backend.points
                    if p.series == 'alpha-coverage']
        self.assertEqual(coverage[:3], [(1000, 10.0), (1001, 11.0), (2000, 20.0)])
        self.assertEqual([c[1] for c in coverage[3:]], [21.0])
        self.assertEqual((result.builds, result.builds_without_data, result.data_values,
                          result.bad_data), (2, 0, 4, 1))

    @defer.inlineCallbacks
    def test_data_json_cannot_hold_goes_live_only_counted_and_logged_once(self):
        build = yield self.insertBuild()
        logged = []
        log.addObserver(logged.append)
        self.addCleanup(log.removeObserver, logged.append)
        when = datetime.datetime(2024, 1, 1)
        yield self.yieldData('coverage', {'when': when}, build)
        yield self.yieldData('coverage', {'when': when}, build)
        self.assertEqual([p.fields for p in self.backend.points], [{'when': when}] * 2)
        self.assertEqual(self.svc.metrics()['unrecorded_data'], 2)
        lines = [e for e in logged if 'not JSON' in ' '.join(map(str, e.get('message', ())))]
        self.assertEqual(len(lines), 1)
        self.reactor.advance(recorder.WRITE_INTERVAL)
        model = yield self.master.db.build_data.getBuildData(build['buildid'], RECORD_NAME)
        self.assertIsNone(model)

    @defer.inlineCallbacks
    def test_the_range_and_the_master_select_builds_by_their_end(self):
        yield self.insertBuild(complete_at=COMPLETE_AT)
        yield self.insertBuild(complete_at=COMPLETE_AT + 100)
        yield self.insertBuild(complete_at=COMPLETE_AT + 100, masterid=MASTERID + 1)
        yield self.insertBuild(complete_at=None)  # still running: never replayed
        result = yield self.replay(since=COMPLETE_AT + 1)
        self.assertEqual(result.builds, 2)
        result = yield self.replay(until=COMPLETE_AT + 100)
        self.assertEqual(result.builds, 1)
        result = yield self.replay(masterid=MASTERID)
        self.assertEqual(result.builds, 2)
        result = yield self.replay(builderids=[80])
        self.assertEqual(result.builds, 0)


class CatchUpTest(FakeMasterMixin, unittest.TestCase):
    @defer.inlineCallbacks
    def setUp(self):
        yield self.setUpFakeMaster()
        self.backend = stats.InMemoryStorageService(captures(), name='mem')
        # at "now": builds finished later than COMPLETE_AT
        self.reactor.advance(COMPLETE_AT + 1000)
        # the tests run the catch-up's steps themselves
        self.svc = stats.StatsService(storage_backends=[self.backend], catch_up=False)
        yield self.svc.setServiceParent(self.master)
        yield self.master.startService()
        self.addCleanup(self.master.stopService)
        self.catchup = self.svc.catchup

    @defer.inlineCallbacks
    def test_start_runs_in_the_background_then_checkpoints(self):
        self.catchup.start()
        self.assertFalse(self.catchup.caught_up)  # not before the reactor turns
        self.reactor.advance(0)
        yield self.catchup._running
        self.assertTrue(self.catchup.caught_up)
        self.assertTrue(self.catchup._loop.running)
        yield self.catchup.stopReplay()
        self.assertIsNone(self.catchup._loop)

    @defer.inlineCallbacks
    def test_a_replay_ending_during_the_stop_starts_no_checkpoints(self):
        # the service stops while the catch-up is still running: when the replay ends, the
        # checkpoints must not start again (they would run after the master is gone)
        self.catchup.start()
        stopping = self.catchup.stopReplay()
        self.reactor.advance(0)
        yield stopping
        self.assertTrue(self.svc.running)
        self.assertIsNone(self.catchup._loop)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    @defer.inlineCallbacks
    def test_first_start_marks_the_start_and_replays_nothing(self):
        yield self.insertBuild()
        yield self.catchup._run()
        mark = yield self.catchup.getMark(self.backend)
        self.assertEqual(mark, COMPLETE_AT + 1000)
        self.assertEqual(self.backend.points, [])
        self.assertTrue(self.catchup.caught_up)

    @defer.inlineCallbacks
    def test_replays_this_masters_builds_since_the_mark(self):
        yield self.catchup.setMark(self.backend, COMPLETE_AT + 200)
        yield self.insertBuild(complete_at=COMPLETE_AT)          # long safe
        yield self.insertBuild(complete_at=COMPLETE_AT + 195)    # within the margin
        ours = yield self.insertBuild(complete_at=COMPLETE_AT + 500)
        yield self.insertBuild(complete_at=COMPLETE_AT + 500, masterid=MASTERID + 1)
        yield self.catchup._run()
        numbers = sorted({p.tags.get('build_number') for p in self.backend.points
                          if 'build_number' in p.tags})
        self.assertEqual(numbers, ['1', str(ours['number'])])
        self.assertEqual(self.catchup.last_result.builds, 2)

    @defer.inlineCallbacks
    def test_a_mark_moves_only_over_points_that_were_written(self):
        self.catchup.caught_up = True
        counters = self.backend.counters
        yield self.catchup.setMark(self.backend, 1.0)
        t0 = self.reactor.seconds()
        yield self.catchup.checkpoint()  # notes t0 and the points given so far (none)
        counters.added += 5              # five points given, not written yet
        self.reactor.advance(60)
        yield self.catchup.checkpoint()  # t0's points (none) are written: the mark moves
        self.assertEqual((yield self.catchup.getMark(self.backend)), t0 - catchup.MARGIN)
        self.reactor.advance(60)
        yield self.catchup.checkpoint()  # the five are pending (database down): it stays
        self.assertEqual((yield self.catchup.getMark(self.backend)), t0 - catchup.MARGIN)
        counters.written += 3
        counters.dropped += 2
        self.reactor.advance(60)
        yield self.catchup.checkpoint()  # done, but two by a drop: it stays...
        yield self.catchup.checkpointAtStop()
        self.reactor.advance(60)
        counters.added += 1
        counters.written += 1
        yield self.catchup.checkpoint()
        yield self.catchup.checkpointAtStop()
        # ...for good in this process: the next start replays from it
        self.assertEqual((yield self.catchup.getMark(self.backend)), t0 - catchup.MARGIN)

    @defer.inlineCallbacks
    def test_a_clean_stop_marks_the_stop(self):
        self.catchup.caught_up = True
        self.backend.postStatsValue({'v': 1}, 's', {}, 1.0)
        yield self.catchup.checkpointAtStop()
        self.assertEqual((yield self.catchup.getMark(self.backend)),
                         self.reactor.seconds() - catchup.MARGIN)

    @defer.inlineCallbacks
    def test_a_backend_added_later_is_marked_at_its_first_checkpoint(self):
        self.catchup.caught_up = True
        yield self.catchup.checkpoint()
        self.assertEqual((yield self.catchup.getMark(self.backend)), self.reactor.seconds())


class ConfigTest(ConfigErrorsMixin, unittest.TestCase):
    def test_catch_up_is_true_or_false(self):
        with self.assertRaisesConfigError("catch_up must be True or False, got 'yes'"):
            stats.StatsService(catch_up='yes')
        self.assertTrue(stats.StatsService().catch_up)
