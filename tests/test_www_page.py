"""The Statistics page over HTTP: a real master with buildbot-www and the page, a real
worker, real builds; the page's numbers are the report's, names are escaped, the build
links are right, and authz is enforced."""

from __future__ import annotations

import re
import sqlite3

from twisted.internet import defer
from twisted.trial import unittest

from buildbot_stats.cli import report
from buildbot_stats.reading.sqlite import openStore
from buildbot_stats.reading.summary import builderStats
from buildbot_stats.reading.summary import fmtSeconds
from tests.www_master import ADMIN
from tests.www_master import PageMasterMixin
from tests.www_master import RunMasterBase
from tests.www_master import writeRows

VIEW = 'plugins/wsgi_dashboards/stats/view'


def figures(body, kind):
    """``{name: number of point markers}`` of the charts of ``kind``."""
    out = {}
    for name, chart in re.findall(
            r'<figure class="chart" data-kind="%s" data-name="([^"]*)">(.*?)</figure>' % kind,
            body, re.S):
        points = re.findall(r'<g class="line" [^>]*data-style="points">(.*?)</g>', chart, re.S)
        out[name] = sum(len(re.findall(r'<circle', g)) for g in points)
    return out


def shownSteps(body):
    """``{(builder, step)}`` of the slowest steps table."""
    table = re.search(r'<table class="steps">.*?</table>', body, re.S)
    assert table is not None, body
    return set(re.findall(r'<tr><td>([^<]*)</td><td>([^<]*)</td>', table.group(0)))


