"""Unit tests of the build statistics captures on Buildbot's fake master (real data API
over an in-memory database, fake clock)."""

from __future__ import annotations

import re

from twisted.internet import defer
from twisted.trial import unittest

from buildbot.process.results import CANCELLED
from buildbot.process.results import FAILURE
from buildbot.process.results import SUCCESS
from buildbot.process.results import WARNINGS
from buildbot.test import fakedb
from buildbot.test.fake import fakemaster
from buildbot.test.reactor import TestReactorMixin
from buildbot.test.util.config import ConfigErrorsMixin

from buildbot_stats import stats
from buildbot_stats.lookups import sourceTags
from buildbot_stats.captures.base import CaptureError
from buildbot_stats.captures.buildstats import resultName

BUILD_FINISHED = ('builders', '1', 'builds', '1', 'finished')

START = 1700000000
END = START + 90
BS_SUBMITTED = START - 40
BR_SUBMITTED = START - 30


def baseRows(results=FAILURE, number=7, complete_at=END, with_source=True):
    rows = [
        fakedb.Master(id=1, name='m'),
        fakedb.Builder(id=1, name='alpha'),
        fakedb.Builder(id=2, name='beta'),
        fakedb.Worker(id=4, name='w1'),
        fakedb.Buildset(id=20, submitted_at=BS_SUBMITTED),
        fakedb.BuildRequest(id=30, buildsetid=20, builderid=1, submitted_at=BR_SUBMITTED),
        fakedb.Build(id=50, number=number, buildrequestid=30, builderid=1, workerid=4,
                     masterid=1, started_at=START, complete_at=complete_at, results=results),
    ]
    if with_source:
        rows += [
            fakedb.SourceStamp(id=10, branch='main', repository='https://r/x.git',
                               project='proj', codebase=''),
            fakedb.BuildsetSourceStamp(buildsetid=20, sourcestampid=10),
        ]
    return rows


class BuildStatsTestBase(TestReactorMixin, ConfigErrorsMixin, unittest.TestCase):

    @defer.inlineCallbacks
    def setUp(self):
        self.setup_test_reactor()
        self.master = yield fakemaster.make_master(self, wantData=True)
        self.backend = stats.InMemoryStorageService(name='mem')

    @defer.inlineCallbacks
    def insert(self, rows):
        yield self.master.db.insert_test_data(rows)

    def wire(self, capture):
        capture.master = self.master
        capture.parent_svcs = [self.backend]
        return capture

    @defer.inlineCallbacks
    def finish(self, capture, buildid=50):
        build = yield self.master.data.get(('builds', buildid))
        yield capture.consumer(BUILD_FINISHED, build)
        return build

    TAGS = {'builder_name': 'alpha', 'worker': 'w1', 'branch': 'main',
            'repository': 'https://r/x.git', 'project': 'proj'}

    def onlyPoint(self):
        self.assertEqual(len(self.backend.points), 1, self.backend.points)
        return self.backend.points[0]


