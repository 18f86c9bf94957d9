"""The per-test history in the stores: the SQLite store's tables (written by the backend's
writer thread, replaced when a build is written again, about 15 bytes a result), InfluxDB
(test names as fields: no series per test), and the same answers from both readers."""

from __future__ import annotations

import io
import os
import shutil
import sqlite3
import time

from twisted.internet import defer
from twisted.trial import unittest

from buildbot_stats import stats
from buildbot_stats.cli import main as cli_main
from buildbot_stats.outcomes import FAILED
from buildbot_stats.outcomes import FLAKY
from buildbot_stats.outcomes import PASSED
from buildbot_stats.outcomes import SKIPPED
from buildbot_stats.outcomes import TestRun
from buildbot_stats.reading.influxdb import InfluxReader
from buildbot_stats.reading.sqlite import openStore
from buildbot_stats.storage.sqlite import schema
from buildbot_stats.storage.sqlite import testruns
from buildbot_stats.storage.sqlite.writer import StoreWriter
from tests.servers import InfluxDB1Server

T0 = 1_700_000_000.0
#: issue 19's store written by the schema v2 release
V2_FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures',
                          'store-v2.sqlite')


def sampleBuilds(builds=12, tests=40):
    """``[(TestRun, cases)]`` of two builders: on ``alpha`` one test fails in odd builds,
    one is broken since build 9, one passed on a rerun in build 4, one gets slower from
    build 8 on (0.5 s -> 0.8 s; no duration in build 3), one is skipped; builds 6 and 7 of
    ``alpha`` tested the same revision."""
    out = []
    for b in range(1, builds + 1):
        for builder, offset in (('alpha', 0), ('beta', 30)):
            revision = 'r6' if (builder, b) in (('alpha', 6), ('alpha', 7)) else f"r{b}"
            run = TestRun(builder, b, 100 * b + offset // 30, T0 + 60 * b + offset,
                          revision=revision, buildset=1000 + b, branch='main')
            cases = []
            for i in range(tests):
                name = f"pkg.test_mod.Test.test_{i:03d}"
                outcome, duration = PASSED, 0.01 + i / 10000
                if builder == 'alpha':
                    if i == 1 and b % 2:
                        outcome = FAILED
                    if i == 2 and b >= 9:
                        outcome = FAILED
                    if i == 3 and b == 4:
                        outcome = FLAKY
                    if i == 4:
                        duration = None if b == 3 else 0.5 if b < 8 else 0.8
                    if i == 5:
                        outcome, duration = SKIPPED, None
                cases.append((name, outcome, duration))
            out.append((run, cases))
    return out


