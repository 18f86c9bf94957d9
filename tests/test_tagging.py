"""Extra tags and the tag cardinality guard: TagPolicy alone and through StatsService."""

from __future__ import annotations

from twisted.internet import defer
from twisted.python import log
from twisted.trial import unittest

from buildbot.process.results import SUCCESS
from buildbot.test import fakedb
from buildbot.test.fake import fakemaster
from buildbot.test.reactor import TestReactorMixin
from buildbot.test.util.config import ConfigErrorsMixin

from buildbot_stats import stats
from buildbot_stats.tagging import DEFAULT_MAX_TAG_VALUES
from buildbot_stats.tagging import TagPolicy

from tests.test_buildstats_unit import BS_SUBMITTED
from tests.test_buildstats_unit import END
from tests.test_buildstats_unit import START
from tests.test_buildstats_unit import baseRows


class LogCatcher:
    def __init__(self, testcase):
        self.messages = []
        log.addObserver(self.observe)
        testcase.addCleanup(log.removeObserver, self.observe)

    def observe(self, event):
        self.messages.append(' '.join(str(m) for m in event.get('message', ())))

    def matching(self, text):
        return [m for m in self.messages if text in m]


class TestTagPolicy(unittest.TestCase):

    def test_empty_tags_dropped_values_as_strings(self):
        policy = TagPolicy()
        tags, fields = policy.apply('builds', {'a': None, 'b': '', 'c': 3, 'd': 'x'}, {'f': 1})
        self.assertEqual(tags, {'c': '3', 'd': 'x'})
        self.assertEqual(fields, {'f': 1})

    def test_extra_tags_added_and_own_tags_win(self):
        policy = TagPolicy(extra_tags={'master': 'm1', 'env': 'prod'})
        self.assertEqual(policy.addExtraTags({'env': 'own', 'builder_name': 'b'}),
                         {'master': 'm1', 'env': 'own', 'builder_name': 'b'})
        self.assertEqual(TagPolicy().addExtraTags({'x': '1'}), {'x': '1'})

    def test_guard_turns_tag_into_field_past_the_limit_with_one_warning(self):
        logs = LogCatcher(self)
        policy = TagPolicy(max_tag_values=2)
        got = [policy.apply('builds', {'branch': b, 'builder_name': 'x'}, {'n': 1})
               for b in ['b1', 'b2', 'b1', 'b3', 'b1', 'b4']]
        self.assertEqual(got, [
            ({'branch': 'b1', 'builder_name': 'x'}, {'n': 1}),
            ({'branch': 'b2', 'builder_name': 'x'}, {'n': 1}),
            ({'branch': 'b1', 'builder_name': 'x'}, {'n': 1}),
            # the third distinct value: from now on a field, for every value
            ({'builder_name': 'x'}, {'n': 1, 'branch': 'b3'}),
            ({'builder_name': 'x'}, {'n': 1, 'branch': 'b1'}),
            ({'builder_name': 'x'}, {'n': 1, 'branch': 'b4'}),
        ])
        self.assertEqual(policy.demoted, {('builds', 'branch')})
        warnings = logs.matching("tag 'branch' of measurement 'builds' passed 2 distinct")
        self.assertEqual(len(warnings), 1, logs.messages)
        self.assertIn("max_tag_values", warnings[0])
        # the limit is per measurement
        self.assertEqual(policy.apply('steps', {'branch': 'b9'}, {})[0], {'branch': 'b9'})

    def test_new_limit_lifts_demotions_none_means_no_limit(self):
        policy = TagPolicy(max_tag_values=1)
        policy.apply('builds', {'worker': 'w1'}, {})
        self.assertEqual(policy.apply('builds', {'worker': 'w2'}, {}), ({}, {'worker': 'w2'}))
        policy.configure({}, None)
        self.assertEqual(policy.demoted, set())
        for i in range(DEFAULT_MAX_TAG_VALUES + 5):
            self.assertEqual(policy.apply('builds', {'worker': f'w{i}'}, {})[0],
                             {'worker': f'w{i}'})
        # the same limit again keeps what was decided
        policy = TagPolicy(max_tag_values=1)
        policy.apply('builds', {'worker': 'w1'}, {})
        policy.apply('builds', {'worker': 'w2'}, {})
        policy.configure({'a': 'b'}, 1)
        self.assertEqual(policy.demoted, {('builds', 'worker')})


