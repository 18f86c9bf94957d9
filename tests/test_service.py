"""StatsService on Buildbot's fake master: config, reconfig, caching, multi-master, stop."""

from __future__ import annotations

import collections

from twisted.internet import defer
from twisted.trial import unittest

from buildbot.test.util.config import ConfigErrorsMixin

from buildbot_stats import stats
from buildbot_stats.captures import BUILD_FINISHED
from buildbot_stats.steps import StatsServiceNotFound
from buildbot_stats.subscriptions import Subscription
from tests.fakes import MASTERID
from tests.fakes import FakeMasterMixin


def consumersOf(master, key):
    return [q for q in master.mq.qrefs if tuple(q.filter) == key]


def consumedKeys(master):
    """{routing key: how many consumers} of every MQ consumer of the master."""
    return dict(collections.Counter(tuple(q.filter) for q in master.mq.qrefs))


# the look-ups' feeds (buildbot_stats.lookups.FEEDS) of the captures used below
BUILDER_NAMES = ('builders', None, None)
BUILDS_NEW = ('builds', None, 'new')
PROPERTIES = ('builds', None, 'properties', 'update')
YIELD_DATA = ('stats-yieldMetricsValue', 'stats-yield-data')


class ServiceConfigErrors(ConfigErrorsMixin, unittest.TestCase):
    def test_backend_not_a_storage_backend(self):
        # the type, not the value: a value in the wrong place may be a secret
        with self.assertRaisesConfigError("storage_backends[0] is a str, not a storage "
                                          "backend"):
            stats.StatsService(storage_backends=['influx'])

    def test_backends_not_a_list(self):
        with self.assertRaisesConfigError(
                "storage_backends must be a list of storage backends, got a single "
                "InMemoryStorageService: write storage_backends=[stats.InMemoryStorageService"):
            stats.StatsService(storage_backends=stats.InMemoryStorageService([]))

    def test_two_backends_with_one_name(self):
        a = stats.InMemoryStorageService([])
        b = stats.InMemoryStorageService([])
        with self.assertRaisesConfigError("two storage backends are named "
                                          "'InMemoryStorageService'"):
            stats.StatsService(storage_backends=[a, b])

    def test_capture_not_a_capture(self):
        with self.assertRaisesConfigError("captures[0] is a str, not a Capture instance"):
            stats.InMemoryStorageService(['duration'])

    def test_good_config_has_no_error(self):
        svc = stats.StatsService(
            storage_backends=[stats.InMemoryStorageService([stats.CaptureBuildDuration('a')])],
            name='stats')
        self.assertEqual(svc.name, 'stats')