class SQLiteStore(unittest.TestCase):
    timeout = 120

    def setUp(self):
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.path = os.path.join(self.dir, 'stats.sqlite')

    @defer.inlineCallbacks
    def started(self, **kwargs):
        svc = stats.SQLiteStorageService(path=self.path, **kwargs)
        yield svc.startService()
        self.addCleanup(lambda: svc.stopService() if svc.running else None)
        return svc

    @defer.inlineCallbacks
    def test_written_read_and_replaced(self):
        svc = yield self.started(flush_interval=0.05)
        builds = sampleBuilds()
        for run, cases in builds:
            svc.postTestResults(run, cases)
        svc.postTestResults(builds[0][0], [])  # nothing to keep: not counted
        self.assertTrue((yield svc.flush(30)))
        n = sum(len(cases) for _, cases in builds)
        self.assertEqual((svc.counters.added, svc.counters.written), (n, n))
        with openStore(self.path) as store:
            runs = store.testRuns()
            self.assertEqual(len(runs), 24)
            alpha = store.testRuns('alpha')
            self.assertEqual([(r.number, r.revision, r.counts) for r in alpha[:4]],
                             [(1, 'r1', (38, 1, 1, 0)), (2, 'r2', (39, 0, 1, 0)),
                              (3, 'r3', (38, 1, 1, 0)), (4, 'r4', (38, 0, 1, 1))])
            history = store.testHistory('alpha', 'pkg.test_mod.Test.test_001')
            self.assertEqual([h['outcome'] for h in history],
                             ['failed', 'passed'] * 6)
            self.assertEqual(history[0]['duration'], 0.0101)
            self.assertEqual(store.testHistory('alpha', 'no.such.test'), [])
            self.assertEqual(store.testHistory('gamma', 'pkg.test_mod.Test.test_001'), [])
            before = store.testsStateKey()
        # a build written again (a backfill) replaces its results: here test_001 passes
        run, cases = builds[0]
        again = [(name, PASSED, d) for name, _, d in cases[:10]]
        svc.postTestResults(run, again)
        self.assertTrue((yield svc.flush(30)))
        with openStore(self.path) as store:
            # the page's kept tables are read again
            self.assertNotEqual(store.testsStateKey(), before)
            self.assertEqual(len(store.testRuns()), 24)
            self.assertEqual(store.testRuns('alpha')[0].counts, (10, 0, 0, 0))
            history = store.testHistory('alpha', 'pkg.test_mod.Test.test_001')
            self.assertEqual(history[0]['outcome'], 'passed')
            self.assertIsNone(store.testHistory('alpha', 'pkg.test_mod.Test.test_030')[0][
                'outcome'])
        conn = sqlite3.connect(self.path)
        self.addCleanup(conn.close)
        self.assertEqual(conn.execute("SELECT COUNT(*) FROM test_results").fetchone()[0],
                         n - 40 + 10)
        self.assertEqual(conn.execute("SELECT COUNT(*) FROM test_names").fetchone()[0], 40)
        # the view for people and spreadsheets
        self.assertEqual(conn.execute(
            "SELECT builder, build_number, name, outcome FROM test_history"
            " WHERE name LIKE '%test_002' AND builder = 'alpha' ORDER BY build_number DESC"
            " LIMIT 2").fetchall(),
            [('alpha', 12, 'pkg.test_mod.Test.test_002', FAILED),
             ('alpha', 11, 'pkg.test_mod.Test.test_002', FAILED)])

    @defer.inlineCallbacks
    def test_answers(self):
        svc = yield self.started(flush_interval=0.05)
        for run, cases in sampleBuilds():
            svc.postTestResults(run, cases)
        self.assertTrue((yield svc.flush(30)))
        with openStore(self.path) as store:
            answers = store.testAnswers()
            self.assertEqual(answers['builds'], 24)
            self.assertEqual(answers['builders'], ['alpha', 'beta'])
            self.assertEqual(answers['tests'], 40)
            flaky = [(r['test'][-8:], r['reasons']) for r in answers['flaky']]
            self.assertEqual(flaky, [
                # hidden failures and same-revision disagreements first
                ('test_001', ['failed and passed on 1 revision', '11 flips']),
                ('test_003', ['1 hidden by a rerun']),
            ])
            failing = [(r['test'][-8:], r['failures'], r['builds']) for r in answers['failing']]
            self.assertEqual(failing, [('test_001', 6, 12), ('test_002', 4, 12),
                                       ('test_003', 1, 12)])
            new = answers['new_failures']
            self.assertEqual([(r['test'][-8:], r['since']['number'], r['builds'],
                               r['passed_before']) for r in new], [('test_002', 9, 4, True)])
            self.assertEqual(answers['slowest'][0]['test'][-8:], 'test_004')
            self.assertEqual({k: answers['slowest'][0][k] for k in ('median', 'max', 'runs')},
                             {'median': 0.5, 'max': 0.8, 'runs': 11})
            # found by change detection at the build it began (build 3 had no duration)
            self.assertEqual(answers['slowing_method'], 'changepoints')
            self.assertEqual([(r['builder'], r['test'][-8:], r['since']['number'], r['before'],
                               r['after'], r['runs']) for r in answers['slowing']],
                             [('alpha', 'test_004', 8, 0.5, 0.8, 11)])
            self.assertGreater(answers['slowing'][0]['confidence'], 0.9999)
            # one builder, a time range
            self.assertEqual(store.flakyTests('beta'), [])
            late = store.testAnswers('alpha', T0 + 60 * 9, None)
            self.assertEqual(late['builds'], 4)
            self.assertEqual([r['test'][-8:] for r in late['failing']],
                             ['test_002', 'test_001'])
            self.assertEqual(store.failingTests(limit=1)[0]['test'][-8:], 'test_001')
            self.assertEqual(len(store.slowestTests(limit=3)), 3)

    @defer.inlineCallbacks
    def test_bytes_per_result(self):
        svc = yield self.started(flush_interval=0.05)
        names = [f"tests.unit.test_module_{i // 50}.TestSomething.test_case_{i}"
                 for i in range(1000)]
        for b in range(100):
            run = TestRun('alpha', b, b, T0 + 60 * b, revision=f"{b:040x}", buildset=b)
            svc.postTestResults(run, [(n, FAILED if (i * 7 + b) % 211 == 0 else PASSED,
                                       0.001 * (i % 300)) for i, n in enumerate(names)])
        self.assertTrue((yield svc.flush(60)))
        yield svc.stopService()
        conn = sqlite3.connect(self.path)
        self.addCleanup(conn.close)
        conn.execute("VACUUM")
        pages = conn.execute("SELECT SUM(pgsize) FROM dbstat WHERE name IN"
                             " ('test_results', 'test_results_failures')").fetchone()[0]
        # the table and its index of failures, per result: the target is 24
        self.assertLess(pages / 100_000, 18)

    def test_v2_store_through_v3_to_v4(self):
        """Issue 19's store of the v2 release gets the lean layout (v3), then the test
        tables (v4): every point kept; read at v3 without per-test results."""
        shutil.copy(V2_FIXTURE, self.path)
        conn = sqlite3.connect(self.path, isolation_level=None)
        self.addCleanup(conn.close)
        points = conn.execute("SELECT COUNT(*) FROM points").fetchone()[0]
        self.assertGreater(points, 0)
        # the readers read v3 and later: a v2 store is upgraded first
        with self.assertRaisesRegex(schema.StoreError, 'rebuild-rollups'):
            openStore(self.path)
        self.assertEqual(schema.migrate(conn, target=3), 2)
        with openStore(self.path) as store:
            self.assertEqual(store.version, 3)
            self.assertEqual(store.testAnswers()['builds'], 0)
            self.assertEqual(store.testHistory('a', 't'), [])
            before = [(p.series, p.tags, p.fields, p.time) for p in store.points()]
        self.assertEqual(len(before), points)
        self.assertEqual(schema.migrate(conn), 3)
        self.assertEqual(schema.fileVersion(conn), schema.SCHEMA_VERSION)
        self.assertEqual(conn.execute("SELECT COUNT(*) FROM test_runs").fetchone()[0], 0)
        with openStore(self.path) as store:
            self.assertEqual([(p.series, p.tags, p.fields, p.time) for p in store.points()],
                             before)

    def test_v2_store_straight_to_v4_by_the_writer(self):
        shutil.copy(V2_FIXTURE, self.path)
        writer = StoreWriter(5.0)
        self.addCleanup(writer.close)
        run, cases = sampleBuilds(builds=2)[0]
        self.assertEqual(writer.write(self.path, [], tests=[(run, cases)]), len(cases))
        with openStore(self.path) as store:
            self.assertEqual(store.version, schema.SCHEMA_VERSION)
            self.assertEqual(len(list(store.points())), self.v2Points())
            self.assertEqual([r.number for r in store.testRuns()], [run.build_number])

    def v2Points(self):
        conn = sqlite3.connect(V2_FIXTURE)
        try:
            return conn.execute("SELECT COUNT(*) FROM points").fetchone()[0]
        finally:
            conn.close()

    def test_retention_deletes_old_test_results_in_batches(self):
        writer = StoreWriter(5.0)
        self.addCleanup(writer.close)
        builds = sampleBuilds(builds=6, tests=40)
        writer.write(self.path, [], tests=builds)
        cutoff = builds[2][0].time + 1  # the first three builds of each builder end before
        old = [(r, c) for r, c in builds if r.time < cutoff]
        conn = writer.conn
        runs, results = testruns.count(conn, round(cutoff * 1e6))
        self.assertEqual((runs, results), (len(old), sum(len(c) for _, c in old)))
        # batches of 15 rows: a run's row goes with its last result, never before
        gone = testruns.deleteBatch(conn, round(cutoff * 1e6), batch=15)
        self.assertEqual(gone, 15)
        with openStore(self.path) as store:
            self.assertEqual(len(store.testRuns()), len(builds))
        while testruns.deleteBatch(conn, round(cutoff * 1e6), batch=15) == 15:
            pass
        self.assertEqual(testruns.count(conn, round(cutoff * 1e6)), (0, 0))
        with openStore(self.path) as store:
            kept = store.testRuns()
            self.assertEqual(sorted((r.builder, r.number) for r in kept),
                             sorted((r.builder, r.build_number) for r, _ in builds
                                    if r.time >= cutoff))
            self.assertEqual(sum(sum(r.counts) for r in kept),
                             sum(len(c) for r, c in builds if r.time >= cutoff))
        self.assertEqual(conn.execute("SELECT COUNT(*) FROM test_results").fetchone()[0],
                         sum(len(c) for r, c in builds if r.time >= cutoff))

    def test_report_shows_the_test_tables(self):
        from buildbot_stats.cli import report

        writer = StoreWriter(5.0)
        self.addCleanup(writer.close)
        writer.write(self.path, [], tests=sampleBuilds())
        with openStore(self.path) as store:
            data = report.collect(store, now=T0 + 3600)
        text = report.terminalSummary(data)
        self.assertIn("Flaky, failing and slow tests:", text)
        lines = [line.split() for line in text.splitlines()]
        # test_001 fails in odd builds (flaky), test_002 since build 9 (failing)
        self.assertIn(['pkg.test_mod.Test.test_001', 'alpha', 'flaky', '6', 'of', '12', 'flip',
                       'rate', '100%'], lines)
        self.assertIn(['pkg.test_mod.Test.test_002', 'alpha', 'failing', '4', 'of', '12',
                       'last', '#12'], lines)
        html = report.renderHtml(data, self.path)
        self.assertIn('<span class="test" title="pkg.test_mod.Test.test_001">', html)
        self.assertNotIn('href="test?', html)

    def test_keep_and_prune_delete_old_test_results(self):
        writer = StoreWriter(5.0)
        self.addCleanup(writer.close)
        builds = sampleBuilds(builds=6, tests=40)
        writer.write(self.path, [], tests=builds)
        newest = max(r.time for r, _ in builds)
        kept = [(r, c) for r, c in builds if r.time >= newest - 120]
        # the master's maintenance with keep=: the same age as the raw points
        while writer.maintain(self.path, newest + 10, keep=130):
            pass
        with openStore(self.path) as store:
            self.assertEqual(len(store.testRuns()), len(kept))
        # prune by hand: a dry run counts, then every result older goes
        out = io.StringIO()
        args = cli_main.makeParser().parse_args(
            ['prune', self.path, '--older-than', '70s', '--dry-run'])
        self.assertEqual(args.func(args, out, now=newest + 10), 0)
        left = [(r, c) for r, c in kept if r.time < newest - 60]
        self.assertIn(f", {sum(len(c) for _, c in left)} test results of {len(left)} builds",
                      out.getvalue())
        writer.close()
        out = io.StringIO()
        args = cli_main.makeParser().parse_args(['prune', self.path, '--older-than', '70s'])
        self.assertEqual(args.func(args, out, now=newest + 10), 0)
        self.assertIn(f", {sum(len(c) for _, c in left)} test results", out.getvalue())
        with openStore(self.path) as store:
            self.assertEqual(len(store.testRuns()), len(kept) - len(left))