class TestServiceOptions(TestReactorMixin, ConfigErrorsMixin, unittest.TestCase):

    def setUp(self):
        self.setup_test_reactor()

    def test_config_errors(self):
        with self.assertRaisesConfigError("extra_tags must be a dict"):
            stats.StatsService(extra_tags=['master'])
        with self.assertRaisesConfigError("the value of 'env' must be a non-empty string"):
            stats.StatsService(extra_tags={'env': 3})
        with self.assertRaisesConfigError("tag name '' must be a non-empty string"):
            stats.StatsService(extra_tags={'': 'x'})
        with self.assertRaisesConfigError("'worker' is a tag the captures write themselves"):
            stats.StatsService(extra_tags={'worker': 'x'})
        for bad in (0, -3, 2.5, True, '10'):
            with self.assertRaisesConfigError(
                    f"max_tag_values must be a positive integer or None (no limit), "
                    f"got {bad!r}"):
                stats.StatsService(max_tag_values=bad)
        # good values pass
        stats.StatsService(extra_tags={'master': 'm1'}, max_tag_values=None)
        stats.StatsService(max_tag_values=5)

    @defer.inlineCallbacks
    def test_service_shares_lookups_and_tags_every_point(self):
        master = yield fakemaster.make_master(self, wantData=True)
        master.masterid = 1
        # the real build-finished message, which the fake MQ's old validator rejects
        master.mq.verifyMessages = False
        yield master.db.insert_test_data(baseRows(results=SUCCESS) + [
            fakedb.Step(id=100, number=0, name='compile', buildid=50, started_at=START,
                        complete_at=END, results=SUCCESS),
        ])
        backend = stats.InMemoryStorageService([
            stats.CaptureBuildResults(),
            stats.CaptureQueueTimes(),
            stats.CaptureStepTimes(),
            stats.CaptureTestResults(),
            stats.CaptureBuildDurationAllBuilders(),
        ], name='mem')
        svc = stats.StatsService(storage_backends=[backend], extra_tags={'master': 'm1'},
                                 max_tag_values=2)
        yield svc.setServiceParent(master)
        yield master.startService()
        self.addCleanup(master.stopService)

        build = yield master.data.get(('builds', 50))
        master.mq.callConsumer(('builders', '1', 'builds', '50', 'finished'), build)
        yield svc.drain()

        self.assertEqual(svc.capture_errors, 0)
        self.assertEqual(
            sorted((p.series, p.tags.get('master')) for p in backend.points),
            [('alpha-build-times', 'm1'), ('build_requests', 'm1'), ('builds', 'm1'),
             ('steps', 'm1')])
        spec = backend.pointsOf('alpha-build-times')[0]
        self.assertEqual(spec.tags, {'master': 'm1', 'builder_name': 'alpha',
                                     'build_number': '7'})
        self.assertEqual(backend.pointsOf('build_requests')[0].fields['turnaround_time'],
                         float(END - BS_SUBMITTED))
        # four captures of one build, one look-up of each thing
        lookups = svc.lookups
        self.assertEqual((lookups.workers.misses, lookups.build_requests.misses,
                          lookups.buildsets.misses, lookups.build_tags.misses), (1, 1, 1, 1))
        self.assertEqual(svc.tag_policy.max_tag_values, 2)

        # a reconfig with a new limit and other extra tags applies them
        yield svc.reconfigServiceWithSibling(
            stats.StatsService(storage_backends=[backend], extra_tags={'env': 'ci'}))
        self.assertEqual(svc.tag_policy.extra_tags, {'env': 'ci'})
        self.assertEqual(svc.tag_policy.max_tag_values, DEFAULT_MAX_TAG_VALUES)
