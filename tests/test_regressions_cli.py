"""``buildbot-stats regressions``: an SQLite store and a real InfluxDB 1.x holding series of
known change points; exit status 1 for a change for the worse since --since, 0 without, 2
for a mistake; what a master kept (revision, changes) attributes the changes found."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time

import numpy as np

from twisted.trial import unittest
from twisted.trial.unittest import SkipTest

from benchmarks.regressions import noisy
from buildbot_stats.analysis import changepoints
from buildbot_stats.cli import main as cli_main
from buildbot_stats.delivery.lineprotocol import LineEncoder
from buildbot_stats.point import to_epoch_ns
from buildbot_stats.reading import changes as kept_changes
from buildbot_stats.storage.sqlite.values import encodeRow
from tests.servers import INFLUXD
from tests.servers import InfluxDB1Server
from tests.test_cli import runCli
from tests.test_regressions_unit import Store

T0 = 1_700_000_000.0  # a build a minute from T0 + 60


def points():
    """``[(series, tags, fields, time)]``: alpha's builds 25% slower from build 121, its
    step 'test' 40% faster from build 151, beta steady, a custom series of alpha whose
    coverage falls from build 101."""
    rng = np.random.default_rng(11)
    alpha = noisy([(120, 300.0), (80, 375.0)], rng)
    test = noisy([(150, 100.0), (50, 60.0)], rng)
    beta = noisy([(200, 40.0)], rng)
    coverage = np.concatenate([80 + rng.normal(0, 0.3, 100), 70 + rng.normal(0, 0.3, 100)])
    out = []
    for i in range(200):
        number = i + 1
        when = T0 + 60 * number
        a = {'builder_name': 'alpha', 'build_number': str(number)}
        b = {'builder_name': 'beta', 'build_number': str(number)}
        out.append(('alpha-build-times', a, {'duration': float(alpha[i])}, when))
        out.append(('steps', dict(a, step_name='test'),
                    {'duration': float(test[i]), 'build_number': number}, when - 1))
        out.append(('alpha-coverage', a, {'percent': float(coverage[i])}, when - 2))
        out.append(('beta-build-times', b, {'duration': float(beta[i])}, when + 1))
    return out


def keptChange():
    """What a master keeps of alpha's slowdown (attributed from its database)."""
    record = dict(time=T0 + 60 * 121, builder='alpha', series='duration', direction='up',
                  build_number=121, last_build_number=120, before=300.0, after=375.0,
                  size=0.25, confidence=0.9999, worse=True, withdrawn=False,
                  revision='abc123', branch='main', url='http://ci/#/builders/1/builds/121',
                  authors=['alice'], comments=['Slower, on purpose'], changes=1,
                  found_at=T0, summary='s')
    return (kept_changes.CHANGE_POINTS, kept_changes.changeTags(record),
            kept_changes.changeFields(record), record['time'])


