"""The embedded store's rollups and retention: the answers from rollups are the exact ones
from the raw points (within the sketch's error), through writes, late points, replaced points,
maintenance at any time and pruning; a store written by the schema v2 release is migrated
with every point kept; a prune killed midway loses nothing and finishes when run again."""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from twisted.internet import defer
from twisted.trial import unittest

from buildbot_stats import stats
from buildbot_stats.cli import main as cli_main
from buildbot_stats.reading.plan import plan
from buildbot_stats.reading.sqlite import openStore
from buildbot_stats.storage.sqlite import aggregates
from buildbot_stats.storage.sqlite import retention
from buildbot_stats.storage.sqlite import rollups
from buildbot_stats.storage.sqlite import schema
from buildbot_stats.storage.sqlite.rollups import DAY
from buildbot_stats.storage.sqlite.rollups import HOUR
from buildbot_stats.storage.sqlite.values import encodeRow
from buildbot_stats.storage.sqlite.writer import StoreWriter

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, 'fixtures', 'store-v2.sqlite')
T0 = 1_700_000_000 // 86400 * 86400  # a midnight (UTC)
BUILDERS = ('alpha', 'beta')
STEPS = ('compile', 'test')
RESULTS = ('success', 'failure', 'cancelled')


def nearestRank(ordered, q):
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


