"""CaptureTestHistory on Buildbot's fake master (real data API and database in memory, fake
clock): whoever submitted the results, one outcome per test per build reaches every
backend; Prometheus counts them by builder and outcome, and its gauges come from the
answers' side; JUnitResults' configuration errors; the command's mistakes."""

from __future__ import annotations

import io
import json
import os

from twisted.internet import defer
from twisted.trial import unittest

from buildbot.process.results import FAILURE
from buildbot.process.results import WARNINGS
from buildbot.test import fakedb
from buildbot.test.util.config import ConfigErrorsMixin
from buildbot.test.util.logging import LoggingMixin

from buildbot_stats import stats
from buildbot_stats.captures.testhistory import revisionOf
from buildbot_stats.cli.main import main as cli
from buildbot_stats.history.reader import BuildReader
from buildbot_stats.history.replay import Replayer
from buildbot_stats.messages import BUILD_FINISHED
from buildbot_stats.outcomes import FAILED
from buildbot_stats.outcomes import FLAKY
from buildbot_stats.outcomes import PASSED
from buildbot_stats.outcomes import SKIPPED
from buildbot_stats.outcomes import TestRun
from buildbot_stats.reading.gauges import countsByBuilder
from buildbot_stats.storage.prometheus.snapshot import testFamilies
from tests.fakes import COMPLETE_AT
from tests.fakes import FakeMasterMixin


def resultRows(buildid, sets):
    """Rows of test result sets ``[(category, [(name, value, duration_ns), ...])]`` of a
    build of builder 79, with their names."""
    rows = [fakedb.Step(id=buildid * 10, number=1, name='tests', buildid=buildid)]
    names = {}
    resultid = buildid * 1000
    for n, (category, results) in enumerate(sets):
        setid = buildid * 10 + n
        rows.append(fakedb.TestResultSet(id=setid, builderid=79, buildid=buildid,
                                         stepid=buildid * 10, category=category,
                                         value_unit='boolean', complete=1))
        for name, value, duration in results:
            if name not in names:
                names[name] = buildid * 100 + len(names)
                rows.append(fakedb.TestName(id=names[name], builderid=79, name=name))
            resultid += 1
            rows.append(fakedb.TestResult(id=resultid, builderid=79, test_result_setid=setid,
                                          test_nameid=names[name], value=value,
                                          duration_ns=duration))
    return rows


