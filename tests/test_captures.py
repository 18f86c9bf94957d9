"""Each spec capture on Buildbot's fake master: exact series, fields, tags and times."""

from __future__ import annotations

from twisted.internet import defer
from twisted.trial import unittest

from buildbot.test.util.config import ConfigErrorsMixin
from buildbot.test.util.logging import LoggingMixin

from buildbot_stats import stats
from tests.fakes import COMPLETE_AT
from tests.fakes import STARTED_AT
from tests.fakes import FakeMasterMixin

US = 1e-6


def simple(points):
    return [(p.series, p.fields, p.tags, round(p.time * 1e6)) for p in points]


def tags(builder='alpha', number=0):
    return {'builder_name': builder, 'build_number': str(number)}


class BuildTimeCaptures(FakeMasterMixin, unittest.TestCase):
    @defer.inlineCallbacks
    def setUp(self):
        yield self.setUpFakeMaster()

    @defer.inlineCallbacks
    def test_start_end_duration_of_one_builder(self):
        mem = stats.InMemoryStorageService([
            stats.CaptureBuildStartTime('alpha'),
            stats.CaptureBuildEndTime('alpha'),
            stats.CaptureBuildDuration('alpha'),
            stats.CaptureBuildDuration('alpha', report_in='minutes'),
            stats.CaptureBuildDuration('alpha', report_in='hours'),
        ])
        yield self.startStats([mem])
        yield self.finishBuild((yield self.insertBuild(builderid=79)))
        yield self.finishBuild((yield self.insertBuild(builderid=80)))  # beta: not captured

        start = '2023-11-14T22:13:20+00:00'
        end = '2023-11-14T22:14:02+00:00'
        self.assertEqual(simple(mem.points), [
            ('alpha-build-times', {'start-time': start}, tags(), STARTED_AT * 1_000_000),
            ('alpha-build-times', {'end-time': end}, tags(), COMPLETE_AT * 1_000_000 + 1),
            ('alpha-build-times', {'duration': 42.0}, tags(), COMPLETE_AT * 1_000_000 + 2),
            ('alpha-build-times', {'duration': 0.7}, tags(), COMPLETE_AT * 1_000_000 + 3),
            ('alpha-build-times', {'duration': 42 / 3600}, tags(), COMPLETE_AT * 1_000_000 + 4),
        ])

    @defer.inlineCallbacks
    def test_all_builders_variants(self):
        mem = stats.InMemoryStorageService([
            stats.CaptureBuildStartTimeAllBuilders(),
            stats.CaptureBuildEndTimeAllBuilders(callback=lambda end: end.year),
            stats.CaptureBuildDurationAllBuilders(report_in='minutes'),
        ])
        yield self.startStats([mem])
        yield self.finishBuild((yield self.insertBuild(builderid=79)))
        yield self.finishBuild((yield self.insertBuild(builderid=80)))
        self.assertEqual(
            [(p.series, p.fields) for p in mem.points],
            [
                ('alpha-build-times', {'start-time': '2023-11-14T22:13:20+00:00'}),
                ('alpha-build-times', {'end-time': 2023}),
                ('alpha-build-times', {'duration': 0.7}),
                ('beta-build-times', {'start-time': '2023-11-14T22:13:20+00:00'}),
                ('beta-build-times', {'end-time': 2023}),
                ('beta-build-times', {'duration': 0.7}),
            ],
        )
        self.assertEqual(mem.points[3].tags, tags('beta', 1))

    @defer.inlineCallbacks
    def test_clock_going_backwards_gives_zero_duration(self):
        mem = stats.InMemoryStorageService([stats.CaptureBuildDuration('alpha')])
        yield self.startStats([mem])
        yield self.finishBuild((yield self.insertBuild(started_at=COMPLETE_AT,
                                                       complete_at=STARTED_AT)))
        self.assertEqual(mem.points[0].fields, {'duration': 0.0})