class RegressionsCommand(unittest.TestCase):

    def setUp(self):
        if not changepoints.available():
            raise SkipTest("needs apache-otava (pip install 'buildbot_stats[regressions]')")
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.store = os.path.join(self.dir, 'stats.sqlite')
        Store(self.store).write([encodeRow(*p) for p in points() + [keptChange()]])

    def main(self, *argv):
        out = io.StringIO()
        status = cli_main.main(list(argv), out=out)
        return status, out.getvalue()

    def mainErr(self, *argv):
        """``(status, stdout, stderr)`` of the command run in this process."""
        err = io.StringIO()
        self.patch(cli_main.sys, 'stderr', err)
        status, out = self.main(*argv)
        return status, out, err.getvalue()

    def test_text(self):
        status, out = self.main('regressions', self.store)
        self.assertEqual(status, 1, out)
        lines = out.splitlines()
        self.assertEqual(lines[0], "3 changes in 4 series (1 for the worse), newest first.")
        # newest first: the step (151), alpha (121, attributed as the master kept it), the
        # coverage (101: a fall of a series where up is worse by default: better)
        self.assertRegex(lines[2], r"^2023-11-15T00:4\d:\d\d\+00:00  alpha: step 'test' "
                                   r"-4\d% faster \(1\.\dm -> [56]\d\.\d\ds\) since build "
                                   r"#15\d$")
        self.assertRegex(lines[5], r"alpha: build duration \+2\d% slower \(.*\) since build "
                                   r"#12\d \(worse\)$")
        self.assertEqual(lines[6:9], [
            "    revision abc123, branch main, 1 change by alice, confidence >99.99%",
            "      - Slower, on purpose", "    http://ci/#/builders/1/builds/121"])
        self.assertRegex(out, r"alpha: coverage.percent -1[23]% better \((79|80)\.?\d* -> "
                              r"(69|70)\.?\d*\) since build #10[01]\n")

    def test_json_since_builder_series_and_exit_status(self):
        status, out = self.main('regressions', self.store, '--format', 'json')
        self.assertEqual(status, 1)
        answer = json.loads(out)
        self.assertEqual((answer['series_analysed'], answer['worse']), (4, 1))
        slowdown = [c for c in answer['changes'] if c['series'] == 'duration'][0]
        self.assertEqual({k: slowdown[k] for k in ('builder', 'direction', 'worse', 'revision',
                                                   'authors', 'changes')},
                         {'builder': 'alpha', 'direction': 'up', 'worse': True,
                          'revision': 'abc123', 'authors': ['alice'], 'changes': 1})
        self.assertLessEqual(abs(slowdown['build_number'] - 121), 2)
        self.assertLessEqual(abs(slowdown['size'] - 0.25), 0.05)
        # since after the slowdown: only the step's speed-up, for the better: 0
        since = str(T0 + 60 * 140)
        status, out = self.main('regressions', self.store, '--since', since, '--format', 'json')
        self.assertEqual((status, [c['series'] for c in json.loads(out)['changes']]),
                         (0, ['step:test']))
        self.assertEqual(self.main('regressions', self.store, '--builder', 'beta')[0], 0)
        status, out = self.main('regressions', self.store, '--series', 'step:*')
        self.assertEqual(status, 0)
        self.assertTrue(out.startswith("1 change in 1 series (0 for the worse)"))
        # coverage up is better: its fall is for the worse
        status, out = self.main('regressions', self.store, '--series', 'coverage.*',
                                '--higher-is-better', 'coverage.*')
        self.assertEqual(status, 1)
        self.assertRegex(out, r"coverage.percent -1[23]% worse")
        # a larger minimum size: the 12 % fall is no change
        status, out = self.main('regressions', self.store, '--series', 'coverage.*',
                                '--min-size', '15')
        self.assertEqual((status, out.splitlines()[0]),
                         (0, "0 changes in 1 series (0 for the worse), newest first."))

    def test_mistakes_are_one_line_and_status_2(self):
        for args, words in [
            (['--builder', 'gamma'], "unknown builder 'gamma' (the store has: alpha, beta)"),
            (['--series', 'nope*'], "no series matches 'nope*' (the store has: coverage.percent,"
                                    " duration, step:test)"),
            (['--min-size', '0'], "--min-size must be a percentage above 0, got 0"),
            (['--since', 'yesterday'], "bad time for --since: 'yesterday'"),
        ]:
            status, out, err = self.mainErr('regressions', self.store, *args)
            self.assertEqual(status, 2, (args, err))
            self.assertEqual(out, '')
            self.assertEqual(err.count('\n'), 1, err)
            self.assertIn(words, err)
        for store, words in [
            (os.path.join(self.dir, 'none.sqlite'), 'none.sqlite: no such file'),
            ('http://127.0.0.1:8086/', 'an InfluxDB URL names its database as its path'),
            ('http://u:secret@127.0.0.1:8086/db', 'give the InfluxDB credentials in'),
        ]:
            status, out, err = self.mainErr('regressions', store)
            self.assertEqual(status, 2, err)
            self.assertIn(words, err)
            self.assertNotIn('secret', err)

    def test_without_otava_says_what_to_install(self):
        self.patch(changepoints, 'TTestSignificanceTester', None)
        status, out, err = self.mainErr('regressions', self.store)
        self.assertEqual((status, out), (2, ''))
        self.assertEqual(err, "buildbot-stats regressions: error: change detection "
                         "needs the apache-otava package: pip install "
                         "'buildbot_stats[regressions]'\n")


class QuickStart(unittest.TestCase):
    def test_the_command_line_starts_without_the_analysis_or_buildbot(self):
        # every command's parser is made at each start: the regressions command's must not
        # bring NumPy, Otava or Buildbot along (about 1.4 s of CPU; the others start in 0.1)
        code = ("import sys; from buildbot_stats.cli.main import makeParser; makeParser(); "
                "print(sorted(m for m in ('buildbot', 'numpy', 'otava', 'twisted.internet."
                "reactor', 'buildbot_stats.regressions') if m in sys.modules))")
        result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                                timeout=60, check=True)
        self.assertEqual(result.stdout, "[]\n", result.stderr)


class RegressionsOnInfluxDB(unittest.TestCase):
    """The same store in InfluxDB 1.x, read over HTTP: the same answer."""

    def setUp(self):
        if not changepoints.available():
            raise SkipTest("needs apache-otava (pip install 'buildbot_stats[regressions]')")
        if not os.path.exists(INFLUXD):
            raise SkipTest(f"needs {INFLUXD} (Debian package influxdb)")
        self.influx = InfluxDB1Server.shared()
        self.db = f"r{int(time.time() * 1000) % 10**9}"
        self.influx.create_database(self.db)
        encoder = LineEncoder()
        lines = [encoder.encode(s, f, t, to_epoch_ns(when))[0]
                 for s, t, f, when in points() + [keptChange()]]
        self.influx.write_lines(self.db, lines)

    def test_same_answer_as_sqlite(self):
        store = os.path.join(os.path.abspath(self.mktemp()), 'stats.sqlite')
        os.makedirs(os.path.dirname(store))
        Store(store).write([encodeRow(*p) for p in points() + [keptChange()]])
        answers = []
        # the installed command once (the others run in this process)
        result = runCli('regressions', f"{self.influx.url}/{self.db}", '--format', 'json')
        self.assertEqual(result.returncode, 1, result.stderr)
        answers.append(json.loads(result.stdout))
        out = io.StringIO()
        self.assertEqual(cli_main.main(['regressions', store, '--format', 'json'], out=out), 1)
        answers.append(json.loads(out.getvalue()))
        self.assertEqual(answers[0], answers[1])
        self.assertEqual(len(answers[1]['changes']), 3)