class Capture(FakeMasterMixin, LoggingMixin, unittest.TestCase):

    @defer.inlineCallbacks
    def setUp(self):
        self.setUpLogging()
        yield self.setUpFakeMaster()

    @defer.inlineCallbacks
    def test_every_submitter_one_outcome_per_test(self):
        mem = stats.InMemoryStorageService([stats.CaptureTestHistory()])
        prom = stats.PrometheusStorageService(port=None, captures=[stats.CaptureTestHistory()])
        yield self.startStats([mem, prom])
        build = yield self.insertBuild(properties={'got_revision': 'abc123'})
        yield self.master.db.insert_test_data(resultRows(build['buildid'], [
            ('pass_fail', [('t.ok', '1', 2_000_000), ('t.bad', '0', None),
                           ('t.rerun', '0', 1_000), ('t.rerun', '1', 3_000)]),
            ('skip_only', [('t.skip', '1', None)]),
            ('rerun_fail', [('t.surefire', '0', None)]),
            ('pass_only', [('t.surefire', '1', 5_000_000)]),
            ('performance', [('t.perf', '12.5', None)]),
        ]))
        yield self.finishBuild(build)
        self.assertEqual(len(mem.test_runs), 1)
        run, cases = mem.test_runs[0]
        self.assertEqual(run, TestRun('alpha', build['number'], build['buildid'],
                                      float(COMPLETE_AT), revision='abc123', buildset=98))
        self.assertEqual(cases, [('t.bad', FAILED, None), ('t.ok', PASSED, 0.002),
                                 ('t.rerun', FLAKY, 3e-06), ('t.skip', SKIPPED, None),
                                 ('t.surefire', FLAKY, 0.005)])
        self.assertEqual(mem.counters.written, 5)
        # two backends' captures and the recorder: the service's one consumer of a build's
        # end (buildbot_stats.subscriptions), the capture a row of its table, replays too
        self.assertEqual([tuple(q.filter) for q in self.master.mq.qrefs
                          if tuple(q.filter)[-1:] == ('finished',)], [BUILD_FINISHED])
        self.assertEqual([(tuple(row.key), row.replayed, row.every_master)
                          for row in self.svc.subscriptions()],
                         [(BUILD_FINISHED, True, False)] * 2)  # one capture per backend
        counts = {labels: value for labels, value
                  in prom.buildMetrics.test_cases.children.items()}
        self.assertEqual(counts, {('alpha', 'passed'): 1.0, ('alpha', 'failed'): 1.0,
                                  ('alpha', 'skipped'): 1.0, ('alpha', 'flaky'): 2.0})

    @defer.inlineCallbacks
    def test_builds_without_results_and_other_builders(self):
        mem = stats.InMemoryStorageService([stats.CaptureTestHistory('beta')])
        yield self.startStats([mem])
        alpha = yield self.insertBuild(builderid=79)
        yield self.master.db.insert_test_data(resultRows(alpha['buildid'], [
            ('pass_fail', [('t.ok', '1', None)])]))
        yield self.finishBuild(alpha)
        beta = yield self.insertBuild(builderid=80)
        yield self.finishBuild(beta)
        self.assertEqual(mem.test_runs, [])
        self.assertEqual(self.svc.capture_errors, 0)

    @defer.inlineCallbacks
    def test_a_backend_without_per_test_history_says_so_once(self):
        class Plain(stats.StatsStorageBase):
            def checkConfig(self, captures=None):
                pass

            def reconfigService(self, captures=None):
                pass

        plain = Plain([stats.CaptureTestHistory()])
        yield self.startStats([plain])
        for _ in range(2):
            build = yield self.insertBuild()
            yield self.master.db.insert_test_data(resultRows(build['buildid'], [
                ('pass_fail', [('t.ok', '1', None)])]))
            yield self.finishBuild(build)
        self.assertLogged("keeps no per-test history")
        self.assertEqual(len([e for e in self._logEvents
                              if 'per-test history' in str(e.get('log_format', ''))
                              or 'per-test history' in ' '.join(map(str, e.get('message',
                                                                               ())))]), 1)

    @defer.inlineCallbacks
    def test_backfill_and_catch_up_replay_the_same_results(self):
        mem = stats.InMemoryStorageService([stats.CaptureTestHistory()])
        yield self.startStats([mem])
        for n in range(3):
            build = yield self.insertBuild(properties={'got_revision': f'rev{n}'})
            yield self.master.db.insert_test_data(resultRows(build['buildid'], [
                ('pass_fail', [('t.a', str(n % 2), 1000 * n), ('t.b', '1', None)]),
                ('skip_only', [('t.c', '1', None)])]))
            yield self.finishBuild(build)
        live = list(mem.test_runs)
        self.assertEqual(len(live), 3)
        mem.clear()
        reader = BuildReader(self.master.db)
        result = yield Replayer(self.svc, reader, self.reactor, slice_seconds=3600).run()
        self.assertEqual(result.builds, 3)
        self.assertEqual(mem.test_runs, live)

    def test_revision(self):
        self.assertEqual(revisionOf({'got_revision': ('abc', 'Git')}, None), 'abc')
        self.assertEqual(revisionOf({'got_revision': ({'lib': 'l1', '': 'main1'}, 'Git')},
                                    None), 'main1')
        self.assertEqual(revisionOf({}, {'sourcestamps': [
            {'codebase': 'b', 'revision': 'rb'}, {'codebase': 'a', 'revision': None}]}), 'rb')
        self.assertIsNone(revisionOf(None, None))


