"""SQLiteStorageService on real files: batching, restart, bursts, bad values, a reader
running alongside the writer, the schema version, write failures, and the embedded default
on a real master."""

from __future__ import annotations

import datetime
import json
import os
import sqlite3
import threading

from twisted.internet import defer
from twisted.python import log
from twisted.trial import unittest

from buildbot import config
from buildbot.plugins import schedulers
from buildbot.plugins import steps
from buildbot.plugins import util
from buildbot.process.results import SUCCESS
from buildbot.test.fake import fakemaster
from buildbot.test.reactor import TestReactorMixin
from buildbot.test.util.integration import RunMasterBase

from buildbot_stats import stats
from buildbot_stats.storage.sqlite import schema as sqlite_schema
from buildbot_stats.reading.sqlite import StoreError
from buildbot_stats.reading.sqlite import openStore
from tests.waiting import waitUntil

TAGS = {'builder_name': 'alpha', 'build_number': '7'}


def rows(path, sql="SELECT series, time_us, builder, build_number, tags, fields FROM points_json"
         " ORDER BY id"):
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()

# a hypothetical next schema version, for the migration machinery tests
NEXT = sqlite_schema.SCHEMA_VERSION + 1


class LogCatcher:
    def __init__(self, case):
        self.messages = []
        log.addObserver(self.observe)
        case.addCleanup(log.removeObserver, self.observe)

    def observe(self, event):
        text = log.textFromEventDict(event)
        if text and 'buildbot_stats' in text:
            self.messages.append(text)

    def matching(self, word):
        return [m for m in self.messages if word in m]


class ConfigTest(unittest.TestCase):
    def test_bad_options_are_config_errors(self):
        for kwargs, word in [
            ({'path': ''}, 'path'),
            ({'path': 3}, 'path'),
            ({'batch_size': 0}, 'batch_size'),
            ({'batch_size': 2.5}, 'batch_size'),
            ({'flush_interval': -1}, 'flush_interval'),
            ({'max_pending': True}, 'max_pending'),
            ({'stop_timeout': 'x'}, 'stop_timeout'),
            ({'captures': ['not a capture']}, 'not a Capture'),
        ]:
            with self.assertRaisesConfigError(word):
                stats.SQLiteStorageService(**kwargs)

    def assertRaisesConfigError(self, word):
        case = self

        class Ctx:
            def __enter__(self):
                pass

            def __exit__(self, typ, value, tb):
                case.assertIsNotNone(typ, f"no config error for {word}")
                case.assertTrue(issubclass(typ, config.ConfigErrors), typ)
                case.assertIn(word, str(value))
                return True

        return Ctx()

    def test_default_captures_and_name(self):
        svc = stats.SQLiteStorageService()
        self.assertEqual(svc.name, 'SQLiteStorageService')
        self.assertEqual(
            sorted(type(c).__name__ for c in svc.captures),
            ['CaptureBuildDurationAllBuilders', 'CaptureBuildEndTimeAllBuilders',
             'CaptureBuildStartTimeAllBuilders'])
        explicit = [stats.CaptureBuildDuration('a')]
        self.assertEqual(stats.SQLiteStorageService('x.sqlite', explicit).captures, explicit)
        self.assertEqual(stats.SQLiteStorageService(captures=[]).captures, [])


