"""The rollups' cheaper maintenance: the writer loses no point when another program (a
command) rolls up the hours it holds in memory; the master's timer rounds let a quiet
store's closed hours wait and close them several in one transaction, at no cost while
nothing is due; a day's (a week's) sketch merged without
decoding values that stay values is the one :class:`Quantiles` gives; a builder's last
failure, found through the hourly rollups, is the one the raw points say, for ranges cutting
hours."""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile

from twisted.trial import unittest

from buildbot_stats.reading.sqlite import openStore
from buildbot_stats.storage.sqlite import rollups
from buildbot_stats.storage.sqlite.aggregates import Quantiles
from buildbot_stats.storage.sqlite.aggregates import encodeSketch
from buildbot_stats.storage.sqlite.rollups import DAY
from buildbot_stats.storage.sqlite.rollups import GRACE
from buildbot_stats.storage.sqlite.rollups import HOUR
from buildbot_stats.storage.sqlite.rollups import mergeSketches
from buildbot_stats.storage.sqlite.writer import StoreWriter
from tests.test_rollups import T0
from tests.test_rollups import forbidRollUpOfRawOnlyDays
from tests.test_rollups import rowsOfBuild

ROLLUP_COLUMNS = "series, level, start, tagset, field, count, sum, min, max, nonzero, sketch"


class TempStore(unittest.TestCase):

    def setUp(self):
        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d, True)
        self.path = os.path.join(d, 'stats.sqlite')

    def writer(self):
        w = StoreWriter(5.0)
        self.addCleanup(w.close)
        return w


