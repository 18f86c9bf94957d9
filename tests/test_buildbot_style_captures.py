"""Custom captures written for Buildbot 4's ``buildbot.statistics`` run unchanged (but for
the one import), on a real master with a real worker and real builds.

Buildbot's module names the hooks a subclass overrides ``consume``, ``_retValParams`` and
``_defaultContext``; ours ``consumer``, ``retValParams`` and ``defaultContext``. Whichever
spelling a subclass defines is the one that runs. A ``_builder_name_matches`` written for
Buildbot gets the builder as a dict (``{'name': ...}``), as Buildbot gave it.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.trial import unittest

from buildbot.process.results import SUCCESS
from buildbot.test.util.integration import RunMasterBase

# the one line that changes: ``from buildbot import statistics as stats`` before
from buildbot_stats import stats
from tests.test_integration_core import masterConfig

# -- written exactly as for Buildbot 4 (buildbot/statistics/capture.py) ----------------------


class CaptureBuildResults(stats.Capture):
    """From scratch: a routing key, ``consume``, the data API, ``_defaultContext`` and a
    ``yield self._store(...)`` of three arguments."""

    def __init__(self, builder_name, callback=None):
        self._builder_name = builder_name
        routingKey = ("builders", None, "builds", None, "finished")
        super().__init__(routingKey, callback)

    @defer.inlineCallbacks
    def consume(self, routingKey, msg):
        builder_info = yield self.master.data.get(("builders", msg['builderid']))
        if builder_info['name'] != self._builder_name:
            return
        context = self._defaultContext(msg, builder_info['name'])
        post_data = {'results': msg['results'], 'number': msg['number']}
        yield self._store(post_data, f"{builder_info['name']}-results", context)


class CaptureEndTimeAsStart(stats.CaptureBuildStartTime):
    """Overrides Buildbot's ``_retValParams``: the start-time field gets the end time."""

    def _retValParams(self, msg):
        return [msg['complete_at']]


class CaptureTaggedDuration(stats.CaptureBuildDuration):
    """Overrides Buildbot's ``_defaultContext`` and calls the parent's."""

    def _defaultContext(self, msg, builder_name):
        context = super()._defaultContext(msg, builder_name)
        context['team'] = 'infra'
        return context


SEEN = []


class CaptureCountedEndTime(stats.CaptureBuildEndTime):
    """Wraps the parent's ``consume`` (Buildbot's CaptureBuildTimes has a concrete one)."""

    def consume(self, routingKey, msg):
        SEEN.append(msg['number'])
        return super().consume(routingKey, msg)


class CaptureBetaEndTime(stats.CaptureBuildEndTimeAllBuilders):
    """Overrides Buildbot's ``_builder_name_matches(builder_info)``, a builder's dict."""

    def _builder_name_matches(self, builder_info):
        return builder_info['name'].startswith('be')


class CaptureNamedDuration(stats.CaptureBuildDuration):
    """Extends the parent's ``_builder_name_matches``, giving it the builder's dict."""

    def _builder_name_matches(self, builder_info):
        return super()._builder_name_matches(builder_info) and builder_info['name'] != ''


# -- the seed's spelling, called by code written for Buildbot's ----------------------------------


class CaptureSeedStyle(stats.Capture):
    def __init__(self):
        super().__init__(("builders", None, "builds", None, "finished"), None)

    def consumer(self, routingKey, msg):
        self._store({'n': msg['number']}, 'seed-style', self.defaultContext(msg, 'x'))


class BothSpellings(unittest.TestCase):
    """Whichever spelling a class defines answers to both names; ``super()`` reaches the
    parent's hook under either name."""

    def test_each_pair(self):
        msg = {'number': 4, 'started_at': 's', 'complete_at': 'c', 'builderid': 1}
        start = CaptureEndTimeAsStart('alpha')
        self.assertEqual(start.retValParams(msg), ['c'])
        self.assertEqual(start._retValParams(msg), ['c'])
        self.assertEqual(stats.CaptureBuildStartTime('alpha')._retValParams(msg), ['s'])
        tagged = CaptureTaggedDuration('alpha')
        for hook in (tagged.defaultContext, tagged._defaultContext):
            self.assertEqual(hook(msg, 'alpha'),
                             {'builder_name': 'alpha', 'build_number': '4', 'team': 'infra'})
        results = CaptureBuildResults('alpha')
        self.assertEqual(results.consumer.__func__, CaptureBuildResults.consume)
        seed = CaptureSeedStyle()
        self.assertEqual(seed.consume.__func__, CaptureSeedStyle.consumer)
        with self.assertRaisesRegex(NotImplementedError, r"consumer\(\) \(or consume\(\)"):
            stats.Capture(('x',), None).consume('x', {})


class BuildbotStyleCapturesOnARealMaster(RunMasterBase):
    proto = 'pb'

    @defer.inlineCallbacks
    def test_buildbot_style_custom_captures(self):
        del SEEN[:]
        backend = stats.InMemoryStorageService([
            CaptureBuildResults('alpha'),
            CaptureEndTimeAsStart('alpha'),
            CaptureTaggedDuration('alpha'),
            CaptureCountedEndTime('alpha'),
            CaptureSeedStyle(),
            CaptureBetaEndTime(),
            CaptureNamedDuration('beta', report_in='hours'),
        ], name='mem')
        yield self.setup_master(masterConfig(backend))
        a = yield self.doForceBuild(forceParams={'builderNames': ['alpha']})
        b = yield self.doForceBuild(forceParams={'builderNames': ['beta']})
        self.assertEqual((a['results'], b['results']), (SUCCESS, SUCCESS))
        yield self.tested_master.shutdown()

        tags = {'builder_name': 'alpha', 'build_number': str(a['number'])}
        secs = (a['complete_at'] - a['started_at']).total_seconds()
        b_tags = {'builder_name': 'beta', 'build_number': str(b['number'])}
        b_secs = (b['complete_at'] - b['started_at']).total_seconds()
        got = sorted((p.series, sorted(p.fields.items()), sorted(p.tags.items()))
                     for p in backend.points)
        self.assertEqual(got, sorted([
            ('alpha-results', [('number', a['number']), ('results', SUCCESS)],
             sorted(tags.items())),
            ('alpha-build-times', [('start-time', a['complete_at'].isoformat())],
             sorted(tags.items())),
            ('alpha-build-times', [('duration', secs)], sorted(dict(tags, team='infra').items())),
            ('alpha-build-times', [('end-time', a['complete_at'].isoformat())],
             sorted(tags.items())),
            ('seed-style', [('n', a['number'])],
             [('build_number', str(a['number'])), ('builder_name', 'x')]),
            ('seed-style', [('n', b['number'])],
             [('build_number', str(b['number'])), ('builder_name', 'x')]),
            ('beta-build-times', [('end-time', b['complete_at'].isoformat())],
             sorted(b_tags.items())),
            ('beta-build-times', [('duration', b_secs / 3600)], sorted(b_tags.items())),
        ]))
        # the wrapping consume ran for both builds (its parent's filtered beta out)
        self.assertEqual(sorted(SEEN), sorted([a['number'], b['number']]))
        svc = self.master.service_manager.namedServices['StatsService']
        self.assertEqual(svc.capture_errors, 0)
