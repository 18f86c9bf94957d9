"""Reading the embedded store: the one read API of ``buildbot-stats report`` and ``export``.

Opens the file read-only, so it is safe while a master writes it (WAL mode lets readers
and the writer work at once). Every problem with the file is a :class:`StoreError` whose
message is one line for a user.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import sqlite3
import statistics
from dataclasses import dataclass

from buildbot_stats.point import Point
from buildbot_stats.reading import changes
from buildbot_stats.reading.forms import BUILD_NUMBER
from buildbot_stats.reading.forms import oneFormPerBuild
from buildbot_stats.reading.tests import Run
from buildbot_stats.reading.tests import TestQueries
from buildbot_stats.storage.sqlite.schema import StoreError
from buildbot_stats.storage.sqlite.schema import checkReadable
from buildbot_stats.storage.sqlite.schema import connectReadOnly
from buildbot_stats.storage.sqlite.schema import describeReadError
from buildbot_stats.storage.sqlite.schema import NAME_BITS
from buildbot_stats.storage.sqlite.schema import NAME_MASK
from buildbot_stats.storage.sqlite.schema import TESTS_VERSION
from buildbot_stats.storage.sqlite.schema import looksLikeSQLite

__all__ = ['StoreError', 'StoreReader', 'SeriesInfo', 'openStore']


#: Seconds a reader waits for a lock: in WAL mode, readers and the writer work at once,
#: so only another program's exclusive lock makes it wait; it is named after this.
READ_BUSY_TIMEOUT = 1.0


@dataclass(frozen=True)
class SeriesInfo:
    name: str
    points: int
    first: float  # seconds since the epoch
    last: float


def openStore(path):
    """A :class:`StoreReader` of ``path``; raises :class:`StoreError` with the reason."""
    return StoreReader(path)


#: row ids per ``IN (...)`` of the per-test look-ups
ID_CHUNK = 500


class StoreReader(TestQueries):
    def __init__(self, path):
        self.path = path
        if not os.path.exists(path):
            raise StoreError(f"{path}: no such file")
        if os.path.isdir(path):
            raise StoreError(f"{path}: is a directory, not a store file")
        if not looksLikeSQLite(path):
            raise StoreError(f"{path}: not an SQLite file")
        try:
            self.conn = connectReadOnly(path, timeout=READ_BUSY_TIMEOUT)
            self.version = checkReadable(self.conn)
        except StoreError as e:
            raise StoreError(f"{path}: {e}") from None
        except sqlite3.Error as e:
            raise StoreError(f"{path}: {describeReadError(e)}") from None

    def close(self):
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _error(self, e):
        # damage after the header shows only when a query reaches the damaged page, which
        # may be well into the rows: every fetch is guarded, not only the execute
        return StoreError(f"{self.path}: {describeReadError(e)}")

    def _query(self, sql, params=()):
        """The rows of a query, one by one; a problem met on the way is a StoreError."""
        try:
            cursor = self.conn.execute(sql, params)
        except sqlite3.Error as e:
            raise self._error(e) from None
        while True:
            try:
                rows = cursor.fetchmany(500)
            except sqlite3.Error as e:
                raise self._error(e) from None
            if not rows:
                return
            yield from rows

    def _all(self, sql, params=()):
        """Every row of a query at once (a list), a problem a StoreError."""
        try:
            return self.conn.execute(sql, params).fetchall()
        except sqlite3.Error as e:
            raise self._error(e) from None

    def _one(self, sql, params=()):
        """The first row of a query (None without one)."""
        return next(self._query(sql, params), None)

    @contextlib.contextmanager
    def readTransaction(self):
        """Every query in the block sees one state of the file (a writer may commit
        meanwhile: WAL mode keeps this reader's snapshot)."""
        try:
            self.conn.execute("BEGIN")
        except sqlite3.Error as e:
            raise self._error(e) from None
        try:
            yield self
        finally:
            self.conn.rollback()

    def maxId(self):
        """The highest row id (None for an empty store): the newest row written."""
        return self._one("SELECT MAX(id) FROM points")[0]

    def rowKey(self, row_id):
        """``(series, time_us)`` of the row ``row_id``, None when there is none."""
        return self._one("SELECT series, time_us FROM points WHERE id = ?", (row_id,))

    def countAfter(self, row_id):
        """The number of points with a higher row id than ``row_id``."""
        return self._one("SELECT COUNT(*) FROM points WHERE id > ?", (row_id,))[0]

    def series(self):
        """Every series with its number of points and its time range, by name."""
        rows = self._query(
            "SELECT series, COUNT(*), MIN(time_us), MAX(time_us) FROM points"
            " GROUP BY series ORDER BY series"
        )
        return [SeriesInfo(name, n, lo / 1e6, hi / 1e6) for name, n, lo, hi in rows]

    def stateKey(self):
        """A value that changes whenever the points change: the file (device, inode and
        change time: a new file may get the inode of a deleted one), its schema version,
        its number of points and its highest row id. A write adds rows
        with higher ids (SQLite gives a new row the highest id + 1, an ``INSERT OR
        REPLACE`` too: the replaced row's id goes), a deletion lowers the count; so a
        cached view of the same key shows the same points. Two cheap queries (the count
        walks the smallest index, the highest id is the last row)."""
        try:
            st = os.stat(self.path)
        except OSError as e:
            raise StoreError(f"{self.path}: cannot be read: {e.strerror}") from None
        # two statements: each has SQLite's fast path (together they scan every row)
        count = self.countPoints()
        max_id = self.maxId()
        return (st.st_dev, st.st_ino, st.st_ctime_ns, self.version, count, max_id,
                self._testRunsState())

    def testsStateKey(self):
        """A value that changes whenever the per-test history changes: the file, its schema
        version and its runs (a build's results are written, or replaced, in one
        transaction with its run, which gets a new row id; a deletion lowers the count)."""
        try:
            st = os.stat(self.path)
        except OSError as e:
            raise StoreError(f"{self.path}: cannot be read: {e.strerror}") from None
        return (st.st_dev, st.st_ino, self.version, self._testRunsState())

    def _testRunsState(self):
        if self.version < TESTS_VERSION:
            return None
        return self._one("SELECT COUNT(*), MAX(id) FROM test_runs")

    def countPoints(self):
        return next(self._query("SELECT COUNT(*) FROM points"))[0]

    def matchSeries(self, patterns):
        """The series names matching ``patterns`` (names or shell globs such as
        ``'alpha-*'``); a pattern that matches nothing raises :class:`StoreError`."""
        names = [s.name for s in self.series()]
        if not patterns:
            return names
        chosen = []
        for pattern in patterns:
            found = fnmatch.filter(names, pattern)
            if not found:
                known = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
                raise StoreError(
                    f"{self.path}: unknown series {pattern!r} (the store has: {known or 'none'})"
                )
            chosen.extend(n for n in found if n not in chosen)
        return sorted(chosen)

    def points(self, series=None, start=None, end=None):
        """The points of ``series`` (a list of names; None: all) with ``start <= time <
        end`` (seconds; None: unbounded), ordered by time."""
        where, params = [], []
        if series is not None:
            if not series:
                return
            where.append(f"series IN ({','.join('?' * len(series))})")
            params.extend(series)
        self._window(where, params, None, start, end)
        sql = "SELECT id, series, time_us, tags, fields FROM points"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY time_us, id"
        for row_id, series, time_us, tags, fields in self._query(sql, params):
            try:
                tags, fields = json.loads(tags), json.loads(fields)
                if not isinstance(tags, dict) or not isinstance(fields, dict):
                    raise ValueError("not a JSON object")
                when = time_us / 1e6
            except (TypeError, ValueError) as e:
                # written by another program, or damaged: the store's, not a bug
                raise StoreError(f"{self.path}: is damaged: the point of row {row_id} "
                                 f"({series!r}) cannot be read ({type(e).__name__})") from None
            yield Point(series=series, tags=tags, fields=fields, time=when)

    # -- the queries of the report and the web page (same names in reading.influxdb) -----------

    @staticmethod
    def _window(where, params, builder, start, end, table=''):
        """Add the conditions of one builder (None: all) and ``start <= time < end``
        (seconds; None: unbounded) to ``where`` and ``params``; ``table``: a column prefix
        (``'p.'``)."""
        if builder is not None:
            where.append(f"{table}builder = ?")
            params.append(builder)
        if start is not None:
            where.append(f"{table}time_us >= ?")
            params.append(round(start * 1e6))
        if end is not None:
            where.append(f"{table}time_us < ?")
            params.append(round(end * 1e6))

    def builderNames(self):
        """Every builder with points in the store, sorted."""
        return self._distinct('builder')

    def _distinct(self, column):
        """The distinct non-null values of an indexed ``column`` (``builder``, ``series``),
        sorted: one index look-up per value (a skip scan), not a walk over every point."""
        rows = self._query(
            f"WITH RECURSIVE v(x) AS (SELECT MIN({column}) FROM points UNION ALL"
            f" SELECT (SELECT MIN({column}) FROM points WHERE {column} > x) FROM v"
            " WHERE x IS NOT NULL) SELECT x FROM v WHERE x IS NOT NULL")
        return [r[0] for r in rows]

    def rows(self, kind, builder=None, start=None, end=None, after_id=None):
        """The rows behind one of the page's queries (``kind``: one of :data:`KINDS`), each
        ``(time_us, id, builder, ...)`` (see :data:`KINDS`), by time then id; only the fields
        each needs are extracted (``json_extract``, in SQLite), a field of the wrong type
        is left out as the query's docstring says. ``after_id``: only the points with a
        higher row id (what was written since; :mod:`buildbot_stats.reading.mirror`)."""
        where, params = [], []
        if kind == 'durations':
            names = self.builderNames() if builder is None else [builder]
            if not names:
                return []
            # the series by name: SQLite reads them through the (series, time) index
            # instead of every point of the store
            where += [f"series IN ({','.join('?' * len(names))})",
                      "series = builder || '-build-times'"]
            params += [f"{name}-build-times" for name in names]
            sql = ("SELECT * FROM (SELECT time_us, id, builder, build_number,"
                   " json_extract(fields, '$.duration') AS v FROM points WHERE {})"
                   " WHERE typeof(v) IN ('integer', 'real')")
        elif kind == 'custom':
            names = [s for s in self._distinct('series') if s not in NOT_CUSTOM]
            if not names:
                return []
            where += [f"p.series IN ({','.join('?' * len(names))})",
                      "(p.builder IS NULL OR p.series != p.builder || '-build-times')",
                      "j.type IN ('integer', 'real')", f"j.key != '{BUILD_NUMBER}'"]
            params += names
            # one row per numeric field (json_each), so no JSON is parsed in Python; and
            # whether the build number is a tag (see buildbot_stats.reading.forms)
            sql = ("SELECT p.time_us, p.id, p.builder, p.series, p.build_number,"
                   f" json_type(p.tags, '$.{BUILD_NUMBER}') IS NOT NULL, j.key,"
                   " j.value FROM points AS p, json_each(p.fields) AS j WHERE {}")
        else:
            measurement, columns, numeric = MEASUREMENT_QUERIES[kind]
            where.append("series = ?")
            params.append(measurement)
            if kind == 'steps':
                # what Buildbot's UI hides (hideStepIf) and its own worker_preparation are
                # not the steps of a build a user looks for
                where += ["json_extract(tags, '$.hidden') IS NULL",
                          "json_extract(tags, '$.step_name') IS NOT ?"]
                params.append(WORKER_PREPARATION)
            sql = (f"SELECT time_us, id, builder, json_extract(fields, '$.build_number'),"
                   f" {', '.join(columns)} FROM points WHERE {{}}")
            if numeric:
                where.append(f"json_type(fields, '$.{numeric}') IN ('integer', 'real')")
        table = 'p.' if kind == 'custom' else ''
        self._window(where, params, builder, start, end, table=table)
        if after_id is not None:
            where.append(f"{table}id > ?")
            params.append(after_id)
        order = " ORDER BY p.time_us, p.id" if kind == 'custom' else " ORDER BY time_us, id"
        rows = list(self._query(sql.format(' AND '.join(where)) + order, params))
        if kind == 'custom':
            rows = customPoints(rows)
        return rows

    def buildDurations(self, builder=None, start=None, end=None):
        """``{builder: [(end time, build number, duration), ...]}`` by time, from the
        ``duration`` field of the ``<builder>-build-times`` series (the first point of each
        build, in the unit it was captured in: seconds by default). ``builder``: one
        builder's (None: all); ``start <= time < end`` (seconds; None: unbounded)."""
        return SHAPES['durations'](self.rows('durations', builder, start, end))

    def buildResults(self, builder=None, start=None, end=None):
        """``{builder: [(time, build number, result), ...]}`` from the ``builds``
        measurement (:class:`CaptureBuildResults`); ``result`` is Buildbot's name
        (``'success'``, ``'failure'``...)."""
        return SHAPES['results'](self.rows('results', builder, start, end))

    def queueTimes(self, builder=None, start=None, end=None):
        """``{builder: [(time, build number, queue time), ...]}`` from ``build_requests``
        (:class:`CaptureQueueTimes`)."""
        return SHAPES['queue'](self.rows('queue', builder, start, end))

    def stepDurations(self, builder=None, start=None, end=None):
        """``{(builder, step name): [(time, build number, duration), ...]}`` from ``steps``
        (:class:`CaptureStepTimes`), without the hidden steps (``hideStepIf``) and
        Buildbot's own ``worker_preparation``."""
        return SHAPES['steps'](self.rows('steps', builder, start, end))

    def testCounts(self, builder=None, start=None, end=None):
        """``{builder: [(time, build number, passed, failed, skipped), ...]}`` from ``tests``
        (:class:`CaptureTestResults`)."""
        return SHAPES['tests'](self.rows('tests', builder, start, end))

    def stepSummary(self, builder=None, start=None, end=None):
        """``{(builder, step name): {'runs', 'median', 'p90', 'max'}}`` of the step
        durations in ``steps`` (the page's slowest steps). ``median`` is the middle value
        (the mean of the two middle ones for an even count), ``p90`` the nearest-rank 90th
        percentile."""
        return stepSummary(self.rows('steps', builder, start, end))

    def customSeries(self, builder=None, start=None, end=None):
        """``{series: [(time, builder, build number, {field: number}), ...]}`` of every
        series that is neither a ``<builder>-build-times`` series nor one of the build
        statistics measurements: properties (:class:`CaptureProperty`) and data
        (:class:`CaptureData`, ``yieldMetricsValue``). Only numeric fields are kept, the
        build number left out; a build in both forms counts in its tag form
        (:mod:`buildbot_stats.reading.forms`)."""
        return SHAPES['custom'](self.rows('custom', builder, start, end))

    def changePoints(self, builder=None, start=None, end=None):
        """The change points kept in the store (series ``change_points``), newest first,
        each a dict (:func:`buildbot_stats.reading.changes.changeRecord`)."""
        return SHAPES['changes'](self.rows('changes', builder, start, end))

    def measuredSeries(self, builder=None, start=None, end=None):
        """``{(builder, name): [(time, build number, value), ...]}``: every series change
        detection looks at (:func:`buildbot_stats.reading.changes.measuredSeries`)."""
        return changes.measuredSeries(self, builder, start, end)


    # -- the per-test history (schema v3): the primitives of reading.tests.TestQueries ---------

    def testRuns(self, builder=None, start=None, end=None):
        """The :class:`~buildbot_stats.reading.tests.Run` of every build with test results
        (``CaptureTestHistory``) of ``builder`` (None: all) ending in ``start <= time <
        end``, by time."""
        if self.version < TESTS_VERSION:
            return []
        where, params = [], []
        self._window(where, params, builder, start, end)
        sql = ("SELECT id, builder, build_number, buildid, time_us, revision, buildset, passed,"
               " failed, skipped, flaky FROM test_runs")
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY time_us, build_number"
        return [Run(key, b, number, buildid, t / 1e6, revision, buildset, tuple(counts))
                for key, b, number, buildid, t, revision, buildset, *counts
                in self._query(sql, params)]

    def _failuresOf(self, runs):
        keys = {r.key for r in runs}
        if not keys:
            return []
        # the partial index of the failures, within the row ids of these runs
        rows = self._query(
            "SELECT id, outcome FROM test_results WHERE outcome IN (1, 3)"
            " AND id >= ? AND id < ?",
            (min(keys) << NAME_BITS, (max(keys) + 1) << NAME_BITS))
        return [(rid >> NAME_BITS, rid & NAME_MASK, outcome) for rid, outcome in rows
                if rid >> NAME_BITS in keys]

    def _outcomesAt(self, wanted):
        ids = [(r.key << NAME_BITS) | t for t, runs in wanted.items() for r in runs]
        out = {}
        for i in range(0, len(ids), ID_CHUNK):
            chunk = ids[i:i + ID_CHUNK]
            for rid, outcome, duration in self._all(
                    "SELECT id, outcome, duration_us FROM test_results WHERE id IN"
                    f" ({','.join('?' * len(chunk))})", chunk):
                out.setdefault(rid & NAME_MASK, {})[rid >> NAME_BITS] = (
                    outcome, None if duration is None else duration / 1e6)
        return out

    def _durationsOf(self, runs):
        columns = []
        for at, run in enumerate(runs):
            first = run.key << NAME_BITS
            # a build's name ids and durations as two strings that SQLite joins in one pass
            # over the same rows (so they line up): 10,000 results are two strings, not
            # 10,000 row objects
            ids, durations = self._one(
                "SELECT group_concat(id & ?), group_concat(duration_us) FROM test_results"
                " WHERE id BETWEEN ? AND ? AND duration_us IS NOT NULL",
                (NAME_MASK, first, first | NAME_MASK))
            if ids:
                columns.append((at, ids, durations))
        if not columns:
            return {}
        if len(columns) == len(runs) and all(ids == columns[0][1] for _, ids, _ in columns):
            # the same tests in every build (the usual case): one list per test at once
            tests = map(int, columns[0][1].split(','))
            values = zip(*(map(int, d.split(',')) for _, _, d in columns))
            return {t: [v / 1e6 for v in vs] for t, vs in zip(tests, values)}
        out = {}
        for at, ids, durations in columns:
            for t, v in zip(map(int, ids.split(',')), map(int, durations.split(','))):
                row = out.get(t)
                if row is None:
                    row = out[t] = [None] * len(runs)
                row[at] = v / 1e6
        return out

    def _testNames(self, test_keys):
        return self._lookUpNames("id", list(test_keys))

    def _testKeys(self, names):
        if self.version < TESTS_VERSION:
            return {}
        return {name: key for key, name in
                self._lookUpNames("name", list(names)).items()}

    def _lookUpNames(self, column, values):
        """``{id: name}`` of the test names whose ``column`` is among ``values``."""
        out = {}
        for i in range(0, len(values), ID_CHUNK):
            chunk = values[i:i + ID_CHUNK]
            for key, name in self._query(
                    f"SELECT id, name FROM test_names WHERE {column} IN"
                    f" ({','.join('?' * len(chunk))})", chunk):
                out[key] = name
        return out


# -- from rows to answers: shared by the reader and the page's mirror (reading.mirror) ----------

def customPoints(rows):
    """One ``(time_us, id, builder, series, build number, tagged, {field: number})`` per
    point of the rows of ``json_each`` (one per field, by point); ``tagged``: the build
    number is a tag."""
    out, last_id = [], None
    for t, pid, b, series, number, tagged, key, value in rows:
        if pid != last_id:
            last_id, numbers = pid, {}
            out.append((t, pid, b, series, number, bool(tagged), numbers))
        numbers[key] = float(value)
    return out


def _durations(rows):
    out, seen = {}, set()
    for t, _, b, number, value in rows:
        # the first point of each build (rows are by time)
        if (b, number) not in seen:
            seen.add((b, number))
            out.setdefault(b, []).append((t / 1e6, number, float(value)))
    return dict(sorted(out.items(), key=lambda kv: (kv[0] is not None, kv[0] or '')))


def _byBuilder(rows):
    out = {}
    for t, _, b, number, value in rows:
        out.setdefault(b, []).append((t / 1e6, number, value))
    return out


def _queue(rows):
    out = {}
    for t, _, b, number, value in rows:
        out.setdefault(b, []).append((t / 1e6, number, float(value)))
    return out


def _steps(rows):
    out = {}
    for t, _, b, number, step, value in rows:
        out.setdefault((b, step), []).append((t / 1e6, number, float(value)))
    return out


def _tests(rows):
    out = {}
    for t, _, b, number, passed, failed, skipped in rows:
        out.setdefault(b, []).append((t / 1e6, number, passed or 0, failed or 0, skipped or 0))
    return out


def _customBuild(point):
    _, _, b, series, number, _, _ = point
    return None if number is None else (series, b, number)


def _custom(points):
    out = {}
    for t, _, b, series, number, _, numbers in oneFormPerBuild(points, _customBuild,
                                                                lambda p: p[5]):
        out.setdefault(series, []).append((t / 1e6, b, number, numbers))
    return dict(sorted(out.items()))


def _changes(rows):
    out = []
    for t, _, _, _, tags, fields in rows:
        record = changes.changeRecord(t / 1e6, json.loads(tags), json.loads(fields))
        if record is not None:
            out.append(record)
    return changes.byTime(out)


def stepSummary(rows):
    """``{(builder, step): {'runs', 'median', 'p90', 'max'}}`` of ``rows('steps')``."""
    groups = {}
    for _, _, b, _, step, value in rows:
        groups.setdefault((b, step), []).append(value)
    out = {}
    for key, values in groups.items():
        values.sort()
        n = len(values)
        out[key] = {'runs': n, 'median': float(statistics.median(values)),
                    'p90': float(values[(9 * n + 9) // 10 - 1]), 'max': float(values[-1])}
    return out


#: ``kind``: the function from :meth:`StoreReader.rows` to the answer of its query.
SHAPES = {'durations': _durations, 'results': _byBuilder, 'queue': _queue, 'steps': _steps,
          'tests': _tests, 'custom': _custom, 'changes': _changes}
#: The kinds of :meth:`StoreReader.rows`.
KINDS = tuple(SHAPES)
#: ``kind``: (measurement, the extracted columns after the build number, the field that
#: must be a number or None).
MEASUREMENT_QUERIES = {
    'results': ('builds', ["json_extract(tags, '$.result')"], None),
    'queue': ('build_requests', ["json_extract(fields, '$.queue_time')"], 'queue_time'),
    'steps': ('steps', ["json_extract(tags, '$.step_name')",
                        "json_extract(fields, '$.duration')"], 'duration'),
    'tests': ('tests', ["json_extract(fields, '$.passed')", "json_extract(fields, '$.failed')",
                        "json_extract(fields, '$.skipped')"], None),
    'changes': (changes.CHANGE_POINTS, ['tags', 'fields'], None),
}


#: Buildbot's own first step of every build (attaching the worker, starting a latent one):
#: left out of the page's steps, as the steps Buildbot's UI hides are.
WORKER_PREPARATION = 'worker_preparation'

#: The measurements of the build statistics captures (results, queue times, steps, tests).
MEASUREMENTS = ('builds', 'build_requests', 'steps', 'tests')
#: The series that are not custom series: those, and the kept change points.
NOT_CUSTOM = MEASUREMENTS + (changes.CHANGE_POINTS,)


def isNumber(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)