class PageTest(PageMasterMixin, RunMasterBase):

    @defer.inlineCallbacks
    def test_page_shows_the_builds_as_the_report_does(self):
        yield self.startMaster()
        builds = yield self.runBuilds([('alpha', False), ('alpha', True), ('beta', False),
                                       ('alpha', False)])
        status, index, _ = yield self.get('plugins/wsgi_dashboards/stats/index.html')
        self.assertEqual(status, 200)
        self.assertIn(f'src="{VIEW}"', index)

        status, body, headers = yield self.get(VIEW + '?range=all')
        self.assertEqual(status, 200, body)
        self.assertNotIn('<script', body)
        # one marker per build, per builder
        self.assertEqual(figures(body, 'duration'), {'alpha': 3, 'beta': 1})
        # the table is the report's
        with openStore(self.storePath()) as store:
            durations = store.buildDurations()
            data = report.collect(store)
        data.update(range='all')
        for builder, builds_of in durations.items():
            st = builderStats(builds_of)
            row = (f'<td><a href="view?range=all&amp;builder={builder}">{builder}</a></td>'
                   f'<td>{st["builds"]}</td><td>{fmtSeconds(st["median"])}</td>'
                   f'<td>{fmtSeconds(st["p90"])}</td><td>{fmtSeconds(st["last"])}</td>')
            self.assertIn(row, body)
            summary_line = [line for line in report.terminalSummary(data).splitlines()
                            if line.startswith(builder + ' ')][0]
            self.assertEqual(summary_line.split()[1:5],
                             [str(st['builds']), fmtSeconds(st['median']),
                              fmtSeconds(st['p90']), fmtSeconds(st['last'])])
        # success rate: alpha 2 of 3
        self.assertRegex(body, r'<td>alpha</td><td>3</td><td>2</td><td>1</td><td>0</td>'
                         r'<td>.*?67%</td>')
        # hover and link of a point: value, build number, Buildbot's URL of the build
        ids = {b['name']: b['builderid'] for b in
               (yield self.master.data.get(('builders',)))}
        second = builds[1]
        self.assertIn(f'<a href="../../../#/builders/{ids["alpha"]}/builds/{second["number"]}"'
                      ' target="_top"><circle', body)
        self.assertRegex(body, r'<title>alpha build #%d: duration [0-9.]+s at '
                         r'\d\d\d\d-\d\d-\d\d \d\d:\d\d:\d\d UTC</title>' % second['number'])
        # tests, queue, steps, custom series: drawn, not "not captured"
        self.assertNotIn('class="missing"', body)
        self.assertIn('<td>alpha</td><td>3</td><td>3</td><td>1</td><td>2</td><td>3</td>', body)
        self.assertIn('data-name="alpha-coverage"', body)
        # the slowest steps: the steps of the factories, not Buildbot's own
        # worker_preparation nor the step hidden with hideStepIf (both in the store)
        self.assertEqual(shownSteps(body), {('alpha', 'shell'), ('alpha', 'maybe-fail'),
                                            ('alpha', 'unit-tests'), ('beta', 'shell')})
        with sqlite3.connect(self.storePath()) as conn:
            hidden = conn.execute(
                "SELECT DISTINCT json_extract(tags, '$.step_name'),"
                " json_extract(tags, '$.hidden') FROM points_json WHERE series = 'steps'"
                " AND builder = 'alpha' ORDER BY 1").fetchall()
        self.assertEqual(hidden, [('SetProperty', 'true'), ('maybe-fail', None),
                                  ('shell', None), ('unit-tests', None),
                                  ('worker_preparation', None)])
        # a series named <script> is text
        self.assertIn('data-name="alpha-&lt;script&gt;"', body)
        self.assertIn('<figcaption>alpha-&lt;script&gt;</figcaption>', body)

        # the builder filter
        status, body, _ = yield self.get(VIEW + '?range=all&builder=beta')
        self.assertEqual(figures(body, 'duration'), {'beta': 1})
        self.assertIn('<option value="beta" selected>beta</option>', body)
        # the range: a build of 10 days ago is in 'all' and '30d', not in '7d'
        yield writeRows(self.storePath(), [report_old_row(builds[0])])
        for range_name, expected in (('all', 2), ('30d', 2), ('7d', 1), ('24h', 1)):
            status, body, _ = yield self.get(VIEW + f'?range={range_name}&builder=beta')
            self.assertEqual(figures(body, 'duration'), {'beta': expected}, range_name)
        yield self.tested_master.shutdown()

    @defer.inlineCallbacks
    def test_panels_without_their_capture_say_what_to_add(self):
        from buildbot_stats import stats
        yield self.startMaster(backends=[stats.SQLiteStorageService(
            path='stats.sqlite', flush_interval=0.1, name='sqlite')])  # default captures
        yield self.runBuilds([('beta', False)])
        status, body, _ = yield self.get(VIEW)
        self.assertEqual(status, 200, body)
        self.assertEqual(figures(body, 'duration'), {'beta': 1})
        missing = dict(re.findall(r'<p class="missing" data-panel="(\w+)">(.*?)</p>', body))
        self.assertEqual(sorted(missing), ['custom', 'queue', 'results', 'steps', 'tests'])
        self.assertIn('<code>stats.CaptureQueueTimes()</code> to the <code>captures</code>',
                      missing['queue'])
        self.assertTrue(missing['tests'].startswith('Test results are not captured.'))
        yield self.tested_master.shutdown()

    @defer.inlineCallbacks
    def test_a_store_that_cannot_be_read_is_one_sentence(self):
        from buildbot_stats import stats
        yield self.startMaster(dashboard=stats.statsDashboard(store='nowhere.sqlite'))
        status, body, _ = yield self.get(VIEW)
        self.assertEqual(status, 200, body)
        self.assertIn('<p class="message">The statistics cannot be read: ', body)
        self.assertIn('nowhere.sqlite: no such file</p>', body)
        yield self.tested_master.shutdown()

    @defer.inlineCallbacks
    def test_authz_refuses_anonymous(self):
        yield self.startMaster(restricted=True)
        yield self.runBuilds([('beta', False)])
        status, _, _ = yield self.get('api/v2/builds')
        self.assertEqual(status, 403)
        status, body, _ = yield self.get(VIEW + '?range=all')
        self.assertEqual(status, 403)
        self.assertNotIn('beta', body)
        self.assertNotIn('<svg', body)
        status, body, _ = yield self.get('plugins/wsgi_dashboards/stats/index.html')
        self.assertNotIn('<iframe', body)
        # a test's history page is under the same authz
        test_page = VIEW.rsplit('/', 1)[0] + '/test?range=all&builder=beta&test=t'
        status, body, _ = yield self.get(test_page)
        self.assertEqual(status, 403)
        self.assertNotIn('<svg', body)
        # a forged session cookie is anonymous
        status, _, _ = yield self.get(VIEW, cookie='TWISTED_SESSION=eyJhbGciOiJIUzI1NiJ9.e30.x')
        self.assertEqual(status, 403)
        # logged in: the page
        status, _, headers = yield self.get('auth/login', auth=ADMIN)
        # the login answers the anonymous session, then the user's: the last one counts
        cookie = headers.get_all('Set-Cookie')[-1].split(';')[0]
        status, body, _ = yield self.get(VIEW + '?range=all', cookie=cookie)
        self.assertEqual(status, 200, body)
        self.assertEqual(figures(body, 'duration'), {'beta': 1})
        status, body, _ = yield self.get(test_page, cookie=cookie)
        self.assertEqual(status, 200, body)
        self.assertIn('<h1>Test <code>t</code> on beta, all</h1>', body)
        yield self.tested_master.shutdown()


def report_old_row(build):
    import time
    from tests.www_master import oldBuildRow
    return oldBuildRow('beta', 9000, 42.0, time.time() - 10 * 86400)