class Prometheus(unittest.TestCase):

    def test_gauges_count_by_builder_never_name_a_test(self):
        answers = {'builders': ['a', 'b', 'c'],
                   'flaky': [{'builder': 'a', 'test': 'x'}, {'builder': 'a', 'test': 'y'}],
                   'new_failures': [{'builder': 'b', 'test': 'x'}],
                   'slowing': [{'builder': 'a', 'test': 'z'}]}
        counts = countsByBuilder(answers)
        self.assertEqual(counts, {'a': {'flaky': 2, 'failing': 0, 'slowing': 1},
                                  'b': {'flaky': 0, 'failing': 1, 'slowing': 0},
                                  'c': {'flaky': 0, 'failing': 0, 'slowing': 0}})
        families = {f.name: [(s.labels, s.value) for s in f.samples]
                    for f in testFamilies(counts)}
        self.assertEqual(families['buildbot_tests_flaky'],
                         [({'builder': 'a'}, 2), ({'builder': 'b'}, 0), ({'builder': 'c'}, 0)])
        self.assertEqual(sorted(families), ['buildbot_tests_failing', 'buildbot_tests_flaky',
                                            'buildbot_tests_slowing'])
        self.assertEqual(testFamilies(None), [])

    def test_history_is_not_counted(self):
        prom = stats.PrometheusStorageService(port=None)
        prom._startedAt = 1000.0
        run = TestRun('a', 1, 1, 10.0)
        prom.postTestResults(run, [('x', PASSED, None)])
        self.assertEqual((prom.history_ignored, prom.counters.rejected), (1, 1))
        prom.postTestResults(TestRun('a', 2, 2, 999.0), [('x', FAILED, None)])
        self.assertEqual(prom.buildMetrics.test_cases.children, {('a', 'failed'): 1.0})


class StepConfig(ConfigErrorsMixin, unittest.TestCase):

    def test_mistakes(self):
        with self.assertRaisesConfigError("JUnitResults: missing a required argument: 'path'"):
            stats.JUnitResults()
        with self.assertRaisesConfigError("JUnitResults: unknown argument on_failure= (did you "
                                          "mean on_failures=?); it takes path, on_failures, "
                                          "on_bad_report, max_size, alwaysRun, "):
            stats.JUnitResults('r.xml', on_failure=WARNINGS)
        with self.assertRaisesConfigError("JUnitResults: too many positional arguments"):
            stats.JUnitResults('r.xml', FAILURE, WARNINGS, 10, 'x')
        with self.assertRaisesConfigError("CaptureTestHistory: unknown argument buildername= "
                                          "(did you mean builder_name=?)"):
            stats.CaptureTestHistory(buildername='alpha')
        with self.assertRaisesConfigError("path must be a path, a glob or a list of them, "
                                          "got 3"):
            stats.JUnitResults(path=3)
        with self.assertRaisesConfigError("on_failures must be util.SUCCESS, util.WARNINGS "
                                          "or util.FAILURE"):
            stats.JUnitResults(path='r.xml', on_failures='fail')
        with self.assertRaisesConfigError("on_bad_report must be"):
            stats.JUnitResults(path='r.xml', on_bad_report=7)
        # checks.countProblem's rule, the one every count and size option follows
        with self.assertRaisesConfigError("JUnitResults: max_size must be a positive "
                                          "integer, got 0"):
            stats.JUnitResults(path='r.xml', max_size=0)
        with self.assertRaisesConfigError("CaptureTestHistory: builder_name must be"):
            stats.CaptureTestHistory(builder_name='')
        step = stats.JUnitResults(path=['a.xml', 'b/*.xml'], workdir='src')
        self.assertEqual((step.path, step.workdir), (['a.xml', 'b/*.xml'], 'src'))


class Command(unittest.TestCase):

    def run_cli(self, *argv):
        out = io.StringIO()
        return cli(list(argv), out=out), out.getvalue()

    def test_mistakes_are_one_line_and_exit_2(self):
        self.assertEqual(self.run_cli('tests', 'no-such.sqlite')[0], 2)
        self.assertEqual(self.run_cli('tests', 'x.sqlite', '--history', 't')[0], 2)
        self.assertEqual(self.run_cli('tests', 'x.sqlite', '--limit', '0')[0], 2)
        self.assertEqual(self.run_cli('tests', 'x.sqlite', '--flaky', '--slowest')[0], 2)

    @defer.inlineCallbacks
    def test_empty_store(self):
        path = os.path.join(os.path.abspath(self.mktemp()), 'stats.sqlite')
        svc = stats.SQLiteStorageService(path=path)
        yield svc.startService()
        svc.postStatsValue({'v': 1}, 's', {}, 1.0)
        yield svc.stopService()
        status, out = self.run_cli('tests', path)
        self.assertEqual(status, 0)
        self.assertIn("No per-test results in this store", out)
        status, out = self.run_cli('tests', path, '--format', 'json')
        self.assertEqual(json.loads(out)['builds'], 0)
        status, out = self.run_cli('tests', path, '--history', 'x', '--builder', 'a')
        self.assertIn("No result of x on a", out)
