"""Per-test history on a real master with a real worker (PB over loopback): each build runs
a small real pytest suite on the worker with ``--junitxml``, read by ``stats.JUnitResults``
into Buildbot's test result API; ``CaptureTestHistory`` keeps every test in the SQLite store
and counts them in Prometheus. The page, ``buildbot-stats tests`` and ``/metrics`` name
the flaky test and the slowing one; the counts are pytest's own.

A second builder reads malformed, empty, hostile (external entity, billion laughs,
``<script>`` in names) and missing reports: a clear message each, the build goes on, no
file read through an entity, nothing injected into the page.
"""

from __future__ import annotations

import io
import json
import os
import re
import sys
import textwrap

from twisted.internet import defer

from buildbot.plugins import schedulers
from buildbot.plugins import steps
from buildbot.plugins import util
from buildbot.process.results import FAILURE
from buildbot.process.results import SUCCESS
from buildbot.process.results import WARNINGS

from buildbot_stats import stats
from buildbot_stats.cli.main import main as cli
from buildbot_stats.reading.sqlite import openStore
from tests.www_master import PageMasterMixin
from tests.www_master import RunMasterBase

STORE = 'stats.sqlite'
VIEW = 'plugins/wsgi_dashboards/stats/view'
SECRET = 'TOPSECRET-ENTITY-21'

# the suite each build runs: one test fails in odd builds, one sleeps longer from build 7 on
# (change detection needs 5 builds each side of a change)
SUITE = textwrap.dedent('''\
    import os
    import time

    N = int(os.environ['BUILD_NUMBER'])


    def test_always():
        assert True


    def test_odd_builds_fail():
        assert N % 2 == 0, f"build {N} is odd"


    def test_gets_slower():
        time.sleep(0.05 if N < 7 else 0.4)
''')
ALWAYS = 'test_suite.test_always'
FLAKY = 'test_suite.test_odd_builds_fail'
SLOWING = 'test_suite.test_gets_slower'
BUILDS = 12
SLOW_FROM = 7  # the first build of the slower test_gets_slower

GOOD = ('<testsuites><testsuite name="s"><testcase classname="good" name="ok" time="0.1"/>'
        '<testcase classname="good" name="&lt;script&gt;alert(21)&lt;/script&gt;" '
        'time="0.2"><failure message="&lt;script&gt;">x</failure></testcase>'
        '</testsuite></testsuites>')
XXE = ('<?xml version="1.0"?>\n<!DOCTYPE t [<!ENTITY x SYSTEM "file://{secret}">]>\n'
       '<testsuite><testcase classname="xxe" name="&x;"/></testsuite>')
LAUGHS = ('<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol">'
          + ''.join(f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10 if i > 1 else "&lol;" * 10}">'
                    for i in range(1, 10))
          + ']>\n<testsuite><testcase classname="laughs" name="&lol9;"/></testsuite>')
BAD_REPORTS = {
    'a-malformed.xml': '<testsuite><testcase classname="bad" name="one"/><testcase name=',
    'b-empty.xml': '',
    'c-xxe.xml': XXE,
    'd-laughs.xml': LAUGHS,
    'e-good.xml': GOOD,
    'f-html.xml': '<html><body>not a report</body></html>',
}


def masterConfig(basedir):
    c = {}
    c['schedulers'] = [schedulers.ForceScheduler(name="force",
                                                 builderNames=["pytest", "reports"])]
    suite = util.BuildFactory()
    suite.addStep(steps.StringDownload(SUITE, workerdest='test_suite.py'))
    suite.addStep(steps.ShellCommand(
        name='pytest',
        command=[sys.executable, '-m', 'pytest', '-p', 'no:cacheprovider', '-q',
                 '--rootdir=.', '--junitxml=report.xml', 'test_suite.py'],
        env={'BUILD_NUMBER': util.Interpolate('%(prop:buildnumber)s')},
        flunkOnFailure=False, warnOnFailure=False))
    suite.addStep(stats.JUnitResults(path='report.xml'))
    reports = util.BuildFactory()
    secret = os.path.join(basedir, 'secret.txt')
    for name, text in BAD_REPORTS.items():
        reports.addStep(steps.StringDownload(text.replace('{secret}', secret),
                                             workerdest=f'bad/{name}'))
    reports.addStep(stats.JUnitResults(name='bad reports', path=['bad/*.xml', 'missing.xml'],
                                       on_failures=WARNINGS))
    reports.addStep(steps.ShellCommand(name='after', command=['echo', 'the build goes on']))
    c['builders'] = [
        util.BuilderConfig(name="pytest", workernames=["local1"], factory=suite),
        util.BuilderConfig(name="reports", workernames=["local1"], factory=reports),
    ]
    captures = [stats.CaptureTestHistory(), stats.CaptureTestResults()]
    backends = [stats.SQLiteStorageService(path=STORE, captures=captures, flush_interval=0.1,
                                           name='sqlite'),
                stats.PrometheusStorageService(port=None, captures=list(captures),
                                               name='prometheus')]
    c['services'] = [stats.StatsService(storage_backends=backends, name="StatsService")]
    c['www'] = {'port': 'tcp:0:interface=127.0.0.1',
                'plugins': {'wsgi_dashboards': [stats.statsDashboard()], 'metrics': {}}}
    return c