class Model:
    """What the store's answers must be: every point written (the last write of each
    series, tags and time), with what retention and late writes into pruned hours change."""

    def __init__(self):
        self.points = {}  # (series, tags, time_us) -> (tags, fields)
        self.raw_since = 0  # seconds: the store's, as of the last prune

    def write(self, series, tags, fields, t):
        time_us = round(t * 1e6)
        if time_us < self.raw_since * 1e6:
            return  # the hour is summarized already: no rollup changes (documented)
        self.points[(series, json.dumps(tags, sort_keys=True), time_us)] = (tags, fields)

    def values(self, kind, builder, start, end, raw_since, raw_days=()):
        """``{group: [values]}`` the reader must summarize for ``[start, end)``."""
        # an edge in a pruned raw-only day (day rows only): the whole day
        if start is not None and start < raw_since and start // DAY * DAY in raw_days:
            start = start // DAY * DAY
        if end is not None and end < raw_since and end // DAY * DAY in raw_days \
                and end % DAY:
            end = end // DAY * DAY + DAY
        if start is not None and start < raw_since and start % HOUR:
            start = start // HOUR * HOUR  # an edge in a pruned hour: the whole hour
        if end is not None and end < raw_since and end % HOUR:
            end = -(-end // HOUR * HOUR)
        out = {}
        for (series, _, time_us), (tags, fields) in self.points.items():
            t = time_us / 1e6
            if start is not None and t < start or end is not None and t >= end:
                continue
            b = tags.get('builder_name')
            if builder is not None and b != builder:
                continue
            if kind == 'durations' and series == f'{b}-build-times':
                out.setdefault(b, []).append(fields['duration'])
            elif kind == 'steps' and series == 'steps':
                out.setdefault((b, tags['step_name']), []).append(fields['duration'])
            elif kind == 'results' and series == 'builds':
                out.setdefault((b, tags['result']), []).append(None)
            elif kind == 'custom' and series.endswith('-coverage'):
                for f, v in fields.items():
                    out.setdefault((series, f), []).append(v)
        return out


def rowsOfBuild(builder, number, t, duration, result, step_shift):
    tags = {'builder_name': builder, 'build_number': str(number)}
    return [
        encodeRow(f'{builder}-build-times', tags, {'duration': duration}, t),
        encodeRow('builds', {'builder_name': builder, 'result': result},
                  {'result_code': RESULTS.index(result), 'build_number': number}, t),
        *(encodeRow('steps', {'builder_name': builder, 'step_name': s},
                    {'duration': duration / 2 + k + step_shift, 'build_number': number}, t)
          for k, s in enumerate(STEPS)),
        encodeRow(f'{builder}-coverage', tags, {'percent': 50.0 + duration % 7,
                                                'lines': int(duration * 10)}, t),
    ]


# a build: its builder, number, time (seconds after T0), duration (a few distinct values, so
# that medians of even counts and ties happen), result
builds = st.tuples(st.sampled_from(BUILDERS), st.integers(1, 40),
                   st.integers(0, 3 * 86400 - 1), st.integers(1, 12).map(lambda d: d * 2.5),
                   st.sampled_from(RESULTS))
operations = st.lists(st.one_of(
    st.tuples(st.just('write'), st.lists(builds, min_size=1, max_size=12)),
    # another program writing the same file (a backfill, a second master's writer)
    st.tuples(st.just('other'), st.lists(builds, min_size=1, max_size=6)),
    # maintenance at a time: hours close (late points after it become dirty)
    st.tuples(st.just('maintain'), st.integers(0, 4 * 86400)),
    # the master's timer round at a time: closed hours may wait (Rollups.due)
    st.tuples(st.just('tick'), st.integers(0, 4 * 86400)),
    # retention: raw points older than (now - keep) go
    st.tuples(st.just('prune'), st.tuples(st.integers(0, 4 * 86400), st.integers(1, 60))),
    # the master restarts: its writer opens the file again, its open hours not in memory
    st.tuples(st.just('reopen'), st.none()),
    # buildbot-stats rebuild-rollups at a time: every rolled-up hour (and raw-only day)
    # rolled up again from the raw points
    st.tuples(st.just('rebuild'), st.integers(0, 4 * 86400)),
), min_size=1, max_size=8)
# the same, times drawn as (day, second of the day), so that the writes and the rounds
# spread over the days (hypothesis favours small integers): quiet days close, and points
# come late into them
def _dayTime(days):
    return st.builds(lambda d, s: d * 86400 + s, st.integers(0, days - 1),
                     st.integers(0, 86399))


day_builds = st.tuples(st.sampled_from(BUILDERS), st.integers(1, 40), _dayTime(3),
                       st.integers(1, 12).map(lambda d: d * 2.5), st.sampled_from(RESULTS))
day_operations = st.lists(st.one_of(
    st.tuples(st.just('write'), st.lists(day_builds, min_size=1, max_size=12)),
    st.tuples(st.just('other'), st.lists(day_builds, min_size=1, max_size=3)),
    st.tuples(st.just('maintain'), _dayTime(5)),
    st.tuples(st.just('tick'), _dayTime(5)),
    st.tuples(st.just('prune'), st.tuples(_dayTime(5), st.integers(1, 60))),
    st.tuples(st.just('reopen'), st.none()),
    st.tuples(st.just('rebuild'), _dayTime(5)),
), min_size=2, max_size=10)
ranges = st.tuples(st.one_of(st.none(), st.integers(-3600, 3 * 86400)),
                   st.one_of(st.none(), st.integers(1, 3 * 86400 + 3600)))


def forbidRollUpOfRawOnlyDays(test):
    """For the time of ``test``: a day rolled up from its hours fails it if the day is a
    raw-only day (no hourly rows: its day rows would be emptied)."""
    rollUp = rollups.Rollups._rollUp

    def checkedRollUp(rolls, conn, finer, level, start):
        if finer == HOUR:
            test.assertNotIn(start, rollups.rawDays(conn), 'a raw-only day from hours')
        return rollUp(rolls, conn, finer, level, start)
    test.patch(rollups.Rollups, '_rollUp', checkedRollUp)


class RollupsMatchRawTest(unittest.TestCase):
    """Hypothesis drives writes (new, late and replaced points), maintenance and pruning;
    every aggregate the page asks for then equals the exact one computed from the points."""

    def check(self, ops, queries, exact_values, sparse_points=rollups.SPARSE_DAY_POINTS,
              last_round=None):
        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d, True)
        path = os.path.join(d, 'stats.sqlite')
        writer, other = StoreWriter(5.0), StoreWriter(5.0)
        self.addCleanup(writer.close)
        self.addCleanup(other.close)
        model = Model()
        old = aggregates.EXACT_VALUES
        # a sketch of more than ``exact_values`` values is a t-digest: small data exercises
        # both forms
        aggregates.EXACT_VALUES = exact_values
        self.addCleanup(setattr, aggregates, 'EXACT_VALUES', old)
        # a timer round closes the hours waiting once a few builds' points wait
        self.patch(rollups, 'CLOSE_AT_POINTS', 40)
        # a day of fewer points is quiet (day rows only): with a few builds a day, both
        # kinds of day happen
        self.patch(rollups, 'SPARSE_DAY_POINTS', sparse_points)
        forbidRollUpOfRawOnlyDays(self)
        for op, arg in ops:
            if op in ('write', 'other'):
                rows = []
                for b, n, dt, duration, result in arg:
                    # a build written again replaces its points (same series, tags, time)
                    rows += rowsOfBuild(b, n, T0 + dt + n * 1e-3, duration, result, 0)
                    for series, time_us, tags, fields in rows[-5:]:
                        model.write(series, tags, fields, time_us / 1e6)
                (writer if op == 'write' else other).write(path, rows)
            elif op == 'maintain':
                while writer.maintain(path, T0 + arg):
                    pass
            elif op == 'tick':
                while writer.maintain(path, T0 + arg, eager=False):
                    pass
            elif op == 'reopen':
                writer.close()
                writer.open(path)
            elif op == 'rebuild':
                command = StoreWriter(5.0)
                conn = command.open(path)
                conn.execute("BEGIN IMMEDIATE")
                command.rollups.markForRebuild(conn)
                conn.execute("COMMIT")
                while command.maintain(path, T0 + arg):
                    pass
                command.close()
            else:
                now, keep_hours = arg
                while writer.maintain(path, T0 + now, keep=keep_hours * HOUR):
                    pass
                with openStore(path) as reader:
                    model.raw_since = reader.rawSince()
        if last_round is not None:
            # a timer round once every day written closed: the quiet days close (and the
            # days written into after they closed are rolled up again)
            while writer.maintain(path, T0 + last_round, eager=False):
                pass
        conn = sqlite3.connect(path)
        try:
            raw_days = sorted(rollups.rawDays(conn))
            for day in raw_days:
                self.assertEqual(conn.execute(
                    "SELECT COUNT(*) FROM rollups WHERE level = ? AND start >= ? AND start < ?",
                    (HOUR, day, day + DAY)).fetchone()[0], 0, day)
            if sparse_points == 0:
                self.assertEqual(raw_days, [])
        finally:
            conn.close()
        with openStore(path) as reader:
            raw_since = reader.rawSince()
            self.assertEqual(reader.rollupState()[3], raw_days)
            for kind, builder, (lo, hi), period in queries:
                start = None if lo is None else T0 + lo
                end = None if hi is None else T0 + hi
                if start is not None and end is not None and start >= end:
                    continue
                expected = model.values(kind, builder, start, end, raw_since, raw_days)
                got = reader.summarize(kind, builder, start, end, period=period)
                if period is None:
                    self.assertEqual(set(got), set(expected), (kind, builder, start, end))
                    for group, values in expected.items():
                        self.assertStats(got[group], values, (kind, group, start, end))
                else:
                    total = {g: sum(s.count for _, s in rows) for g, rows in got.items()}
                    self.assertEqual(total, {g: len(v) for g, v in expected.items()})
                    for g, rows in got.items():
                        self.assertEqual([t % period for t, _ in rows], [0] * len(rows))

    def assertStats(self, stats_, values, where):
        self.assertEqual(stats_.count, len(values), where)
        if values[0] is None:
            return
        self.assertAlmostEqual(stats_.sum, sum(values), places=6, msg=where)
        self.assertEqual((stats_.min, stats_.max), (min(values), max(values)), where)
        ordered = sorted(values)
        if stats_.exact:
            self.assertEqual(stats_.median, statistics.median(ordered), where)
            self.assertEqual(stats_.p90, nearestRank(ordered, 0.9), where)
        else:
            # a t-digest of singletons interpolates between the neighbours of the rank
            for q, got in ((0.5, stats_.median), (0.9, stats_.p90)):
                rank = q * (len(ordered) - 1)
                lo = ordered[max(0, math.floor(rank) - 1)]
                hi = ordered[min(len(ordered) - 1, math.ceil(rank) + 1)]
                self.assertTrue(lo - 1e-9 <= got <= hi + 1e-9, (where, q, got, lo, hi))

    @settings(max_examples=25, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(operations,
           st.lists(st.tuples(st.sampled_from(('durations', 'steps', 'results', 'custom')),
                              st.sampled_from((None,) + BUILDERS), ranges,
                              st.sampled_from((None, None, HOUR, 86400))),
                    min_size=1, max_size=6),
           st.sampled_from((300, 3)),
           # by the hour only; a few builds a day quiet; every day quiet
           st.sampled_from((0, 40, 5000)),
           st.sampled_from((None, 4 * 86400 + 3600)))
    def test_rollups_answer_as_the_raw_points(self, ops, queries, exact_values,
                                              sparse_points, last_round):
        self.check(ops, queries, exact_values, sparse_points, last_round)

    # (about one example in eight closes a quiet day, one in four rolls one up again)
    @settings(max_examples=80, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(day_operations,
           st.lists(st.tuples(st.sampled_from(('durations', 'steps', 'results', 'custom')),
                              st.sampled_from((None,) + BUILDERS),
                              st.tuples(st.one_of(st.none(), _dayTime(3)),
                                        st.one_of(st.none(), _dayTime(4))),
                              st.sampled_from((None, None, HOUR, 86400))),
                    min_size=1, max_size=6),
           st.sampled_from((300, 3)), st.sampled_from((40, 5000)),
           st.sampled_from((None, 4 * 86400 + 3600)))
    def test_raw_only_days_answer_as_the_raw_points(self, ops, queries, exact_values,
                                                    sparse_points, last_round):
        self.check(ops, queries, exact_values, sparse_points, last_round)

    def test_a_late_point_and_a_replaced_point_after_the_hour_closed(self):
        # the cases the property test finds rarely, written out
        ops = [('write', [('alpha', 1, 100, 10.0, 'success'), ('alpha', 2, 200, 20.0,
                                                              'failure')]),
               ('maintain', 86400),
               # late: into hour 0, rolled up already; replaced: build 2's points again
               ('write', [('alpha', 3, 300, 30.0, 'success'), ('alpha', 2, 200, 25.0,
                                                              'success')]),
               ('prune', (86400 + 3 * HOUR, 2))]
        queries = [(k, None, (None, None), None) for k in ('durations', 'results', 'steps')]
        self.check(ops, queries, 300)
        self.check(ops[:3], queries, 300)

    def test_open_hours_partly_written_elsewhere(self):
        # the writer keeps the open hours' points in memory and closes an hour from them
        # alone only when no other program and no earlier run of the writer wrote into it:
        # another program writes into the hour open in memory and into the next one; the
        # writer is restarted with points of hours 3 and 4 in the file
        ops = [('write', [('alpha', 1, 60, 10.0, 'success')]),
               ('other', [('alpha', 2, 120, 20.0, 'failure'),
                          ('beta', 3, HOUR + 60, 7.5, 'success')]),
               ('write', [('alpha', 4, 180, 12.5, 'success'),
                          ('beta', 5, HOUR + 120, 5.0, 'success')]),
               ('maintain', 2 * HOUR + 3600),
               ('write', [('alpha', 6, 3 * HOUR + 60, 2.5, 'success'),
                          ('beta', 7, 4 * HOUR + 60, 30.0, 'failure')]),
               ('reopen', None),
               ('write', [('alpha', 8, 3 * HOUR + 120, 15.0, 'success'),
                          ('beta', 9, 5 * HOUR + 60, 17.5, 'success')]),
               ('maintain', 86400)]
        queries = [(k, b, (None, None), p) for k in ('durations', 'results', 'steps', 'custom')
                   for b in (None, 'alpha') for p in (None, HOUR)]
        self.check(ops, queries, 300)


class PlanTest(unittest.TestCase):
    """Which level answers which part of a range: every second of it exactly once."""

    def assertCoversOnce(self, p, lo, hi):
        """The pieces of the plan ``p`` cover ``[lo, hi)`` (the range, its edges widened to
        what is taken whole) once."""
        pieces = [(a if a is not None else 0, b if b is not None else 41 * 86400)
                  for a, b in p.raw] + p.hours + p.days + p.weeks
        pieces = sorted((max(a, lo), min(b, hi)) for a, b in pieces if min(b, hi) > max(a, lo))
        covered = lo
        for a, b in pieces:
            self.assertEqual(a, covered, (p, lo, hi))
            covered = b
        self.assertEqual(covered, hi, p)

    @settings(max_examples=300, deadline=None)
    @given(st.integers(0, 40 * 24), st.integers(0, 40 * 24), st.lists(st.integers(0, 40 * 24),
                                                                       max_size=6),
           st.one_of(st.none(), st.integers(0, 40 * 86400)),
           st.one_of(st.none(), st.integers(0, 40 * 86400)),
           st.sampled_from((None, HOUR, 86400, 7 * 86400)))
    def test_the_levels_cover_the_range_once(self, wm_h, since_h, dirty_h, start, end, period):
        if start is not None and end is not None and start >= end:
            return
        watermark, raw_since = wm_h * HOUR, min(since_h, wm_h) * HOUR
        dirty = sorted({h * HOUR for h in dirty_h if h * HOUR >= raw_since})
        p = plan(start, end, watermark, raw_since, dirty, period)
        lo = 0 if start is None else start
        if start is not None and start < raw_since and start % HOUR and start < watermark:
            lo = start // HOUR * HOUR
        hi = 41 * 86400 if end is None else end
        if end is not None and end < raw_since and end % HOUR and end < watermark:
            hi = -(-end // HOUR * HOUR)
        self.assertCoversOnce(p, lo, hi)
        for a, b in p.hours + p.days + p.weeks:
            self.assertLessEqual(b, watermark)
            self.assertFalse(any(a <= h < b for h in dirty), (p, dirty))
        for a, b in p.days:
            self.assertEqual((a % 86400, b % 86400), (0, 0))
        for a, b in p.weeks:
            self.assertEqual((a % (7 * 86400), b % (7 * 86400)), (0, 0))
        if period is not None and period < 86400:
            self.assertEqual(p.days + p.weeks, [])

    @settings(max_examples=300, deadline=None)
    @given(st.integers(0, 40 * 24), st.integers(0, 40 * 24), st.lists(st.integers(0, 40 * 24),
                                                                       max_size=6),
           st.lists(st.integers(0, 39), max_size=30),
           st.one_of(st.none(), st.integers(0, 40 * 86400)),
           st.one_of(st.none(), st.integers(0, 40 * 86400)),
           st.sampled_from((None, HOUR, 86400, 7 * 86400)))
    def test_raw_only_days_are_read_raw_or_taken_whole(self, wm_h, since_h, dirty_h, days,
                                                       start, end, period):
        if start is not None and end is not None and start >= end:
            return
        watermark, raw_since = wm_h * HOUR, min(since_h, wm_h) * HOUR
        raw_days = sorted({d * DAY for d in days if (d + 1) * DAY <= watermark})
        if raw_since // DAY * DAY in raw_days:
            raw_since = raw_since // DAY * DAY  # retention never cuts a raw-only day
        dirty = sorted({h * HOUR for h in dirty_h if h * HOUR >= raw_since})
        p = plan(start, end, watermark, raw_since, dirty, period, raw_days)
        lo = 0 if start is None else start
        hi = 41 * 86400 if end is None else end
        if start is not None and start < raw_since and start < watermark:
            lo = start // DAY * DAY if start // DAY * DAY in raw_days else \
                start // HOUR * HOUR
        if end is not None and end < raw_since and end < watermark:
            hi = end // DAY * DAY + DAY if end // DAY * DAY in raw_days and end % DAY else \
                -(-end // HOUR * HOUR)
        self.assertCoversOnce(p, lo, hi)
        for a, b in p.hours:
            # no hourly row of a raw-only day is asked for
            self.assertFalse(any(d < b and a < d + DAY for d in raw_days), (p, raw_days))
        for a, b in p.raw:
            # nor a raw point of one whose raw points are gone
            self.assertFalse(any(d < raw_since and (b is None or d < b)
                                 and (a is None or a < d + DAY) for d in raw_days),
                             (p, raw_days, raw_since))


class MigrationTest(unittest.TestCase):
    """tests/fixtures/store-v2.sqlite was written by the schema v2 release (its script is
    beside it): the master's writer migrates it in place and keeps every point."""

    def setUp(self):
        self.dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.path = os.path.join(self.dir, 'stats.sqlite')
        shutil.copy(FIXTURE, self.path)
        with open(os.path.join(HERE, 'fixtures', 'store-v2.json'), encoding='utf-8') as f:
            self.expected = json.load(f)

    @defer.inlineCallbacks
    def test_a_v2_store_is_migrated_by_the_master_keeping_every_point(self):
        from twisted.internet import reactor

        svc = stats.SQLiteStorageService(path=self.path)
        yield svc.startService()
        # a master clock past the stored points: the maintenance rolls them up
        svc.postStatsValue({'duration': 5.0}, 'alpha-build-times',
                           {'builder_name': 'alpha', 'build_number': '999'},
                           timestamp=reactor.seconds())
        yield svc.flush()
        while (yield svc.maintain()):
            pass
        yield svc.stopService()
        conn = sqlite3.connect(self.path)
        self.addCleanup(conn.close)
        self.assertEqual(conn.execute("PRAGMA user_version").fetchone()[0],
                         schema.SCHEMA_VERSION)
        meta = dict(conn.execute("SELECT key, value FROM meta"))
        self.assertIn('migrated_by', meta)
        with openStore(self.path) as reader:
            got = [{'series': p.series, 'tags': p.tags, 'fields': p.fields, 'time': p.time}
                   for p in reader.points() if p.tags.get('build_number') != '999']
            self.assertEqual(got, self.expected['points'])
            durations = reader.buildDurations()
            durations['alpha'] = [d for d in durations['alpha'] if d[1] != 999]
            self.assertEqual({b: [list(r) for r in v] for b, v in durations.items()},
                             self.expected['durations'])
            # the rollups of the migrated points answer as the points
            summary = reader.summarize('durations', start=None, end=reader.firstTime() + 86400)
            for b, rows in self.expected['durations'].items():
                values = [d for t, _, d in rows if t < reader.firstTime() + 86400]
                self.assertEqual(summary[b].count, len(values))
                self.assertEqual(summary[b].median, statistics.median(values))
        # the documented views keep the shape of version 2
        fields = conn.execute(
            "SELECT field, value, type FROM field_values WHERE series = 'free' ORDER BY"
            " point_id, field").fetchall()
        self.assertEqual(fields[:4], [('nested', '{"a":[1,2.5,"x"]}', 'object'),
                                      ('v', 1, 'true'), ('w', None, 'null'),
                                      ('n', -3, 'integer')])
        row = conn.execute("SELECT tags, fields FROM points_json WHERE series = 'free'"
                           " ORDER BY id LIMIT 1").fetchone()
        self.assertEqual(json.loads(row[0]), {'build_number': '007', 'where': 'héllo'})
        self.assertEqual(json.loads(row[1]), {'v': True, 'w': None, 'nested': {'a': [1, 2.5,
                                                                                     'x']}})

    def test_the_reader_says_how_to_upgrade_an_old_store(self):
        from buildbot_stats.storage.sqlite.schema import StoreError

        with self.assertRaises(StoreError) as e:
            openStore(self.path)
        self.assertIn("schema version 2", str(e.exception))
        self.assertIn("buildbot-stats rebuild-rollups", str(e.exception))


PRUNE_KILLED = r'''
import os, signal, sys
sys.path.insert(0, {root!r})
from buildbot_stats.storage.sqlite import retention
from buildbot_stats.storage.sqlite import rollups
from buildbot_stats.cli import main
delete = retention.deleteRawBatch
done = []

def killedAfterThree(conn, cutoff, batch=retention.BATCH):
    if len(done) == 3:
        os.kill(os.getpid(), signal.SIGKILL)  # no clean-up of any kind
    done.append(1)
    return delete(conn, cutoff, batch)

retention.deleteRawBatch = killedAfterThree
sys.exit(main.main(sys.argv[1:]))
'''


_PRUNE_STORE = {}


def pruneStore():
    """A store of four builds an hour over 1,000 hours, the last one a few hours ago, rolled
    up: written once per test run, ``(path, t0)``."""
    if not _PRUNE_STORE:
        path = os.path.join(tempfile.mkdtemp(), 'template.sqlite')
        writer = StoreWriter(5.0)
        t0 = (time.time() - 4000 * 900 - 4 * HOUR) // HOUR * HOUR
        rows = []
        for i in range(4000):
            rows += rowsOfBuild(BUILDERS[i % 2], i, t0 + i * 900, 10.0 + i % 13,
                                RESULTS[i % 3], 0)
        for k in range(0, len(rows), 5000):
            writer.write(path, rows[k:k + 5000])
        while writer.maintain(path, time.time()):
            pass
        writer.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        writer.close()
        _PRUNE_STORE.update(path=path, t0=t0)
    return _PRUNE_STORE['path'], _PRUNE_STORE['t0']


class PruneTest(unittest.TestCase):
    """``buildbot-stats prune`` and ``compact`` (they use the clock: the builds end now)."""

    def setUp(self):
        self.dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.path = os.path.join(self.dir, 'stats.sqlite')
        template, self.t0 = pruneStore()
        shutil.copy(template, self.path)

    def summaries(self):
        with openStore(self.path) as reader:
            return {k: reader.summarize(k) for k in ('durations', 'results', 'steps')}

    def test_prune_killed_midway_then_run_again(self):
        before = self.summaries()
        script = PRUNE_KILLED.format(root=os.path.dirname(HERE))
        # the first 600 hours (2,400 builds) go; the age of their end, in whole hours
        cutoff_age = f"{(time.time() - (self.t0 + 600 * HOUR)) // HOUR:.0f}h"
        args = [sys.executable, '-c', script, 'prune', self.path, '--older-than', cutoff_age]
        killed = subprocess.run(args, capture_output=True, text=True, timeout=120)
        self.assertEqual(killed.returncode, -9, killed.stderr)
        conn = sqlite3.connect(self.path)
        self.addCleanup(conn.close)
        self.assertEqual(conn.execute("PRAGMA integrity_check").fetchone()[0], 'ok')
        raw_since = int(dict(conn.execute("SELECT key, value FROM meta"))['raw_since']) / 1e6
        old = conn.execute("SELECT COUNT(*) FROM points WHERE time_us < ?",
                           (raw_since * 1e6,)).fetchone()[0]
        # three batches went, the rest is still there; every answer is the same. The
        # cutoff's day is a quiet one (96 builds), rolled up to day rows only: its raw
        # points stay whole, the cutoff is its start
        cutoff_day = (self.t0 + 600 * HOUR) // 86400 * 86400
        self.assertIn(cutoff_day, [d for (d,) in conn.execute(
            "SELECT day FROM rollup_raw_days")])
        self.assertEqual(raw_since, cutoff_day)
        gone = sum(1 for i in range(4000) if self.t0 + i * 900 < cutoff_day)
        self.assertEqual(old, gone * 5 - 3 * retention.BATCH)
        self.assertEqual(self.summaries(), before)
        out = __import__('io').StringIO()
        self.assertEqual(cli_main.main(['prune', self.path, '--older-than', cutoff_age],
                                       out=out), 0)
        self.assertIn(f"deleted {old} raw points", out.getvalue())
        self.assertEqual(conn.execute("SELECT COUNT(*) FROM points WHERE time_us < ?",
                                      (raw_since * 1e6,)).fetchone()[0], 0)
        self.assertEqual(self.summaries(), before)
        # and the page still has every build of the pruned days, from the rollups
        with openStore(self.path) as reader:
            self.assertEqual(sum(len(v) for v in reader.buildDurations().values()),
                             4000 - gone)
            self.assertEqual(sum(s.count for s in reader.summarize('durations').values()), 4000)

    def test_dry_run_and_compact(self):
        out = __import__('io').StringIO()
        self.assertEqual(cli_main.main(['prune', self.path, '--older-than', '20d',
                                        '--dry-run'], out=out), 0)
        self.assertRegex(out.getvalue(), r"^would delete \d+ raw points older than ")
        # what it would delete is what it deletes (its cutoff moved back to the start of
        # the raw-only day it falls in, as prune's)
        would = out.getvalue().split()[2]
        with openStore(self.path) as reader:
            self.assertEqual(reader.countPoints(), 4000 * 5)
        out = __import__('io').StringIO()
        self.assertEqual(cli_main.main(['prune', self.path, '--older-than', '20d'],
                                       out=out), 0)
        self.assertIn(f"deleted {would} raw points", out.getvalue())
        self.assertEqual(cli_main.main(['prune', self.path, '--older-than', '20d',
                                        '--rollups-older-than', '30d'], out=out), 0)
        # the raw-only days whose rows went are no longer listed
        cutoff = (time.time() - 30 * 86400) // (7 * 86400) * (7 * 86400)
        conn = sqlite3.connect(self.path)
        self.addCleanup(conn.close)
        days = [d for (d,) in conn.execute("SELECT day FROM rollup_raw_days")]
        self.assertTrue(days)
        self.assertGreaterEqual(min(days), cutoff)
        conn.close()
        size = os.path.getsize(self.path)
        self.assertEqual(cli_main.main(['compact', self.path], out=out), 0)
        self.assertLess(os.path.getsize(self.path), size)
        with openStore(self.path) as reader:
            total = sum(s.count for s in reader.summarize('durations').values())
            self.assertEqual(sum(len(v) for v in reader.buildDurations().values()),
                             4000 - (reader.rawSince() - self.t0) // 900)
        # the rollups older than 30 days (whole weeks) went too
        cutoff = (time.time() - 30 * 86400) // (7 * 86400) * (7 * 86400)
        self.assertEqual(total, 4000 - (cutoff - self.t0) // 900)


class WithTheMasterWritingTest(unittest.TestCase):
    """``prune`` and ``compact`` while the backend writes (the master's writer thread): no
    point lost, both done; a lock held too long is one line and status 2."""

    timeout = 120

    @defer.inlineCallbacks
    def test_prune_and_compact_while_points_are_written(self):
        from twisted.internet import reactor
        from twisted.internet import task
        from twisted.internet import threads

        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d, True)
        path = os.path.join(d, 'stats.sqlite')
        svc = stats.SQLiteStorageService(path=path, flush_interval=0.05, keep='30d')
        yield svc.startService()
        self.addCleanup(lambda: svc.stopService() if svc.running else None)
        now = time.time()
        # history: 60 days, a build every 2 hours
        for i in range(60 * 12):
            t = now - 60 * 86400 + i * 7200
            for row in rowsOfBuild('alpha', i, t, 10.0 + i % 7, RESULTS[i % 3], 0):
                svc.postStatsValue(row[3], row[0], row[2], timestamp=row[1] / 1e6)
        yield svc.flush(60)
        written = [0]

        def post():  # a build's duration every 10 ms while the commands run
            written[0] += 1
            svc.postStatsValue({'duration': 1.0}, 'beta-build-times',
                               {'builder_name': 'beta', 'build_number': str(written[0])},
                               timestamp=reactor.seconds())
        loop = task.LoopingCall(post)
        loop.start(0.01)
        out = io.StringIO()
        status = yield threads.deferToThread(
            cli_main.main, ['prune', path, '--older-than', '30d'], out=out)
        self.assertEqual(status, 0, out.getvalue())
        status = yield threads.deferToThread(cli_main.main, ['compact', path], out=out)
        self.assertEqual(status, 0, out.getvalue())
        loop.stop()
        self.assertTrue((yield svc.flush(30)))
        self.assertEqual(svc.counters.dropped + svc.counters.rejected, 0)
        with openStore(path) as reader:
            self.assertEqual(len(reader.buildDurations('beta')['beta']), written[0])
            self.assertEqual(reader.summarize('durations', 'alpha')['alpha'].count, 60 * 12)
            self.assertLessEqual(reader.rawSince(), now - 30 * 86400)
            self.assertGreater(reader.rawSince(), now - 31 * 86400)
        yield svc.stopService()

    def test_a_store_held_by_another_writer_is_refused_in_one_line(self):
        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d, True)
        path = os.path.join(d, 'stats.sqlite')
        StoreWriter(5.0).write(path, rowsOfBuild('alpha', 1, T0, 1.0, 'success', 0))
        holder = sqlite3.connect(path, isolation_level=None)
        self.addCleanup(holder.close)
        holder.execute("BEGIN IMMEDIATE")  # a long write transaction of another program
        out = io.StringIO()
        result = subprocess.run(
            [sys.executable, '-m', 'buildbot_stats.cli.main', 'compact', path,
             '--busy-timeout', '0.5'], capture_output=True, text=True, timeout=60,
            cwd=os.path.dirname(HERE))
        holder.execute("ROLLBACK")
        self.assertEqual(result.returncode, 2, result.stderr)
        self.assertEqual(len(result.stderr.splitlines()), 1, result.stderr)
        self.assertIn("locked", result.stderr + out.getvalue())


class BothFormsTest(unittest.TestCase):
    """A build written in both forms of its build number (a tag, then a field after
    ``StatsService(build_number='field')``: the catch-up writes it again a little later)
    counts once, in its tag form, in the rollups as in the raw points' answers."""

    def test_a_build_in_both_forms_counts_once(self):
        # the field form written into an hour rolled up already, then into an open one
        for closed_first in (True, False):
            self.check(closed_first)

    def check(self, closed_first):
        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d, True)
        path = os.path.join(d, 'stats.sqlite')
        writer = StoreWriter(5.0)
        self.addCleanup(writer.close)

        def build(n, t, form):
            if form == 'tag':
                tags, fields = {'builder_name': 'alpha', 'build_number': str(n)}, {}
            else:
                tags, fields = {'builder_name': 'alpha'}, {'build_number': n}
                t += (n % 1000) * 1e-3  # the field form's spread (buildbot_stats.timestamps)
            return [encodeRow('alpha-build-times', tags, dict(fields, duration=10.0 + n), t),
                    encodeRow('alpha-coverage', tags, dict(fields, percent=50.0 + n), t)]

        rows = []
        for n in range(1, 11):
            rows += build(n, T0 + n * 60, 'tag')
        writer.write(path, rows)
        # the switch: builds 8 to 10 again in the field form, then 11 and 12 in the field
        # form only
        if closed_first:
            writer.maintain(path, T0 + 4 * HOUR)
        writer.write(path, [r for n in range(8, 13) for r in build(n, T0 + n * 60, 'field')])
        # (the quiet day closed last: rolled up from the points in memory, both forms there)
        for now in (T0 + 4 * HOUR, T0 + 10 * HOUR, T0 + 2 * DAY):
            while writer.maintain(path, now):
                pass
            with openStore(path) as reader:
                self.assertEqual(reader.summarize('durations')['alpha'].count, 12)
                self.assertEqual(reader.summarize('custom')[('alpha-coverage', 'percent')].count,
                                 12)
                self.assertEqual([n for _, n, _ in reader.buildDurations()['alpha']],
                                 list(range(1, 13)))
                self.assertEqual([n for _, n, _ in reader.recentDurations()['alpha']],
                                 list(range(1, 13)))
                self.assertEqual(len(reader.customSeries()['alpha-coverage']), 12)
