"""The rollups' cheaper maintenance: the writer, which reads the rollup state once after each
maintenance rather than at every transaction, loses no point when another program (a
command) rolls up the hours it holds in memory; a day's (a week's) sketch merged without
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
from buildbot_stats.storage.sqlite.aggregates import Quantiles
from buildbot_stats.storage.sqlite.aggregates import encodeSketch
from buildbot_stats.storage.sqlite.rollups import DAY
from buildbot_stats.storage.sqlite.rollups import HOUR
from buildbot_stats.storage.sqlite.rollups import mergeSketches
from buildbot_stats.storage.sqlite.writer import StoreWriter
from tests.test_rollups import T0
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

    def setUp(self):
        super().setUp()
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
            # the maintenance at every hour, as the master's timer runs it
            while w.maintain(self.path, t):
                pass

    def expected(self, builder, start, end, raw_since=0):
        failures = [(t, n) for b, n, t, r in self.builds
                    if b == builder and r == 'failure' and (start is None or t >= start)
                    and (end is None or t < end)]
        if not failures:
            return None
        t, n = max(failures)
        if t < raw_since:
            return (float(t // HOUR * HOUR), None, 'failure')
        return (t, n, 'failure')

    def test_as_the_raw_points_say(self):
        with openStore(self.path) as reader:
            watermark = reader.rollupState()[0]
            self.assertEqual(watermark % DAY // HOUR, 6)  # mid-day: hours not in a day yet
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
            for builder in ('alpha', 'beta', 'gamma'):
                for end in (None, T0 + DAY, T0 + 40 * HOUR, T0 + 4 * DAY):
                    self.assertEqual(reader.lastFailures(builder, None, end).get(builder),
                                     self.expected(builder, None, end, raw_since),
                                     (builder, end))


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