class ServiceBehaviour(FakeMasterMixin, unittest.TestCase):
    @defer.inlineCallbacks
    def setUp(self):
        yield self.setUpFakeMaster()

    @defer.inlineCallbacks
    def test_one_consumer_per_routing_key_however_many_captures(self):
        mem = stats.InMemoryStorageService([
            stats.CaptureBuildStartTime('alpha'), stats.CaptureBuildEndTime('alpha'),
            stats.CaptureProperty('alpha', 'x'), stats.CaptureData('d', 'alpha'),
        ])
        yield self.startStats([mem])
        # the captures, the look-ups' feeds and the build data recorder (which follows the
        # builds' end under the captures' key): every key once, nothing else
        self.assertEqual(consumedKeys(self.master), {
            BUILD_FINISHED: 1, YIELD_DATA: 1, BUILDER_NAMES: 1, BUILDS_NEW: 1, PROPERTIES: 1})

    @defer.inlineCallbacks
    def test_a_build_end_is_consumed_once_for_the_captures_and_the_recorder(self):
        mem = stats.InMemoryStorageService([stats.CaptureBuildDuration('alpha'),
                                            stats.CaptureData('d', 'alpha')])
        svc = yield self.startStats([mem])
        build = yield self.insertBuild(complete_at=None)
        self.master.mq.callConsumer(('builds', str(build['buildid']), 'new'), build)
        yield self.yieldData('d', {'v': 1}, build)
        done = yield self.master.data.get(('builds', build['buildid']))
        done = dict(done, complete=True, complete_at=done['started_at'])
        # the one consumer of the key hands the message to the capture and the recorder
        [consumer] = consumersOf(self.master, BUILD_FINISHED)
        consumer.callback(('builders', '79', 'builds', str(build['buildid']), 'finished'),
                          done)
        yield svc.drain()
        self.assertEqual([p.series for p in mem.points], ['alpha-d', 'alpha-build-times'])
        self.reactor.advance(60)
        self.assertEqual(svc.build_data_recorder.rows, 1)

    @defer.inlineCallbacks
    def test_reconfig_swaps_captures_and_backends_without_duplicates(self):
        mem = stats.InMemoryStorageService([stats.CaptureBuildStartTime('alpha')], name='mem')
        svc = yield self.startStats([mem])
        yield self.finishBuild((yield self.insertBuild()))
        self.assertEqual(len(mem.points), 1)

        # master.cfg re-read: new objects, same backend name, other captures, one more backend
        mem2 = stats.InMemoryStorageService(
            [stats.CaptureBuildDuration('alpha'), stats.CaptureBuildEndTime('alpha')], name='mem')
        extra = stats.InMemoryStorageService([stats.CaptureBuildDuration('alpha')],
                                             name='extra')
        yield svc.reconfigServiceWithSibling(
            stats.StatsService(storage_backends=[mem2, extra]))
        # the running backend (and what it holds) is kept; the new object is not started
        self.assertIs(svc.backends[0], mem)
        self.assertEqual(svc.backends[1], extra)
        self.assertTrue(extra.running)
        self.assertEqual(set(consumedKeys(self.master).values()), {1})
        self.assertEqual(len(consumersOf(self.master, BUILD_FINISHED)), 1)

        yield self.finishBuild((yield self.insertBuild()))
        self.assertEqual([list(p.fields) for p in mem.points],
                         [['start-time'], ['duration'], ['end-time']])
        self.assertEqual([list(p.fields) for p in extra.points], [['duration']])

        # and a backend that disappears from the config is stopped
        yield svc.reconfigServiceWithSibling(stats.StatsService(storage_backends=[extra]))
        self.assertFalse(mem.running)
        self.assertEqual(svc.backends, [extra])
        yield self.finishBuild((yield self.insertBuild()))
        self.assertEqual(len(mem.points), 3)
        self.assertEqual(len(extra.points), 2)

    @defer.inlineCallbacks
    def test_reconfig_to_no_capture_keeps_only_what_the_recorder_follows(self):
        mem = stats.InMemoryStorageService([stats.CaptureBuildStartTime('alpha'),
                                            stats.CaptureData('d', 'alpha')], name='mem')
        svc = yield self.startStats([mem])
        [consumer] = consumersOf(self.master, BUILD_FINISHED)
        yield svc.reconfigServiceWithSibling(stats.StatsService(
            storage_backends=[stats.InMemoryStorageService([], name='mem')]))
        # the key stays consumed (the same consumer: no message lost in between) for the
        # build data recorder; the captures' and look-ups' other keys are gone
        self.assertEqual(consumedKeys(self.master), {BUILD_FINISHED: 1})
        self.assertEqual(consumersOf(self.master, BUILD_FINISHED), [consumer])
        yield svc.reconfigServiceWithSibling(stats.StatsService(
            storage_backends=[stats.InMemoryStorageService([], name='mem')],
            record_data=False))
        self.assertEqual(consumedKeys(self.master), {})
        yield svc.reconfigServiceWithSibling(stats.StatsService(storage_backends=[
            stats.InMemoryStorageService([stats.CaptureBuildStartTime('alpha')], name='mem')],
            record_data=False))
        self.assertEqual(consumedKeys(self.master), {BUILD_FINISHED: 1, BUILDER_NAMES: 1})

    @defer.inlineCallbacks
    def test_a_component_subscribed_later_shares_the_consumers(self):
        seen = []

        class Follower:
            """What a later feature (regressions, test history) plugs in."""

            def subscriptions(self):
                return [Subscription(BUILD_FINISHED, lambda key, msg: seen.append(msg['buildid']),
                                     'follower')]

            def subscribed(self, keys):
                seen.append(sorted(keys))

        mem = stats.InMemoryStorageService([stats.CaptureBuildDuration('alpha')], name='mem')
        svc = yield self.startStats([mem])
        follower = Follower()
        yield svc.subscribe(follower)
        self.assertEqual(seen, [[BUILD_FINISHED]])
        self.assertEqual(len(consumersOf(self.master, BUILD_FINISHED)), 1)
        build = yield self.insertBuild()
        yield self.finishBuild(build)
        self.assertEqual(seen[1:], [build['buildid']])
        self.assertEqual(len(mem.points), 1)
        # kept through a reconfig; another master's build is not for it
        yield svc.reconfigServiceWithSibling(stats.StatsService(storage_backends=[mem]))
        yield self.finishBuild((yield self.insertBuild(masterid=MASTERID + 1)))
        self.assertEqual(seen[1:], [build['buildid']])
        yield svc.unsubscribe(follower)
        self.assertEqual(seen[-1], [])
        yield self.finishBuild((yield self.insertBuild()))
        self.assertEqual(len(seen), 3)

    @defer.inlineCallbacks
    def test_a_component_subscribed_before_the_start_is_consumed_from_the_start(self):
        seen = []

        class Follower:
            def subscriptions(self):
                return [Subscription(BUILD_FINISHED, lambda key, msg: seen.append(msg['buildid']),
                                     'follower')]

        svc = stats.StatsService(storage_backends=[stats.InMemoryStorageService([])])
        yield svc.subscribe(Follower())
        self.assertEqual(self.master.mq.qrefs, [])
        yield svc.setServiceParent(self.master)
        yield self.master.startService()
        self.addCleanup(self.master.stopService)
        self.svc = svc
        build = yield self.insertBuild()
        yield self.finishBuild(build)
        self.assertEqual(seen, [build['buildid']])

    @defer.inlineCallbacks
    def test_a_failing_component_is_logged_and_counted_and_the_others_go_on(self):
        class Broken:
            def subscriptions(self):
                return [Subscription(BUILD_FINISHED, self.fail, 'broken')]

            def fail(self, key, msg):
                raise RuntimeError('broken component')

        mem = stats.InMemoryStorageService([stats.CaptureBuildDuration('alpha')], name='mem')
        svc = yield self.startStats([mem])
        yield svc.subscribe(Broken())
        yield self.finishBuild((yield self.insertBuild()))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(len(mem.points), 1)
        self.assertEqual((svc.metrics()['subscriber_errors'], svc.capture_errors), (1, 0))

    @defer.inlineCallbacks
    def test_builder_name_looked_up_once(self):
        mem = stats.InMemoryStorageService([
            stats.CaptureBuildStartTime('alpha'), stats.CaptureBuildEndTime('alpha'),
            stats.CaptureBuildDuration('alpha'), stats.CapturePropertyAllBuilders('p'),
        ])
        svc = yield self.startStats([mem])
        for _ in range(3):
            yield self.finishBuild((yield self.insertBuild(properties={'p': 1})))
        self.assertEqual(len(mem.points), 12)
        self.assertEqual(svc.lookups.builder_names.misses, 1)
        self.assertEqual(svc.lookups.properties.misses, 3)

    @defer.inlineCallbacks
    def test_builder_started_message_refreshes_the_cache(self):
        mem = stats.InMemoryStorageService([stats.CaptureBuildStartTimeAllBuilders()])
        svc = yield self.startStats([mem])
        self.master.mq.callConsumer(('builders', '81', 'started'),
                                    {'builderid': 81, 'masterid': 1, 'name': 'gamma'})
        name = yield svc.lookups.getBuilderName(81)
        self.assertEqual(name, 'gamma')
        self.assertEqual(svc.lookups.builder_names.misses, 0)

    @defer.inlineCallbacks
    def test_yieldMetricsValue_uses_the_build_new_message_not_the_database(self):
        mem = stats.InMemoryStorageService([stats.CaptureData('cov', 'alpha')])
        svc = yield self.startStats([mem])
        build = yield self.insertBuild()
        started = yield self.master.data.get(('builds', build['buildid']))
        self.master.mq.callConsumer(('builds', str(build['buildid']), 'new'), started)
        yield self.yieldData('cov', {'percent': 50.0}, build)
        self.assertEqual(svc.lookups.builds.misses, 0)
        self.assertEqual([(p.series, p.fields, p.tags) for p in mem.points], [
            ('alpha-cov', {'percent': 50.0},
             {'builder_name': 'alpha', 'build_number': str(build['number'])})])
        # a build whose 'new' message was not seen is asked of the data API, once
        other = yield self.insertBuild()
        yield self.yieldData('cov', {'percent': 60.0}, other)
        yield self.yieldData('cov', {'percent': 70.0}, other)
        self.assertEqual(svc.lookups.builds.misses, 1)
        self.assertEqual(len(mem.points), 3)

    @defer.inlineCallbacks
    def test_only_the_master_that_ran_the_build_writes_it(self):
        mem = stats.InMemoryStorageService([
            stats.CaptureBuildDuration('alpha'), stats.CaptureData('cov', 'alpha')])
        svc = yield self.startStats([mem])
        theirs = yield self.insertBuild(masterid=2)
        yield self.finishBuild(theirs)
        self.assertEqual(mem.points, [])
        self.assertEqual(svc.foreign_messages, 1)
        self.assertEqual(svc.metrics()['foreign_messages'], 1)
        # a yieldMetricsValue taken by another master carries that master's id
        ours = yield self.insertBuild()
        self.master.mq.callConsumer(('stats-yieldMetricsValue', 'stats-yield-data'), {
            'data_name': 'cov', 'post_data': {'x': 1}, 'build_data': ours, 'masterid': 2,
            'timestamp': 5.0})
        yield svc.drain()
        self.assertEqual(mem.points, [])
        yield self.finishBuild(ours)
        self.assertEqual(len(mem.points), 1)

    @defer.inlineCallbacks
    def test_a_backend_that_raises_does_not_starve_the_others(self):
        class Broken(stats.InMemoryStorageService):
            def postStatsValue(self, *args, **kwargs):
                raise RuntimeError('disk full')

        cap = stats.CaptureBuildDuration('alpha')
        good = stats.InMemoryStorageService([cap], name='good')
        yield self.startStats([Broken([cap], name='broken'), good])
        yield self.finishBuild((yield self.insertBuild()))
        self.assertEqual(len(good.points), 1)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    @defer.inlineCallbacks
    def test_a_capture_shared_by_two_backends_runs_once(self):
        calls = []

        def cb(start, end):
            calls.append(1)
            return 1.0

        cap = stats.CaptureBuildDuration('alpha', callback=cb)
        a = stats.InMemoryStorageService([cap], name='a')
        b = stats.InMemoryStorageService([cap], name='b')
        yield self.startStats([a, b])
        yield self.finishBuild((yield self.insertBuild()))
        self.assertEqual((len(calls), len(a.points), len(b.points)), (1, 1, 1))

    @defer.inlineCallbacks
    def test_stop_waits_for_running_captures_then_stops_backends(self):
        gate = defer.Deferred()

        class SlowCapture(stats.Capture):
            def consumer(self, routingKey, msg):
                d = defer.Deferred()
                gate.addCallback(lambda _: self._store({'v': 1}, 'slow', {}, 1.0))
                gate.addCallback(d.callback)
                return d

        flushed = []

        class Recording(stats.InMemoryStorageService):
            def stopService(self):
                # stopped once, with the points handed over and the service's deadline
                flushed.append((len(self.points), self.stop_deadline is not None,
                                self.stopBudget()))
                return super().stopService()

        mem = Recording([SlowCapture(BUILD_FINISHED, None)])
        svc = yield self.startStats([mem])
        yield self.master.mq.callConsumer(
            ('builders', '79', 'builds', '1', 'finished'), {'masterid': None})
        stopping = svc.disownServiceParent()  # stops it
        self.assertNoResult(stopping)
        self.assertEqual(flushed, [])
        gate.callback(None)
        yield stopping
        self.assertEqual(flushed, [(1, True, 10.0)])
        self.assertEqual(mem.stop_deadline, None)
        self.assertEqual(len(mem.points), 1)
        self.assertEqual(consumersOf(self.master, BUILD_FINISHED), [])