class FakeClockTest(TestReactorMixin, unittest.TestCase):
    """Batching and timers on Buildbot's fake clock (the writer runs inline here)."""

    @defer.inlineCallbacks
    def setUp(self):
        self.setup_test_reactor()
        self.master = yield fakemaster.make_master(self)
        self.master.basedir = os.path.abspath(self.mktemp())
        os.makedirs(self.master.basedir)

    @defer.inlineCallbacks
    def startBackend(self, **kwargs):
        svc = stats.SQLiteStorageService(**kwargs)
        yield svc.setServiceParent(self.master)
        yield svc.startService()
        self.addCleanup(svc.stopService)
        return svc

    @defer.inlineCallbacks
    def test_relative_path_in_basedir_and_timer_batching(self):
        svc = yield self.startBackend(flush_interval=2.0, batch_size=100)
        path = os.path.join(self.master.basedir, 'stats.sqlite')
        self.assertEqual(svc.path, path)
        for i in range(3):
            svc.postStatsValue({'duration': float(i)}, 'alpha-build-times', TAGS,
                               timestamp=1000.0 + i)
        self.assertEqual(svc.counters.written, 0)
        self.reactor.advance(1.9)
        self.assertEqual(svc.counters.written, 0)
        self.reactor.advance(0.2)
        self.assertEqual(svc.counters.written, 3)
        self.assertEqual(svc.batches, 1)
        self.assertEqual(
            rows(path, "SELECT series, time_us, fields FROM points_json ORDER BY id"),
            [('alpha-build-times', 1_000_000_000 + i * 1_000_000, f'{{"duration":{i}.0}}')
             for i in range(3)])

    @defer.inlineCallbacks
    def test_full_batch_is_written_at_once_and_now_is_the_reactor_time(self):
        svc = yield self.startBackend(flush_interval=60.0, batch_size=5)
        self.reactor.advance(1234.5)
        for i in range(12):
            svc.postStatsValue({'v': i}, 's', TAGS)
        self.assertEqual(svc.counters.written, 10)
        self.assertEqual(svc.batches, 2)
        self.assertEqual(svc.counters.pending, 2)
        yield svc.flush()
        self.assertEqual(svc.counters.written, 12)
        self.assertEqual({r[0] for r in rows(svc.path, "SELECT time_us FROM points_json")},
                         {1_234_500_000})


    @defer.inlineCallbacks
    def test_maintenance_rounds_run_when_an_hour_closes(self):
        svc = yield self.startBackend(flush_interval=1.0)
        rounds = []  # (reactor time, now given, eager)
        maintain = svc._writer.maintain

        def recorded(path, now, keep, keep_rollups, eager=True):
            rounds.append((self.reactor.seconds(), now, eager))
            return maintain(path, now, keep, keep_rollups, eager)
        svc._writer.maintain = recorded
        for _ in range(400):
            self.reactor.advance(20)
        # the first a minute after the start, then GRACE (600 s) after each hour's end:
        # the timer's rounds, not eager
        self.assertEqual(rounds, [(60, 60, False), (600, 600, False), (4200, 4200, False),
                                  (7800, 7800, False)])
        # asked for (a command, a test): eager, and the timer goes on from it
        more = yield svc.maintain()
        self.assertFalse(more)
        self.assertEqual(rounds[-1], (8000, 8000, True))
        self.reactor.advance(3400)
        self.assertEqual(rounds[-1], (11400, 11400, False))


    @defer.inlineCallbacks
    def test_an_eager_round_asked_during_a_timer_round_runs_after_it(self):
        svc = yield self.startBackend(flush_interval=1.0)
        started = []  # (eager, Deferred) of the rounds handed to the writer thread
        original = svc._inThread

        def inThread(f, *args):
            if f != svc._writer.maintain:
                return original(f, *args)
            d = defer.Deferred()
            started.append((args[-1], d))
            return d
        svc._inThread = inThread
        self.reactor.advance(60)  # the timer's round: closed hours may wait
        asked = svc.maintain()
        self.assertEqual([eager for eager, _ in started], [False])
        started[0][1].callback(False)
        self.assertEqual([eager for eager, _ in started], [False, True])
        self.assertNoResult(asked)
        started[1][1].callback(True)
        self.assertTrue((yield asked))


