"""Messages in one shape whatever the MQ: the wamp MQ's JSON (epoch seconds for dates) is
turned back into what the data API gives (UTC datetimes) before any capture sees it."""

from __future__ import annotations

import datetime
import json

from twisted.internet import defer
from twisted.trial import unittest

from buildbot.test import fakedb
from buildbot.util import toJson

from buildbot_stats import stats
from buildbot_stats.messages import normalizeMessage
from tests.fakes import COMPLETE_AT
from tests.fakes import STARTED_AT
from tests.fakes import FakeMasterMixin

UTC = datetime.timezone.utc


def overWamp(msg):
    """``msg`` as Buildbot's wamp MQ delivers it (buildbot.mq.wamp.WampMQ._produce)."""
    return json.loads(json.dumps(msg, default=toJson))


def at(seconds):
    return datetime.datetime.fromtimestamp(seconds, tz=UTC)


class NormalizeMessage(unittest.TestCase):
    BUILD_KEY = ('builders', '7', 'builds', '42', 'finished')

    def test_build_dates_become_utc_datetimes(self):
        msg = {'buildid': 42, 'number': 3, 'masterid': 1, 'started_at': STARTED_AT,
               'complete_at': COMPLETE_AT, 'results': 0, 'state_string': 'done'}
        out = normalizeMessage(self.BUILD_KEY, msg)
        self.assertEqual(out, dict(msg, started_at=at(STARTED_AT), complete_at=at(COMPLETE_AT)))
        self.assertEqual(out['started_at'].tzinfo, UTC)
        # the caller's dict is not changed
        self.assertEqual(msg['started_at'], STARTED_AT)

    def test_a_running_build_keeps_complete_at_none(self):
        msg = {'buildid': 42, 'started_at': STARTED_AT, 'complete_at': None}
        out = normalizeMessage(('builds', '42', 'new'), msg)
        self.assertEqual(out, {'buildid': 42, 'started_at': at(STARTED_AT), 'complete_at': None})

    def test_simple_mq_messages_pass_as_they_are(self):
        msg = {'buildid': 42, 'started_at': at(STARTED_AT), 'complete_at': at(COMPLETE_AT)}
        self.assertIs(normalizeMessage(self.BUILD_KEY, msg), msg)

    def test_steps_and_build_requests_by_the_collection_in_the_key(self):
        step = normalizeMessage(('builds', '42', 'steps', '9', 'finished'), {
            'stepid': 9, 'started_at': 10, 'locks_acquired_at': 11, 'complete_at': 12.5})
        self.assertEqual(step, {'stepid': 9, 'started_at': at(10), 'locks_acquired_at': at(11),
                                'complete_at': at(12.5)})
        request = normalizeMessage(
            ('buildsets', '1', 'builders', '2', 'buildrequests', '3', 'claimed'),
            {'buildrequestid': 3, 'submitted_at': 5, 'claimed_at': 6, 'complete_at': None})
        self.assertEqual(request, {'buildrequestid': 3, 'submitted_at': at(5),
                                   'claimed_at': at(6), 'complete_at': None})

    def test_nested_entities(self):
        # a buildset's submitted_at is an integer in the data API too; its sourcestamps'
        # created_at is a date
        msg = {'bsid': 1, 'submitted_at': 5,
               'sourcestamps': [{'ssid': 2, 'created_at': 7, 'branch': 'main'}]}
        out = normalizeMessage(('buildsets', '1', 'new'), msg)
        self.assertEqual(out, {'bsid': 1, 'submitted_at': 5,
                               'sourcestamps': [{'ssid': 2, 'created_at': at(7),
                                                 'branch': 'main'}]})

    def test_yield_data_message_build_normalized_timestamp_kept(self):
        msg = {'data_name': 'cov', 'post_data': {'x': 1}, 'masterid': 1, 'timestamp': 12.25,
               'build_data': {'buildid': 4, 'started_at': 10, 'complete_at': None}}
        out = normalizeMessage(('stats-yieldMetricsValue', 'stats-yield-data'), msg)
        self.assertEqual(out, dict(msg, build_data={'buildid': 4, 'started_at': at(10),
                                                    'complete_at': None}))

    def test_what_it_does_not_know_is_left_alone(self):
        msg = {'started_at': 5}
        self.assertIs(normalizeMessage(('stats', 'custom'), msg), msg)
        self.assertIs(normalizeMessage(('unknowns', '1', 'new'), msg), msg)
        self.assertEqual(normalizeMessage(self.BUILD_KEY, 'not a dict'), 'not a dict')
        # a value that is no timestamp stays as it is (the capture reports it)
        odd = {'buildid': 1, 'started_at': 'yesterday', 'complete_at': 10 ** 30}
        self.assertEqual(normalizeMessage(self.BUILD_KEY, odd), odd)