class TestBuildResults(BuildStatsTestBase):

    @defer.inlineCallbacks
    def test_failed_build_point(self):
        yield self.insert(baseRows(results=FAILURE))
        yield self.finish(self.wire(stats.CaptureBuildResults()))
        p = self.onlyPoint()
        self.assertEqual(p.series, 'builds')
        self.assertEqual(p.tags, dict(self.TAGS, result='failure'))
        self.assertEqual(p.fields, {'result_code': FAILURE, 'success': 0, 'build_number': 7,
                                    'duration': 90.0})
        # the build's end, moved by build number 7 -> 7 ms
        self.assertEqual(round(p.time * 1e6), (END + 0.007) * 1e6)

    @defer.inlineCallbacks
    def test_every_result_name_and_success(self):
        expected = {SUCCESS: ('success', 1), WARNINGS: ('warnings', 1),
                    FAILURE: ('failure', 0), 3: ('skipped', 0), 4: ('exception', 0),
                    5: ('retry', 0), CANCELLED: ('cancelled', 0)}
        rows = baseRows()[:-1]
        for code in expected:
            rows.append(fakedb.Build(id=60 + code, number=code, buildrequestid=30, builderid=1,
                                     workerid=4, masterid=1, started_at=START,
                                     complete_at=END, results=code))
        yield self.insert(rows)
        cap = self.wire(stats.CaptureBuildResults())
        for code in expected:
            yield self.finish(cap, 60 + code)
        got = {p.fields['result_code']: (p.tags['result'], p.fields['success'])
               for p in self.backend.points}
        self.assertEqual(got, expected)
        self.assertEqual(resultName(17), '17')

    @defer.inlineCallbacks
    def test_builder_filter(self):
        yield self.insert(baseRows())
        yield self.finish(self.wire(stats.CaptureBuildResults('beta')))
        self.assertEqual(self.backend.points, [])
        yield self.finish(self.wire(stats.CaptureBuildResults('alpha')))
        self.assertEqual(len(self.backend.points), 1)

    @defer.inlineCallbacks
    def test_unknown_sources_and_worker_leave_tags_out(self):
        rows = [r for r in baseRows(with_source=False) if not isinstance(r, fakedb.Worker)]
        rows[-1] = fakedb.Build(id=50, number=7, buildrequestid=30, builderid=1, workerid=None,
                                masterid=1, started_at=START, complete_at=END, results=SUCCESS)
        yield self.insert(rows)
        yield self.finish(self.wire(stats.CaptureBuildResults()))
        self.assertEqual(self.onlyPoint().tags, {'builder_name': 'alpha', 'result': 'success'})

    @defer.inlineCallbacks
    def test_callback_changes_fields_or_skips(self):
        yield self.insert(baseRows())

        def cb(fields, info):
            if info['build']['number'] != 7:
                return None
            return {'failed': 1 - fields['success'], 'who': info['tags']['worker']}

        yield self.finish(self.wire(stats.CaptureBuildResults(callback=cb)))
        self.assertEqual(self.onlyPoint().fields, {'failed': 1, 'who': 'w1'})
        self.backend.clear()
        yield self.finish(self.wire(stats.CaptureBuildResults(callback=lambda f, i: None)))
        self.assertEqual(self.backend.points, [])

    @defer.inlineCallbacks
    def test_callback_errors_are_capture_errors(self):
        yield self.insert(baseRows())

        def boom(fields, info):
            raise ValueError('nope')

        with self.assertRaisesRegex(CaptureError, r"ValueError: nope for build #7 of builder "
                                                  r"'alpha'"):
            yield self.finish(self.wire(stats.CaptureBuildResults(callback=boom)))
        with self.assertRaisesRegex(CaptureError, "non-empty dict of fields or None, got 3"):
            yield self.finish(self.wire(stats.CaptureBuildResults(callback=lambda f, i: 3)))
        self.assertEqual(self.backend.points, [])

    def test_config_errors(self):
        with self.assertRaisesConfigError("builder_name must be a non-empty string, got ''"):
            stats.CaptureBuildResults('')
        with self.assertRaisesConfigError("callback must be callable, got 5"):
            stats.CaptureQueueTimes(callback=5)
        with self.assertRaisesConfigError("builder_name must be a non-empty string, got 3"):
            stats.CaptureTestResults(3)


class TestQueueTimes(BuildStatsTestBase):

    @defer.inlineCallbacks
    def test_queue_and_turnaround(self):
        yield self.insert(baseRows(results=SUCCESS))
        yield self.finish(self.wire(stats.CaptureQueueTimes()))
        p = self.onlyPoint()
        self.assertEqual(p.series, 'build_requests')
        self.assertEqual(p.tags, dict(self.TAGS, result='success'))
        self.assertEqual(p.fields, {'build_number': 7, 'queue_time': 30.0,
                                    'turnaround_time': 130.0})
        for v in p.fields.values():
            self.assertNotIsInstance(v, bool)
        self.assertIsInstance(p.fields['queue_time'], float)

    @defer.inlineCallbacks
    def test_clock_going_backwards_gives_zero(self):
        rows = baseRows()
        rows[5] = fakedb.BuildRequest(id=30, buildsetid=20, builderid=1,
                                      submitted_at=START + 5)
        yield self.insert(rows)
        yield self.finish(self.wire(stats.CaptureQueueTimes()))
        self.assertEqual(self.onlyPoint().fields['queue_time'], 0.0)

    @defer.inlineCallbacks
    def test_missing_build_request_is_an_error(self):
        yield self.insert(baseRows())
        build = yield self.master.data.get(('builds', 50))
        build = dict(build, buildrequestid=999)
        with self.assertRaisesRegex(CaptureError, "no build request 999 for build #7"):
            yield self.wire(stats.CaptureQueueTimes()).consumer(BUILD_FINISHED, build)

    @defer.inlineCallbacks
    def test_callback_sees_request_and_buildset(self):
        yield self.insert(baseRows())
        seen = []

        def cb(fields, info):
            seen.append((info['buildrequest']['buildrequestid'], info['buildset']['bsid']))
            return fields

        yield self.finish(self.wire(stats.CaptureQueueTimes(callback=cb)))
        self.assertEqual(seen, [(30, 20)])