class PropertyAndDataCaptures(FakeMasterMixin, LoggingMixin, unittest.TestCase):
    @defer.inlineCallbacks
    def setUp(self):
        self.setUpLogging()
        yield self.setUpFakeMaster()

    @defer.inlineCallbacks
    def test_property_plain_regex_and_all_builders(self):
        mem = stats.InMemoryStorageService([
            stats.CaptureProperty('alpha', 'warnings'),
            stats.CaptureProperty('alpha', 'tests_.*', regex=True),
            stats.CapturePropertyAllBuilders('warnings', callback=lambda p, n: p[n][0] * 10),
        ])
        yield self.startStats([mem])
        props = {'warnings': 3, 'tests_passed': 40, 'tests_failed': 2, 'other': 'x'}
        yield self.finishBuild((yield self.insertBuild(builderid=79, properties=props)))
        yield self.finishBuild((yield self.insertBuild(builderid=80, properties={'warnings': 1})))
        t = COMPLETE_AT * 1_000_000
        self.assertEqual(simple(mem.points), [
            ('alpha-warnings', {'name': 'warnings', 'value': 3}, tags(), t),
            ('alpha-tests_failed', {'name': 'tests_failed', 'value': 2}, tags(), t + 1),
            ('alpha-tests_passed', {'name': 'tests_passed', 'value': 40}, tags(), t + 1),
            ('alpha-warnings', {'name': 'warnings', 'value': 30}, tags(), t + 2),
            ('beta-warnings', {'name': 'warnings', 'value': 10}, tags('beta', 1), t + 2),
        ])

    @defer.inlineCallbacks
    def test_data_posted_by_a_step(self):
        mem = stats.InMemoryStorageService([
            stats.CaptureData('coverage', 'alpha'),
            stats.CaptureDataAllBuilders('coverage', callback=lambda d: {'pct': d['percent']}),
            stats.CaptureData('other', 'alpha'),
        ])
        yield self.startStats([mem])
        build = yield self.insertBuild(builderid=79)
        self.reactor.advance(1000)
        yield self.yieldData('coverage', {'percent': 87.5}, build)
        # a second call at the same reactor time gets a distinct time (1 ms later)
        yield self.yieldData('coverage', {'percent': 88.0}, build)
        t = 1000 * 1_000_000
        self.assertEqual(simple(mem.points), [
            ('alpha-coverage', {'percent': 87.5}, tags(), t),
            ('alpha-coverage', {'pct': 87.5}, tags(), t + 1),
            ('alpha-coverage', {'percent': 88.0}, tags(), t + 1000),
            ('alpha-coverage', {'pct': 88.0}, tags(), t + 1001),
        ])

    @defer.inlineCallbacks
    def test_missing_property_is_logged_and_others_still_stored(self):
        mem = stats.InMemoryStorageService([
            stats.CaptureProperty('alpha', 'missing'),
            stats.CaptureProperty('alpha', 'warnings'),
        ])
        svc = yield self.startStats([mem])
        yield self.finishBuild((yield self.insertBuild(builderid=79, number=7,
                                                       properties={'warnings': 2})))
        self.assertEqual([p.fields for p in mem.points], [{'name': 'warnings', 'value': 2}])
        self.assertEqual(svc.capture_errors, 1)
        self.assertLogged(
            r"CaptureProperty\(builder_name='alpha', property_name='missing'\): property "
            r"'missing' not found in build #7 of builder 'alpha'"
        )

    @defer.inlineCallbacks
    def test_callback_raising_is_logged_once_and_isolated(self):
        def broken(start_time):
            raise ZeroDivisionError('boom')

        other = stats.InMemoryStorageService([stats.CaptureBuildEndTime('alpha')], name='other')
        mem = stats.InMemoryStorageService([
            stats.CaptureBuildStartTime('alpha', callback=broken),
            stats.CaptureBuildDuration('alpha'),
        ])
        svc = yield self.startStats([mem, other])
        yield self.finishBuild((yield self.insertBuild(builderid=79, number=3)))
        self.assertEqual([p.fields for p in mem.points], [{'duration': 42.0}])
        self.assertEqual(len(other.points), 1)
        self.assertEqual(svc.capture_errors, 1)
        self.assertLogged(
            r"CaptureBuildStartTime\(builder_name='alpha'\): callback raised "
            r"ZeroDivisionError: boom for build #3 of builder 'alpha'"
        )

    @defer.inlineCallbacks
    def test_data_that_is_not_a_dict_is_rejected_with_a_reason(self):
        mem = stats.InMemoryStorageService([stats.CaptureData('coverage', 'alpha')])
        svc = yield self.startStats([mem])
        build = yield self.insertBuild(builderid=79, number=5)
        yield self.yieldData('coverage', 87.5, build)
        yield self.yieldData('coverage', {'percent': 90}, build)
        self.assertEqual([p.fields for p in mem.points], [{'percent': 90}])
        self.assertEqual(svc.capture_errors, 1)
        self.assertLogged("the data must be a dict of field names to values, got float for "
                          "build #5 of builder 'alpha'")


class CaptureConfigErrors(ConfigErrorsMixin, unittest.TestCase):
    def test_report_in(self):
        with self.assertRaisesConfigError("report_in must be one of 'seconds', 'minutes' or "
                                          "'hours', got 'days'"):
            stats.CaptureBuildDuration('alpha', report_in='days')
        with self.assertRaisesConfigError("got 'weeks'"):
            stats.CaptureBuildDurationAllBuilders(report_in='weeks')

    def test_callback_not_callable(self):
        with self.assertRaisesConfigError("CaptureBuildEndTime: callback must be callable, "
                                          "got 'iso'"):
            stats.CaptureBuildEndTime('alpha', callback='iso')
        with self.assertRaisesConfigError("callback must be callable, got 3"):
            stats.CaptureData('coverage', 'alpha', callback=3)

    def test_invalid_regex(self):
        with self.assertRaisesConfigError("invalid regular expression 'warn[' for property_name"):
            stats.CaptureProperty('alpha', 'warn[', regex=True)

    def test_builder_name_not_a_string(self):
        with self.assertRaisesConfigError("builder_name must be a non-empty string, got 42"):
            stats.CaptureBuildStartTime(42)
        with self.assertRaisesConfigError("builder_name must be a non-empty string, got None"):
            stats.CaptureProperty(None, 'warnings')

    def test_names_not_strings(self):
        with self.assertRaisesConfigError("data_name must be a non-empty string, got ''"):
            stats.CaptureDataAllBuilders('')
        with self.assertRaisesConfigError("property_name must be a non-empty string, got None"):
            stats.CapturePropertyAllBuilders(None)

    def test_base_capture_consumer_is_abstract(self):
        cap = stats.Capture(('x', None), None)
        self.assertEqual(cap.routingKey, ('x', None))
        with self.assertRaises(NotImplementedError):
            cap.consumer(('x', 'y'), {})