class SameShapeOnEveryMQ(FakeMasterMixin, unittest.TestCase):
    """Every capture gives the same points, with the same types, and a user's callback gets
    the same arguments, from a message as the simple MQ and as the wamp MQ delivers it."""

    @defer.inlineCallbacks
    def setUp(self):
        yield self.setUpFakeMaster()
        yield self.master.db.insert_test_data([
            fakedb.SourceStamp(id=10, branch='main', repository='https://r/x.git',
                               project='proj', codebase=''),
            fakedb.BuildsetSourceStamp(buildsetid=98, sourcestampid=10),
        ])

    def captures(self, seen):
        def userCallback(start, end):
            seen.append((type(start), type(end), end - start))
            return (end - start).total_seconds()

        return [
            stats.CaptureBuildStartTime('alpha'),
            stats.CaptureBuildEndTime('alpha'),
            stats.CaptureBuildDuration('alpha'),
            stats.CaptureBuildDuration('alpha', callback=userCallback),
            stats.CaptureBuildDurationAllBuilders(report_in='minutes'),
            stats.CaptureProperty('alpha', 'warnings'),
            stats.CaptureData('cov', 'alpha'),
            stats.CaptureBuildResults(),
            stats.CaptureQueueTimes(),
            stats.CaptureBuildResults(callback=lambda fields, info: dict(
                fields, start_type=type(info['build']['started_at']).__name__)),
            # the request comes from the lookups, fed by its own 'new' message
            stats.CaptureQueueTimes(callback=lambda fields, info: dict(
                fields, submitted_type=type(info['buildrequest']['submitted_at']).__name__)),
        ]

    @defer.inlineCallbacks
    def runBuild(self, shape):
        seen = []
        mem = stats.InMemoryStorageService(self.captures(seen), name='mem')
        svc = yield self.startStats([mem])
        build = yield self.insertBuild(properties={'warnings': (3, 'test')})
        request = yield self.master.data.get(('buildrequests', build['buildrequestid']))
        self.master.mq.callConsumer(
            ('buildrequests', str(build['buildrequestid']), 'new'), shape(request))
        self.master.mq.callConsumer(('builds', str(build['buildid']), 'new'), shape(build))
        self.master.mq.clearProductions()
        yield svc.yieldMetricsValue('cov', {'percent': 87.5}, build['buildid'])
        for key, msg in self.master.mq.productions:
            self.master.mq.callConsumer(key, shape(msg))
        yield svc.drain()
        self.master.mq.callConsumer(
            ('builders', str(build['builderid']), 'builds', str(build['buildid']), 'finished'),
            shape(build))
        yield svc.drain()
        self.assertEqual(svc.capture_errors, 0)
        return mem.points, seen

    @defer.inlineCallbacks
    def test_wamp_json_gives_the_points_of_the_simple_mq(self):
        simple, seen_simple = yield self.runBuild(lambda msg: msg)
        # a fresh master for the other shape, with the same build
        yield self.setUp()
        wamp, seen_wamp = yield self.runBuild(overWamp)

        def described(points):
            return sorted((p.series, sorted((k, v, type(v)) for k, v in p.fields.items()),
                           sorted(p.tags.items()), p.time) for p in points)

        self.assertEqual(described(wamp), described(simple))
        self.assertEqual(len(simple), 11)
        self.assertEqual(seen_wamp, seen_simple)
        self.assertEqual(seen_wamp, [(datetime.datetime, datetime.datetime,
                                      datetime.timedelta(seconds=COMPLETE_AT - STARTED_AT))])
        results = [p for p in wamp if p.series == 'builds' and 'start_type' in p.fields]
        self.assertEqual([p.fields['start_type'] for p in results], ['datetime'])
        queue = [p for p in wamp if 'submitted_type' in p.fields]
        self.assertEqual([p.fields['submitted_type'] for p in queue], ['datetime'])
        cov = [p for p in wamp if p.series == 'alpha-cov']
        # the yieldMetricsValue time is the reactor's: a float, not rounded by JSON
        self.assertEqual([p.fields for p in cov], [{'percent': 87.5}])

    @defer.inlineCallbacks
    def test_the_data_in_the_message_is_what_the_data_api_gives(self):
        # the property of the test above, said directly: after normalization, a build
        # message over wamp equals the data API's dict
        build = yield self.insertBuild()
        api = yield self.master.data.get(('builds', build['buildid']))
        wamp = normalizeMessage(('builders', '79', 'builds', str(build['buildid']), 'finished'),
                                overWamp(api))
        self.assertEqual(wamp, api)