class PageEscapingTest(unittest.TestCase):
    """Names from the store reach the HTML as text (the renderer on a store)."""

    def test_every_name_is_escaped(self):
        import os
        import tempfile
        import time

        from buildbot_stats.outcomes import FLAKY
        from buildbot_stats.outcomes import PASSED
        from buildbot_stats.outcomes import TestRun
        from buildbot_stats.reading import changes
        from buildbot_stats.storage.sqlite.values import encodeRow
        from buildbot_stats.storage.sqlite.writer import StoreWriter
        from buildbot_stats.www import page

        name, t = '<script>alert(1)</script>', time.time() - 3600
        base = {'builder_name': name}
        path = os.path.join(tempfile.mkdtemp(), 'stats.sqlite')
        writer = StoreWriter(5.0)
        self.addCleanup(writer.close)
        writer.write(path, [
            encodeRow(f'{name}-build-times', dict(base, build_number='1'), {'duration': 2.0}, t),
            encodeRow(f'{name}-build-times', dict(base, build_number='2'), {'duration': 3.0},
                      t + 60),
            encodeRow('builds', dict(base, result='failure'), {'build_number': 1}, t),
            encodeRow('build_requests', base, {'queue_time': 1.0, 'build_number': 1}, t),
            encodeRow('steps', dict(base, step_name='<b>step'), {'duration': 1.0}, t),
            encodeRow('tests', base, {'passed': 3, 'failed': 1, 'skipped': 0}, t),
            encodeRow(name + '-<img src=x>', dict(base, build_number='1'), {'<i>field': 1.0},
                      t)] + [
            # the change points kept (docs/regressions.rst), through the v3 layout
            encodeRow(changes.CHANGE_POINTS, changes.changeTags(record),
                      changes.changeFields(record), record['time'])
            for record in (dict(
                time=t + 60, builder=name, series=series, direction='up', build_number=2,
                last_build_number=1, before=2.0, after=3.0, size=0.5, confidence=0.9999,
                worse=True, withdrawn=False, revision='<q-rev>', branch='<q-branch>',
                url=None, authors=['<q-author>'], comments=['<q-comment>'], changes=1,
                found_at=t) for series in ('step:<b>step', 'duration'))])
        # the per-test history: a test flaky in build 1 (failed, then passed on a rerun)
        writer.write(path, [], tests=[
            (TestRun(name, n, n, t + 60 * (n - 1), revision='<u>'),
             [(name + '.t', FLAKY if n == 1 else PASSED, 0.5), ('<img src=y>', PASSED, 1.0)])
            for n in (1, 2)])
        with openStore(path) as reader:
            text = page.view(reader, name, '7d', time.time() - 7 * 86400, None, {name: 3},
                             '../../../', set(), '<store>', time.time())
        for raw in ('<script', '<img', '<b>', '<i>', '<q-'):
            self.assertNotIn(raw, text)
        # the change: in the table, and where it began on the builder's duration chart
        self.assertIn("<td>step &#x27;&lt;b&gt;step&#x27;</td>", text)
        self.assertIn('<title>&lt;script&gt;alert(1)&lt;/script&gt;: build duration +50% '
                      'slower (2.00s -&gt; 3.00s) since build #2, revision &lt;q-rev&gt;</title>',
                      text)
        self.assertIn('&lt;script&gt;alert(1)&lt;/script&gt; build #1: duration 2.00s', text)
        self.assertIn('<option value="&lt;script&gt;alert(1)&lt;/script&gt;" selected>', text)
        self.assertIn('href="view?range=7d&amp;builder=%3Cscript%3Ealert%281%29%3C%2Fscript%3E"',
                      text)
        self.assertIn('href="../../../#/builders/3/builds/1"', text)
        self.assertIn('&lt;b&gt;step', text)
        self.assertIn('&lt;i&gt;field', text)
        # a test's name, in the tables and in the link to its history
        self.assertIn('title="&lt;script&gt;alert(1)&lt;/script&gt;.t">'
                      '&lt;script&gt;alert(1)&lt;/script&gt;.t</a>', text)
        self.assertIn('href="test?builder=%3Cscript%3Ealert%281%29%3C%2Fscript%3E&amp;'
                      'test=%3Cimg+src%3Dy%3E&amp;range=7d"', text)


class DashboardConfigTest(unittest.TestCase):
    """statsDashboard(...) checks its arguments as buildbot checkconfig reports them."""

    def assertConfigError(self, needle, **kwargs):
        from buildbot.config.errors import ConfigErrors
        from buildbot.config.errors import capture_config_errors

        from buildbot_stats import stats

        with self.assertRaises(ConfigErrors) as cm:
            with capture_config_errors(raise_on_error=True):
                stats.statsDashboard(**kwargs)
        self.assertTrue(any(needle in e for e in cm.exception.errors), cm.exception.errors)

    def test_bad_arguments_are_named(self):
        self.assertConfigError("default_range must be one of 24h, 7d, 30d, all, got '1y'",
                               default_range='1y')
        self.assertConfigError("name must be a path segment, got 'a/b'", name='a/b')
        self.assertConfigError("give store or influxdb, not both", store='s.sqlite',
                               influxdb={'url': 'http://localhost:8086', 'db': 'b'})
        self.assertConfigError("influxdb: url must be an http:// or https:// URL, got "
                               "'localhost'", influxdb={'url': 'localhost', 'db': 'b'})
        self.assertConfigError("influxdb: unknown key 'database'",
                               influxdb={'url': 'http://h:8086', 'db': 'b', 'database': 'x'})

    def test_the_entry(self):
        from buildbot_stats import stats

        entry = stats.statsDashboard(caption='Stats', order=3)
        self.assertEqual({k: v for k, v in entry.items() if k != 'app'},
                         {'name': 'stats', 'caption': 'Stats', 'order': 3,
                          'icon': 'FaChartLine'})
        self.assertTrue(callable(entry['app']))
