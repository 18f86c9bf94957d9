"""The benchmarks still run: each script with a tiny N, in a subprocess, prints one JSON line
with every variant's figures.

Benchmarks are not tests: nothing here checks a timing. It checks that each variant ran,
that the figures are there and sane (points counted, delivered and found in InfluxDB), so
that ``python benchmarks/<name>.py`` keeps working for whoever measures next.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from twisted.trial import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_benchmark(name, *args, timeout=120):
    cmd = [sys.executable, os.path.join(ROOT, 'benchmarks', f'{name}.py')] + [str(a) for a in args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    if proc.returncode != 0 or len(lines) != 1:
        raise AssertionError(f"{name} exit {proc.returncode}, stdout {proc.stdout[-2000:]!r}, "
                             f"stderr {proc.stderr[-2000:]!r}")
    return json.loads(lines[0])


class BenchmarksSmokeTest(unittest.TestCase):
    timeout = 120

    def assertVariantOk(self, result, variant, *keys):
        self.assertIn(variant, result)
        res = result[variant]
        self.assertNotIn('error', res, res.get('error'))
        for key in keys:
            self.assertIn(key, res, f"{variant} lacks {key}")
        return res

    def assertMachine(self, result):
        self.assertEqual(set(result['machine']),
                         {'cores', 'cpu', 'python', 'buildbot', 'twisted', 'influxdb'})
        self.assertGreaterEqual(result['machine']['cores'], 1)

    def test_burst(self):
        n = 8
        result = run_benchmark('burst', '--n', n, '--builders', 2, '--workers', 2,
                               '--variants', 'none,buildbot,ours,sqlite')
        self.assertEqual((result['bench'], result['n']), ('burst', n))
        keys = ('builds', 'cpu_s', 'wall_s', 'max_lag_ms', 'peak_rss_mb', 'points_done')
        none = self.assertVariantOk(result, 'none', *keys)
        self.assertEqual(none['builds'], n)
        self.assertGreater(none['cpu_s'], 0)
        self.assertEqual(none['points_done'], 0)
        for variant in ('buildbot', 'ours', 'sqlite'):
            res = self.assertVariantOk(result, variant, 'cpu_overhead_pct', *keys)
            self.assertEqual(res['builds'], n)
            # 4 captures + CaptureData: 5 points per build, every one delivered
            self.assertEqual((res['points_expected'], res['points_done']), (5 * n, 5 * n))
            self.assertGreaterEqual(res['max_lag_ms'], 0)
        for variant in ('buildbot', 'ours'):
            res = result[variant]
            self.assertEqual(res['influx_fields'], res['influx_fields_expected'])
        for variant in ('ours', 'sqlite'):
            # the counters include the warm-up builds' points (one buildset before the clock)
            total = 5 * (n + result[variant]['warmup_builds'])
            c = result[variant]['counters']
            self.assertEqual((c['added'], c['written'], c['dropped'], c['pending']),
                             (total, total, 0, 0))
        self.assertMachine(result)

    def test_burst_finish_mode(self):
        n = 6
        result = run_benchmark('burst', '--mode', 'finish', '--n', n, '--builders', 2,
                               '--workers', 1, '--variants', 'none,ours,none')
        self.assertEqual((result['mode'], result['database']), ('finish', 'memory'))
        none = self.assertVariantOk(result, 'none', 'cpu_s', 'master_us_per_build')
        self.assertEqual(none['builds'], n)
        ours = self.assertVariantOk(result, 'ours', 'stats_us_per_build', 'counters')
        # made and finished through master.data.updates: 5 points a build, all in InfluxDB
        self.assertEqual((ours['points_expected'], ours['points_done']), (5 * n, 5 * n))
        self.assertEqual(ours['influx_fields'], ours['influx_fields_expected'])
        self.assertEqual(set(result['least_stats_us_per_build']), {'ours'})
        self.assertMachine(result)

    def test_service_cost(self):
        result = run_benchmark('service_cost', '--n', 200, '--repeat', 2)
        self.assertEqual((result['bench'], result['n']), ('service_cost', 200))
        for variant in ('memory', 'influx'):
            self.assertGreater(result[variant]['us_per_build'], 0)
            # one build-data row per build; the builds ending within a second (100 a second
            # of the fake clock) in one transaction: 2 seconds a run, 2 runs
            recorder = result[variant]['recorder']
            self.assertEqual((recorder['rows'], recorder['unrecorded']), (400, 0))
            self.assertLessEqual(recorder['transactions'], 6)

    def test_throughput(self):
        n = 20000
        result = run_benchmark('throughput', '--n', n, '--buildbot-n', 100)
        self.assertEqual((result['bench'], result['n']), ('throughput', n))
        for variant in ('none', 'ceiling', 'buildbot', 'ours'):
            res = self.assertVariantOk(result, variant, 'points', 'wall_s', 'points_per_s')
            self.assertGreater(res['points_per_s'], 0)
        self.assertEqual(result['ceiling']['influx_points'], n)
        self.assertEqual(result['buildbot']['influx_points'], 100)
        ours = result['ours']
        self.assertEqual(ours['influx_points'], n)
        self.assertEqual(ours['counters']['written'], n)
        self.assertEqual(ours['counters']['dropped'], 0)
        self.assertIn('max_lag_ms', ours)
        self.assertMachine(result)

    def test_outage(self):
        n = 12000
        result = run_benchmark('outage', '--n', n, '--buildbot-n', 20)
        self.assertEqual((result['bench'], result['n']), ('outage', n))
        self.assertVariantOk(result, 'none', 'peak_rss_mb')
        bb = self.assertVariantOk(result, 'buildbot', 'lost')
        # Buildbot's module loses every point written while the server is down
        self.assertEqual(bb['lost'], 20)
        ours = self.assertVariantOk(result, 'ours', 'counters', 'memory_bound_mb',
                                    'rss_growth_mb', 'recovery_s', 'influx_points')
        self.assertTrue(ours['counters_exact'], ours)
        # far below the buffer limit: nothing dropped, everything lands
        self.assertEqual(ours['counters']['dropped'], 0)
        self.assertEqual(ours['influx_points'], n)
        self.assertMachine(result)

    def test_spool(self):
        n = 400
        result = run_benchmark('spool', '--n', n, '--per-turn', 20)
        self.assertEqual((result['bench'], result['n']), ('spool', n))
        for variant in ('memory', 'spool', 'fsync'):
            res = self.assertVariantOk(result, variant, 'post_us_per_point', 'max_lag_ms')
            self.assertEqual((res['points'], res['pending']), (n, n))
        for variant in ('spool', 'fsync'):
            # one journal write per reactor iteration, never one per point
            self.assertEqual(result[variant]['writes_per_turn'], 1.0)
        self.assertGreater(result['fsync']['fsyncs_in_thread_pool']['count'], 0)
        self.assertEqual(result['spool']['fsyncs_in_thread_pool']['count'], 0)
        self.assertMachine(result)

    def test_prometheus_scrape(self):
        result = run_benchmark('prometheus_scrape', '--builders', 10, '--steps', 3,
                               '--builds-per-builder', 2, '--scrapes', 2)
        self.assertEqual((result['bench'], result['builders'], result['steps']),
                         ('prometheus_scrape', 10, 3))
        self.assertVariantOk(result, 'none', 'max_lag_ms', 'points_during_scrapes')
        for variant in ('ours', 'thread', 'inline'):
            res = self.assertVariantOk(result, variant, 'scrape_median_s', 'scrape_max_s',
                                       'max_lag_ms', 'body_bytes', 'cpu_s')
            # 2 builds of 10 builders: builds, build_requests, 3 steps, tests
            self.assertEqual(res['points'], 10 * 2 * 6)
            # 10 x 3 step histograms of 16 lines each, at least
            self.assertGreater(res['samples'], 10 * 3 * 16)
            self.assertGreater(res['points_during_scrapes'], 0)
        self.assertMachine(result)

    def test_backfill(self):
        n = 60
        result = run_benchmark('backfill', '--n', n)
        self.assertEqual((result['bench'], result['n']), ('backfill', n))
        for variant in ('influx', 'sqlite', 'influx-catchup'):
            res = self.assertVariantOk(result, variant, 'builds_per_s', 'rss_mb_at_pct',
                                       'max_lag_ms', 'worst_gc_ms')
            self.assertEqual(res['builds'], n)
            self.assertEqual(res['capture_errors'], 0)
            # 4 seed points, builds, build_requests, 4 steps and tests per build; + 1 for the
            # half with coverage build data
            self.assertEqual((res['points'], res['written'], res['dropped']),
                             (n * 11 + n // 2,) * 2 + (0,))
        self.assertEqual(result['influx']['in_influxdb'], n)
        self.assertEqual(result['influx-catchup']['in_influxdb'], n)
        self.assertMachine(result)

    def test_series(self):
        n = 40
        result = run_benchmark('series', '--n', n, '--captures', 'duration')
        self.assertEqual((result['bench'], result['n']), ('series', n))
        tag = self.assertVariantOk(result, 'tag', 'duration')['duration']
        field = self.assertVariantOk(result, 'field', 'duration')['duration']
        # a series per build in Buildbot's layout, at most one per builder (10) with the field
        self.assertEqual((tag['series_all'], tag['series_per_build']), (n, 1.0))
        self.assertLessEqual(field['series_all'], 10)
        for res in (tag, field):
            self.assertEqual((res['points'], res['points_lost']), (n, 0))
            # no two points overwrote each other
            self.assertEqual(res['points_stored'], n)
        self.assertMachine(result)

    def test_www_page(self):
        result = run_benchmark('www_page', '--points', 900, '--days', 3, '--repeat', 1,
                               '--report')
        self.assertEqual((result['bench'], result['points']), ('www_page', 900))
        self.assertEqual(len(result['sqlite']['views']), 8)
        for name, view in result['sqlite']['views'].items():
            # the first view after a start, the same again, from the cache; its memory
            for key in ('first_ms', 'again_median_ms', 'cached_ms', 'traced_peak_mb'):
                self.assertGreater(view[key], 0, (name, key))
        # 100 builds in 3 days: every build drawn (about 1 kB each) in the 'all' view
        self.assertGreater(result['sqlite']['views']['all builders all']['html_bytes'],
                           100_000)
        self.assertGreater(result['report']['html']['peak_rss_mb'], 10)
        self.assertGreater(result['store_bytes_per_point'], 20)
        self.assertMachine(result)

    def test_store_costs_and_sketches(self):
        result = run_benchmark('store_costs', '--points', 3000, '--days', 2, '--repeat', 1,
                               '--batches', 100)
        costs = result['batches']['100']
        self.assertEqual(costs['with_rollups']['points'], 2997)
        self.assertGreater(costs['with_rollups']['maintain_cpu_s'], 0)
        self.assertIn('rollup_share', costs)
        # the master's way: both writers in one process, the points encoded batch by batch
        result = run_benchmark('store_costs', '--paired', '--points', 3000, '--days', 2,
                               '--repeat', 1, '--batches', 9)
        run, = result['batches']['9']['runs']
        self.assertEqual(run['points'], 2997)
        self.assertGreater(run['on_maintain_cpu_s'], 0)
        self.assertGreater(run['off_write_cpu_s'], 0)
        self.assertEqual(result['batches']['9']['rollup_share_least'], run['rollup_share'])
        result = run_benchmark('sketches', '--days', 3, '--builds-per-day', 40,
                               '--candidates', 'td=300')
        fastdigest = result['candidates']['fastdigest max_centroids=300']
        # few values per day: every sketch holds them all, the quantiles are all but exact
        self.assertLess(fastdigest['max_rel_error'], 0.05)
        self.assertGreater(fastdigest['hour_bytes'], 0)

    def test_regressions(self):
        result = run_benchmark('regressions', '--trials', 4, '--live-series', 1,
                               '--series', 3, '--builds', 600)
        self.assertEqual((result['bench'], result['trials']), ('regressions', 4))
        for detector in ('otava', 'ruptures'):
            res = self.assertVariantOk(result, detector, 'quality', 'cost')
            quality = res['quality']
            self.assertEqual(quality['live_builds'], 1000)
            for size in ('+20%', '+50%', '-20%'):
                self.assertGreaterEqual(quality[size]['found_pct'], 0)
            # +50 % steps, far above the noise: found by both
            self.assertEqual(quality['+50%']['found_pct'], 100.0)
            self.assertEqual(res['cost']['full']['series'], 3)
            self.assertGreater(res['cost']['update']['cpu_ms_mean'], 0)
        # the master's own analyses reading an SQLite store of the 3 series
        self.assertEqual(result['store']['full']['series'], 3)
        self.assertEqual(result['store']['full']['changes_found'],
                         result['otava']['cost']['full']['changes_found'])
        # the bounded read (each series' newest history builds) sees what reading every
        # point did
        self.assertIs(result['store']['full']['same_as_reading_everything'], True)
        self.assertEqual(result['store']['full_reading_everything']['changes_found'],
                         result['store']['full']['changes_found'])
        self.assertMachine(result)

    def test_interrupt(self):
        result = run_benchmark('interrupt', '--n', 1, '--points', 3000,
                               '--scenarios', 'report,export-file,export-pipe')
        self.assertEqual((result['bench'], result['n']), ('interrupt', 1))
        for name, status in (('report', 130), ('export-file', 143), ('export-pipe', 130)):
            self.assertEqual(result[name]['statuses'], [status], name)
            self.assertGreater(result[name]['most_s'], 0)
        self.assertEqual(len(result['load_before']), 3)
        self.assertMachine(result)

    def test_tests_history(self):
        result = run_benchmark('tests_history', '--builds', 40, '--tests', 300, '--cases', 500,
                               '--repeat', 1)
        self.assertEqual((result['bench'], result['builds'], result['tests']),
                         ('tests_history', 40, 300))
        store = result['store']
        self.assertNotIn('error', store, store.get('error'))
        self.assertEqual(store['results'], 12_000)
        self.assertGreater(store['bytes_per_result'], 5)
        for window in ('all', '7d'):
            for answer in ('flaky', 'failing', 'slowest', 'all_tables', 'history'):
                self.assertGreater(store[window][answer]['least_ms'], 0, (window, answer))
        # the generated flaky tests are the ones the table names (30 of them, 20 rows)
        self.assertEqual(store['all']['found']['flaky'], store['all']['found']['flaky_rows'])
        self.assertTrue(store['all']['found']['failing_now'])
        for variant in ('record_sqlite', 'record_influx'):
            res = self.assertVariantOk(result, variant, 'record_cpu_ms', 'on_longest_slice_ms',
                                       'on_worst_lag_ms')
            counters = res['counters']
            self.assertEqual((counters['dropped'], counters['rejected'], counters['pending']),
                             (0, 0, 0))
            self.assertEqual(counters['written'], counters['added'])
        self.assertMachine(result)