class FindingTheService(FakeMasterMixin, unittest.TestCase):
    @defer.inlineCallbacks
    def setUp(self):
        yield self.setUpFakeMaster()

    def test_no_service(self):
        self.master.service_manager = None
        with self.assertRaisesRegex(StatsServiceNotFound, "no StatsService is configured"):
            stats.findStatsService(self.master)

    @defer.inlineCallbacks
    def test_found_by_type_then_by_name(self):
        a = stats.StatsService(storage_backends=[], name='a')
        yield a.setServiceParent(self.master)
        self.assertIs(stats.findStatsService(self.master), a)
        b = stats.StatsService(storage_backends=[], name='b')
        yield b.setServiceParent(self.master)
        with self.assertRaisesRegex(StatsServiceNotFound, "several StatsServices"):
            stats.findStatsService(self.master)
        self.assertIs(stats.findStatsService(self.master, 'b'), b)


class ServiceMetrics(FakeMasterMixin, unittest.TestCase):
    @defer.inlineCallbacks
    def setUp(self):
        yield self.setUpFakeMaster()

    @defer.inlineCallbacks
    def test_metrics_gathers_every_counter(self):
        mem = stats.InMemoryStorageService([stats.CaptureBuildDuration('alpha')], name='mem')
        svc = yield self.startStats([mem])
        yield self.finishBuild((yield self.insertBuild()))
        yield self.finishBuild((yield self.insertBuild(masterid=MASTERID + 1)))
        m = svc.metrics()
        self.assertEqual(m['capture_errors'], 0)
        self.assertEqual(m['foreign_messages'], 1)
        self.assertEqual(m['subscriber_errors'], 0)
        self.assertEqual(m['demoted_tags'], 0)
        self.assertGreaterEqual(m['cache_misses'], 1)
        self.assertEqual(m['backends'], {'mem': {'added': 1, 'written': 1, 'rejected': 0,
                                                 'dropped': 0, 'retries': 0, 'pending': 0}})