class TestStepTimes(BuildStatsTestBase):

    def stepRows(self):
        return [
            fakedb.Step(id=100, number=0, name='worker_preparation', buildid=50,
                        started_at=START, complete_at=START + 1, results=SUCCESS),
            fakedb.Step(id=101, number=1, name='compile', buildid=50,
                        started_at=START + 1, complete_at=START + 61, results=WARNINGS),
            fakedb.Step(id=102, number=2, name='test-unit', buildid=50,
                        started_at=START + 61, complete_at=END, results=FAILURE),
            fakedb.Step(id=103, number=3, name='skipped-one', buildid=50,
                        started_at=None, complete_at=END, results=3),
            # never finished: no point
            fakedb.Step(id=104, number=4, name='hung', buildid=50, started_at=START + 80,
                        complete_at=None, results=None),
        ]

    @defer.inlineCallbacks
    def test_one_point_per_finished_step(self):
        yield self.insert(baseRows() + self.stepRows())
        yield self.finish(self.wire(stats.CaptureStepTimes()))
        got = [(p.series, p.tags['step_name'], p.tags['result'], p.fields,
                round(p.time * 1e3)) for p in self.backend.points]
        self.assertEqual(got, [
            ('steps', 'worker_preparation', 'success',
             {'step_number': 0, 'build_number': 7, 'result_code': 0, 'duration': 1.0},
             (START + 1) * 1000 + 7),
            ('steps', 'compile', 'warnings',
             {'step_number': 1, 'build_number': 7, 'result_code': 1, 'duration': 60.0},
             (START + 61) * 1000 + 7),
            ('steps', 'test-unit', 'failure',
             {'step_number': 2, 'build_number': 7, 'result_code': 2, 'duration': 29.0},
             END * 1000 + 7),
            ('steps', 'skipped-one', 'skipped',
             {'step_number': 3, 'build_number': 7, 'result_code': 3}, END * 1000 + 7),
        ])
        for p in self.backend.points:
            self.assertEqual({k: v for k, v in p.tags.items()
                              if k not in ('step_name', 'result')}, self.TAGS)

    @defer.inlineCallbacks
    def test_step_names_filter(self):
        yield self.insert(baseRows() + self.stepRows())
        cap = stats.CaptureStepTimes(step_names=['compile', re.compile(r'test-.*')])
        yield self.finish(self.wire(cap))
        self.assertEqual([p.tags['step_name'] for p in self.backend.points],
                         ['compile', 'test-unit'])
        # a pattern matches the whole name, a string only itself
        self.backend.clear()
        cap = stats.CaptureStepTimes(step_names=['comp', re.compile('test')])
        yield self.finish(self.wire(cap))
        self.assertEqual(self.backend.points, [])

    @defer.inlineCallbacks
    def test_callback_failing_for_one_step_keeps_the_others(self):
        yield self.insert(baseRows() + self.stepRows())

        def cb(fields, info):
            if info['step']['name'] == 'compile':
                raise KeyError('x')
            return fields

        with self.assertRaisesRegex(CaptureError, "step 'compile'.*KeyError"):
            yield self.finish(self.wire(stats.CaptureStepTimes(callback=cb)))
        self.assertEqual([p.tags['step_name'] for p in self.backend.points],
                         ['worker_preparation', 'test-unit', 'skipped-one'])

    def test_step_names_config_errors(self):
        with self.assertRaisesConfigError("step_names must be a list"):
            stats.CaptureStepTimes(step_names='compile')
        with self.assertRaisesConfigError("step_names: 3 is neither a step name"):
            stats.CaptureStepTimes(step_names=['a', 3])
        self.assertEqual(
            repr(stats.CaptureStepTimes('a', step_names=['x', re.compile('y.*')])),
            "<CaptureStepTimes(builder_name='a', step_names=['x', 'y.*'])>")


