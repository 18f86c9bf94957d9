"""InfluxDB's own rollups (``buildbot-stats influxdb-rollups``) on a real InfluxDB 1.x: the
retention policies and continuous queries are created, the backfill computes them, and the
page's reader answers from them as from the raw points: counts exact, medians and 90th
percentiles of whole days from the days' percentiles."""

from __future__ import annotations

import io
import os
import random
import re
import statistics
import threading
import time

from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from twisted.trial import unittest
from twisted.trial.unittest import SkipTest

from benchmarks import influx_rollup_error
from benchmarks import storegen
from buildbot_stats.cli import main as cli_main
from buildbot_stats.reading.influxdb import InfluxReader
from buildbot_stats.reading import influxdb as influx_reading
from buildbot_stats.reading.influxdb import percentileBins
from buildbot_stats.storage.influxdb import rollups
from buildbot_stats.storage.sqlite.aggregates import Quantiles
from buildbot_stats.storage.sqlite.schema import StoreError
from buildbot_stats.www import page
from buildbot_stats.www.panels.base import Query
from tests.servers import INFLUXD
from tests.servers import InfluxDB1Server


class PercentileBinsTest(unittest.TestCase):
    """InfluxDB's percentile of n values is the value of rank floor(n p / 100 + 0.5): up to
    20 values are known whole, more by 21 of them."""

    def influxPercentile(self, ordered, p):
        i = int(len(ordered) * p / 100 + 0.5) - 1
        return ordered[i] if 0 <= i < len(ordered) else None

    def test_a_few_values_are_known_exactly(self):
        for values in ([5.0], [3.0, 1.0], [4.0, 9.0, 1.0, 7.0, 7.0, 2.0, 8.0],
                       [float(v * v % 17) for v in range(20)]):
            ordered = sorted(values)
            got, weights = percentileBins(len(values), ordered[0], ordered[-1], [
                self.influxPercentile(ordered, p) for p in rollups.PERCENTILES])
            self.assertEqual(sorted(got), ordered)
            self.assertEqual(weights, [1.0] * len(values))

    def test_many_values_keep_their_ranks(self):
        ordered = [float(v) for v in range(1000)]
        got, weights = percentileBins(1000, 0.0, 999.0, [
            self.influxPercentile(ordered, p) for p in rollups.PERCENTILES])
        self.assertEqual(sum(weights), 1000)
        q = Quantiles()
        q.addWeighted(got, weights)
        median, p90 = q.medianAndP90()
        self.assertLess(abs(median - 499.5), 5)
        self.assertLess(abs(p90 - 899.5), 5)


    def test_the_layout_per_count_gives_what_the_general_way_gives(self):
        rng = random.Random(3)
        for n in list(range(1, 120)) + [rng.randint(120, 10 ** 7) for _ in range(300)]:
            known = sorted(rng.uniform(0, 100) for _ in range(len(rollups.PERCENTILES) + 2))
            lo, percentiles, hi = known[0], known[1:-1], known[-1]
            self.assertEqual(percentileBins(n, lo, hi, percentiles),
                             influx_reading._percentileBins(n, lo, hi, percentiles), n)
        # a missing percentile (None): the general way, the others still placed
        values, weights = percentileBins(100, 1.0, 9.0, [None] * len(rollups.PERCENTILES))
        # the 98 unknown values spread evenly from 1 to 9: bins of 32, 33 and 33 values,
        # each at its values' mean place (ranks 2-33, 34-66, 67-99 of 1-100)
        self.assertEqual(weights, [1.0, 32.0, 33.0, 33.0, 1.0])
        self.assertEqual(values, [1.0, 1 + 8 * 16.5 / 99, 1 + 8 * 49 / 99, 1 + 8 * 82 / 99, 9.0])

    def test_the_unknown_values_are_spread_between_their_known_neighbours(self):
        """Values evenly spaced are given back as they are (up to GAP_BINS bins a gap):
        a gap of 1 or 2 unknown values exactly, a longer one at its bins' mean places."""
        for n in (21, 40, 49, 60, 1000):
            ordered = [float(v) for v in range(n)]
            got, weights = percentileBins(n, 0.0, n - 1.0, [
                PercentileBinsTest.influxPercentile(None, ordered, p)
                for p in rollups.PERCENTILES])
            self.assertEqual(sum(weights), n)
            known = len(rollups.PERCENTILES) + 2
            self.assertLessEqual(len(got), known + (known - 1) * influx_reading.GAP_BINS)
            # every bin is at the mean of the ranks it stands for
            rank = 0.0
            for v, w in zip(got, weights):
                self.assertAlmostEqual(v, rank + (w - 1) / 2, places=9, msg=(n, got, weights))
                rank += w


    def test_the_median_of_one_row(self):
        """A period of one rollup row: exact up to 20 values (every rank known), the mean
        of the two middle ones for an even count."""
        rng = random.Random(2)
        for n in range(1, 21):
            ordered = sorted(rng.uniform(0, 9) for _ in range(n))
            known = [self.influxPercentile(ordered, p) for p in rollups.PERCENTILES]
            self.assertAlmostEqual(influx_reading._middle(n, ordered[-1], known),
                                   statistics.median(ordered), places=9)
        # 1000 values 0..999: ranks 500 (p50, 499.0) and 501 read on the line to p55 (rank
        # 550, 549.0)
        ordered = [float(v) for v in range(1000)]
        known = [self.influxPercentile(ordered, p) for p in rollups.PERCENTILES]
        self.assertAlmostEqual(influx_reading._middle(1000, 999.0, known), 499.5)


