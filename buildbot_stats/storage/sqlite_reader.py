"""Reading the embedded store: the one read API of ``buildbot-stats report`` and ``export``.

Opens the file read-only, so it is safe while a master writes it (WAL mode lets readers
and the writer work at once). Every problem with the file is a :class:`StoreError` whose
message is one line for a user.
"""

from __future__ import annotations

import fnmatch
import itertools
import json
import os
import sqlite3
import statistics
import urllib.parse
from dataclasses import dataclass

from buildbot_stats.point import Point
from buildbot_stats.storage.sqlite_schema import StoreError
from buildbot_stats.storage.sqlite_schema import checkReadable
from buildbot_stats.storage.sqlite_schema import describeReadError
from buildbot_stats.storage.sqlite_schema import looksLikeSQLite

__all__ = ['StoreError', 'StoreReader', 'SeriesInfo', 'openStore']


@dataclass(frozen=True)
class SeriesInfo:
    name: str
    points: int
    first: float  # seconds since the epoch
    last: float


def openStore(path):
    """A :class:`StoreReader` of ``path``; raises :class:`StoreError` with the reason."""
    return StoreReader(path)


class StoreReader:
    def __init__(self, path):
        self.path = path
        if not os.path.exists(path):
            raise StoreError(f"{path}: no such file")
        if os.path.isdir(path):
            raise StoreError(f"{path}: is a directory, not a store file")
        if not looksLikeSQLite(path):
            raise StoreError(f"{path}: not an SQLite file")
        uri = "file:" + urllib.parse.quote(os.path.abspath(path)) + "?mode=ro"
        try:
            self.conn = sqlite3.connect(uri, uri=True, timeout=5.0)
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

    def series(self):
        """Every series with its number of points and its time range, by name."""
        rows = self._query(
            "SELECT series, COUNT(*), MIN(time_us), MAX(time_us) FROM points"
            " GROUP BY series ORDER BY series"
        )
        return [SeriesInfo(name, n, lo / 1e6, hi / 1e6) for name, n, lo, hi in rows]

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
        sql = "SELECT series, time_us, tags, fields FROM points"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY time_us, id"
        for series, time_us, tags, fields in self._query(sql, params):
            yield Point(series=series, tags=json.loads(tags), fields=json.loads(fields),
                        time=time_us / 1e6)

    # -- the queries of the report and the web page (same names in influxdb_reader) ----------

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

    def buildDurations(self, builder=None, start=None, end=None):
        """``{builder: [(end time, build number, duration), ...]}`` by time, from the
        ``duration`` field of the ``<builder>-build-times`` series (the first point of each
        build, in the unit it was captured in: seconds by default). ``builder``: one
        builder's (None: all); ``start <= time < end`` (seconds; None: unbounded)."""
        where = ["series = builder || '-build-times'"]
        params = []
        self._window(where, params, builder, start, end)
        # the JSON is parsed once per row (json_extract), the type is SQLite's of the result
        rows = self._query(
            "SELECT builder, build_number, MIN(time_us), d FROM"
            " (SELECT builder, build_number, time_us, json_extract(fields, '$.duration') AS d"
            f" FROM points WHERE {' AND '.join(where)}) WHERE typeof(d) IN ('integer', 'real')"
            " GROUP BY builder, build_number ORDER BY builder, MIN(time_us)", params
        )
        out = {}
        for builder_name, number, time_us, duration in rows:
            out.setdefault(builder_name, []).append((time_us / 1e6, number, float(duration)))
        return out

    def builderNames(self):
        """Every builder with points in the store, sorted."""
        rows = self._query("SELECT DISTINCT builder FROM points WHERE builder IS NOT NULL"
                           " ORDER BY builder")
        return [r[0] for r in rows]

    def _measurement(self, measurement, columns, builder, start, end, extra_where=()):
        where = ["series = ?", *extra_where]
        params = [measurement]
        self._window(where, params, builder, start, end)
        cols = ", ".join(columns)
        return self._query(
            f"SELECT builder, time_us, json_extract(fields, '$.build_number'), {cols}"
            f" FROM points WHERE {' AND '.join(where)} ORDER BY time_us, id", params)

    def buildResults(self, builder=None, start=None, end=None):
        """``{builder: [(time, build number, result), ...]}`` from the ``builds``
        measurement (:class:`CaptureBuildResults`); ``result`` is Buildbot's name
        (``'success'``, ``'failure'``...)."""
        out = {}
        for b, t, number, result in self._measurement(
                'builds', ["json_extract(tags, '$.result')"], builder, start, end):
            out.setdefault(b, []).append((t / 1e6, number, result))
        return out

    def queueTimes(self, builder=None, start=None, end=None):
        """``{builder: [(time, build number, queue time), ...]}`` from ``build_requests``
        (:class:`CaptureQueueTimes`)."""
        out = {}
        for b, t, number, value in self._measurement(
                'build_requests', ["json_extract(fields, '$.queue_time')"], builder, start,
                end, ["json_type(fields, '$.queue_time') IN ('integer', 'real')"]):
            out.setdefault(b, []).append((t / 1e6, number, float(value)))
        return out

    def stepDurations(self, builder=None, start=None, end=None):
        """``{(builder, step name): [(time, build number, duration), ...]}`` from ``steps``
        (:class:`CaptureStepTimes`)."""
        out = {}
        for b, t, number, step, value in self._measurement(
                'steps', ["json_extract(tags, '$.step_name')",
                          "json_extract(fields, '$.duration')"], builder, start, end,
                ["json_type(fields, '$.duration') IN ('integer', 'real')"]):
            out.setdefault((b, step), []).append((t / 1e6, number, float(value)))
        return out

    def testCounts(self, builder=None, start=None, end=None):
        """``{builder: [(time, build number, passed, failed, skipped), ...]}`` from ``tests``
        (:class:`CaptureTestResults`)."""
        out = {}
        for b, t, number, passed, failed, skipped in self._measurement(
                'tests', ["json_extract(fields, '$.passed')", "json_extract(fields, '$.failed')",
                          "json_extract(fields, '$.skipped')"], builder, start, end):
            out.setdefault(b, []).append((t / 1e6, number, passed or 0, failed or 0,
                                          skipped or 0))
        return out

    def stepSummary(self, builder=None, start=None, end=None):
        """``{(builder, step name): {'runs', 'median', 'p90', 'max'}}`` of the step
        durations in ``steps``, computed by SQLite (the page's slowest steps). ``median`` is
        the middle value (the mean of the two middle ones for an even count), ``p90`` the
        nearest-rank 90th percentile."""
        where = ["series = 'steps'", "json_type(fields, '$.duration') IN ('integer', 'real')"]
        params = []
        self._window(where, params, builder, start, end)
        out = {}
        # sorted by SQLite; the median and the percentile are then picked by index
        for (b, step), group in itertools.groupby(self._query(
                "SELECT builder, json_extract(tags, '$.step_name') AS step,"
                " json_extract(fields, '$.duration') AS d FROM points"
                f" WHERE {' AND '.join(where)} ORDER BY builder, step, d", params),
                key=lambda row: (row[0], row[1])):
            values = [row[2] for row in group]
            n = len(values)
            out[(b, step)] = {'runs': n, 'median': float(statistics.median(values)),
                              'p90': float(values[(9 * n + 9) // 10 - 1]),
                              'max': float(values[-1])}
        return out

    def customSeries(self, builder=None, start=None, end=None):
        """``{series: [(time, builder, build number, {field: number}), ...]}`` of every
        series that is neither a ``<builder>-build-times`` series nor one of the build
        statistics measurements: properties (:class:`CaptureProperty`) and data
        (:class:`CaptureData`, ``yieldMetricsValue``). Only numeric fields are kept."""
        where = ["(p.builder IS NULL OR p.series != p.builder || '-build-times')",
                 f"p.series NOT IN ({','.join('?' * len(MEASUREMENTS))})",
                 "j.type IN ('integer', 'real')"]
        params = list(MEASUREMENTS)
        self._window(where, params, builder, start, end, table='p.')
        out = {}
        last_id, numbers = None, None
        # one row per numeric field (json_each), so no JSON is parsed in Python
        for pid, series, b, t, number, key, value in self._query(
                "SELECT p.id, p.series, p.builder, p.time_us, p.build_number, j.key, j.value"
                " FROM points AS p, json_each(p.fields) AS j"
                f" WHERE {' AND '.join(where)} ORDER BY p.series, p.time_us, p.id", params):
            if pid != last_id:
                last_id, numbers = pid, {}
                out.setdefault(series, []).append((t / 1e6, b, number, numbers))
            numbers[key] = float(value)
        return out


#: The measurements of the build statistics captures (results, queue times, steps, tests).
MEASUREMENTS = ('builds', 'build_requests', 'steps', 'tests')


def isNumber(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)