class LastFailuresTest(TempStore):
    """A builder's last failure, found through the hourly rollups then the raw points: the
    same as the raw points say, for ranges cutting days and hours, before and after the
    watermark (a failure after the end in the end's hour, or before the start in the
    start's hour, is not the range's)."""

    #: quiet days rolled up to day rows only (raw-only days); False: by the hour
    sparse = False

    def setUp(self):
        super().setUp()
        if not self.sparse:
            self.patch(rollups, 'SPARSE_DAY_POINTS', 0)
        self.builds = []  # (builder, number, time, result)
        n = 0
        for h in range(5 * 24 + 7):
            for b in ('alpha', 'beta', 'gamma'):
                n += 1
                t = T0 + h * HOUR + 60 * (1 + n % 50)
                if b == 'alpha':
                    failed = h % 5 == 0  # often
                elif b == 'beta':
                    failed = h == 5  # once, on the first day
                else:
                    failed = h in (30, 31, 77, 100)  # now and then
                self.builds.append((b, n, t, 'failure' if failed else 'success'))
        w = self.writer()
        for b, n, t, result in self.builds:
            w.write(self.path, rowsOfBuild(b, n, t, 10.0 + n % 7, result, 0))
            # a round after every build (eager: every closed hour closes)
            while w.maintain(self.path, t, eager=self.eager):
                pass

    def expected(self, builder, start, end, raw_since=0, raw_days=()):
        failures = [(t, n) for b, n, t, r in self.builds
                    if b == builder and r == 'failure' and (start is None or t >= start)
                    and (end is None or t < end)]
        if not failures:
            return None
        t, n = max(failures)
        if t < raw_since:
            # the raw point gone: its hour's time (a raw-only day's: the day's)
            day = t // DAY * DAY
            return (float(day if day in raw_days else t // HOUR * HOUR), None, 'failure')
        return (t, n, 'failure')

    eager = True

    def test_as_the_raw_points_say(self):
        with openStore(self.path) as reader:
            watermark, _, _, raw_days = reader.rollupState()
            if self.sparse:
                # every day quiet (360 points): day rows only; the open day's hours wait
                self.assertEqual(raw_days, [T0 + d * DAY for d in range(5)])
                self.assertEqual(watermark, T0 + 5 * DAY)
                self.assertEqual(self.hourRows(), 0)
            elif self.eager:
                self.assertEqual(watermark % DAY // HOUR, 6)  # mid-day: hours not in a day yet
            else:
                # the timer's rounds: mid-day too, and hours waiting, read raw
                self.assertNotEqual(watermark % DAY, 0)
                self.assertGreaterEqual(self.builds[-1][2] - watermark, 3 * HOUR)
            edges = [None, T0 + 300, T0 + 5 * HOUR, T0 + 5 * HOUR + 1800, T0 + DAY,
                     T0 + 30 * HOUR + 900, T0 + 2 * DAY + 5 * HOUR, T0 + 77 * HOUR + 3000,
                     T0 + 4 * DAY, watermark - HOUR, watermark, watermark + 1800]
            checked = 0
            for builder in ('alpha', 'beta', 'gamma'):
                for start in edges:
                    for end in edges:
                        if start is not None and end is not None and start >= end:
                            continue
                        got = reader.lastFailures(builder, start, end).get(builder)
                        self.assertEqual(got, self.expected(builder, start, end),
                                         (builder, start, end))
                        checked += 1
            self.assertGreater(checked, 200)
            # the first hour's start (its rollup's), before the first point
            first = min(t for _, _, t, _ in self.builds)
            self.assertLess(first - T0, HOUR)
            self.assertEqual(reader.firstTime(), float(T0))

    def test_with_the_raw_points_of_the_first_days_deleted(self):
        w = self.writer()
        now = self.builds[-1][2]
        while w.maintain(self.path, now, keep=2 * DAY):
            pass
        with openStore(self.path) as reader:
            raw_since = reader.rawSince()
            self.assertGreater(raw_since, T0 + 2 * DAY)
            raw_days = reader.rollupState()[3]
            self.assertEqual(bool(raw_days), self.sparse)
            if self.sparse:
                # retention deletes a raw-only day's raw points whole
                self.assertEqual(raw_since % DAY, 0)
            for builder in ('alpha', 'beta', 'gamma'):
                for end in (None, T0 + DAY, T0 + 40 * HOUR, T0 + 4 * DAY):
                    self.assertEqual(reader.lastFailures(builder, None, end).get(builder),
                                     self.expected(builder, None, end, raw_since, raw_days),
                                     (builder, end))

    def hourRows(self):
        conn = sqlite3.connect(self.path)
        try:
            return conn.execute("SELECT COUNT(*) FROM rollups WHERE level = ?",
                                (HOUR,)).fetchone()[0]
        finally:
            conn.close()


class LastFailuresWithTimerRoundsTest(LastFailuresTest):
    """The same, the store maintained by the master's timer rounds: closed hours wait (read
    raw) and close six at a time."""

    eager = False


class LastFailuresOnRawOnlyDaysTest(LastFailuresTest):
    """The same on quiet days, rolled up to day rows only (raw-only days): their failures
    are found through the day rows, a partial edge day through its raw points."""

    sparse = True


class LastFailuresOnRawOnlyDaysWithTimerRoundsTest(LastFailuresTest):
    """The same, raw-only days, the master's timer rounds."""

    sparse = True
    eager = False


class CommandRollsUpMeanwhileTest(TempStore):
    """Points the writer writes into an hour another program rolled up meanwhile (a
    command's maintenance) count once, at the writer's next maintenance: the writer sees
    the other program's commit (``data_version``) at its next transaction."""

    def counts(self):
        with openStore(self.path) as reader:
            self.assertEqual(reader.rollupState()[2], [])  # nothing left dirty
            return {b: s.count for b, s in reader.summarize('durations').items()}, \
                {k: s.count for k, s in reader.summarize('steps').items()}

    def test_points_held_in_memory_for_an_hour_a_command_closed(self):
        writer, command = self.writer(), self.writer()
        writer.write(self.path, rowsOfBuild('alpha', 1, T0 + 60, 10.0, 'success', 0))
        # the command (prune, rebuild-rollups) rolls up hour 0 from the raw points
        while command.maintain(self.path, T0 + 2 * HOUR):
            pass
        # the writer, its state read before the command's commit, writes into hour 0
        writer.write(self.path, rowsOfBuild('alpha', 2, T0 + 120, 20.0, 'success', 0))
        writer.write(self.path, rowsOfBuild('beta', 3, T0 + HOUR + 60, 30.0, 'failure', 0))
        self.assertNotIn(T0, writer.rollups.pending)  # hour 0 (T0 is a midnight): dirty
        while writer.maintain(self.path, T0 + 3 * HOUR):
            pass
        self.assertEqual(self.counts(), ({'alpha': 2, 'beta': 1},
                                         {('alpha', 'compile'): 2, ('alpha', 'test'): 2,
                                          ('beta', 'compile'): 1, ('beta', 'test'): 1}))
        # and the hours' rows equal a rebuild from the raw points
        conn = sqlite3.connect(self.path)
        self.addCleanup(conn.close)
        before = conn.execute(f"SELECT {ROLLUP_COLUMNS} FROM rollups ORDER BY 1, 2, 3, 4, 5"
                              ).fetchall()
        conn.close()
        rebuild = self.writer()
        rebuild.open(self.path)
        rebuild.conn.execute("BEGIN IMMEDIATE")
        rebuild.rollups.markForRebuild(rebuild.conn)
        rebuild.conn.execute("COMMIT")
        while rebuild.maintain(self.path, T0 + 3 * HOUR):
            pass
        conn = sqlite3.connect(self.path)
        self.addCleanup(conn.close)
        self.assertEqual(conn.execute(f"SELECT {ROLLUP_COLUMNS} FROM rollups"
                                      " ORDER BY 1, 2, 3, 4, 5").fetchall(), before)


class TimerRoundsTest(TempStore):
    """The master's timer rounds (``eager=False``, every minute): on a quiet store, closed
    hours wait (read raw meanwhile, the same answers) and close together once
    ``MAINTAIN_AT_LEAST_EVERY`` passed or ``CLOSE_AT_POINTS`` of their points are in
    memory, or at once when the writer marked an hour dirty; a round with nothing due runs
    no statement at all."""

    def setUp(self):
        super().setUp()
        # the hours of a busy day (a quiet day's wait for the day: QuietDaysTest)
        self.patch(rollups, 'SPARSE_DAY_POINTS', 0)
        self.w = self.writer()
        self.n = 0
        self.statements = []

    def build(self, t, builder='alpha'):
        self.n += 1
        self.w.write(self.path, rowsOfBuild(builder, self.n, t, 10.0 + self.n, 'success', 0))

    def round(self, t):
        """A timer round at ``t``; the statements it ran."""
        self.statements.clear()
        self.w.conn.set_trace_callback(self.statements.append)
        try:
            while self.w.maintain(self.path, t, eager=False):
                pass
        finally:
            self.w.conn.set_trace_callback(None)
        return list(self.statements)

    def state(self):
        with openStore(self.path) as reader:
            return (reader.rollupState()[0],
                    {b: (s.count, s.median) for b, s in reader.summarize('durations').items()})

    def test_quiet_hours_wait_then_close_in_one_transaction(self):
        self.build(T0 + 60)
        self.assertTrue(self.round(T0 + 1800))  # the first round after opening: due
        seen = []
        for h in range(1, 6):
            self.build(T0 + h * HOUR + 60)
            for minute in range(0, 60, 10):
                seen += self.round(T0 + h * HOUR + 120 + minute * 60)
        self.assertEqual(seen, [])  # 30 rounds, not one statement
        watermark, durations = self.state()
        self.assertEqual(watermark, T0)  # hours 0-4 closed by the clock, still waiting
        self.assertEqual(durations, {'alpha': (6, 13.5)})  # read raw: every build
        # six hours after the first round: every closed hour in one transaction
        done = self.round(T0 + 1800 + 6 * HOUR)
        self.assertEqual(done.count('BEGIN IMMEDIATE'), 1)
        self.assertEqual(self.state(), (T0 + 6 * HOUR, {'alpha': (6, 13.5)}))
        self.assertEqual(self.w.rollups.pending, {})

    def test_enough_points_close_at_once(self):
        self.patch(rollups, 'CLOSE_AT_POINTS', 17)  # a build is 5 points
        self.build(T0 + 60)
        self.round(T0 + 1800)
        self.build(T0 + HOUR + 60)
        self.build(T0 + HOUR + 120)
        self.assertEqual(self.round(T0 + 2 * HOUR + GRACE), [])  # 15 points waiting
        self.build(T0 + 2 * HOUR + 60)  # hour 2 is open: not counted
        self.assertEqual(self.round(T0 + 2 * HOUR + GRACE + 60), [])
        self.build(T0 + HOUR + 180)  # 20 points in the closed hours
        self.assertTrue(self.round(T0 + 2 * HOUR + GRACE + 120))
        self.assertEqual(self.state()[0], T0 + 2 * HOUR)

    def test_a_late_point_makes_the_next_round_due(self):
        self.build(T0 + 60)
        self.build(T0 + HOUR + 60)
        self.round(T0 + 2 * HOUR)  # the first: closes hours 0 and 1
        self.assertEqual(self.state()[0], T0 + HOUR)
        self.build(T0 + 120)  # late, into hour 0: dirty
        with openStore(self.path) as reader:
            self.assertEqual(reader.rollupState()[2], [T0])
        self.assertTrue(self.round(T0 + 2 * HOUR + 60))
        with openStore(self.path) as reader:
            self.assertEqual(reader.rollupState()[2], [])
        self.assertEqual(self.state()[1], {'alpha': (3, 12.0)})
        self.assertEqual(self.round(T0 + 2 * HOUR + 120), [])  # nothing due again

    def test_the_first_watermark_rolls_up_no_empty_day(self):
        # the first round closes no hour (its points are in the open hour): the watermark
        # goes from 0 to that hour, without rolling up every day since the epoch
        self.build(T0 + 3 * DAY + 60)
        done = self.round(T0 + 3 * DAY + 1800)
        self.assertEqual(self.state()[0], T0 + 3 * DAY)
        self.assertEqual([s for s in done if s.startswith('DELETE FROM rollups')], [])
        self.build(T0 + 4 * DAY + 60)
        while self.w.maintain(self.path, T0 + 5 * DAY):
            pass
        with openStore(self.path) as reader:
            self.assertEqual(reader.summarize('durations', period=DAY),
                             {'alpha': [(T0 + 3 * DAY, reader.summarize(
                                 'durations', end=T0 + 4 * DAY)['alpha']),
                                        (T0 + 4 * DAY, reader.summarize(
                                            'durations', start=T0 + 4 * DAY)['alpha'])]})

    def test_a_clock_gone_back_makes_the_round_due(self):
        self.build(T0 + DAY + 60)
        self.round(T0 + DAY + 1800)
        self.build(T0 + DAY + HOUR + 60)
        self.assertEqual(self.round(T0 + DAY + 3 * HOUR), [])
        # the clock set back a day: the hours do not wait for it to catch up
        self.assertIn('BEGIN IMMEDIATE', self.round(T0 + 2 * HOUR))
        self.assertIn('BEGIN IMMEDIATE', self.round(T0 + DAY + 3 * HOUR))
        self.assertEqual(self.state()[0], T0 + DAY + 2 * HOUR)

    def test_an_eager_round_closes_whatever_waits(self):
        self.build(T0 + 60)
        self.round(T0 + 1800)
        self.build(T0 + HOUR + 60)
        self.assertEqual(self.round(T0 + 3 * HOUR), [])
        while self.w.maintain(self.path, T0 + 3 * HOUR):
            pass
        self.assertEqual(self.state(), (T0 + 2 * HOUR, {'alpha': (2, 11.5)}))


class MergeSketchesTest(unittest.TestCase):
    """A day's (a week's) sketch from its hours' sketches: the same bytes as merging them
    through :class:`Quantiles`, without decoding values that stay values."""

    def test_as_quantiles_merge(self):
        few = [encodeSketch([float(i), i + 0.5]) for i in range(10)]
        many = [encodeSketch([float(i * 40 + k) for k in range(40)]) for i in range(10)]
        digest = encodeSketch([float(k) for k in range(400)])
        for blobs in (few, many, few + [digest], [digest], few[:1]):
            q = Quantiles()
            for blob in blobs:
                q.addSketch(blob)
            self.assertEqual(mergeSketches(blobs), q.encoded())
        self.assertIsNone(mergeSketches(None))
        self.assertEqual(mergeSketches(few)[:1], b'V')
        self.assertEqual(mergeSketches(many)[:1], b'T')


def _rollupRows(path, level):
    """``{(series, group tags, field, start): (count, sum, min, max, nonzero, median, p90)}``
    of the rollups of ``level`` (the sketch as the quantiles it gives: a day's sketch merged
    from its hours' and one made from its values give the same ones)."""
    conn = sqlite3.connect(path)
    try:
        out = {}
        for name, tags, start, field, count, total, lo, hi, nonzero, blob in conn.execute(
                "SELECT s.name, t.tags, r.start, r.field, r.count, r.sum, r.min, r.max,"
                " r.nonzero, r.sketch FROM rollups AS r JOIN series AS s ON s.id = r.series"
                " JOIN tagsets AS t ON t.id = r.tagset WHERE r.level = ?", (level,)):
            quantiles = None
            if blob is not None:
                q = Quantiles()
                q.addSketch(blob)
                quantiles = q.medianAndP90()
            out[name, tags, field, start] = (count, total, lo, hi, nonzero, quantiles)
        return out
    finally:
        conn.close()


class QuietDaysTest(TempStore):
    """A quiet day (fewer than ``SPARSE_DAY_POINTS`` points, all written by the writer)
    waits in memory until it closes, then becomes day rows only (a raw-only day) in one
    transaction: the same day rows as the hours give, no hourly row. A point written into
    it later rolls the whole day up again from its raw points; never from its hours (it has
    none: that would empty it)."""

    def setUp(self):
        super().setUp()
        # a raw-only day is never rolled up from its (absent) hours
        forbidRollUpOfRawOnlyDays(self)
        self.n = 0

    def builds(self, w, path, hours, late=()):
        for h in hours:
            self.n += 1
            w.write(path, rowsOfBuild('alpha' if h % 3 else 'beta', self.n,
                                      T0 + h * HOUR + 60, 10.0 + h % 7,
                                      'failure' if h % 5 == 0 else 'success', h % 2))

    def hourly(self, hours):
        """The rollups of the same builds, the hours closed one by one (no quiet day)."""
        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d, True)
        path = os.path.join(d, 'hourly.sqlite')
        w = self.writer()
        self.n = 0
        sparse = rollups.SPARSE_DAY_POINTS
        rollups.SPARSE_DAY_POINTS = 0
        try:
            self.builds(w, path, hours)
            while w.maintain(path, T0 + 30 * HOUR):
                pass
        finally:
            rollups.SPARSE_DAY_POINTS = sparse
        self.n = 0
        return path

    def roundStatements(self, w, t):
        statements = []
        w.conn.set_trace_callback(statements.append)
        try:
            while w.maintain(self.path, t, eager=False):
                pass
        finally:
            w.conn.set_trace_callback(None)
        return statements

    def test_a_quiet_day_waits_for_its_end_then_closes_to_day_rows(self):
        hourly = self.hourly(range(24))
        w = self.writer()
        writes = []
        for h in range(24):
            self.builds(w, self.path, [h])
            for minute in range(0, 60, 10):
                writes += [s for s in self.roundStatements(w, T0 + h * HOUR + 600 + minute * 60)
                           if 'INTO rollups' in s]
        # no rollup row, the watermark at the day's start (its first value): its hours
        # are read raw
        self.assertEqual(writes, [])
        with openStore(self.path) as reader:
            self.assertEqual(reader.rollupState()[0], T0)
            self.assertEqual(reader.summarize('durations'),
                             openStore(hourly).summarize('durations'))
        # the day closed: one transaction, its day rows, no hourly row
        done = self.roundStatements(w, T0 + DAY + GRACE)
        self.assertEqual(done.count('BEGIN IMMEDIATE'), 1)
        self.assertEqual(_rollupRows(self.path, HOUR), {})
        self.assertEqual(_rollupRows(self.path, DAY), _rollupRows(hourly, DAY))
        self.assertEqual(w.rollups.pending, {})
        with openStore(self.path) as reader:
            self.assertEqual(reader.rollupState()[0], T0 + DAY)
            self.assertEqual(reader.rollupState()[3], [T0])
            with openStore(hourly) as by_hours:
                for kind in ('durations', 'steps', 'results'):
                    for start, end, period in ((None, None, None), (T0 + 5 * HOUR, None, None),
                                               (None, None, HOUR), (None, None, DAY),
                                               (T0 + 1800, T0 + 20 * HOUR + 5, None)):
                        self.assertEqual(reader.summarize(kind, None, start, end, period),
                                         by_hours.summarize(kind, None, start, end, period),
                                         (kind, start, end, period))
                self.assertEqual(reader.lastFailures(), by_hours.lastFailures())
                self.assertEqual(reader.firstTime(), by_hours.firstTime())
        # nothing due again
        self.assertEqual(self.roundStatements(w, T0 + DAY + GRACE + 60), [])

    def test_late_points_and_a_rebuild_roll_the_whole_day_again(self):
        w = self.writer()
        self.builds(w, self.path, range(0, 24, 2))
        while w.maintain(self.path, T0 + DAY + GRACE):
            pass
        self.assertEqual(rollups.rawDays(w.conn), {T0})
        # late points into the raw-only day (dirty hours), a replaced one too
        self.builds(w, self.path, [3, 7])
        self.n -= 1
        self.builds(w, self.path, [7])
        with openStore(self.path) as reader:
            self.assertEqual(reader.rollupState()[2], [T0 + 3 * HOUR, T0 + 7 * HOUR])
        while w.maintain(self.path, T0 + DAY + GRACE + 60, eager=False):
            pass
        hourly = self.hourly(list(range(0, 24, 2)) + [3, 7])
        self.assertEqual(_rollupRows(self.path, HOUR), {})
        self.assertEqual(_rollupRows(self.path, DAY), _rollupRows(hourly, DAY))
        with openStore(self.path) as reader:
            self.assertEqual(reader.rollupState()[2:], ([], [T0]))
        # buildbot-stats rebuild-rollups: the same rows again
        before = _rollupRows(self.path, DAY)
        rebuild = self.writer()
        rebuild.open(self.path)
        rebuild.conn.execute("BEGIN IMMEDIATE")
        self.assertEqual(rebuild.rollups.markForRebuild(rebuild.conn), 14)
        rebuild.conn.execute("COMMIT")
        while rebuild.maintain(self.path, T0 + DAY + GRACE + 120):
            pass
        self.assertEqual(_rollupRows(self.path, DAY), before)
        self.assertEqual(_rollupRows(self.path, HOUR), {})

    def test_a_busy_day_closes_by_the_hour(self):
        self.patch(rollups, 'SPARSE_DAY_POINTS', 60)  # 12 builds of 5 points
        w = self.writer()
        self.builds(w, self.path, range(14))
        while w.maintain(self.path, T0 + DAY + GRACE):
            pass
        self.assertEqual(rollups.rawDays(w.conn), set())
        self.assertEqual(len({k[3] for k in _rollupRows(self.path, HOUR)}), 14)
        self.assertEqual(_rollupRows(self.path, DAY), _rollupRows(self.hourly(range(14)),
                                                                  DAY))

    def test_the_day_of_a_restart_closes_by_the_hour(self):
        # the writer reopened mid-day: that day's earlier points are not in memory
        w = self.writer()
        self.builds(w, self.path, range(0, 10))
        w.close()
        self.builds(w, self.path, range(10, 20))
        while w.maintain(self.path, T0 + 2 * DAY + GRACE):
            pass
        self.builds(w, self.path, [DAY // HOUR + 24 + 1])  # the next day: quiet
        while w.maintain(self.path, T0 + 3 * DAY + GRACE):
            pass
        self.assertEqual(rollups.rawDays(w.conn), {T0 + 2 * DAY})
        self.assertEqual(len({k[3] for k in _rollupRows(self.path, HOUR)}), 20)


class MigrationFromV4Test(TempStore):
    """tests/fixtures/store-v4.sqlite was written by the schema v4 release (its script is
    beside it: hourly rollups, a late point, retention): today's writer migrates it to
    version 5 and every answer stays; the days written after are quiet days."""

    def test_a_v4_store_keeps_every_answer(self):
        import importlib.util
        import json
        here = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures')
        shutil.copy(os.path.join(here, 'store-v4.sqlite'), self.path)
        spec = importlib.util.spec_from_file_location(
            'make_store_v4', os.path.join(here, 'make_store_v4.py'))
        fixture = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(fixture)
        with open(os.path.join(here, 'store-v4.json'), encoding='utf-8') as f:
            expected = json.load(f)
        self.assertEqual(expected['T0'], T0)
        # read as it is (version 4: no raw-only day)
        self.assertEqual(fixture.answers(self.path), expected['answers'])
        w = self.writer()
        w.open(self.path)
        conn = sqlite3.connect(self.path)
        self.addCleanup(conn.close)
        self.assertEqual(conn.execute("PRAGMA user_version").fetchone()[0], 5)
        self.assertEqual(rollups.rawDays(conn), set())
        self.assertEqual(fixture.answers(self.path), expected['answers'])
        # the master goes on: its day at the watermark (mid-day) by the hour, the next
        # ones quiet
        n = 5000
        for h in range(3 * 24 + 14, 6 * 24, 3):
            n += 1
            w.write(self.path, fixture.rows('alpha', n, T0 + h * HOUR + 60, 3.0 + n % 5,
                                            'success'))
            while w.maintain(self.path, T0 + h * HOUR + 1200, eager=False):
                pass
        while w.maintain(self.path, T0 + 6 * DAY + GRACE, eager=False):
            pass
        self.assertEqual(rollups.rawDays(conn), {T0 + 4 * DAY, T0 + 5 * DAY})
        got = fixture.answers(self.path)
        for key, answer in expected['answers'].items():
            if key == 'firstTime':
                self.assertEqual(got[key], answer)
                continue
            kind, lo, hi = json.loads(key)[:3]
            if hi is not None and hi <= 3 * DAY:
                self.assertEqual(got[key], answer, key)
