"""Backfill and catch-up on a real master (a subprocess with local workers and real builds),
a real InfluxDB (tests/servers.py) and the SQLite store; the command's bad-input cases."""

from __future__ import annotations

import os
import shutil
import sqlite3
import textwrap

from twisted.trial import unittest

from buildbot_stats.history.builddata import RECORD_NAME
from buildbot_stats.history.builddata import decodeRecord
from tests.historymaster import HistoryMaster
from tests.historymaster import backfillCommand
from tests.servers import INFLUXD
from tests.servers import InfluxDB1Server
from tests.servers import PostgreSQLServer
from tests.servers import free_port
from tests.waiting import pollUntil


def influxPoints(influx, db):
    """{measurement: [point, ...]} of a database, every point exact (time in ns)."""
    return {m: influx.read_points(db, m) for m in influx.measurements(db)}


def storeRows(path):
    conn = sqlite3.connect(f'file:{path}?mode=ro', uri=True)
    try:
        return sorted(conn.execute(
            "SELECT series, time_us, builder, build_number, tags, fields FROM points_json"))
    finally:
        conn.close()


def needInfluxd(test):
    if not os.path.exists(INFLUXD):
        raise unittest.SkipTest(f"{INFLUXD} not found: install Debian's influxdb package "
                                "(scripts/install-servers.sh)")