class TestTestResults(BuildStatsTestBase):

    def setRows(self):
        return [
            fakedb.Step(id=100, number=1, name='tests', buildid=50, started_at=START,
                        complete_at=END, results=FAILURE),
            fakedb.TestResultSet(id=1, builderid=1, buildid=50, stepid=100,
                                 category='pass_fail', value_unit='boolean', tests_passed=10,
                                 tests_failed=2),
            fakedb.TestResultSet(id=2, builderid=1, buildid=50, stepid=100,
                                 category='pass_only', value_unit='boolean', tests_passed=5,
                                 tests_failed=0),
            # lint findings are not tests
            fakedb.TestResultSet(id=3, builderid=1, buildid=50, stepid=100,
                                 category='code_issue', value_unit='message', tests_passed=0,
                                 tests_failed=40),
            # an incomplete set (its step crashed) is left out
            fakedb.TestResultSet(id=4, builderid=1, buildid=50, stepid=100,
                                 category='pass_fail', value_unit='boolean', tests_passed=1,
                                 tests_failed=1, complete=0),
            # performance values: no counts
            fakedb.TestResultSet(id=5, builderid=1, buildid=50, stepid=100,
                                 category='performance', value_unit='ms'),
            fakedb.TestResultSet(id=6, builderid=1, buildid=50, stepid=100,
                                 category='skip_only', value_unit='boolean'),
            fakedb.TestName(id=1, builderid=1, name='a'),
            fakedb.TestName(id=2, builderid=1, name='b'),
            fakedb.TestName(id=3, builderid=1, name='c'),
        ] + [fakedb.TestResult(id=i, builderid=1, test_result_setid=6, test_nameid=i,
                               value='1') for i in (1, 2, 3)]

    @defer.inlineCallbacks
    def test_counts(self):
        yield self.insert(baseRows() + self.setRows())
        yield self.finish(self.wire(stats.CaptureTestResults()))
        p = self.onlyPoint()
        self.assertEqual(p.series, 'tests')
        self.assertEqual(p.tags, dict(self.TAGS, result='failure'))
        self.assertEqual(p.fields, {'passed': 15, 'failed': 2, 'skipped': 3, 'total': 20,
                                    'result_sets': 3, 'build_number': 7})

    @defer.inlineCallbacks
    def test_no_test_results_no_point(self):
        yield self.insert(baseRows() + [
            fakedb.Step(id=100, number=1, name='perf', buildid=50),
            fakedb.TestResultSet(id=5, builderid=1, buildid=50, stepid=100,
                                 category='performance', value_unit='ms'),
        ])
        yield self.finish(self.wire(stats.CaptureTestResults()))
        self.assertEqual(self.backend.points, [])


class TestSourceTags(unittest.TestCase):

    def test_first_non_empty_value_in_codebase_order(self):
        self.assertEqual(sourceTags([
            {'codebase': 'z', 'branch': 'zb', 'repository': 'zr', 'project': 'zp'},
            {'codebase': 'a', 'branch': '', 'repository': 'ar', 'project': None},
        ]), {'branch': 'zb', 'repository': 'ar', 'project': 'zp'})
        self.assertEqual(sourceTags([]), {})


class TestPlugins(unittest.TestCase):

    def test_new_captures_are_buildbot_plugins(self):
        from buildbot.plugins import util
        for name in ('CaptureBuildResults', 'CaptureQueueTimes', 'CaptureStepTimes',
                     'CaptureTestResults'):
            self.assertIs(getattr(util, name), getattr(stats, name))


class TestLookupFailures(BuildStatsTestBase):

    @defer.inlineCallbacks
    def test_failed_tag_lookup_is_logged_and_the_point_still_written(self):
        yield self.insert(baseRows(results=SUCCESS))
        real_get = self.master.data.get

        def get(path, *args, **kwargs):
            if path[0] == 'workers':
                return defer.fail(RuntimeError('db gone'))
            return real_get(path, *args, **kwargs)

        self.patch(self.master.data, 'get', get)
        yield self.finish(self.wire(stats.CaptureBuildResults()))
        tags = dict(self.TAGS, result='success')
        del tags['worker']
        self.assertEqual(self.onlyPoint().tags, tags)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    @defer.inlineCallbacks
    def test_none_fields_left_out(self):
        yield self.insert(baseRows())
        cap = stats.CaptureBuildResults(callback=lambda f, i: dict(f, duration=None))
        yield self.finish(self.wire(cap))
        self.assertNotIn('duration', self.onlyPoint().fields)
        self.backend.clear()
        cap = stats.CaptureBuildResults(callback=lambda f, i: {'x': None})
        with self.assertRaisesRegex(CaptureError, "non-empty dict"):
            yield self.finish(self.wire(cap))
