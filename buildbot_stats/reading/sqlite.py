"""Reading the embedded store: the one read API of the Statistics page, ``buildbot-stats
report`` and ``export``.

Opens the file read-only, so it is safe while a master writes it (WAL mode lets readers
and the writer work at once). Every problem with the file is a :class:`StoreError` whose
message is one line for a user.

Two kinds of queries (the same names and answers in :mod:`buildbot_stats.reading.influxdb`):

* **aggregates** (:meth:`StoreReader.summarize`): per group, the count, sum, min, max,
  median and 90th percentile of a range or of each period of it, from the rollups where they
  cover the range and from raw points elsewhere (:mod:`~buildbot_stats.reading.plan`): a few
  hundred rows whatever the store's size;
* **raw points** (:meth:`~StoreReader.buildDurations` and the others): every build of a
  range, for the charts that draw each build (few, by the page's choice), and the latest
  builds (:meth:`~StoreReader.recentDurations`, :meth:`~StoreReader.lastTests`,
  :meth:`~StoreReader.lastFailures`).
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import sqlite3
from dataclasses import dataclass

from buildbot_stats.point import Point
from buildbot_stats.reading import changes
from buildbot_stats.reading.forms import BUILD_NUMBER
from buildbot_stats.reading.forms import oneFormPerBuild
from buildbot_stats.reading.tests import Run
from buildbot_stats.reading.tests import TestQueries
from buildbot_stats.reading.kinds import BUILD_TIMES
from buildbot_stats.reading.kinds import KINDS
from buildbot_stats.reading.kinds import MEASUREMENTS
from buildbot_stats.reading.kinds import isCustom
from buildbot_stats.reading.kinds import isNumber
from buildbot_stats.reading.plan import plan
from buildbot_stats.reading.summary import NOT_COUNTED_RESULTS
from buildbot_stats.reading.summary import PASSED_RESULTS
from buildbot_stats.reading.summary import Stats
from buildbot_stats.storage.sqlite.aggregates import Aggregate
from buildbot_stats.storage.sqlite.layout import NO_BUILD
from buildbot_stats.storage.sqlite.layout import joinTags
from buildbot_stats.storage.sqlite.layout import loadNames
from buildbot_stats.storage.sqlite.rollups import DAY
from buildbot_stats.storage.sqlite.rollups import HOUR
from buildbot_stats.storage.sqlite.rollups import WEEK
from buildbot_stats.storage.sqlite.schema import READABLE_VERSION
from buildbot_stats.storage.sqlite.schema import StoreError
from buildbot_stats.storage.sqlite.schema import checkReadable
from buildbot_stats.storage.sqlite.schema import connectReadOnly
from buildbot_stats.storage.sqlite.schema import describeReadError
from buildbot_stats.storage.sqlite.schema import hasTable
from buildbot_stats.storage.sqlite.schema import NAME_BITS
from buildbot_stats.storage.sqlite.schema import NAME_MASK
from buildbot_stats.storage.sqlite.schema import TESTS_VERSION
from buildbot_stats.storage.sqlite.schema import storeFileProblem

__all__ = ['MEASUREMENTS', 'StoreError', 'StoreReader', 'SeriesInfo', 'isNumber', 'openStore']

US = 1_000_000


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
        problem = storeFileProblem(path)
        if problem is not None:
            raise StoreError(problem)
        try:
            self.conn = connectReadOnly(path, timeout=READ_BUSY_TIMEOUT)
            self.version = checkReadable(self.conn)
        except StoreError as e:
            raise StoreError(f"{path}: {e}") from None
        except sqlite3.Error as e:
            raise StoreError(f"{path}: {describeReadError(e)}") from None
        if self.version < READABLE_VERSION:
            self.conn.close()
            raise StoreError(
                f"{path}: has schema version {self.version}, older than the {READABLE_VERSION} "
                "this buildbot_stats reads; the master upgrades it when it starts with this "
                f"version, or run: buildbot-stats rebuild-rollups {path}")
        self._names = None

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

    def guarded(self, f, *args):
        """``f(*args)`` (a function of the store's layout given :attr:`conn`, such as
        :mod:`~buildbot_stats.storage.sqlite.retention`'s counts), a problem met on the
        way a :class:`StoreError`."""
        try:
            return f(*args)
        except sqlite3.Error as e:
            raise self._error(e) from None

    @contextlib.contextmanager
    def readTransaction(self):
        """Every query in the block sees one state of the file (a writer may commit
        meanwhile: WAL mode keeps this reader's snapshot)."""
        try:
            self.conn.execute("BEGIN")
        except sqlite3.Error as e:
            raise self._error(e) from None
        self._names = None
        try:
            yield self
        finally:
            self.conn.rollback()
            self._names = None

    # -- what the store holds -------------------------------------------------------------

    def names(self):
        """``(series {id: name}, tag sets {id: tags}, field names {id: [names]})``: read once
        per transaction (a few hundred rows)."""
        if self._names is None:
            try:
                self._names = loadNames(self.conn)
            except sqlite3.Error as e:
                raise self._error(e) from None
        return self._names

    def _seriesIds(self, names):
        wanted = set(names)
        return {i: n for i, n in self.names()[0].items() if n in wanted}

    def rollupState(self):
        """``(watermark, raw_since, dirty hours, raw-only days)``: rollups cover the hours
        before ``watermark`` (seconds) but the ``dirty`` ones; raw points before
        ``raw_since`` (seconds) were deleted; the raw-only days (sorted day starts) have day
        rows and no hourly rows."""
        meta = dict(self._all("SELECT key, value FROM meta WHERE key IN"
                              " ('rollup_watermark', 'raw_since')"))
        dirty = [r[0] for r in self._all("SELECT hour FROM rollup_dirty ORDER BY hour")]
        return (int(meta.get('rollup_watermark', 0)), int(meta.get('raw_since', 0)) / US,
                dirty, self._rawDays())

    def _rawDays(self):
        # asked each time: a store of version 4 read here may be upgraded by the master
        # meanwhile
        if not self.guarded(hasTable, self.conn, 'rollup_raw_days'):
            return []
        return [r[0] for r in self._all("SELECT day FROM rollup_raw_days ORDER BY day")]

    def rawSince(self):
        """Raw points before this time (seconds) were deleted (0: none)."""
        return self.rollupState()[1]

    def stateKey(self):
        """A value that changes whenever the points change: the file (device, inode), the
        writers' count of transactions (``generation``), and the size and change time of the
        file and its write-ahead log (a program writing it with other tools). Cheap: one row
        and two ``stat``."""
        try:
            st = os.stat(self.path)
        except OSError as e:
            raise StoreError(f"{self.path}: cannot be read: {e.strerror}") from None
        try:
            wal = os.stat(self.path + '-wal')
            wal = (wal.st_size, wal.st_mtime_ns)
        except OSError:
            wal = None
        row = self._one("SELECT value FROM meta WHERE key = 'generation'")
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, wal, self.version,
                row and row[0])

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
        return self._one("SELECT COUNT(*) FROM points")[0]

    def series(self):
        """Every series with its number of raw points and their time range, by name."""
        out = []
        for sid, name in sorted(self.names()[0].items(), key=lambda kv: kv[1]):
            n, lo, hi = self._one("SELECT COUNT(*), MIN(time_us), MAX(time_us) FROM points"
                                  " WHERE series = ?", (sid,))
            if n:
                out.append(SeriesInfo(name, n, lo / US, hi / US))
        return out

    def matchSeries(self, patterns):
        """The series names matching ``patterns`` (names or shell globs such as
        ``'alpha-*'``); a pattern that matches nothing raises :class:`StoreError`."""
        names = sorted(self.names()[0].values())
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
        names = self.names()[0]
        where, params = [], []
        if series is not None:
            ids = self._seriesIds(series)
            if not ids:
                return
            where.append(f"series IN ({','.join('?' * len(ids))})")
            params.extend(ids)
        self._window(where, params, start, end)
        sql = "SELECT id, series, time_us, tagset, build, fieldset, vals FROM points"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY time_us, id"
        for row_id, sid, time_us, tid, build, fid, vals in self._query(sql, params):
            tags, fields = self._decode(row_id, names.get(sid, sid), tid, build, fid, vals)
            yield Point(series=names[sid], tags=tags, fields=fields, time=time_us / US)

    def _decode(self, row_id, series, tagset, build, fieldset, vals):
        """``(tags, fields)`` of a raw point's row; a row another program wrote wrong, or
        damaged, is a :class:`StoreError` naming it (the store's fault, not a bug)."""
        _, tagsets, fieldsets = self.names()
        try:
            values = json.loads(vals)
            if not isinstance(values, list) or not isinstance(tagsets[tagset], dict):
                raise ValueError("not a JSON array")
            return joinTags(tagsets[tagset], build), dict(zip(fieldsets[fieldset], values))
        except (TypeError, ValueError, KeyError) as e:
            raise StoreError(f"{self.path}: is damaged: the point of row {row_id} "
                             f"({series!r}) cannot be read ({type(e).__name__})") from None

    @staticmethod
    def _window(where, params, start, end):
        """Add ``start <= time < end`` (seconds; None: unbounded) to ``where``."""
        if start is not None:
            where.append("time_us >= ?")
            params.append(round(start * US))
        if end is not None:
            where.append("time_us < ?")
            params.append(round(end * US))

    def builderNames(self):
        """Every builder with points or rollups in the store, sorted."""
        return sorted({t['builder_name'] for t in self.names()[1].values()
                       if 'builder_name' in t})

    def _tagsetsOf(self, builder):
        return [i for i, t in self.names()[1].items() if t.get('builder_name') == builder]

    def _kindSeries(self, kind, builder):
        """``{series id: name}`` a kind reads (for one builder, or None: all)."""
        all_series = self.names()[0]
        if kind.name == 'durations':
            builders = self.builderNames() if builder is None else [builder]
            wanted = {f"{b}{BUILD_TIMES}" for b in builders}
            return {i: n for i, n in all_series.items() if n in wanted}
        if kind.name == 'custom':
            return {i: n for i, n in all_series.items() if isCustom(n)}
        return {i: n for i, n in all_series.items() if n == kind.measurement}

    # -- raw points ---------------------------------------------------------------------------

    def _raw(self, series, builder, start, end, order="ASC", limit=None, tagsets=None):
        """``(series name, time_us, tags, fields)`` of the raw points of ``series`` (``{id:
        name}``), one series after the other, by time in each."""
        if tagsets is None and builder is not None and not all(
                n.endswith(BUILD_TIMES) for n in series.values()):
            tagsets = self._tagsetsOf(builder)
        for sid, name in series.items():
            where, params = ["series = ?"], [sid]
            if tagsets is not None:
                if not tagsets:
                    return
                where.append(f"tagset IN ({','.join('?' * len(tagsets))})")
                params.extend(tagsets)
            self._window(where, params, start, end)
            sql = (f"SELECT id, time_us, tagset, build, fieldset, vals FROM points WHERE"
                   f" {' AND '.join(where)} ORDER BY time_us {order}, id {order}")
            if limit is not None:
                sql += f" LIMIT {int(limit)}"
            for row_id, t, tid, build, fid, vals in self._query(sql, params):
                yield (name, t, *self._decode(row_id, name, tid, build, fid, vals))

    def _rawByKind(self, kind_name, builder, start, end):
        kind = KINDS[kind_name]
        rows = self._raw(self._kindSeries(kind, builder), builder, start, end)
        return kind, sorted((r for r in rows if kind.shows(r[2])), key=lambda r: r[1])

    def _fieldRows(self, kind_name, builder, start, end, fields):
        """``(series name, time_us, tags of its tag set, build number, [values of
        fields])`` of the raw points of a kind the page shows, by time in each series; a
        value that is not a number is None. SQLite picks the values out of each point (no
        JSON decoded here): the reads of many builds (each build's dots, change detection's
        series at a master's start) cost half of decoding each point."""
        kind = KINDS[kind_name]
        _, tagsets, _ = self.names()
        only = None
        if builder is not None and kind.name != 'durations':
            only = self._tagsetsOf(builder)
            if not only:
                return
        columns = ", ".join([self._fieldSql(BUILD_NUMBER, numeric=True)[1]]
                            + [self._fieldSql(f, numeric=True)[1] for f in fields])
        for sid, name in self._kindSeries(kind, builder).items():
            where, params = ["series = ?"], [sid]
            if only is not None:
                where.append(f"tagset IN ({','.join('?' * len(only))})")
                params.extend(only)
            self._window(where, params, start, end)
            sql = (f"SELECT time_us, tagset, build, {columns} FROM points WHERE"
                   f" {' AND '.join(where)} ORDER BY time_us, id")
            for t, tid, build, in_field, *values in self._query(sql, params):
                tags = tagsets[tid]
                if not kind.shows(tags):
                    continue
                if build != NO_BUILD:
                    number = build
                else:  # buildOf's rule: the tag (one not stored as a number), else the field
                    number = _int(tags.get(BUILD_NUMBER))
                    if number is None and in_field is not None:
                        number = int(in_field)
                yield name, t, tags, number, values

    def buildDurations(self, builder=None, start=None, end=None):
        """``{builder: [(end time, build number, duration), ...]}`` by time, from the
        ``duration`` field of the ``<builder>-build-times`` series (the first point of each
        build, in the unit it was captured in: seconds by default). ``builder``: one
        builder's (None: all); ``start <= time < end`` (seconds; None: unbounded)."""
        out, seen = {}, set()
        for series, t, tags, number, (d,) in self._fieldRows('durations', builder, start, end,
                                                             ('duration',)):
            b = series[:-len(BUILD_TIMES)]
            if d is None or tags.get('builder_name', b) != b:
                continue
            if (b, number) in seen:
                continue  # the first point of each build (of a build in both forms, the tag's)
            seen.add((b, number))
            out.setdefault(b, []).append((t / US, number, float(d)))
        return dict(sorted(out.items()))

    def buildResults(self, builder=None, start=None, end=None):
        """``{builder: [(time, build number, result), ...]}`` from the ``builds``
        measurement (:class:`CaptureBuildResults`); ``result`` is Buildbot's name
        (``'success'``, ``'failure'``...)."""
        out = {}
        for _, t, tags, number, _ in self._fieldRows('results', builder, start, end, ()):
            out.setdefault(tags.get('builder_name'), []).append(
                (t / US, number, tags.get('result')))
        return out

    def queueTimes(self, builder=None, start=None, end=None):
        """``{builder: [(time, build number, queue time), ...]}`` from ``build_requests``
        (:class:`CaptureQueueTimes`)."""
        out = {}
        for _, t, tags, number, (v,) in self._fieldRows('queue', builder, start, end,
                                                        ('queue_time',)):
            if v is not None:
                out.setdefault(tags.get('builder_name'), []).append((t / US, number, float(v)))
        return out

    def stepDurations(self, builder=None, start=None, end=None):
        """``{(builder, step name): [(time, build number, duration), ...]}`` from ``steps``
        (:class:`CaptureStepTimes`), without the hidden steps (``hideStepIf``) and
        Buildbot's own ``worker_preparation`` (:meth:`~buildbot_stats.reading.kinds.Kind.shows`)."""
        out = {}
        for _, t, tags, number, (v,) in self._fieldRows('steps', builder, start, end,
                                                        ('duration',)):
            if v is not None:
                out.setdefault((tags.get('builder_name'), tags.get('step_name')), []).append(
                    (t / US, number, float(v)))
        return out

    def testCounts(self, builder=None, start=None, end=None):
        """``{builder: [(time, build number, passed, failed, skipped), ...]}`` from ``tests``
        (:class:`CaptureTestResults`)."""
        out = {}
        for _, t, tags, number, counts in self._fieldRows('tests', builder, start, end,
                                                          ('passed', 'failed', 'skipped')):
            out.setdefault(tags.get('builder_name'), []).append(
                (t / US, number, *(_count(c) for c in counts)))
        return out

    def customSeries(self, builder=None, start=None, end=None):
        """``{series: [(time, builder, build number, {field: number}), ...]}`` of every
        series that is neither a ``<builder>-build-times`` series nor one of the build
        statistics measurements: properties (:class:`CaptureProperty`) and data
        (:class:`CaptureData`, ``yieldMetricsValue``). Only numeric fields are kept, not
        the identifiers (``build_number``...)."""
        kind, rows = self._rawByKind('custom', builder, start, end)
        points = []
        for series, t, tags, fields in rows:
            numbers = {f: float(v) for f, v in kind.numbers(fields)}
            if numbers:
                number, tagged = buildOf(tags, fields)
                points.append((series, t / US, tags.get('builder_name'), number, numbers,
                               tagged))
        out = {}
        for series, t, b, number, numbers, _ in oneFormPerBuild(
                points, lambda p: None if p[3] is None else (p[0], p[2], p[3]),
                lambda p: p[5]):
            out.setdefault(series, []).append((t, b, number, numbers))
        return dict(sorted(out.items()))

    def firstTime(self):
        """The time (seconds) of the oldest point or rollup, None for an empty store."""
        firsts = []
        raw_days = self._rawDays()
        for sid in self.names()[0]:
            t = self._one("SELECT MIN(time_us) FROM points WHERE series = ?", (sid,))[0]
            if t is not None:
                firsts.append(t / US)
            # the hours (a day's or week's row starts before its first point)
            t = self._one("SELECT MIN(start) FROM rollups WHERE series = ? AND level = ?",
                          (sid, HOUR))[0]
            if t is not None:
                firsts.append(float(t))
            if raw_days:
                # a raw-only day has day rows only (it starts at or before its first point)
                t = self._one("SELECT MIN(start) FROM rollups WHERE series = ? AND level = ?"
                              " AND start IN (SELECT day FROM rollup_raw_days)", (sid, DAY))[0]
                if t is not None:
                    firsts.append(float(t))
        return min(firsts, default=None)

    # -- the latest builds ------------------------------------------------------------------

    def _fieldSql(self, field, numeric=False):
        """``(fieldsets, SQL)``: the field sets holding ``field``, and the expression of its
        value in a point of one of them (SQLite reads it: no JSON decoded here);
        ``numeric``: NULL where the value is not a number (a string, a boolean)."""
        where = {fid: names.index(field) for fid, names in self.names()[2].items()
                 if field in names}
        cases = []
        for fid, i in where.items():
            value = f"json_extract(vals, '$[{i}]')"
            if numeric:
                value = (f"CASE WHEN json_type(vals, '$[{i}]') IN ('integer', 'real')"
                         f" THEN {value} END")
            cases.append(f"WHEN {fid} THEN {value}")
        return list(where), f"CASE fieldset {' '.join(cases)} END" if where else "NULL"

    def recentDurations(self, builder=None, start=None, end=None, n=200):
        """``{builder: [(time, build number, duration), ...]}``: the latest ``n`` builds of
        each builder in the range, by time (the trend and the last build)."""
        kind = KINDS['durations']
        fieldsets, value = self._fieldSql('duration')
        if not fieldsets:
            return {}
        _, field_number = self._fieldSql(BUILD_NUMBER)
        _, tagsets, _ = self.names()
        out = {}
        for sid, name in self._kindSeries(kind, builder).items():
            b = name[:-len(BUILD_TIMES)]
            where, params = ["series = ?", f"fieldset IN ({','.join('?' * len(fieldsets))})"], \
                [sid, *fieldsets]
            self._window(where, params, start, end)
            # a few more than n: a build written twice (its first point counts)
            rows = self._all(f"SELECT time_us, tagset, build, {value}, {field_number} FROM"
                             f" points WHERE {' AND '.join(where)}"
                             f" ORDER BY time_us DESC, id DESC LIMIT {int(n) + 20}", params)
            builds, seen = [], set()
            for t, tid, build, d, in_field in reversed(rows):
                tags = tagsets[tid]
                number, _ = buildOf(joinTags(tags, build), {BUILD_NUMBER: in_field})
                # the first point of each build (of a build in both forms, the tag's)
                if isNumber(d) and tags.get('builder_name', b) == b and number not in seen:
                    seen.add(number)
                    builds.append((t / US, number, float(d)))
            if builds:
                out[b] = builds[-n:]
        return dict(sorted(out.items()))

    def lastTests(self, builder=None, start=None, end=None):
        """``{builder: (time, build number, passed, failed, skipped)}``: the last ``tests``
        point of each builder in the range."""
        out = {}
        series = self._kindSeries(KINDS['tests'], None)
        for b in ([builder] if builder is not None else self.builderNames()):
            for _, t, tags, fields in self._raw(series, b, start, end, order="DESC", limit=1):
                out[b] = (t / US, buildOf(tags, fields)[0],
                          *(_count(fields.get(f)) for f in ('passed', 'failed', 'skipped')))
        return out

    def lastFailures(self, builder=None, start=None, end=None):
        """``{builder: (time, build number, result)}``: the last build of each builder in
        the range whose result counts as failed (not passed, not left out). From the
        rollups, the last hour (or raw-only day) with a failure is found first; its raw point
        gives the build number (None when retention deleted it: the time is then the
        hour's, or the day's)."""
        _, tagsets, _ = self.names()
        series = self._kindSeries(KINDS['results'], None)
        if not series:
            return {}
        sid = next(iter(series))
        failed = {}
        for tid, tags in tagsets.items():
            result = tags.get('result')
            if result is not None and result not in PASSED_RESULTS \
                    and result not in NOT_COUNTED_RESULTS and 'builder_name' in tags:
                failed.setdefault(tags['builder_name'], []).append(tid)
        watermark, raw_since, dirty, raw_days = self.rollupState()
        # the hours whose rollups count: those inside the range, and an edge's whole hour
        # where its raw points are gone (as summarize's plan does); the raw points answer
        # for a partial edge hour otherwise
        h_lo = h_hi = None
        if start is not None:
            h_lo = int(start // HOUR * HOUR if start < raw_since else -(-start // HOUR) * HOUR)
        if end is not None:
            h_hi = int(-(-end // HOUR) * HOUR if end < raw_since else end // HOUR * HOUR)
        # the raw-only days count by their day rows: those inside the range, and an edge's
        # whole day where its raw points are gone; the raw points answer for a partial edge
        # day otherwise (p_lo, p_hi: where the rollups' marks count)
        p_lo, p_hi, day_lo, day_hi = h_lo, h_hi, None, None
        raw_set = set(raw_days)
        if start is not None:
            d0 = int(start // DAY * DAY)
            day_lo = d0 if d0 < raw_since or start == d0 else d0 + DAY
            if d0 in raw_set and d0 < day_lo:
                p_lo = max(p_lo, day_lo)
        if end is not None:
            d1 = int(end // DAY * DAY)
            day_hi = d1 + DAY if d1 < raw_since and end > d1 else d1
            if d1 in raw_set and d1 < end and day_hi == d1:
                p_hi = min(p_hi, d1)
        out = {}
        for b in ([builder] if builder is not None else sorted(failed)):
            ids = failed.get(b)
            if not ids:
                continue
            # the last rolled-up hour with a failure bounds the raw search
            marks = ','.join('?' * len(ids))
            last_hour = self._lastStart(sid, HOUR, ids, h_lo, h_hi)
            level = HOUR
            if raw_days:
                # a raw-only day's failures are in its day rows (no hourly rows): the day is
                # the mark (the whole day, where its raw points are gone, as plan() takes it)
                last_day = self._lastStart(sid, DAY, ids, day_lo, day_hi, raw_only=True)
                if last_day is not None and (last_hour is None or last_day > last_hour):
                    last_hour, level = last_day, DAY
            # the raw points from the last rolled-up failure, the first dirty hour, the
            # watermark (what is not rolled up) or the end's partial hour to the end
            lo = min([watermark] + dirty[:1] + ([last_hour] if last_hour is not None else [])
                     + ([p_hi] if p_hi is not None and p_hi < end else []))
            if start is not None:
                lo = max(lo, start)
            found = None
            for _, t, tags, fields in self._raw(series, b, lo, end, order="DESC", limit=1,
                                                tagsets=ids):
                found = (t / US, buildOf(tags, fields)[0], tags.get('result'))
            if found is None and last_hour is None and p_lo is not None and start < p_lo:
                # no failure after it: the start's partial hour (or raw-only day)
                for _, t, tags, fields in self._raw(series, b, start, min(p_lo, lo),
                                                    order="DESC", limit=1, tagsets=ids):
                    found = (t / US, buildOf(tags, fields)[0], tags.get('result'))
            if found is None and last_hour is not None:
                # its raw points are gone: the hour is all we know
                result = self._one(
                    f"SELECT t.tags FROM rollups r JOIN tagsets t ON t.id = r.tagset"
                    f" WHERE r.series = ? AND r.level = ? AND r.start = ? AND r.tagset IN"
                    f" ({marks}) LIMIT 1", (sid, level, last_hour, *ids))
                found = (float(last_hour), None, json.loads(result[0]).get('result'))
            if found is not None:
                out[b] = found
        return out

    def _lastStart(self, sid, level, tagsets, lo, hi, raw_only=False):
        """The start of the last rollup of ``level`` of series ``sid`` with a row of one of
        ``tagsets``, starting in ``[lo, hi)`` (None: unbounded); ``raw_only``: of the
        raw-only days only. None without one."""
        where = [f"series = ? AND level = ? AND tagset IN ({','.join('?' * len(tagsets))})"]
        params = [sid, level, *tagsets]
        if raw_only:
            where.append("start IN (SELECT day FROM rollup_raw_days)")
        for bound, op in ((lo, '>='), (hi, '<')):
            if bound is not None:
                where.append(f"start {op} ?")
                params.append(bound)
        return self._one(f"SELECT MAX(start) FROM rollups WHERE {' AND '.join(where)}",
                         params)[0]

    # -- aggregates ------------------------------------------------------------------------------

    def summarize(self, kind_name, builder=None, start=None, end=None, period=None,
                  by_builder=True):
        """Per group of the kind (:mod:`~buildbot_stats.reading.kinds`; ``by_builder=False``:
        all builders together), the :class:`Stats` of ``start <= time < end`` (seconds;
        None: unbounded); with ``period`` (seconds, a multiple of an hour), ``[(period
        start, Stats), ...]`` by time instead, periods starting on multiples of ``period``
        since the epoch.

        From the rollups where they cover the range, else from raw points: exact when the
        range's values are few, estimated from the rollups' sketches beyond (within 0.5 % on
        the benchmark data, see docs/benchmarks.rst)."""
        kind = KINDS[kind_name]
        series = self._kindSeries(kind, builder)
        if not series:
            return {}
        watermark, raw_since, dirty, raw_days = self.rollupState()
        p = plan(start, end, watermark, raw_since, dirty, period, raw_days)
        acc = {}  # (group, period start or None) -> Aggregate
        sketched = kind.fields != ('',) and kind.name != 'tests'

        def bucket(group, t):
            key = (group, None if period is None else int(t // period * period))
            agg = acc.get(key)
            if agg is None:
                agg = acc[key] = Aggregate(sketched=sketched)
            return agg

        self._addRollups(kind, series, builder, p, bucket, by_builder)
        values = {}
        for lo, hi in p.raw:
            rows = self._raw(series, builder, lo, hi)
            if kind.measurement is None:
                # the seed's series: a build in both forms counts once, as the rollups do
                rows = oneFormPerBuild(rows, _pointBuild, lambda r: BUILD_NUMBER in r[2])
            for name, t, tags, fields in rows:
                if not kind.shows(tags) or kind.name == 'durations' and tags.get(
                        'builder_name', name[:-len(BUILD_TIMES)]) != name[:-len(BUILD_TIMES)]:
                    continue
                when = t / US
                for field, v in kind.numbers(fields):
                    key = (kind.group(name, tags, field, by_builder),
                           None if period is None else int(when // period * period))
                    values.setdefault(key, []).append(v)
        for (group, when), vs in values.items():
            agg = bucket(group, when if when is not None else 0)
            if vs[0] is None:
                agg.count += len(vs)
            else:
                agg.addValues(vs)
        out = {}
        for (group, when), agg in acc.items():
            stats = _stats(agg)
            if period is None:
                out[group] = stats
            else:
                out.setdefault(group, []).append((when, stats))
        if period is not None:
            for rows in out.values():
                rows.sort(key=lambda r: r[0])
        return out

    def _addRollups(self, kind, series, builder, p, bucket, by_builder):
        _, tagsets, _ = self.names()
        fields = kind.fields or None
        for level, ranges in p.levels():
            for lo, hi in ranges:
                where = [f"series IN ({','.join('?' * len(series))})", "level = ?",
                         "start >= ?", "start < ?"]
                params = [*series, level, lo, hi]
                if fields is not None:
                    where.append(f"field IN ({','.join('?' * len(fields))})")
                    params.extend(fields)
                else:
                    where.append("field != ''")
                if builder is not None:
                    ids = self._tagsetsOf(builder)
                    where.append(f"tagset IN ({','.join('?' * len(ids))})")
                    params.extend(ids)
                sql = ("SELECT series, start, tagset, field, count, sum, min, max, nonzero,"
                       f" sketch FROM rollups WHERE {' AND '.join(where)}")
                for sid, t, gid, field, *row in self._query(sql, params):
                    name = series[sid]
                    tags = tagsets[gid]
                    if not kind.shows(tags) or kind.name == 'durations' and tags.get(
                            'builder_name', name[:-len(BUILD_TIMES)]) != name[:-len(BUILD_TIMES)]:
                        continue
                    bucket(kind.group(name, tags, field, by_builder), t).addRow(*row)

    def changePoints(self, builder=None, start=None, end=None):
        """The change points kept in the store (series ``change_points``, raw points: never
        rolled up), newest first, each a dict
        (:func:`buildbot_stats.reading.changes.changeRecord`)."""
        out = []
        series = self._seriesIds([changes.CHANGE_POINTS])
        for _, t, tags, fields in self._raw(series, builder, start, end):
            record = changes.changeRecord(t / US, tags, fields)
            if record is not None:
                out.append(record)
        return changes.byTime(out)

    def measuredSeries(self, builder=None, start=None, end=None, newest=None):
        """``{(builder, name): [(time, build number, value), ...]}``: every series change
        detection looks at (:func:`buildbot_stats.reading.changes.measuredSeries`);
        ``newest``: each series' newest ``newest`` values only, read from
        :meth:`newestStarts` on (:func:`buildbot_stats.reading.changes.newestSeries`)."""
        if newest is not None:
            return changes.newestSeries(self, newest, builder, start, end)
        return changes.measuredSeries(self, builder, start, end)

    def newestStarts(self, count, builder=None):
        """``{builder: start}``: for each builder (``builder``: that one), a time (seconds)
        from which each of its measured series holds its newest ``count`` values, None: from
        its first. Read from the rollups' counts (whole weeks, then days, then hours: a few
        rows per group, field and week), never from the raw points: the cost does not grow
        with the raw points a store holds. What the rollups do not count yet (the hours
        from the watermark, the dirty ones) counts as nothing, so the start is earlier than
        needed, never later; a series with fewer than ``count`` values rolled up is read
        from its first rolled-up period (or the first dirty hour, if earlier)."""
        names, tagsets, _ = self.names()
        watermark, raw_since, dirty, raw_days = self.rollupState()
        builders = set(self.builderNames()) | {
            n[:-len(BUILD_TIMES)] for n in names.values() if n.endswith(BUILD_TIMES)}
        if builder is not None:
            builders &= {builder}
        measured = {sid: n for sid, n in names.items() if n in _MEASURED_FIELDS
                    or n.endswith(BUILD_TIMES) or isCustom(n)}
        if not watermark or not measured:
            return dict.fromkeys(sorted(builders))
        p = plan(None, None, watermark, raw_since, dirty, raw_days=raw_days)
        counts = {}  # (builder, series id, group, field) -> [(period start, count)]
        marks = ','.join('?' * len(measured))
        for level, ranges in p.levels():
            for lo, hi in ranges:
                sql = ("SELECT series, tagset, field, start, count FROM rollups WHERE"
                       f" series IN ({marks}) AND level = ? AND start >= ? AND start < ?")
                for sid, gid, field, t, n in self._query(sql, (*measured, level, lo, hi)):
                    name = measured[sid]
                    wanted = _MEASURED_FIELDS.get(name)
                    if field == '' or (wanted is not None and field != wanted) \
                            or field in changes.NOT_MEASURED:
                        continue
                    b = name[:-len(BUILD_TIMES)] if name.endswith(BUILD_TIMES) \
                        else tagsets.get(gid, {}).get('builder_name')
                    if b is None or (builder is not None and b != builder):
                        continue
                    counts.setdefault((b, sid, gid, field), []).append((t, level, n))
        # an hour rolled up again later (dirty) may hold values of any series
        first_dirty = dirty[0] if dirty else None
        out = {}
        for (b, sid, gid, field), periods in counts.items():
            start = self._countStart(sid, gid, field, sorted(periods, reverse=True), count)
            if first_dirty is not None:
                start = min(start, first_dirty)
            out[b] = min(start, out.get(b, start))
        for b in builders:
            # no value rolled up: every value it has is in the hours not rolled up yet
            out.setdefault(b, watermark if first_dirty is None else min(watermark, first_dirty))
        return dict(sorted(out.items()))

    def _countStart(self, sid, gid, field, periods, count):
        """The start of the period, newest first among ``periods`` (``[(start, level,
        count)]``, by start descending), where the counts of one group's field reach
        ``count`` (not reached: the first period's); a week or day where they do is looked
        into (its days, its hours), so that the start is within the hour of the
        ``count``-th newest value rather than up to a week before it."""
        total = 0
        for t, level, n in periods:
            if total + n < count:
                total += n
                continue
            while level in _FINER:
                finer = self._all(
                    "SELECT start, count FROM rollups WHERE series = ? AND level = ? AND"
                    " start >= ? AND start < ? AND tagset = ? AND field = ?"
                    " ORDER BY start DESC", (sid, _FINER[level], t, t + level, gid, field))
                if sum(c for _, c in finer) != n:
                    return t  # the finer rows are gone (retention) or differ: the whole period
                level = _FINER[level]
                for t_finer, n_finer in finer:
                    t, n = t_finer, n_finer
                    if total + n >= count:
                        break
                    total += n
            return t
        return periods[-1][0]

    # -- the per-test history (schema v4): the primitives of reading.tests.TestQueries ---------

    def testRuns(self, builder=None, start=None, end=None):
        """The :class:`~buildbot_stats.reading.tests.Run` of every build with test results
        (``CaptureTestHistory``) of ``builder`` (None: all) ending in ``start <= time <
        end``, by time."""
        if self.version < TESTS_VERSION:
            return []
        where, params = [], []
        if builder is not None:
            where.append("builder = ?")
            params.append(builder)
        self._window(where, params, start, end)
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


#: The finer level of each level of the rollups: the days of a week, the hours of a day.
_FINER = {WEEK: DAY, DAY: HOUR}
#: The field of a build statistics measurement counted for change detection (the one
#: rolled up for each of its values: :mod:`buildbot_stats.reading.changes`).
_MEASURED_FIELDS = {'steps': 'duration', 'build_requests': 'queue_time', 'tests': 'passed'}


def _stats(agg):
    """The :class:`Stats` of an aggregate (exact when its quantiles are)."""
    q = agg.quantiles
    if agg.min is None:
        return Stats(agg.count)
    if q is None:
        return Stats(agg.count, agg.sum, agg.min, agg.max, agg.nonzero)
    median, p90 = q.medianAndP90()
    return Stats(agg.count, agg.sum, agg.min, agg.max, agg.nonzero, median, p90, q.exact)


def _pointBuild(row):
    """``(series, builder, build number)`` of a raw row, None without a build number."""
    series, _, tags, fields = row
    number, _ = buildOf(tags, fields)
    return None if number is None else (series, tags.get('builder_name'), number)


def buildOf(tags, fields):
    """``(build number, tagged)`` of a point: its ``build_number`` tag (Buildbot's layout,
    ``tagged`` True) or its ``build_number`` field (the build statistics captures, and the
    seed's under ``StatsService(build_number='field')``); None without one. The one place
    the store's reader finds a point's build (:mod:`buildbot_stats.reading.forms`)."""
    number = _int(tags.get(BUILD_NUMBER))
    if number is not None:
        return number, True
    value = fields.get(BUILD_NUMBER)
    return (None if isinstance(value, bool) else _int(value)), False


def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _count(value):
    return value if isNumber(value) else 0