class HistoryOnARealMaster(unittest.TestCase):
    def setUp(self):
        needInfluxd(self)
        self.influx = InfluxDB1Server.start_new()
        self.addCleanup(self.influx.cleanup)
        self.master = HistoryMaster(self.mktemp(), self.influx.url).create()
        self.addCleanup(self.master.cleanup)

    def backfill(self, *args, db='check', store='check.sqlite'):
        env = dict(self.master.env, STATS_DB=db, STATS_SQLITE=store)
        return backfillCommand(self.master.basedir, *args, env=env)

    def path(self, name):
        return os.path.join(self.master.basedir, name)

    def assertBackfillEqualsLive(self):
        before = self.master.dbSnapshot()
        status, out, err = self.backfill()
        self.assertEqual(status, 0, err)
        live = influxPoints(self.influx, 'live')
        # the builds' own points: one of each measurement, at least
        self.assertEqual(sorted(live), [
            'alpha-build-times', 'alpha-coverage', 'alpha-warnings', 'beta-build-times',
            'beta-warnings', 'build_requests', 'builds', 'steps', 'tests'])
        self.assertEqual(influxPoints(self.influx, 'check'), live)
        self.assertEqual(storeRows(self.path('check.sqlite')), storeRows(self.path('stats.sqlite')))
        # Buildbot's database is only read
        self.assertEqual(self.master.dbSnapshot(), before)
        return out

    def test_backfill_writes_what_the_live_service_wrote_and_twice_changes_nothing(self):
        m = self.master
        m.start()
        m.submit(3)
        pollUntil(lambda: m.finishedBuilds() == 6, '6 finished builds')
        m.stop()
        # the record of yieldMetricsValue: one row per alpha build (2 calls each), written
        # when the build finished; beta reports nothing
        rows = m.query("SELECT b.builderid, b.number, d.name, d.value FROM build_data d "
                       "JOIN builds b ON b.id = d.buildid ORDER BY b.id")
        alpha = m.query("SELECT id FROM builders WHERE name = 'alpha'")[0][0]
        self.assertEqual([(builder, name) for builder, _, name, _ in rows],
                         [(alpha, RECORD_NAME)] * 3)
        for _, number, _, value in rows:
            recorded = decodeRecord(value)
            self.assertEqual([d for _, d in recorded['coverage']], [
                {'percent': 50.5 + number, 'lines': 1000 + number},
                {'percent': 60.5 + number, 'lines': 2000 + number}])

        out = self.assertBackfillEqualsLive()
        points = sum(len(p) for p in influxPoints(self.influx, 'live').values())
        self.assertIn("6 builds read", out)
        # the beta builds report no coverage: no stats.coverage build data
        self.assertIn("3 had no yieldMetricsValue record (values replayed: 6)", out)
        self.assertIn(f"backend 'InfluxStorageService': {points} points, {points} written, "
                      "0 rejected, 0 dropped", out)

        # a second run, and a run into the stores the live service wrote: nothing changes
        rows = storeRows(self.path('check.sqlite'))
        status, out, err = self.backfill()
        self.assertEqual(status, 0, err)
        status, out, err = self.backfill(db='live', store='stats.sqlite')
        self.assertEqual(status, 0, err)
        self.assertEqual(storeRows(self.path('check.sqlite')), rows)
        self.assertEqual(storeRows(self.path('stats.sqlite')), rows)
        self.assertEqual(influxPoints(self.influx, 'check'), influxPoints(self.influx, 'live'))

        # --dry-run: the points per series, nothing written
        status, out, err = self.backfill('--dry-run', '--builder', 'beta', db='dry',
                                         store='dry.sqlite')
        self.assertEqual(status, 0, err)
        self.assertIn("3 builds read", out)
        # beta: start, end, duration (3 x 3 in beta-build-times), warnings, builds,
        # twice (two backends)
        # build_requests, two steps each (Buildbot's worker_preparation, SetProperty);
        for line in ("  beta-build-times: 18", "  beta-warnings: 6", "  builds: 6",
                     "  build_requests: 6", "  steps: 12"):
            self.assertIn(line + "\n", out)
        self.assertNotIn('alpha', out)
        self.assertNotIn('dry', self.influx.query('SHOW DATABASES')['results'][0]['series'][0]
                         ['values'].__repr__())
        self.assertFalse(os.path.exists(self.path('dry.sqlite')))

        # InfluxDB unreachable: what could not be written is counted, status 3
        env = dict(m.env, STATS_DB='gone', STATS_SQLITE='gone.sqlite',
                   STATS_INFLUX_URL=f'http://127.0.0.1:{free_port()}')
        status, out, err = backfillCommand(m.basedir, env=env)
        self.assertEqual(status, 3, err)
        self.assertIn(f"backend 'InfluxStorageService': {points} points, 0 written, 0 rejected, "
                      f"{points} dropped", out)
        self.assertIn(f"buildbot-stats backfill: {points} points were dropped", err)

        # --since/--until select builds by their end
        first_end = m.query("SELECT MIN(complete_at) FROM builds")[0][0]
        status, out, err = self.backfill('--dry-run', '--until', str(first_end))
        self.assertEqual(status, 0, err)
        self.assertIn("0 builds read", out)
        status, out, err = self.backfill('--dry-run', '--since', str(first_end))
        self.assertIn("6 builds read", out)

    def test_catch_up_fills_the_gap_of_a_killed_master(self):
        m = self.master
        m.start()
        self.assertIn("catch-up: first start of these backends", m.newLog())
        m.submit(2)
        pollUntil(lambda: m.finishedBuilds() == 4, '4 finished builds')
        pollUntil(lambda: len(self.influx.read_points('live', 'builds')) == 4,
                  'the points of 4 builds in InfluxDB')
        marks = m.marks()
        self.assertEqual(len(marks), 2)

        # InfluxDB goes away; builds go on; the master is killed with their points unsent
        self.influx.stop()
        m.submit(7)
        pollUntil(lambda: m.finishedBuilds() == 14, '14 finished builds')
        # every request completed too (else the restarted master would build it again)
        pollUntil(lambda: m.query(
            "SELECT COUNT(*) FROM buildrequests WHERE complete = 0") == [(0,)],
            'every build request complete')
        self.assertEqual(m.query("SELECT COUNT(*) FROM builds WHERE complete_at IS NULL"),
                         [(0,)])
        # the record of yieldMetricsValue is written within a second of a build's end (a
        # crash before loses it: docs/history.rst); the alpha builds' records are in
        pollUntil(lambda: m.query(
            "SELECT COUNT(*) FROM build_data WHERE name = ?", RECORD_NAME) == [(7,)],
            'the build data record of the 7 alpha builds')
        m.kill()
        self.influx.start()
        self.assertEqual(len(self.influx.read_points('live', 'builds')), 4)
        # the marks never passed the builds whose points were not written
        old_mark = influx_mark = [v for k, v in m.marks().items() if 'Influx' in k][0]
        first_lost = m.query("SELECT MIN(complete_at) FROM builds WHERE id > 4")[0][0]
        self.assertLess(influx_mark, first_lost)

        # restarted: the catch-up replays the gap in the background
        m.start()
        pollUntil(lambda: 'catch-up: done' in m.newLog(), 'the catch-up',
                  describe=lambda: m.newLog()[-3000:])
        # a backfill works beside a running master (here: counting only)
        status, out, err = self.backfill('--dry-run')
        self.assertEqual(status, 0, err)
        self.assertIn(f"{m.finishedBuilds()} builds read", out)
        log = m.newLog()
        self.assertEqual(log.count('buildbot_stats: catch-up: replaying'), 1)
        self.assertEqual(log.count('buildbot_stats: catch-up: done'), 1)
        self.assertNotIn('Traceback', log)
        m.stop()
        self.assertEqual(len(self.influx.read_points('live', 'builds')), m.finishedBuilds())
        # exactly what a backfill of every build writes
        self.assertBackfillEqualsLive()
        # once everything was written, the mark moved on (to the stop, less the margin)
        influx_mark = [v for k, v in m.marks().items() if 'Influx' in k][0]
        self.assertGreater(influx_mark, old_mark)