class CustomRollupSourceTest(unittest.TestCase):
    """The custom series' rollup reads every measurement but a few, with a regex InfluxDB
    (Go's RE2: no lookahead) accepts."""

    EXCLUDED = rollups.CUSTOM_EXCLUDED

    def matches(self, name):
        regex = rollups.notOneOf(self.EXCLUDED)
        self.assertTrue(regex.startswith('/') and regex.endswith('/'))
        self.assertNotIn('(?=', regex)
        self.assertNotIn('(?!', regex)
        return re.match(regex[1:-1].replace('\\/', '/'), name) is not None

    def test_the_excluded_names_only(self):
        for name in self.EXCLUDED:
            self.assertFalse(self.matches(name), name)
        for name in ('build', 'buildsx', 'builds-build-times', 'step', 'tests2', 'test',
                     'test_case', 'test_runs_old', 'change', 'compile-coverage', 'a', 'x/y',
                     'steps\n', 'bUilds'):
            self.assertTrue(self.matches(name), name)

    @settings(max_examples=300, deadline=None)
    @given(st.one_of(st.sampled_from(rollups.CUSTOM_EXCLUDED),
                     st.builds(lambda n, cut, tail: n[:cut] + tail,
                               st.sampled_from(rollups.CUSTOM_EXCLUDED),
                               st.integers(0, 14), st.text('abst_-/.\\\n', max_size=3)),
                     st.text(min_size=1, max_size=12)))
    def test_any_name(self, name):
        self.assertEqual(self.matches(name), name not in self.EXCLUDED, repr(name))


class QueryAsksOnceTest(unittest.TestCase):
    """Panels computed by several threads at once ask each question once."""

    def test_threads_asking_together_wait_for_one_answer(self):
        calls, release = [], threading.Event()

        class Reader:
            def firstTime(self):
                return 0.0

            def rawSince(self):
                return 0

            def slow(self, x):
                calls.append(x)
                release.wait(10)
                if x == 'bad':
                    raise ValueError('no')
                return [x]

        q = Query(Reader(), None, None, None, 100.0)
        answers = []
        threads = [threading.Thread(target=lambda: answers.append(q.ask('slow', 'a')))
                   for _ in range(4)]
        for t in threads:
            t.start()
        while not calls:
            time.sleep(0.001)
        release.set()
        for t in threads:
            t.join(10)
        self.assertEqual(calls, ['a'])
        self.assertEqual(answers, [['a']] * 4)
        self.assertIs(answers[0], answers[1])
        # an error reaches every asker, and is asked once
        for _ in range(2):
            with self.assertRaises(ValueError):
                q.ask('slow', 'bad')
        self.assertEqual(calls, ['a', 'bad'])


