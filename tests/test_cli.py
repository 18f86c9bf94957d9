"""buildbot-stats report and export on a real store, the CLI's error paths (run as the
installed console script: one line on stderr, no traceback, non-zero exit), and --help."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys

from twisted.internet import defer
from twisted.trial import unittest

from buildbot_stats import stats
from buildbot_stats.cli import main as cli_main
from buildbot_stats.cli import report
from buildbot_stats.cli.common import CliError
from buildbot_stats.cli.common import parseTime
from buildbot_stats.cli.common import timeRange

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z


def command():
    """The installed console script (next to this Python), else the module."""
    script = os.path.join(os.path.dirname(sys.executable), 'buildbot-stats')
    if os.path.exists(script):
        return [script]
    return [sys.executable, '-m', 'buildbot_stats.cli.main']


def runCli(*args, cwd=None):
    return subprocess.run(command() + list(args), capture_output=True, text=True, cwd=cwd,
                          timeout=120)


@defer.inlineCallbacks
def makeStore(path):
    """alpha: 6 builds, durations 10..15 s, one a minute; beta: 2 builds; a property series
    and a data series with a nested and a null field."""
    svc = stats.SQLiteStorageService(path)
    yield svc.startService()
    for i in range(6):
        tags = {'builder_name': 'alpha', 'build_number': str(i + 1)}
        svc.postStatsValue({'duration': 10.0 + i}, 'alpha-build-times', tags,
                           timestamp=T0 + 60 * i)
        svc.postStatsValue({'start-time': '2023-11-14T22:13:20'}, 'alpha-build-times', tags,
                           timestamp=T0 + 60 * i - 10 + 1e-6)
        svc.postStatsValue({'name': 'warnings', 'value': 6 - i}, 'alpha-warnings', tags,
                           timestamp=T0 + 60 * i + 2e-6)
    for i in range(2):
        tags = {'builder_name': 'beta', 'build_number': str(i + 1)}
        svc.postStatsValue({'duration': 100.0}, 'beta-build-times', tags, timestamp=T0 + i)
        svc.postStatsValue({'percent': 80.5 + i, 'detail': {'files': 3}, 'note': None},
                           'beta-coverage', tags, timestamp=T0 + i + 0.5)
    yield svc.stopService()


class StoreTestBase(unittest.TestCase):
    @defer.inlineCallbacks
    def setUp(self):
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.store = os.path.join(self.dir, 'stats.sqlite')
        yield makeStore(self.store)

    def main(self, *argv):
        out = io.StringIO()
        status = cli_main.main(list(argv), out=out)
        return status, out.getvalue()


class ReportTest(StoreTestBase):
    def test_terminal_summary(self):
        status, out = self.main('report', self.store, '--no-html')
        self.assertEqual(status, 0)
        lines = out.splitlines()
        self.assertEqual(lines[0].split(), ['builder', 'builds', 'median', 'p90', 'last',
                                            'trend'])
        # alpha: 10..15 s: median 12.5, p90 (nearest rank) 15, fitted 10 to 15 s = +50 %
        self.assertEqual(lines[2].split(),
                         ['alpha', '6', '12.50s', '15.00s', '15.00s', '+50%', 'slower'])
        self.assertEqual(lines[3].split(),
                         ['beta', '2', '1.7m', '1.7m', '1.7m', 'too', 'few', 'builds'])
        # the custom series: the page's panel, one row per numeric field
        custom = lines[lines.index("Custom series:") + 3:]
        self.assertEqual(custom[0].split(), ['alpha-warnings', 'value', '6', '3.5', '1', '6'])
        self.assertEqual(custom[1].split(), ['beta-coverage', 'percent', '2', '81', '80.5',
                                             '81.5'])
        self.assertEqual(lines[-1].split(';')[0], "8 builds of 2 builders")
        self.assertFalse(os.path.exists(os.path.join(self.dir, 'stats-report.html')))

    def test_html_report_has_a_chart_per_builder_and_series_and_is_offline(self):
        status, out = self.main('report', self.store)
        self.assertEqual(status, 0)
        target = os.path.join(self.dir, 'stats-report.html')
        self.assertIn(f"HTML report: {target}", out)
        with open(target, encoding='utf-8') as f:
            text = f.read()
        figures = re.findall(r'<figure class="chart" data-kind="(\w+)" data-name="([^"]+)"',
                             text)
        self.assertEqual(figures, [('duration', 'alpha'), ('duration', 'beta'),
                                   ('series', 'alpha-warnings'), ('series', 'beta-coverage')])
        self.assertEqual(text.count('<svg'), 4)
        # self-contained: no script, no stylesheet or image fetched from anywhere
        self.assertNotIn('<script', text)
        self.assertEqual(re.findall(r'(?:src|href)=', text), [])
        self.assertEqual(set(re.findall(r'https?://[^"\s]+', text)),
                         {'http://www.w3.org/2000/svg'})
        # every duration of alpha is a point with its value in the hover text
        alpha = text.split('data-name="alpha"')[1].split('</figure>')[0]
        self.assertEqual(re.findall(r'<title>alpha build #\d: duration ([\d.]+)s at', alpha),
                         ['10.00', '11.00', '12.00', '13.00', '14.00', '15.00'])
        coverage = text.split('data-name="beta-coverage"')[1].split('</figure>')[0]
        self.assertEqual(re.findall(r'data-label="(\w+)"', coverage), ['percent'])

    def test_html_path_option_and_unwritable_target(self):
        target = os.path.join(self.dir, 'r.html')
        status, _ = self.main('report', self.store, '--html', target)
        self.assertEqual(status, 0)
        self.assertTrue(os.path.getsize(target) > 1000)
        with report.openStoreOrFail(self.store) as reader:
            data = report.collect(reader)
        with self.assertRaises(CliError):
            report.writeHtml(data, os.path.join(self.dir, 'no', 'such', 'dir.html'), self.store)


class ExportTest(StoreTestBase):
    def test_csv_one_row_per_field(self):
        status, out = self.main('export', self.store, '--series', 'beta-coverage')
        self.assertEqual(status, 0)
        rows = list(csv.DictReader(io.StringIO(out)))
        self.assertEqual(
            [(r['time'], r['series'], r['builder_name'], r['build_number'], r['field'],
              r['value']) for r in rows[:3]],
            [('2023-11-14T22:13:20.500000+00:00', 'beta-coverage', 'beta', '1', 'percent',
              '80.5'),
             ('2023-11-14T22:13:20.500000+00:00', 'beta-coverage', 'beta', '1', 'detail',
              '{"files": 3}'),
             ('2023-11-14T22:13:20.500000+00:00', 'beta-coverage', 'beta', '1', 'note', '')])
        self.assertEqual(len(rows), 6)

    def test_jsonl_with_time_range_and_glob(self):
        status, out = self.main('export', self.store, '-f', 'jsonl', '-s', 'alpha-*',
                                '--start', str(T0 + 60), '--end', '2023-11-14T22:16:20')
        self.assertEqual(status, 0)
        points = [json.loads(line) for line in out.splitlines()]
        # minutes 1 and 2 (the end is excluded); start-time points are 10 s earlier, so
        # builds 3 and 4 have theirs in the range
        self.assertEqual(sorted((p['series'], p['tags']['build_number'],
                                 sorted(p['fields'])) for p in points),
                         [('alpha-build-times', '2', ['duration']),
                          ('alpha-build-times', '3', ['duration']),
                          ('alpha-build-times', '3', ['start-time']),
                          ('alpha-build-times', '4', ['start-time']),
                          ('alpha-warnings', '2', ['name', 'value']),
                          ('alpha-warnings', '3', ['name', 'value'])])
        self.assertEqual(points[0]['timestamp'], T0 + 60)

    def test_line_protocol_to_a_file(self):
        target = os.path.join(self.dir, 'out.lp')
        result = runCli('export', self.store, '--format', 'line', '-s', 'beta-*', '-o', target)
        self.assertEqual(result.returncode, 0, result.stderr)
        with open(target) as f:
            lines = f.read().splitlines()
        self.assertEqual(lines[0],
                         'beta-build-times,build_number=1,builder_name=beta duration=100.0 '
                         '1700000000000000000')
        self.assertTrue(lines[1].startswith(
            'beta-coverage,build_number=1,builder_name=beta percent=80.5,'), lines[1])
        self.assertTrue(lines[1].endswith(' 1700000000500000000'), lines[1])
        self.assertEqual(len(lines), 4)
        # the null field cannot be written in line protocol: left out, and said so
        self.assertIn("exported 4 points of 2 series", result.stderr)
        self.assertIn("2 field or tag left out (none)", result.stderr)

    def test_trend(self):
        self.assertEqual(report.trend([2, 2, 2]), (None, 'too few builds'))
        self.assertEqual(report.trend([3, 2, 2, 2, 2, 2, 2, 2])[1], 'steady')
        self.assertEqual(report.trend([2, 2, 3, 2, 2, 2, 3, 2, 2, 2])[1], 'steady')
        # the fitted line goes from 10 to 4: 60 % faster
        ratio, word = report.trend([10, 8, 6, 4])
        self.assertEqual((ratio, word), (-0.6, 'faster'))
        # whole seconds (Buildbot's build times): a change of one second is noise (it
        # was "-100% faster")
        self.assertEqual(report.trend([2, 2, 2, 1, 2, 1, 1, 1, 1, 1]), (None, 'steady'))
        self.assertEqual(report.trend([1, 1, 1, 2, 1, 2, 2, 2, 2, 2]), (None, 'steady'))
        # fractions have no such resolution; faster is never -100 % or beyond (relative to
        # the median, this one was -128 %)
        ratio, word = report.trend([1.2, 1.3, 1.1, 0.6, 0.5, 0.55, 0.6, 0.5])
        self.assertEqual(word, 'faster')
        self.assertAlmostEqual(ratio, -0.626, places=3)
        self.assertEqual(report.trend([20, 18, 16, 14, 12, 10]), (-0.5, 'faster'))
        self.assertEqual(report.trend([2, 2, 2, 3, 2, 3, 3, 3, 4, 3])[1], 'slower')

    def test_time_parsing(self):
        self.assertEqual(parseTime('2023-11-14T22:13:20', '--start'), T0)
        self.assertEqual(parseTime('2023-11-14T23:13:20+01:00', '--start'), T0)
        self.assertEqual(parseTime('1700000000.5', '--start'), T0 + 0.5)
        self.assertEqual(parseTime('2d', '--start', now=T0), T0 - 2 * 86400)
        self.assertEqual(parseTime('90m', '--start', now=T0), T0 - 5400)
        # an age too large for a float ('9...9d': it was an internal error, TypeError)
        for bad in ('yesterday', '7x', 'nan', '', '99999999999999', '-99999999999999',
                    '9999999w', '1e400', '9' * 400 + 'd'):
            with self.assertRaises(CliError):
                parseTime(bad, '--start')
        # the spelling the user wrote is the one the message names
        parser = cli_main.makeParser()
        for since, until in (('--start', '--end'), ('--since', '--until')):
            args = parser.parse_args(['export', 'x', since, '2d', until, '3d'])
            with self.assertRaises(CliError) as caught:
                timeRange(args)
            self.assertIn(f"{since} 2d (", str(caught.exception))
            self.assertIn(f"is not before {until} 3d (", str(caught.exception))


class ErrorPathTest(StoreTestBase):
    """Each mistake: exit status 2, one line on stderr naming the problem, no traceback."""

    def assertOneLineError(self, result, *words):
        self.assertEqual(result.returncode, 2, result.stdout + result.stderr)
        self.assertNotIn('Traceback', result.stderr)
        lines = result.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, result.stderr)
        self.assertTrue(lines[0].startswith('buildbot-stats'), lines[0])
        for w in words:
            self.assertIn(w, lines[0])

    def test_store_problems(self):
        text = os.path.join(self.dir, 'notes.txt')
        with open(text, 'w') as f:
            f.write("hello")
        other = os.path.join(self.dir, 'other.sqlite')
        conn = sqlite3.connect(other)
        conn.execute("CREATE TABLE builds (id INTEGER)")
        conn.close()
        for cmd in ('report', 'export'):
            self.assertOneLineError(runCli(cmd, os.path.join(self.dir, 'missing.sqlite')),
                                    'missing.sqlite: no such file')
            self.assertOneLineError(runCli(cmd, text), 'not an SQLite file')
            self.assertOneLineError(runCli(cmd, other), 'not a buildbot_stats store')
            self.assertOneLineError(runCli(cmd, self.dir), 'is a directory')

    def test_unknown_series_and_bad_times(self):
        self.assertOneLineError(runCli('export', self.store, '-s', 'gamma-*'),
                                "unknown series 'gamma-*'", 'alpha-build-times')
        self.assertOneLineError(runCli('export', self.store, '--start', 'last tuesday'),
                                "bad time for --start: 'last tuesday'")
        self.assertOneLineError(runCli('export', self.store, '--start', '1d', '--end', '2d'),
                                'bad time range')
        self.assertOneLineError(runCli('export', self.store, '--format', 'xml'),
                                "invalid choice: 'xml'")

    def test_usage_errors(self):
        self.assertOneLineError(runCli(), 'required')
        self.assertOneLineError(runCli('frobnicate'), "invalid choice: 'frobnicate'")
        self.assertOneLineError(runCli('report'), 'STORE')
        self.assertOneLineError(runCli('demo', '--builds', '0'), 'at least 1')
        self.assertOneLineError(runCli('demo', '--dir', self.store), 'is a file')
        self.assertOneLineError(runCli('demo', '--dir', self.dir), 'not a previous demo')

    def test_help_for_every_command(self):
        for args, words in [
            ([], ['demo', 'report', 'export']),
            (['demo'], ['--dir', '--builds', '--timeout', '--no-progress']),
            (['report'], ['STORE', '--html', '--no-html']),
            (['export'], ['--format', '--series', '--since', '--start', '--until', '--end',
                          '--output']),
            (['backfill'], ['MASTER_DIR', '--since', '--start', '--until', '--end',
                            '--builder', '--dry-run']),
        ]:
            result = runCli(*args, '--help')
            self.assertEqual(result.returncode, 0, result.stderr)
            self.assertEqual(result.stderr, '')
            for w in words:
                self.assertIn(w, result.stdout)


class DemoTest(unittest.TestCase):
    """The demo for real: master and worker in one process, real builds, the store, the
    report, and nothing left running."""

    timeout = 300

    def test_demo_runs_the_main_job(self):
        workdir = os.path.abspath(self.mktemp())
        result = runCli('demo', '--dir', workdir, '--builds', '6', cwd=os.path.dirname(workdir))
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertEqual(result.stderr, '')
        out = result.stdout
        self.assertRegex(out, r"\n6 builds in \d+\.\d s \(0 failed\)\.\nMaster and worker "
                         r"stopped\.\n")
        # not a TTY: one plain line per build
        self.assertEqual(len(re.findall(r'^  build \d/6: (compile|test|docs) #\d', out, re.M)),
                         6)

        store = os.path.join(workdir, 'master', 'stats.sqlite')
        conn = sqlite3.connect(store)
        # the documented view with the rows of schema version 2
        counts = dict(conn.execute("SELECT series, COUNT(*) FROM points_json GROUP BY series"))
        builds = conn.execute(
            "SELECT builder, COUNT(DISTINCT build_number) FROM points_json"
            " WHERE series = builder || '-build-times' GROUP BY builder").fetchall()
        coverage = [json.loads(r[0]) for r in conn.execute(
            "SELECT fields FROM points_json WHERE series = 'test-coverage'")]
        warnings = [r[0] for r in conn.execute(
            "SELECT json_extract(fields, '$.value') FROM points_json"
            " WHERE series = 'compile-warnings'")]
        conn.close()
        # 2 builds per builder; 3 build-time points each; the properties and the data
        self.assertEqual(sorted(builds), [('compile', 2), ('docs', 2), ('test', 2)])
        self.assertEqual(counts, {
            'compile-build-times': 6, 'docs-build-times': 6, 'test-build-times': 6,
            'compile-warnings': 2, 'test-tests_run': 2, 'docs-pages': 2, 'test-coverage': 2,
        })
        for c in coverage:
            self.assertEqual(sorted(c), ['lines', 'percent'])
            self.assertTrue(60 <= c['percent'] <= 100, c)
        for w in warnings:
            self.assertIsInstance(w, int)  # counted from the worker's real output
            self.assertTrue(0 <= w <= 20, w)
        self.assertIn("6 builds of 3 builders", out)

        html = os.path.join(workdir, 'master', 'stats-report.html')
        self.assertIn(f"HTML report: {html}", out)
        with open(html, encoding='utf-8') as f:
            text = f.read()
        figures = re.findall(r'<figure class="chart" data-kind="(\w+)" data-name="([^"]+)"',
                             text)
        # coverage's percent and lines on their own axes
        self.assertEqual(figures, [
            ('duration', 'compile'), ('duration', 'docs'), ('duration', 'test'),
            ('series', 'compile-warnings'), ('series', 'docs-pages'),
            ('series', 'test-coverage (%)'), ('series', 'test-coverage (lines)'),
            ('series', 'test-tests_run')])
        self.assertEqual(text.count('<svg'), 8)
        # the master.cfg it wrote is the example to copy
        with open(os.path.join(workdir, 'master', 'master.cfg')) as f:
            cfg = f.read()
        for needle in ('from buildbot_stats import stats', 'stats.StatsService(',
                       'stats.SQLiteStorageService(', 'stats.StatsStepMixin',
                       "self.yieldMetricsValue('coverage'"):
            self.assertIn(needle, cfg)
        # nothing left running: no process has its working directory in the demo
        self.assertEqual(processesUnder(workdir), [])
        # a second demo in the same directory replaces the first
        again = runCli('demo', '--dir', workdir, '--builds', '3')
        self.assertEqual(again.returncode, 0, again.stdout + again.stderr)
        conn = sqlite3.connect(store)
        self.assertEqual(conn.execute("SELECT COUNT(DISTINCT builder || build_number)"
                                      " FROM points_json").fetchone()[0], 3)
        conn.close()
        shutil.rmtree(workdir)


def processesUnder(path):
    found = []
    for pid in os.listdir('/proc'):
        if not pid.isdigit():
            continue
        try:
            cwd = os.readlink(f'/proc/{pid}/cwd')
        except OSError:
            continue
        if cwd == path or cwd.startswith(path + os.sep):
            found.append(int(pid))
    return found


class DemoServeTest(unittest.TestCase):
    """``demo --serve``: the master stays up with the Statistics page until Ctrl-C."""

    timeout = 300

    def test_serve_keeps_the_page_up_until_ctrl_c(self):
        import signal
        import subprocess
        import sys
        import urllib.request

        try:
            import buildbot_wsgi_dashboards  # noqa: F401
        except ImportError:
            raise unittest.SkipTest("needs pip install -e '.[www]'") from None
        workdir = os.path.abspath(self.mktemp())
        import time

        started = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, '-m', 'buildbot_stats.cli.main', 'demo', '--dir', workdir,
             '--builds', '3', '--serve'], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, cwd=os.path.dirname(workdir))
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        lines = []
        for line in proc.stdout:  # ends when the process does: no wall-clock wait
            lines.append(line)
            if line.startswith('Statistics page: '):
                break
        serving = time.monotonic()
        url = lines[-1].split(': ', 1)[1].strip()
        self.assertRegex(url, r'^http://127\.0\.0\.1:\d+/#/stats$')
        view = url.replace('#/stats', 'plugins/wsgi_dashboards/stats/view?range=all')
        with urllib.request.urlopen(view, timeout=60) as r:
            body = r.read().decode('utf-8')
        # one marker per build, 3 builders; the demo's captures fill the panels
        self.assertEqual(len(re.findall(r'<g class="line" data-label="[a-z]+ builds" '
                                        r'data-style="points"><a ', body)), 3)
        self.assertIn('data-name="test-coverage (%)"', body)
        self.assertNotIn('data-panel="queue"', body)
        # the time the builds took, said before the master serves the page (it once
        # counted the serving too)
        building = float(re.search(r'\n3 builds in ([\d.]+) s \(0 failed\)\.\n',
                                   ''.join(lines)).group(1))
        self.assertLess(building, serving - started)
        self.assertIn(f"HTML report: {workdir}/master/stats-report.html", ''.join(lines))
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
        self.assertEqual(proc.returncode, 0, err)
        self.assertEqual(err, '')  # the normal end: not "interrupted"
        self.assertTrue(out.startswith("Stopping the master and the worker.\n"), out)
        self.assertEqual(processesUnder(workdir), [])
        # every point of the 3 builds is kept (none taken for a build cut off)
        conn = sqlite3.connect(os.path.join(workdir, 'master', 'stats.sqlite'))
        self.assertEqual(conn.execute("SELECT COUNT(*) FROM points_json WHERE series = 'builds'")
                         .fetchone(), (3,))
        conn.close()
        shutil.rmtree(workdir)