def pytestSummary(stdio):
    """``{'passed': n, 'failed': n}`` of pytest's closing line."""
    line = [line for line in stdio.splitlines() if re.search(r'\d+ (passed|failed)', line)][-1]
    return {word: int(n) for n, word in re.findall(r'(\d+) (passed|failed|skipped)', line)}


class TestHistoryOnARealMaster(PageMasterMixin, RunMasterBase):
    timeout = 240

    @defer.inlineCallbacks
    def setUpMaster(self):
        basedir = os.path.abspath(self.mktemp())
        os.makedirs(basedir)
        with open(os.path.join(basedir, 'secret.txt'), 'w') as f:
            f.write(SECRET)
        self.secretDir = basedir
        yield self.setup_master(masterConfig(basedir))
        self.master = self.tested_master.master
        self.base = f"http://127.0.0.1:{self.master.www.getPortnum()}/"
        self.service = self.master.service_manager.namedServices['StatsService']

    @defer.inlineCallbacks
    def force(self, builder):
        build = yield self.doForceBuild(wantSteps=True, wantLogs=True,
                                        forceParams={'builderNames': [builder]})
        yield self.service.drain()
        for backend in self.service.backends:
            yield backend.flush(30)
        return build

    def logOf(self, build, step_name, log_name):
        step = [s for s in build['steps'] if s['name'] == step_name][0]
        log_ = [lg for lg in step['logs'] if lg['name'] == log_name][0]
        # Buildbot's log contents: lines prefixed with o (stdout), e (stderr), h (header)
        return "\n".join(line[1:] for line in log_['contents']['content'].splitlines())

    @defer.inlineCallbacks
    def test_flaky_and_slowing_tests_named_everywhere(self):
        yield self.setUpMaster()
        builds = []
        for _ in range(BUILDS):
            builds.append((yield self.force('pytest')))
        for build in builds:
            n = build['number']
            step = [s for s in build['steps'] if s['name'] == 'test results'][0]
            summary = pytestSummary(self.logOf(build, 'pytest', 'stdio'))
            failed = n % 2
            self.assertEqual(summary, {'passed': 3 - failed, 'failed': failed} if failed
                             else {'passed': 3})
            # the step's summary and result, and Buildbot's API, say what pytest said
            self.assertEqual(step['state_string'],
                             f"{3 - failed} passed, 1 failed (failure)" if failed
                             else "3 passed")
            self.assertEqual(step['results'], FAILURE if failed else SUCCESS)
            sets = yield self.master.data.get(('builds', build['buildid'], 'test_result_sets'))
            self.assertEqual([(s['category'], s['tests_passed'], s['tests_failed'])
                              for s in sets],
                             [('pass_fail', summary['passed'], summary.get('failed', 0))])
            results = yield self.master.data.get(
                ('test_result_sets', sets[0]['test_result_setid'], 'results'))
            self.assertEqual(sorted((r['test_name'], r['value']) for r in results),
                             sorted([(ALWAYS, '1'), (FLAKY, '0' if failed else '1'),
                                     (SLOWING, '1')]))
            slow = [r for r in results if r['test_name'] == SLOWING][0]
            self.assertGreaterEqual(slow['duration_ns'], (0.05 if n < SLOW_FROM else 0.4) * 1e9)
        # the same over HTTP, at the API path Buildbot 4.3 has
        status, body = yield self.getJson(
            f"api/v2/test_result_sets/{sets[0]['test_result_setid']}/results")
        self.assertEqual(status, 200)
        self.assertEqual(len(body['test_results']), 3)

        # the store: one run per build, pytest's counts
        path = os.path.join(self.master.basedir, STORE)
        with openStore(path) as store:
            runs = store.testRuns('pytest')
            answers = store.testAnswers()
        self.assertEqual([(r.number, r.counts) for r in runs],
                         [(b['number'], (3 - b['number'] % 2, b['number'] % 2, 0, 0))
                          for b in builds])
        self.assertEqual([(r['builder'], r['test']) for r in answers['flaky']],
                         [('pytest', FLAKY)])
        # found by change detection, at the build where it began, 0.05 s -> 0.4 s
        self.assertEqual(answers['slowing_method'], 'changepoints')
        [slowing] = answers['slowing']
        self.assertEqual((slowing['test'], slowing['since']['number']), (SLOWING, SLOW_FROM))
        self.assertGreaterEqual(slowing['before'], 0.05)
        self.assertLess(slowing['before'], 0.3)
        self.assertGreaterEqual(slowing['after'], 0.4)
        self.assertEqual(answers['slowest'][0]['test'], SLOWING)

        # the page: the tables name them, each links to its history
        status, body, _ = yield self.get(VIEW + '?range=all')
        self.assertEqual(status, 200, body)
        flaky_table = re.search(r'<table class="tests-flaky">(.*?)</table>', body, re.S)
        self.assertIsNotNone(flaky_table, body)
        self.assertIn(f'title="{FLAKY}">{FLAKY}</a>', flaky_table.group(1))
        self.assertNotIn(ALWAYS, flaky_table.group(1))
        slowing_table = re.search(r'<table class="tests-slowing">(.*?)</table>', body, re.S)
        self.assertIn(f'>{SLOWING}</a>', slowing_table.group(1))
        self.assertNotIn(FLAKY, slowing_table.group(1))
        ids = {b['name']: b['builderid'] for b in (yield self.master.data.get(('builders',)))}
        self.assertIn(f'href="../../../#/builders/{ids["pytest"]}/builds/{SLOW_FROM}"',
                      slowing_table.group(1))
        self.assertIn('Found by change detection (Apache Otava)', body)
        link = re.search(r'<a class="test" href="(test\?[^"]*)" title="%s"' % re.escape(FLAKY),
                         body).group(1).replace('&amp;', '&')
        status, history, _ = yield self.get('plugins/wsgi_dashboards/stats/' + link)
        self.assertEqual(status, 200, history)
        outcomes = re.findall(r'data-outcome="(\w+)"', history)
        self.assertEqual(outcomes, ['failed' if b['number'] % 2 else 'passed' for b in builds])
        self.assertIn(f'href="../../../#/builders/{ids["pytest"]}/builds/{builds[0]["number"]}"',
                      history)

        # the command
        out = io.StringIO()
        self.assertEqual(cli(['tests', path, '--flaky', '--format', 'json'], out=out), 0)
        doc = json.loads(out.getvalue())
        self.assertEqual([(r['builder'], r['test'], r['failures'], r['builds'])
                          for r in doc['flaky']],
                         [('pytest', FLAKY, (BUILDS + 1) // 2, BUILDS)])
        out = io.StringIO()
        self.assertEqual(cli(['tests', path, '--slowing'], out=out), 0)
        [row] = [line for line in out.getvalue().splitlines() if SLOWING in line]
        self.assertIn(f" #{SLOW_FROM} ", row)
        self.assertNotIn(FLAKY, out.getvalue())

        # /metrics: counts by builder, never a test name
        status, metrics, _ = yield self.get('plugins/metrics')
        self.assertEqual(status, 200)
        self.assertIn('buildbot_tests_flaky{builder="pytest"} 1.0', metrics)
        self.assertIn('buildbot_tests_slowing{builder="pytest"} 1.0', metrics)
        odd = (BUILDS + 1) // 2
        self.assertIn(f'buildbot_test_cases_total{{builder="pytest",outcome="failed"}} '
                      f'{float(odd)}', metrics)
        self.assertIn(f'buildbot_test_cases_total{{builder="pytest",outcome="passed"}} '
                      f'{float(3 * BUILDS - odd)}', metrics)
        self.assertNotIn('test_suite', metrics)

    @defer.inlineCallbacks
    def test_bad_reports_are_a_clear_message_and_harmless(self):
        yield self.setUpMaster()
        build = yield self.force('reports')
        steps_ = {s['name']: s for s in build['steps']}
        # the build went on past the step
        self.assertEqual(steps_['after']['results'], SUCCESS)
        step = steps_['bad reports']
        self.assertEqual(step['results'], WARNINGS)
        # the good report's two tests, one failed, and the one case of the malformed report
        # read before its end was cut
        self.assertEqual(step['state_string'], "2 passed, 1 failed (warnings)")
        log_ = self.logOf(build, 'bad reports', 'reports')
        for expected in ["bad/a-malformed.xml: is not well-formed XML: unclosed token at "
                         "line 1, column 49 (1 test cases before it are kept)",
                         "bad/a-malformed.xml: 1 test cases",
                         "\nbad/b-empty.xml: is empty",
                         "c-xxe.xml: has a <!DOCTYPE>",
                         "d-laughs.xml: has a <!DOCTYPE>",
                         "f-html.xml: is not a JUnit report: its root element is <html>",
                         "missing.xml: cannot be read on the worker",
                         "6 problem(s); the step is warnings for them"]:
            self.assertIn(expected, log_)
        # nothing was read through the entity, nowhere
        sets = yield self.master.data.get(('builds', build['buildid'], 'test_result_sets'))
        names = []
        for s in sets:
            results = yield self.master.data.get(
                ('test_result_sets', s['test_result_setid'], 'results'))
            names.extend(r['test_name'] for r in results)
        self.assertEqual(sorted(names), ['bad.one', 'good.<script>alert(21)</script>',
                                         'good.ok'])
        self.assertNotIn(SECRET, log_)
        with open(os.path.join(self.master.basedir, STORE), 'rb') as f:
            self.assertNotIn(SECRET.encode(), f.read())
        # the page shows the name as text, never as markup
        status, body, _ = yield self.get(VIEW + '?range=all')
        self.assertEqual(status, 200)
        self.assertNotIn('<script', body)
        self.assertIn('good.&lt;script&gt;alert(21)&lt;/script&gt;', body)