class InfluxDBStore(unittest.TestCase):
    timeout = 120

    def setUp(self):
        self.influx = InfluxDB1Server.shared()
        self.db = f"t{int(time.time() * 1000) % 10**9}_{id(self) % 10**6}"
        self.influx.create_database(self.db)

    @defer.inlineCallbacks
    def startBackends(self, **influx_options):
        """``(InfluxDB backend, SQLite backend, the store's path)``, both started, given
        the same test results by the test."""
        influx = stats.InfluxStorageService(self.influx.url, None, None, None, self.db, [],
                                            flush_interval=0.05, **influx_options)
        yield influx.startService()
        self.addCleanup(lambda: influx.stopService() if influx.running else None)
        path = os.path.join(os.path.abspath(self.mktemp()), 'stats.sqlite')
        sqlite = stats.SQLiteStorageService(path=path, flush_interval=0.05)
        yield sqlite.startService()
        self.addCleanup(lambda: sqlite.stopService() if sqlite.running else None)
        return influx, sqlite, path

    @defer.inlineCallbacks
    def test_same_answers_as_the_sqlite_store_and_no_series_per_test(self):
        influx, sqlite, path = yield self.startBackends(extra_tags={'master': 'm1'})
        builds = sampleBuilds()
        for run, cases in builds:
            influx.postTestResults(run, cases)
            sqlite.postTestResults(run, cases)
        # written again (a backfill): the same points, nothing added
        influx.postTestResults(*builds[0])
        self.assertTrue((yield influx.flush(30)))
        self.assertTrue((yield sqlite.flush(30)))
        n = sum(len(cases) + 1 for _, cases in builds) + 41
        self.assertEqual((influx.counters.written, influx.counters.rejected), (n, 0))
        series = self.influx.query('SHOW SERIES FROM "test_cases"', db=self.db)
        keys = sorted(v[0] for v in series['results'][0]['series'][0]['values'])
        # builders x outcomes seen: never a series per test or per build
        self.assertEqual(keys, [
            'test_cases,builder_name=alpha,master=m1,outcome=failed',
            'test_cases,builder_name=alpha,master=m1,outcome=flaky',
            'test_cases,builder_name=alpha,master=m1,outcome=passed',
            'test_cases,builder_name=alpha,master=m1,outcome=skipped',
            'test_cases,builder_name=beta,master=m1,outcome=passed'])
        self.assertEqual(self.influx.field_types(self.db, 'test_cases'),
                         {'test': 'string', 'build_number': 'integer', 'duration': 'float'})
        count = self.influx.query('SELECT count("test") FROM "test_cases"', db=self.db)
        self.assertEqual(count['results'][0]['series'][0]['values'][0][1], 24 * 40)
        reader = InfluxReader(self.influx.url, self.db)
        with openStore(path) as store:
            for args in ((), ('alpha',), ('alpha', T0 + 60 * 9, None)):
                self.assertEqual(reader.testAnswers(*args), store.testAnswers(*args))
            self.assertEqual(reader.testHistory('alpha', 'pkg.test_mod.Test.test_003'),
                             store.testHistory('alpha', 'pkg.test_mod.Test.test_003'))
        self.assertEqual(reader.testHistory('alpha', 'no.such.test'), [])
        # the per-test measurements are not custom series
        self.assertEqual(reader.customSeries(), {})

    @defer.inlineCallbacks
    def test_two_builds_of_a_builder_ending_in_the_same_second_both_kept(self):
        # Buildbot's times are whole seconds: without the build-number spread the second
        # build's test_runs and test_cases points replaced the first's (same series, time)
        influx, sqlite, path = yield self.startBackends()
        end = T0 + 600
        builds = [(TestRun('alpha', 249, 2490, end, revision='r1'),
                   [('t.a', PASSED, 0.5), ('t.b', PASSED, 0.25)]),
                  (TestRun('alpha', 250, 2500, end, revision='r2'),
                   [('t.a', FAILED, 0.75), ('t.b', PASSED, 0.5)])]
        for run, cases in builds:
            influx.postTestResults(run, cases)
            sqlite.postTestResults(run, cases)
        self.assertTrue((yield influx.flush(30)))
        self.assertTrue((yield sqlite.flush(30)))
        count = self.influx.query('SELECT count("test") FROM "test_cases"', db=self.db)
        self.assertEqual(count['results'][0]['series'][0]['values'][0][1], 4)
        reader = InfluxReader(self.influx.url, self.db)
        self.assertEqual([(r.number, r.time) for r in reader.testRuns()],
                         [(249, end), (250, end)])
        history = [(h['number'], h['outcome'], h['duration'])
                   for h in reader.testHistory('alpha', 't.a')]
        self.assertEqual(history, [(249, 'passed', 0.5), (250, 'failed', 0.75)])
        with openStore(path) as store:
            self.assertEqual(reader.testAnswers(), store.testAnswers())
            self.assertEqual(reader.testHistory('alpha', 't.a'),
                             store.testHistory('alpha', 't.a'))

    def test_a_build_number_tag_is_read_like_the_field(self):
        # CaptureTestHistory writes build_number as a field whatever
        # StatsService(build_number=...) says (no series per build); points written with the
        # tag (by hand, or another writer) are read through the same buildOf as the seed's
        t = int(T0 * 1e9)
        self.influx.write_lines(self.db, [
            f'test_runs,builder_name=alpha,build_number=7 passed=1i,failed=1i,skipped=0i,'
            f'flaky=0i,tests=2i,buildid=70i {t}',
            f'test_cases,builder_name=alpha,build_number=7,outcome=passed test="t.ok",'
            f'duration=0.5 {t}',
            f'test_cases,builder_name=alpha,build_number=7,outcome=failed test="t.bad",'
            f'duration=0.25 {t + 1}',
            f'test_runs,builder_name=alpha passed=2i,failed=0i,skipped=0i,flaky=0i,tests=2i,'
            f'build_number=8i,buildid=80i {t + 60 * 10**9}',
            f'test_cases,builder_name=alpha,outcome=passed test="t.ok",build_number=8i,'
            f'duration=0.5 {t + 60 * 10**9}',
            f'test_cases,builder_name=alpha,outcome=passed test="t.bad",build_number=8i,'
            f'duration=0.75 {t + 60 * 10**9 + 1}'])
        reader = InfluxReader(self.influx.url, self.db)
        runs = reader.testRuns()
        self.assertEqual([(r.builder, r.number, r.buildid, r.counts) for r in runs],
                         [('alpha', 7, 70, (1, 1, 0, 0)), ('alpha', 8, 80, (2, 0, 0, 0))])
        history = reader.testHistory('alpha', 't.bad')
        self.assertEqual([(h['number'], h['buildid'], h['outcome'], h['duration'])
                          for h in history],
                         [(7, 70, 'failed', 0.25), (8, 80, 'passed', 0.75)])

    def test_a_refused_batch_names_the_capture(self):
        backend = stats.InfluxStorageService(
            'localhost', None, None, None, 'db',
            [stats.CaptureTestHistory('alpha'), stats.CaptureBuildResults()], name='influx')
        lines = [b'test_cases,builder_name=alpha,outcome=failed test="t.bad",build_number=7i 1']
        text = backend._describeRefused(lines)
        self.assertIn("The refused batch wrote to test_cases (written by CaptureTestHistory(",
                      text)
        self.assertNotIn("Each build adds a new series", text)
        self.assertNotIn("CaptureTestHistory", backend._describeRefused(
            [b'test_cases,builder_name=beta,outcome=passed test="t",build_number=7i 1']))


