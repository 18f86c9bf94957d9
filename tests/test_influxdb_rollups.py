"""InfluxDB's own rollups (``buildbot-stats influxdb-rollups``) on a real InfluxDB 1.x: the
retention policies and continuous queries are created, the backfill computes them, and the
page's reader answers from them as from the raw points: counts exact, medians and 90th
percentiles of whole days from the days' percentiles."""

from __future__ import annotations

import io
import os
import statistics
import time

from twisted.trial import unittest
from twisted.trial.unittest import SkipTest

from benchmarks import storegen
from buildbot_stats.cli import main as cli_main
from buildbot_stats.reading.influxdb import InfluxReader
from buildbot_stats.reading.influxdb import percentileBins
from buildbot_stats.storage.influxdb import rollups
from buildbot_stats.storage.sqlite.aggregates import Quantiles
from buildbot_stats.www import page
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
                        # estimates (docs/storage-influxdb.rst gives the measured error)
                        self.assertLess(abs(st.median - exact.median), 0.02 * exact.median,
                                        (kind, group, st, exact))
                        self.assertLess(abs(st.p90 - exact.p90), 0.02 * exact.p90)
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

    def test_a_server_that_cannot_be_reached_is_one_line(self):
        out = io.StringIO()
        status = cli_main.main(['influxdb-rollups', '--influxdb', 'http://127.0.0.1:9',
                                '--db', 'x'], out=out)
        self.assertEqual(status, 2)
