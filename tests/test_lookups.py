"""Lookups on Buildbot's fake master: fed by the MQ messages, the data API as fallback."""

from __future__ import annotations

from twisted.internet import defer
from twisted.trial import unittest

from buildbot_stats import lookups as lookups_module
from buildbot_stats import stats
from tests.fakes import FakeMasterMixin


class LookupsFedByTheMQ(FakeMasterMixin, unittest.TestCase):
    @defer.inlineCallbacks
    def setUp(self):
        yield self.setUpFakeMaster()

    def updateProperties(self, buildid, props):
        self.master.mq.callConsumer(('builds', str(buildid), 'properties', 'update'), props)

    @defer.inlineCallbacks
    def test_property_updates_answer_the_capture_without_the_database(self):
        old = yield self.insertBuild(properties={'p': 'in the db'})
        mem = stats.InMemoryStorageService([stats.CapturePropertyAllBuilders('p')])
        svc = yield self.startStats([mem])
        lookups = svc.lookups
        build = yield self.insertBuild(properties={'p': 'in the db'})
        # as Buildbot's setBuildProperties / setBuildProperty send them
        self.updateProperties(build['buildid'], {'p': [1, 'Build'], 'q': ('x', 'Build')})
        self.updateProperties(build['buildid'], {'p': (2, 'Step')})
        yield self.finishBuild(build)
        self.assertEqual([p.fields for p in mem.points], [{'name': 'p', 'value': 2}])
        props = yield lookups.getBuildProperties(build['buildid'])
        self.assertEqual(props, {'p': (2, 'Step'), 'q': ('x', 'Build')})
        self.assertEqual(lookups.properties.misses, 0)

        # a build that existed before the service: its earlier updates were missed, so an
        # update does not make an entry and the data API answers
        self.updateProperties(old['buildid'], {'r': (3, 'Step')})
        yield self.finishBuild(old)
        self.assertEqual(mem.points[-1].fields, {'name': 'p', 'value': 'in the db'})
        self.assertEqual(lookups.properties.misses, 1)

    @defer.inlineCallbacks
    def test_a_build_pushed_out_by_the_bound_is_asked_of_the_data_api(self):
        self.patch(lookups_module, 'SIZES', dict(lookups_module.SIZES, properties=2))
        mem = stats.InMemoryStorageService([stats.CapturePropertyAllBuilders('p')])
        svc = yield self.startStats([mem])
        builds = []
        for value in range(3):
            build = yield self.insertBuild(properties={'p': f'db {value}'})
            self.updateProperties(build['buildid'], {'p': (f'mq {value}', 'Build')})
            builds.append(build)
        # the first build was pushed out; a later update of it must not make a partial entry
        self.updateProperties(builds[0]['buildid'], {'other': (1, 'Step')})
        self.assertNotIn(builds[0]['buildid'], svc.lookups.properties)
        for build in reversed(builds):
            yield self.finishBuild(build)
        self.assertEqual([p.fields['value'] for p in mem.points], ['mq 2', 'mq 1', 'db 0'])
        self.assertEqual(svc.lookups.properties.misses, 1)

    @defer.inlineCallbacks
    def test_a_name_property_message_is_not_trusted(self):
        # Buildbot 4's setBuildProperty announces every property as 'name'
        mem = stats.InMemoryStorageService([stats.CapturePropertyAllBuilders('p')])
        svc = yield self.startStats([mem])
        build = yield self.insertBuild(properties={'p': 'in the db'})
        self.updateProperties(build['buildid'], {'p': ('mq', 'Build')})
        self.updateProperties(build['buildid'], {'name': ('changed', 'Step')})
        self.updateProperties(build['buildid'], {'q': ('later', 'Step')})
        self.assertNotIn(build['buildid'], svc.lookups.properties)
        yield self.finishBuild(build)
        self.assertEqual([p.fields['value'] for p in mem.points], ['in the db'])
        self.assertEqual(svc.lookups.properties.misses, 1)

    @defer.inlineCallbacks
    def test_workers_requests_and_buildsets_from_their_messages(self):
        mem = stats.InMemoryStorageService([stats.CaptureQueueTimes()])
        svc = yield self.startStats([mem])
        lookups = svc.lookups
        mq = self.master.mq
        mq.callConsumer(('workers', '13', 'connected'), {'workerid': 13, 'name': 'wrk-mq'})
        mq.callConsumer(('buildrequests', '7', 'new'),
                        {'buildrequestid': 7, 'buildsetid': 5, 'submitted_at': 10})
        mq.callConsumer(('buildsets', '5', 'new'),
                        {'bsid': 5, 'submitted_at': 9, 'sourcestamps': [
                            {'codebase': '', 'branch': 'main', 'repository': 'r',
                             'project': 'p'}]})
        tags = yield lookups.getBuildTags({'workerid': 13, 'buildrequestid': 7})
        self.assertEqual(tags, {'worker': 'wrk-mq', 'branch': 'main', 'repository': 'r',
                                'project': 'p'})
        misses = lookups.misses
        self.assertEqual((misses['workers'], misses['build_requests'], misses['buildsets']),
                         (0, 0, 0))
        self.assertEqual(svc.metrics()['cache_misses'], sum(misses.values()))

    def feedsConsumed(self):
        """The look-ups' feeds consumed, each once: the service's subscription table runs
        one MQ consumer per routing key, shared by everything that wants the key."""
        filters = [tuple(q.filter) for q in self.master.mq.qrefs]
        self.assertEqual(len(filters), len(set(filters)), filters)
        feeds = {tuple(key): name for name, (key, _) in lookups_module.FEEDS.items()}
        return sorted(feeds[f] for f in filters if f in feeds)

    @defer.inlineCallbacks
    def test_only_the_feeds_the_captures_use_and_stop_stops_them(self):
        mem = stats.InMemoryStorageService([stats.CaptureBuildDurationAllBuilders()],
                                           name='mem')
        svc = yield self.startStats([mem])
        self.assertEqual(self.feedsConsumed(), ['builder_names'])
        self.assertEqual(svc.lookups.fed, {'builder_names'})
        yield svc.reconfigServiceWithSibling(stats.StatsService(storage_backends=[
            stats.InMemoryStorageService([stats.CapturePropertyAllBuilders('p'),
                                          stats.CaptureQueueTimes()], name='mem')]))
        self.assertEqual(self.feedsConsumed(), [
            'build_requests', 'builder_names', 'buildsets', 'properties', 'workers'])
        self.assertIsNotNone(svc.lookups._trusted_above)
        yield svc.reconfigServiceWithSibling(stats.StatsService(storage_backends=[
            stats.InMemoryStorageService([stats.CaptureData('d', 'alpha')], name='mem')]))
        self.assertEqual(self.feedsConsumed(), ['builder_names', 'builds'])
        # properties are no longer followed: nothing cached about them is trusted
        self.assertIsNone(svc.lookups._trusted_above)
        yield svc.disownServiceParent()
        self.assertEqual(self.feedsConsumed(), [])
        self.assertEqual(self.master.mq.qrefs, [])
        self.assertEqual(svc.lookups.fed, set())