class InfluxRollupsTest(unittest.TestCase):
    timeout = 180

    def setUp(self):
        if not os.path.exists(INFLUXD):
            raise SkipTest(f"needs {INFLUXD} (Debian package influxdb)")
        self.influx = InfluxDB1Server.shared()
        self.db = f"r{int(time.time() * 1000) % 10**9}"
        # 9 days of builds ending 3 hours ago (1,800 builds)
        self.now = time.time() // 3600 * 3600
        storegen.loadInflux(self.influx.url, self.db, 9 * 1800, 9, self.now - 3 * 3600)

    def main(self, *args):
        out = io.StringIO()
        status = cli_main.main(['influxdb-rollups', '--influxdb', self.influx.url, '--db',
                                self.db, *args], out=out)
        return status, out.getvalue()

    def test_the_rollups_answer_as_the_raw_points(self):
        status, out = self.main('--print')
        self.assertEqual(status, 0)
        self.assertIn('CREATE CONTINUOUS QUERY "buildbot_stats_durations_1h"', out)
        reader = InfluxReader(self.influx.url, self.db, timeout=60)
        self.assertFalse(reader.hasRollups())  # --print runs nothing
        status, out = self.main('--backfill')
        self.assertEqual(status, 0, out)
        self.assertIn("retention policies rollups_1h, rollups_1d and rollups_1w, 21 continuous"
                      " queries; rollups computed from ", out)
        names = {v[0] for s in reader.query('SHOW CONTINUOUS QUERIES')
                 for v in s.get('values', []) if s['name'] == self.db}
        self.assertEqual(len(names), 21)
        # running it again updates them (and computes nothing twice: same rows)
        self.assertEqual(self.main('--backfill')[0], 0)
        reader = InfluxReader(self.influx.url, self.db, timeout=60)
        self.assertTrue(reader.hasRollups())
        start = self.now - 7 * 86400 + 1234  # partial hours and days at both ends
        values = {}
        for kind in ('durations', 'results', 'queue', 'steps', 'tests', 'custom'):
            for period in (None, 86400):
                got = reader.summarizeRollups(kind, None, start, None, period=period)
                raw = reader.summarizeRaw(kind, None, start, None, period=period)
                self.assertEqual(set(got), set(raw), (kind, period))
                for group, exact in raw.items():
                    if period is not None:
                        self.assertEqual([(t, s.count) for t, s in got[group]],
                                         [(t, s.count) for t, s in exact], (kind, group))
                        continue
                    st = got[group]
                    self.assertEqual(st.count, exact.count, (kind, group))
                    if exact.sum is not None:
                        self.assertAlmostEqual(st.sum, exact.sum, places=3)
                        self.assertEqual((st.min, st.max), (exact.min, exact.max))
                    if kind == 'tests':
                        self.assertEqual(st.nonzero, exact.nonzero, group)
                    if kind in ('durations', 'steps'):
                        # whole days from their percentiles, the edges from raw points:
                        # estimates, judged by rank as sketches are. Measured at every hour
                        # of the day (benchmarks/influx_rollup_error.py): at most 1.3
                        # points of rank off, 2.0 % of the value (343 values: the values
                        # next to a 90th percentile can be 2 % apart)
                        ordered = values.setdefault(kind, influx_rollup_error.rawValues(
                            reader, kind, start, None))[group]
                        self.assertEqual(len(ordered), exact.count)
                        for p, name in ((50, 'median'), (90, 'p90')):
                            estimate = getattr(st, name)
                            self.assertLessEqual(
                                influx_rollup_error.rankError(ordered, estimate, p), 2.0,
                                (kind, group, name, st, exact))
                            self.assertLess(abs(estimate - getattr(exact, name)),
                                            0.04 * getattr(exact, name), (kind, group, st))
        # one day alone: its values rebuilt from InfluxDB's percentiles
        day = (self.now - 3 * 86400) // 86400 * 86400
        got = reader.summarizeRollups('durations', 'compile', day, day + 86400)['compile']
        values = [r['duration'] for r in reader._rows(
            f'SELECT "duration" FROM "compile-build-times" WHERE time >= {int(day)}s'
            f' AND time < {int(day) + 86400}s')]
        self.assertEqual(got.count, len(values))
        self.assertLess(abs(got.median - statistics.median(values)), 0.005 * got.median)
        # the page and the report read them
        data = page.collect(reader, None, None, None, self.now)
        self.assertEqual(sum(r['builds'] for r in data['builders']), 1800)
        self.assertTrue(all(c['builds'] is None for c in data['durations']))

    def test_the_page_reads_few_cheap_queries_with_the_same_answers(self):
        """firstTime found inside the first rolled-up week, the latest builds in the last
        day first, statements sent together, panels computed by three threads: the same
        answers as the plain ways."""
        self.assertEqual(self.main('--backfill')[0], 0)
        url, db = self.influx.url, self.db
        reader = InfluxReader(url, db, timeout=60)
        self.assertTrue(reader.hasRollups())
        names = list(reader.numericFields())
        plain = reader.firstOf(f'SELECT * FROM "{m}" LIMIT 1' for m in names)
        self.assertEqual(reader.firstTime(), plain)
        # a point older than the rollups (never rolled up) is found too
        older = plain - 30 * 86400
        self.influx.write_lines(db, [f'compile-coverage,builder_name=compile percent=5 '
                                     f'{int(older * 1e9)}'])
        self.assertEqual(InfluxReader(url, db).firstTime(), older)
        # raw points of the first weeks gone (read from a policy without them): the first
        # hour rolled up
        self.influx.query(f'CREATE RETENTION POLICY "recent" ON "{db}" DURATION INF '
                          'REPLICATION 1')
        cut = (self.now - 2 * 86400) // 3600 * 3600
        self.influx.query(f'SELECT * INTO "{db}"."recent".:MEASUREMENT FROM "{db}"."autogen".'
                          f'/.*/ WHERE time >= {int(cut)}s GROUP BY *', db=db)
        recent = InfluxReader(url, db, retention_policy='recent')
        first_hour = reader.firstOf(f'SELECT * FROM "rollups_1h"."{m}" LIMIT 1'
                                    for m in names)
        self.assertLess(first_hour, cut)
        self.assertEqual(recent.firstTime(), first_hour)
        # the latest builds: the last day holds fewer than n for some sizes, more for others
        for builder, start, end, n in ((None, None, None, 200), ('compile', None, None, 5),
                                       (None, self.now - 5 * 86400, self.now - 86400, 40),
                                       ('docs', self.now - 86400 * 3, None, 1000)):
            got = InfluxReader(url, db).recentDurations(builder, start, end, n=n)
            self.patch(influx_reading, 'RECENT_WINDOWS', (None,))
            plain = InfluxReader(url, db).recentDurations(builder, start, end, n=n)
            self.patch(influx_reading, 'RECENT_WINDOWS', (86400, 28 * 86400, None))
            self.assertTrue(plain)
            self.assertEqual(got, plain, (builder, start, end, n))
        # a chart per day from daily rows: each day's p90 is InfluxDB's own, its median
        # from the 50th percentile and the next ones (50 values a day: within 3 %, as the
        # sketch of all 19 percentiles gave; the lower ones are not read)
        start = (self.now - 6 * 86400) // 86400 * 86400
        end = start + 4 * 86400
        got = reader.summarizeRollups('steps', None, start, end, period=86400)
        exact = reader.summarizeRaw('steps', None, start, end, period=86400)
        self.assertEqual(set(got), set(exact))
        for group, days in exact.items():
            self.assertEqual([t for t, _ in got[group]], [t for t, _ in days])
            for (_, st), (_, raw) in zip(got[group], days):
                self.assertEqual((st.count, st.p90, st.exact), (raw.count, raw.p90, False))
                self.assertLess(abs(st.median - raw.median), 0.03 * raw.median, group)
        # the page: panels by three threads, by one
        for builder, start in ((None, None), ('compile', self.now - 7 * 86400)):
            together = InfluxReader(url, db)
            data = page.collect(together, builder, start, None, self.now)
            alone = InfluxReader(url, db)
            alone.threads = 1
            self.assertEqual(data, page.collect(alone, builder, start, None, self.now))
        # one request, several statements: answers in order, the empty ones too, and a
        # statement InfluxDB refuses named by its own error
        answers = reader.queries(['SHOW MEASUREMENTS', 'SELECT * FROM "nothing_here"',
                                  'SELECT "points" FROM "rollups_1w"."builds" LIMIT 2'])
        self.assertEqual([len(a) for a in answers], [1, 0, 1])
        self.assertEqual(len(answers[2][0]['values']), 2)
        with self.assertRaisesRegex(StoreError, 'undefined function nonsense'):
            reader.queries(['SHOW MEASUREMENTS', 'SELECT nonsense("x") FROM "y"',
                            'SHOW MEASUREMENTS'])

    def test_rollups_of_an_earlier_release_get_long_shards(self):
        """Policies made with InfluxDB's 7-day shards (before SHARD DURATION): running the
        command again sets the shard duration, --reshard moves the rows; the answers stay."""
        url, db = self.influx.url, self.db
        old = [q.replace(f" SHARD DURATION {rollups.SHARDS[p]}", "")
               for q in rollups.statements(db) for p, _, _, _ in rollups.LEVELS
               if q.startswith(f'CREATE RETENTION POLICY "{p}"')]
        self.assertEqual(len(old), 3)
        for q in old:
            self.influx.query(q)
        for q in rollups.backfill(db, self.now - 10 * 86400, self.now):
            self.influx.query(q, db=db)

        def shards():
            out = {}
            for s in self.influx.query('SHOW SHARDS')['results'][0]['series']:
                if s['name'] == db:
                    for v in s['values']:
                        out[v[2]] = out.get(v[2], 0) + 1
            return out

        def policies():
            return {v[0]: v[2] for v in self.influx.query(f'SHOW RETENTION POLICIES ON "{db}"')
                    ['results'][0]['series'][0]['values']}

        self.assertGreaterEqual(shards()['rollups_1w'], 2)
        before = {kind: InfluxReader(url, db).summarizeRollups(kind, None, None, None,
                                                               period=86400)
                  for kind in ('durations', 'results', 'steps', 'tests', 'custom')}
        status, out = self.main()
        self.assertEqual(status, 0, out)
        self.assertEqual(policies()['rollups_1w'], '87360h0m0s')
        self.assertEqual(policies()['rollups_1h'], '672h0m0s')
        self.assertGreaterEqual(shards()['rollups_1w'], 2)  # the rows stay where they are
        status, out = self.main('--reshard')
        self.assertEqual(status, 0, out)
        self.assertIn("rollups moved into shards of 4w, 52w, 520w", out)
        self.assertEqual(shards()['rollups_1w'], 1)
        self.assertEqual(shards()['rollups_1d'], 1)
        self.assertNotIn('rollups_1w_resharding', policies())
        after = {kind: InfluxReader(url, db).summarizeRollups(kind, None, None, None,
                                                              period=86400)
                 for kind in before}
        self.assertEqual(after, before)
        # the custom series' rollup leaves the build statistics and per-test series out
        keys = {s['name']: {v[0] for v in s['values']} for s in self.influx.query(
            'SHOW FIELD KEYS FROM "rollups_1h"./.*/', db=db)['results'][0]['series']}
        self.assertIn('count_percent', keys['compile-coverage'])
        self.assertIn('points', keys['builds'])
        for m in ('builds', 'steps', 'tests', 'build_requests'):
            self.assertFalse([k for k in keys[m] if k.startswith('count_')], m)

    def test_a_server_that_cannot_be_reached_is_one_line(self):
        out = io.StringIO()
        status = cli_main.main(['influxdb-rollups', '--influxdb', 'http://127.0.0.1:9',
                                '--db', 'x'], out=out)
        self.assertEqual(status, 2)