class RealFileTest(unittest.TestCase):
    """Standalone backends on the real reactor with a real writer thread."""

    timeout = 120

    def setUp(self):
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.path = os.path.join(self.dir, 'stats.sqlite')

    @defer.inlineCallbacks
    def started(self, **kwargs):
        kwargs.setdefault('path', self.path)
        svc = stats.SQLiteStorageService(**kwargs)
        yield svc.startService()
        # a failed assertion must not leave the writer thread behind
        self.addCleanup(lambda: svc.stopService() if svc.running else None)
        return svc

    @defer.inlineCallbacks
    def test_points_survive_a_restart_and_stop_writes_the_queue(self):
        svc = yield self.started(flush_interval=3600.0)
        svc.postStatsValue({'duration': 1.5}, 'alpha-build-times', TAGS, timestamp=100.000001)
        svc.postStatsValue({'name': 'warnings', 'value': 3}, 'alpha-warnings', TAGS,
                           timestamp=100.000002)
        # nothing written yet: the interval is an hour; stopping writes the queue
        self.assertEqual(svc.counters.written, 0)
        yield svc.stopService()
        self.assertEqual(svc.counters.written, 2)

        again = yield self.started()
        again.postStatsValue({'duration': 2.5}, 'alpha-build-times',
                             {'builder_name': 'alpha', 'build_number': '8'}, timestamp=200.0)
        yield again.stopService()

        with openStore(self.path) as store:
            points = list(store.points())
            self.assertEqual(
                [(p.series, p.fields, p.tags['build_number'], p.time) for p in points],
                [('alpha-build-times', {'duration': 1.5}, '7', 100.000001),
                 ('alpha-warnings', {'name': 'warnings', 'value': 3}, '7', 100.000002),
                 ('alpha-build-times', {'duration': 2.5}, '8', 200.0)])
            self.assertEqual(store.buildDurations(),
                             {'alpha': [(100.000001, 7, 1.5), (200.0, 8, 2.5)]})
        self.assertEqual(rows(self.path, "SELECT builder, build_number FROM points_json"),
                         [('alpha', 7), ('alpha', 7), ('alpha', 8)])

    @defer.inlineCallbacks
    def test_schema_version_is_kept_in_the_file(self):
        svc = yield self.started()
        svc.postStatsValue({'v': 1}, 's', {}, timestamp=1.0)
        yield svc.stopService()
        conn = sqlite3.connect(self.path)
        self.assertEqual(conn.execute("PRAGMA user_version").fetchone()[0],
                         sqlite_schema.SCHEMA_VERSION)
        self.assertEqual(conn.execute("PRAGMA application_id").fetchone()[0],
                         sqlite_schema.APPLICATION_ID)
        self.assertEqual(conn.execute("PRAGMA journal_mode").fetchone()[0], 'wal')
        meta = dict(conn.execute("SELECT key, value FROM meta"))
        self.assertEqual(meta['schema_version'], str(sqlite_schema.SCHEMA_VERSION))
        self.assertEqual(meta['application'], 'buildbot_stats')
        # the documented long view
        self.assertEqual(
            conn.execute("SELECT series, field, value, type FROM field_values").fetchall(),
            [('s', 'v', 1, 'integer')])
        conn.close()

    @defer.inlineCallbacks
    def test_burst_costs_the_reactor_little_and_is_written_in_batches(self):
        n = 50_000
        svc = yield self.started(batch_size=1000)
        for i in range(n):
            svc.postStatsValue({'duration': i * 0.5, 'ok': True}, f'b{i % 5}-build-times',
                               {'builder_name': f'b{i % 5}', 'build_number': str(i)},
                               timestamp=1e9 + i * 1e-3)
        ok = yield svc.flush()
        self.assertIs(ok, True)
        yield svc.stopService()
        self.assertEqual(svc.counters.asDict(),
                         {'added': n, 'written': n, 'rejected': 0, 'dropped': 0, 'retries': 0,
                          'pending': 0})
        # one transaction per batch, not per point (the cost per point on the reactor is
        # measured by benchmarks/burst.py, not asserted here)
        self.assertLessEqual(svc.batches, n // 1000 + 5)
        self.assertEqual(rows(self.path, "SELECT COUNT(*), COUNT(DISTINCT build_number)"
                                         " FROM points_json"), [(n, n)])

    @defer.inlineCallbacks
    def test_bad_values_are_stored_as_documented_or_rejected_and_counted(self):
        logs = LogCatcher(self)
        svc = yield self.started()
        when = datetime.datetime(2024, 5, 1, 12, 30, tzinfo=datetime.timezone.utc)
        good = [
            ({'value': None}, {'value': None}),
            ({'nested': {'a': [1, 2.5, 'x', None, True]}}, {'nested': {'a': [1, 2.5, 'x', None,
                                                                            True]}}),
            ({'list': (1, 2)}, {'list': [1, 2]}),
            ({'when': when}, {'when': '2024-05-01T12:30:00+00:00'}),
            ({'took': datetime.timedelta(minutes=1, microseconds=5)}, {'took': 60.000005}),
            ({'flag': False, 'n': 2**40, 's': 'é'}, {'flag': False, 'n': 2**40, 's': 'é'}),
        ]
        bad = [
            ({'b': b'\x00\xff'}, 'bytes'),
            ({'b': b'again'}, 'bytes'),
            ({'x': float('nan')}, 'finite'),
            ({'x': float('inf')}, 'finite'),
            ({'d': {1: 'a'}}, 'key'),
            ({'s': {1, 2}}, 'set'),
            ({'o': object()}, 'object'),
            ({}, 'at least one field'),
            ('not a dict', 'dict'),
            ({'': 1}, 'field name'),
        ]
        for i, (post, _) in enumerate(good):
            svc.postStatsValue(post, 'good', TAGS, timestamp=10.0 + i)
        for i, (post, _) in enumerate(bad):
            svc.postStatsValue(post, 'bad', TAGS, timestamp=50.0 + i)
            # the points after a bad one still go through
            svc.postStatsValue({'i': i}, 'after', TAGS, timestamp=50.5 + i)
        svc.postStatsValue({'v': 1}, 'tagged', {'builder_name': 'alpha', 'build_number': 9,
                                                'x': None}, timestamp=99.0)
        svc.postStatsValue({'v': 1}, 'badtags', {'t': ['list']}, timestamp=99.0)
        svc.postStatsValue({'v': 1}, '', TAGS, timestamp=99.0)
        yield svc.stopService()

        self.assertEqual(svc.counters.rejected, len(bad) + 2)
        self.assertEqual(svc.counters.written, len(good) + len(bad) + 1)
        self.assertEqual(svc.counters.pending, 0)
        with openStore(self.path) as store:
            self.assertEqual([p.fields for p in store.points(['good'])], [g[1] for g in good])
            self.assertEqual([p.fields['i'] for p in store.points(['after'])],
                             list(range(len(bad))))
            self.assertEqual([p.tags for p in store.points(['tagged'])],
                             [{'builder_name': 'alpha', 'build_number': '9'}])
            self.assertEqual(list(store.points(['bad'])), [])
        # each kind of problem is logged once, with series, field, builder and build
        bytes_logs = logs.matching('bytes')
        self.assertEqual(len(bytes_logs), 1, logs.messages)
        self.assertIn("series 'bad' field 'b'", bytes_logs[0])
        self.assertIn("builder 'alpha', build #7", bytes_logs[0])
        self.assertEqual(len(logs.matching('rejected')), len(bad) - 1 + 2)
        self.assertEqual(svc.rejections['bytes are not stored'], 2)

    @defer.inlineCallbacks
    def test_a_reader_reads_while_the_writer_writes(self):
        svc = yield self.started(batch_size=200, flush_interval=0.05)
        svc.postStatsValue({'v': -1}, 's', {}, timestamp=1.0)
        yield svc.flush()
        seen, errors = [], []
        stop = threading.Event()

        def read():
            try:
                with openStore(self.path) as store:
                    while not stop.is_set():
                        seen.append(store.countPoints())
                        list(store.points(['s'], start=1.0, end=2.0))
            except Exception as e:  # reported below
                errors.append(e)

        reader = threading.Thread(target=read)
        reader.start()
        try:
            for chunk in range(20):
                for i in range(500):
                    svc.postStatsValue({'v': i}, 's', {}, timestamp=2.0 + chunk + i * 1e-4)
                yield svc.flush()  # a transaction per chunk, while the reader reads
            yield waitUntil(lambda: seen and seen[-1] == 10_001, "the reader to see all")
        finally:
            stop.set()
            yield deferToThreadJoin(reader)
        yield svc.stopService()
        self.assertEqual(errors, [])
        self.assertEqual(svc.counters.written, 10_001)
        # the reader saw the store grow while it was written, never going back
        self.assertEqual(seen, sorted(seen))
        self.assertGreater(len(set(seen)), 2)
        self.assertEqual(seen[-1], 10_001)

    @defer.inlineCallbacks
    def test_a_locked_file_is_retried_then_written(self):
        logs = LogCatcher(self)
        svc = yield self.started(flush_interval=0.1, busy_timeout=0.05)
        svc.postStatsValue({'v': 0}, 's', {}, timestamp=1.0)
        yield svc.flush()
        # another program holds the write lock
        other = sqlite3.connect(self.path, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")
        for i in range(1, 4):
            svc.postStatsValue({'v': i}, 's', {}, timestamp=1.0 + i)
        yield waitUntil(lambda: svc.counters.retries >= 2, "two attempts on the locked file")
        self.assertEqual(svc.counters.pending, 3)
        other.execute("ROLLBACK")
        other.close()
        yield svc.flush(timeout=10)
        yield svc.stopService()
        self.assertEqual(svc.counters.written, 4)
        self.assertEqual(svc.counters.dropped, 0)
        self.assertEqual(rows(self.path, "SELECT json_extract(fields, '$.v') FROM points_json"),
                         [(0,), (1,), (2,), (3,)])
        # one error line for the whole outage, one for the recovery
        self.assertEqual(len(logs.matching('cannot write')), 1)
        self.assertEqual(len(logs.matching('works again')), 1)

    @defer.inlineCallbacks
    def test_an_unwritable_store_does_not_hang_stop_and_counts_the_loss(self):
        # a file of a newer schema: the writer refuses it and keeps the points
        conn = sqlite3.connect(self.path)
        conn.execute(f"PRAGMA application_id = {sqlite_schema.APPLICATION_ID}")
        conn.execute("PRAGMA user_version = 99")
        conn.close()
        logs = LogCatcher(self)
        svc = yield self.started(flush_interval=0.05, stop_timeout=0.3, max_pending=5)
        for i in range(8):
            svc.postStatsValue({'v': i}, 's', {}, timestamp=1.0 + i)
        yield svc.stopService()  # bounded by stop_timeout (exact: tests.test_stop_bound)
        self.assertEqual(svc.counters.written, 0)
        self.assertEqual(svc.counters.dropped, 8)  # 3 for room, 5 at stop
        self.assertEqual(svc.counters.pending, 0)
        self.assertEqual(len(logs.matching('schema version 99')), 1)
        self.assertEqual(len(logs.matching('could not be written')), 1)

    @defer.inlineCallbacks
    def test_stop_does_not_wait_busy_timeout_for_a_lock(self):
        svc = yield self.started(flush_interval=3600.0, busy_timeout=90.0, stop_timeout=0.2)
        svc.postStatsValue({'v': 0}, 's', {}, timestamp=1.0)
        yield svc.flush(timeout=30)  # the file exists; now another program locks it
        other = sqlite3.connect(self.path, isolation_level=None)
        self.addCleanup(other.close)
        other.execute("BEGIN EXCLUSIVE")
        svc.postStatsValue({'v': 1}, 's', {}, timestamp=2.0)
        svc.flush(timeout=30)  # a write starts and waits for the lock (up to 90 s)
        yield waitUntil(lambda: svc._writing is not None, "a write waiting for the lock")
        # the stop gives up on the lock: no wait of busy_timeout (this test's timeout is less)
        yield svc.stopService()
        self.assertEqual((svc.counters.written, svc.counters.dropped), (1, 1))
        other.execute("ROLLBACK")

    test_stop_does_not_wait_busy_timeout_for_a_lock.timeout = 45

    @defer.inlineCallbacks
    def test_a_foreign_database_is_refused(self):
        conn = sqlite3.connect(self.path)
        conn.execute("CREATE TABLE builds (id INTEGER)")
        conn.commit()
        conn.close()
        logs = LogCatcher(self)
        svc = yield self.started(stop_timeout=0.2)
        svc.postStatsValue({'v': 1}, 's', {}, timestamp=1.0)
        yield svc.stopService()
        self.assertEqual(svc.counters.dropped, 1)
        self.assertEqual(len(logs.matching("state.sqlite")), 1)
        self.assertEqual(rows(self.path, "SELECT name FROM sqlite_master"), [('builds',)])

    @defer.inlineCallbacks
    def test_the_same_point_twice_is_one_row(self):
        # what a backfill or a catch-up does: the points of a build written again
        tags = {'builder_name': 'alpha', 'build_number': '7'}
        for duration in (1.5, 1.5, 2.0):
            svc = yield self.started()
            svc.postStatsValue({'duration': duration}, 'alpha-build-times', tags,
                               timestamp=100.000001)
            svc.postStatsValue({'v': 1}, 'other', tags, timestamp=100.000001)
            yield svc.stopService()
            self.assertEqual(svc.counters.written, 2)
        # the last write wins, as in InfluxDB
        self.assertEqual(rows(self.path, "SELECT series, fields FROM points_json ORDER BY series"),
                         [('alpha-build-times', '{"duration":2.0}'), ('other', '{"v":1}')])


class MigrationTest(unittest.TestCase):
    def setUp(self):
        self.path = os.path.abspath(self.mktemp())

    def connect(self):
        conn = sqlite3.connect(self.path, isolation_level=None)
        self.addCleanup(conn.close)
        return conn

    def test_upgrade_runs_each_step_once_in_order(self):
        conn = self.connect()
        self.assertEqual(sqlite_schema.migrate(conn), 0)
        conn.execute("INSERT INTO series (name) VALUES ('s')")
        conn.execute("INSERT INTO points (series, time_us, tagset, build, fieldset, vals)"
                     " VALUES (1, 1, 1, -1, 1, '[1]')")
        calls = []

        def v2(c):
            calls.append(NEXT)
            c.execute("ALTER TABLE points ADD COLUMN note TEXT")

        chain = {**sqlite_schema.MIGRATIONS, NEXT: v2}
        self.assertEqual(sqlite_schema.migrate(conn, target=NEXT, migrations=chain), NEXT - 1)
        self.assertEqual(sqlite_schema.migrate(conn, target=NEXT, migrations=chain), NEXT)
        self.assertEqual(calls, [NEXT])
        self.assertEqual(sqlite_schema.fileVersion(conn), NEXT)
        self.assertEqual(conn.execute("SELECT series, note FROM points").fetchall(),
                         [(1, None)])
        meta = dict(conn.execute("SELECT key, value FROM meta"))
        self.assertEqual(meta['schema_version'], str(NEXT))

    def test_a_failed_step_leaves_the_old_version(self):
        conn = self.connect()
        sqlite_schema.migrate(conn)

        def broken(c):
            c.execute("ALTER TABLE points ADD COLUMN note TEXT")
            raise RuntimeError("boom")

        chain = {**sqlite_schema.MIGRATIONS, NEXT: broken}
        with self.assertRaises(RuntimeError):
            sqlite_schema.migrate(conn, target=NEXT, migrations=chain)
        self.assertEqual(sqlite_schema.fileVersion(conn), NEXT - 1)
        cols = [r[1] for r in conn.execute("PRAGMA table_info(points)")]
        self.assertNotIn('note', cols)

    def test_reader_refuses_newer_and_foreign_files(self):
        conn = self.connect()
        sqlite_schema.migrate(conn)
        conn.execute("PRAGMA user_version = 7")
        with self.assertRaises(StoreError) as e:
            openStore(self.path)
        self.assertIn("schema version 7", str(e.exception))

    def test_v1_file_becomes_v2_keeping_the_last_of_each_point(self):
        conn = self.connect()
        sqlite_schema.migrate(conn, target=1)
        conn.executemany(
            "INSERT INTO points (series, time_us, builder, build_number, tags, fields)"
            " VALUES (?, ?, 'a', 1, ?, ?)",
            [('s', 1, '{"b":"1"}', '{"v":1}'), ('s', 1, '{"b":"1"}', '{"v":2}'),
             ('s', 1, '{"b":"2"}', '{"v":3}'), ('s', 2, '{"b":"1"}', '{"v":4}')])
        self.assertEqual(sqlite_schema.migrate(conn, target=2), 1)
        self.assertEqual(sqlite_schema.fileVersion(conn), 2)
        self.assertEqual(conn.execute("SELECT series, time_us, tags, fields FROM points"
                                      " ORDER BY id").fetchall(),
                         [('s', 1, '{"b":"1"}', '{"v":2}'), ('s', 1, '{"b":"2"}', '{"v":3}'),
                          ('s', 2, '{"b":"1"}', '{"v":4}')])
        with self.assertRaises(sqlite3.IntegrityError):
            conn.execute("INSERT INTO points (series, time_us, tags, fields)"
                         " VALUES ('s', 2, '{\"b\":\"1\"}', '{}')")
        meta = dict(conn.execute("SELECT key, value FROM meta"))
        self.assertEqual(meta['schema_version'], '2')


class DefaultStoreOnARealMasterTest(RunMasterBase):
    """``stats.StatsService()`` with no backend keeps the default set in stats.sqlite."""

    proto = 'pb'

    @defer.inlineCallbacks
    def test_default_store_in_basedir(self):
        basedir = os.path.abspath(self.mktemp())
        f = util.BuildFactory()
        f.addStep(steps.ShellCommand(command=['true']))
        c = {
            'schedulers': [schedulers.ForceScheduler(name="force", builderNames=["alpha"])],
            'builders': [util.BuilderConfig(name="alpha", workernames=["local1"], factory=f)],
            'services': [stats.StatsService()],
        }
        yield self.setup_master(c, basedir=basedir)
        builds = []
        for _ in range(2):
            build = yield self.doForceBuild(forceParams={'builderNames': ['alpha']})
            self.assertEqual(build['results'], SUCCESS)
            builds.append(build)
        yield self.tested_master.shutdown()

        with openStore(os.path.join(basedir, 'stats.sqlite')) as store:
            points = list(store.points())
            self.assertEqual([s.name for s in store.series()], ['alpha-build-times'])
            durations = store.buildDurations()['alpha']
        got = sorted((p.tags['build_number'], sorted(p.fields)) for p in points)
        expected = sorted((str(b['number']), [k]) for b in builds
                          for k in ('start-time', 'end-time', 'duration'))
        self.assertEqual(got, expected)
        for (when, number, duration), b in zip(durations, builds):
            self.assertEqual(number, b['number'])
            self.assertAlmostEqual(
                duration, (b['complete_at'] - b['started_at']).total_seconds(), places=5)
            self.assertAlmostEqual(when, b['complete_at'].timestamp(), places=3)
        start = [p for p in points if 'start-time' in p.fields][0]
        self.assertEqual(json.dumps(start.fields['start-time'])[1:5],
                         str(builds[0]['started_at'].year))


def deferToThreadJoin(thread):
    from twisted.internet import threads

    return threads.deferToThread(thread.join)