class BackfillFromPostgreSQL(unittest.TestCase):
    """The same on a master whose database is PostgreSQL."""

    def test_backfill_writes_what_the_live_service_wrote(self):
        needInfluxd(self)
        pg = PostgreSQLServer.start_new()
        self.addCleanup(pg.cleanup)
        influx = InfluxDB1Server.start_new()
        self.addCleanup(influx.cleanup)
        m = HistoryMaster(self.mktemp(), influx.url, db_url=pg.url).create()
        self.addCleanup(m.cleanup)
        m.start()
        m.submit(2)
        pollUntil(lambda: m.finishedBuilds() == 4, '4 finished builds')
        m.stop()
        before = m.dbSnapshot()
        env = dict(m.env, STATS_DB='check', STATS_SQLITE='check.sqlite')
        status, out, err = backfillCommand(m.basedir, env=env)
        self.assertEqual(status, 0, err)
        self.assertIn("4 builds read", out)
        live = influxPoints(influx, 'live')
        self.assertIn('steps', live)
        self.assertEqual(influxPoints(influx, 'check'), live)
        self.assertEqual(storeRows(os.path.join(m.basedir, 'check.sqlite')),
                         storeRows(os.path.join(m.basedir, 'stats.sqlite')))
        self.assertEqual(m.dbSnapshot(), before)


class BadInput(unittest.TestCase):
    """One line on stderr, exit status 2, nothing written."""

    def setUp(self):
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)

    def assertOneLineError(self, args, expected, env=None):
        status, out, err = backfillCommand(*args, env=env)
        self.assertEqual(status, 2, err)
        self.assertEqual(out, '')
        self.assertEqual(len(err.splitlines()), 1, err)
        self.assertTrue(err.startswith('buildbot-stats backfill: error: '), err)
        self.assertIn(expected, err)
        return err

    def writeCfg(self, text):
        # a worker and a builder: Buildbot refuses a master.cfg without
        text = textwrap.dedent(text) + textwrap.dedent("""
            from buildbot.plugins import schedulers as _s, util as _util, worker as _worker
            c['workers'] = [_worker.Worker('w', 'pw')]
            c['schedulers'] = [_s.ForceScheduler(name='f', builderNames=['b'])]
            c['protocols'] = {'pb': {'port': 0}}
            c['builders'] = [_util.BuilderConfig(name='b', workernames=['w'],
                                                 factory=_util.BuildFactory())]
            """)
        with open(os.path.join(self.dir, 'master.cfg'), 'w') as f:
            f.write(text)

    def test_no_master_cfg(self):
        self.assertOneLineError([self.dir], f"no master.cfg in {self.dir}")
        self.assertOneLineError([os.path.join(self.dir, 'nope')], "is not a directory")

    def test_master_cfg_that_fails_to_load_shows_its_error(self):
        self.writeCfg("c = BuildmasterConfig = {}\nc['title'] = undefined_name\n")
        self.assertOneLineError([self.dir], "name 'undefined_name' is not defined")
        with open(os.path.join(self.dir, 'master.cfg'), 'w') as f:
            f.write("c = BuildmasterConfig = {}\nc['title'] = (\n")
        self.assertOneLineError([self.dir], "SyntaxError: '(' was never closed")
        self.writeCfg("""\
            from buildbot_stats import stats
            c = BuildmasterConfig = {}
            c['services'] = [stats.StatsService(storage_backends=[
                stats.SQLiteStorageService(captures=[stats.CaptureBuildDuration('a', report_in='days')])])]
            """)
        self.assertOneLineError([self.dir], "report_in must be one of")

    def test_no_stats_service(self):
        self.writeCfg("c = BuildmasterConfig = {}\n")
        self.assertOneLineError([self.dir], "no StatsService in c['services']")

    def statsCfg(self, db_url):
        self.writeCfg(f"""\
            from buildbot_stats import stats
            c = BuildmasterConfig = {{}}
            c['db'] = {{'db_url': {db_url!r}}}
            c['services'] = [stats.StatsService()]
            """)

    def test_database_that_cannot_be_reached(self):
        self.statsCfg(f'postgresql://bb:secret@127.0.0.1:{free_port()}/bb')
        err = self.assertOneLineError([self.dir], "cannot reach the master's database")
        self.assertNotIn('secret', err)
        self.statsCfg('sqlite:///state.sqlite')
        self.assertOneLineError([self.dir], "state.sqlite does not exist")
        self.assertEqual(os.listdir(self.dir), ['master.cfg'])

    def test_bad_times(self):
        self.statsCfg('sqlite:///state.sqlite')
        self.assertOneLineError([self.dir, '--since', 'yesterday'], "bad time for --since")
        self.assertOneLineError([self.dir, '--since', '2024-05-02', '--until', '2024-05-01'],
                                "--since 2024-05-02 (2024-05-02T00:00:00+00:00) is not before")

    def test_unknown_builder(self):
        # a real (empty) master database
        master = HistoryMaster(self.dir, 'http://127.0.0.1:1')
        master.create()
        shutil.copy(os.path.join(master.basedir, 'master.cfg'),
                    os.path.join(master.basedir, 'master.cfg.orig'))
        self.assertOneLineError([self.dir, '--builder', 'gamma'],
                                "unknown builder 'gamma'", env=master.env)
        self.assertFalse(os.path.exists(os.path.join(self.dir, 'stats.sqlite')))