class PageKeepsTheTestTables(unittest.TestCase):
    """The page computes the per-test tables again only when the test results changed."""

    def test_kept_while_the_runs_are_the_same(self):
        from buildbot_stats.storage.sqlite.values import encodeRow
        from buildbot_stats.www import page
        from buildbot_stats.www.cache import ViewCache

        path = os.path.join(os.path.abspath(self.mktemp()), 'stats.sqlite')
        writer = StoreWriter(5.0)
        self.addCleanup(writer.close)
        builds = sampleBuilds(builds=4, tests=10)
        writer.write(path, [], tests=builds[:-1])
        cache, asked = ViewCache(), []

        def show(now):
            with openStore(path) as reader:
                answers = reader.testAnswers

                def counted(*args, **kwargs):
                    asked.append(args)
                    return answers(*args, **kwargs)
                reader.testAnswers = counted
                return page.view(reader, None, 'all', None, None, {}, '../../../', None,
                                 'store', now, tests_cache=cache)

        first = show(T0 + 1000)
        self.assertIn('pkg.test_mod.Test.test_001', first)
        # a build without test results (a point): the tables are not computed again
        writer.write(path, [encodeRow('alpha-build-times',
                                      {'builder_name': 'alpha', 'build_number': '9'},
                                      {'duration': 1.0}, T0 + 900)])
        show(T0 + 1001)
        self.assertEqual(len(asked), 1)
        writer.write(path, [], tests=builds[-1:])  # a build with test results
        show(T0 + 1002)
        self.assertEqual(len(asked), 2)
        show(T0 + 1002 + 3600)  # kept for a minute at most: the range moves with the clock
        self.assertEqual(len(asked), 3)
