"""Reading InfluxDB 1.x through its query API (InfluxQL): the same queries as
:class:`~buildbot_stats.reading.sqlite.StoreReader`, for the Statistics page.

Blocking (``urllib``) on purpose: the page runs it in the web server's WSGI thread pool,
never on the reactor thread. Every problem is a :class:`StoreError` with a one-line
message naming the server, never the credentials.

InfluxDB 2.x and 3.x answer InfluxQL on the same ``/query`` endpoint (the "1.x
compatibility API") for a bucket mapped to a database (DBRP) with a token: give ``token``
and the mapped ``db``. That path is untested here (no 2.x/3.x server on the test machine).
"""

from __future__ import annotations

import base64
import functools
import json
import math
import time
import ssl
import threading
import urllib.error
import urllib.parse
import urllib.request

from buildbot_stats.checks import shown
from buildbot_stats.outcomes import OUTCOMES
from buildbot_stats.outcomes import TEST_CASES
from buildbot_stats.outcomes import TEST_RUNS
from buildbot_stats.reading import changes
from buildbot_stats.reading.forms import BUILD_NUMBER
from buildbot_stats.reading.forms import isStatistic
from buildbot_stats.reading.forms import oneFormPerBuild
from buildbot_stats.reading.kinds import BUILD_TIMES
from buildbot_stats.reading.kinds import IDENTIFIERS
from buildbot_stats.reading.kinds import KINDS
from buildbot_stats.reading.kinds import POINTS
from buildbot_stats.reading.kinds import WORKER_PREPARATION
from buildbot_stats.reading.kinds import isCustom
from buildbot_stats.reading.kinds import isNumber
from buildbot_stats.reading.plan import plan
from buildbot_stats.reading.summary import NOT_COUNTED_RESULTS
from buildbot_stats.reading.summary import PASSED_RESULTS
from buildbot_stats.reading.summary import Stats
from buildbot_stats.reading.tests import Run
from buildbot_stats.reading.tests import TestQueries
from buildbot_stats.storage.influxdb.rollups import DAILY
from buildbot_stats.storage.influxdb.rollups import HOURLY
from buildbot_stats.storage.influxdb.rollups import LEVELS
from buildbot_stats.storage.influxdb.rollups import WEEKLY
from buildbot_stats.storage.influxdb.rollups import CUSTOM_EXCLUDED
from buildbot_stats.storage.influxdb.rollups import rollupColumns
from buildbot_stats.storage.influxdb.rollups import PERCENTILES
from buildbot_stats.storage.influxdb.rollups import SETTLED
from buildbot_stats.storage.sqlite.aggregates import Aggregate
from buildbot_stats.storage.influxdb.testlines import SPAN_NS
from buildbot_stats.storage.influxdb.testlines import buildEnd
from buildbot_stats.storage.sqlite.schema import StoreError

__all__ = ['BUILD_COLUMNS', 'InfluxReader', 'buildOf', 'checkSettings', 'quoteIdent',
           'quoteString']

#: The columns of a SELECT that find a point's build in either form (read them with
#: :func:`buildOf`). ``"build_number"`` alone would not do: once a measurement holds the
#: field, InfluxDB answers the field and leaves the rows of the tag form empty.
BUILD_COLUMNS = (f'"builder_name", "{BUILD_NUMBER}"::tag AS "build_number_tag", '
                 f'"{BUILD_NUMBER}"::field AS "build_number_field"')


def buildOf(row):
    """``(builder, build number, tagged)`` of a row selected with :data:`BUILD_COLUMNS`:
    the build number is the ``build_number`` tag (Buildbot's layout: ``tagged`` True) or the
    ``build_number`` field (the build statistics captures, and the seed's under
    ``StatsService(build_number='field')``); None when the point has neither
    (:mod:`buildbot_stats.reading.forms`). The one place that knows where a point's build
    is."""
    tag = _int(row.get('build_number_tag'))
    if tag is not None:
        return row.get('builder_name'), tag, True
    return row.get('builder_name'), _int(row.get('build_number_field')), False


#: The measurements the rollups leave out (their weekly rows, if any, are not looked for).
NOT_ROLLED_UP = frozenset(CUSTOM_EXCLUDED) - {'builds', 'build_requests', 'steps', 'tests'}

#: The steps the page shows (as :meth:`Kind.shows <buildbot_stats.reading.kinds.Kind.shows>`):
#: not hidden (``hideStepIf``: a tag only hidden steps have; a missing tag compares as
#: ''), not Buildbot's own worker_preparation. Tags only: raw points and rollups have them.
SHOWN_STEPS = ['"hidden" != \'true\'', f'"step_name" != \'{WORKER_PREPARATION}\'']
VISIBLE_STEPS = ['"duration" >= 0'] + SHOWN_STEPS
#: The conditions on tags of the points a kind reads.
KIND_CONDITIONS = {'steps': SHOWN_STEPS}

#: How far back :meth:`InfluxReader.recentDurations` looks for a builder's latest builds
#: first (seconds; None: the whole range).
RECENT_WINDOWS = (86400, 28 * 86400, None)
#: test names per ``OR`` of a query of the per-test history
NAME_CHUNK = 50
_OUTCOME_CODES = {name: code for code, name in enumerate(OUTCOMES)}

SETTINGS = ('url', 'db', 'user', 'password', 'token', 'retention_policy', 'ca_file',
            'verify_ssl', 'timeout')


def checkSettings(settings):
    """The problems (one line each) of a ``dict`` of :class:`InfluxReader` arguments."""
    if not isinstance(settings, dict):
        return [f"must be a dict of {', '.join(SETTINGS)}, got {shown(settings)}"]
    problems = [f"unknown key {k!r}" for k in sorted(settings) if k not in SETTINGS]
    url = settings.get('url')
    if not isinstance(url, str) or not url.startswith(('http://', 'https://')):
        # a URL may carry a user and password: only a string that is not one is shown
        got = 'a URL of another scheme' if isinstance(url, str) and '://' in url else shown(url)
        problems.append(f"url must be an http:// or https:// URL, got {got}")
    if not isinstance(settings.get('db'), str) or not settings.get('db'):
        problems.append(f"db must be a database name, got {shown(settings.get('db'))}")
    return problems


def quoteIdent(name):
    """An InfluxQL identifier: ``"name"`` with ``"`` and ``\\`` escaped."""
    return '"' + name.replace('\\', '\\\\').replace('"', '\\"') + '"'


def quoteString(value):
    """An InfluxQL string literal: ``'value'`` with ``'`` and ``\\`` escaped."""
    return "'" + value.replace('\\', '\\\\').replace("'", "\\'") + "'"


def _seconds(value):
    """A test's duration as the SQLite store keeps it: whole microseconds."""
    return round(float(value), 6) if isNumber(value) else None


def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


#: What InfluxDB computes per field: the columns of :class:`Stats` (median: the middle
#: value, or the mean of the two middle ones; percentile: nearest rank).
AGGREGATES = (('count', 'count({})'), ('sum', 'sum({})'), ('min', 'min({})'),
              ('max', 'max({})'), ('median', 'median({})'), ('p90', 'percentile({}, 90)'))
DURATION_SET = '"duration" >= 0'
TOTAL_SET = '"total" >= 0'
#: The tags an answer is grouped by, per kind (with by_builder=False, the builder's left out).
GROUP_TAGS = {'durations': (), 'results': ('result',), 'queue': (), 'steps': ('step_name',),
              'tests': (), 'custom': ()}


class InfluxReader(TestQueries):
    """The read API of an InfluxDB 1.x database written by :class:`InfluxStorageService`.

    :param url: the server's base URL (``'http://localhost:8086'``)
    :param db: the database
    :param user: user name for basic authentication (default None)
    :param password: its password (default None)
    :param token: a token (``Authorization: Token ...``) instead of user and password
        (default None)
    :param retention_policy: read from this retention policy (default None: the
        database's default)
    :param ca_file: a PEM file of the CA to trust for HTTPS (default None: the system's)
    :param verify_ssl: verify the server's certificate (default True)
    :param timeout: seconds one query may take (default 10.0)
    """

    def __init__(self, url, db, user=None, password=None, token=None,
                 retention_policy=None, ca_file=None, verify_ssl=True, timeout=10.0,
                 clock=time.time):
        self.url = url.rstrip('/')
        self.db = db
        self.rp = retention_policy
        self.clock = clock
        # what the database holds, asked once per reader (a reader serves one view)
        self._known = {}
        self._known_lock = threading.RLock()
        self.timeout = timeout
        self.path = f"{self.url} db {db}"  # how messages name the store
        self._headers = {}
        if token:
            self._headers['Authorization'] = 'Token ' + token
        elif user or password:
            basic = base64.b64encode(f"{user or ''}:{password or ''}".encode('utf-8'))
            self._headers['Authorization'] = 'Basic ' + basic.decode('ascii')
        self._context = None
        if self.url.startswith('https://'):
            self._context = ssl.create_default_context(cafile=ca_file)
            if not verify_ssl:
                self._context.check_hostname = False
                self._context.verify_mode = ssl.CERT_NONE

    #: Panels of a view computed at once (:func:`buildbot_stats.www.page.collect`): the
    #: reader holds no connection, InfluxDB answers requests in parallel.
    threads = 3

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- the wire -----------------------------------------------------------------------------

    def query(self, q):
        """Run InfluxQL; the list of ``series`` dicts of the (one) statement's result."""
        return self.queries([q])[0]

    def queries(self, statements):
        """Run several InfluxQL statements in one request (``;`` between them, POSTed: a
        statement of the page is up to a kilobyte); the list of ``series`` lists, one per
        statement, in order. One request instead of one each saves a connection and a
        round trip per statement; InfluxDB runs them one after the other."""
        statements = list(statements)
        if not statements:
            return []
        if len(statements) == 1 and len(statements[0]) < 2000:
            params = urllib.parse.urlencode({'db': self.db, 'q': statements[0], 'epoch': 'ms'})
            request = urllib.request.Request(f"{self.url}/query?{params}",
                                             headers=self._headers)
        else:
            params = urllib.parse.urlencode({'db': self.db, 'epoch': 'ms'})
            body = urllib.parse.urlencode({'q': ";\n".join(statements)}).encode('utf-8')
            request = urllib.request.Request(
                f"{self.url}/query?{params}", data=body, method='POST',
                headers=dict(self._headers,
                             **{'Content-Type': 'application/x-www-form-urlencoded'}))
        try:
            with urllib.request.urlopen(request, timeout=self.timeout,
                                        context=self._context) as response:
                answer = json.loads(response.read().decode('utf-8'))
        except urllib.error.HTTPError as e:
            try:
                detail = json.loads(e.read().decode('utf-8'))['error']
            except Exception:
                detail = e.reason
            raise StoreError(f"{self.path}: HTTP {e.code}: {detail}") from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, 'reason', e)
            raise StoreError(f"{self.path}: cannot be read: {reason}") from None
        except ValueError as e:
            raise StoreError(f"{self.path}: not an InfluxDB answer: {e}") from None
        results = answer.get('results') or [{}]
        for statement, result in zip(statements, results):
            if 'error' in result:
                if len(statements) > 1:
                    # a statement InfluxDB refused before running it is "not executed":
                    # alone, it answers its own error
                    self.queries([statement])
                raise StoreError(f"{self.path}: {result['error']}")
        if len(results) != len(statements):
            # InfluxDB stops at a statement that fails; one that answers nothing is {}
            raise StoreError(f"{self.path}: {len(results)} answers to {len(statements)}"
                             " statements")
        return [r.get('series') or [] for r in results]

    def _rows(self, q):
        for s in self.query(q):
            columns = s['columns']
            for values in s['values']:
                yield dict(zip(columns, values))

    def _from(self, measurement):
        if self.rp:
            return f"{quoteIdent(self.rp)}.{quoteIdent(measurement)}"
        return quoteIdent(measurement)

    @staticmethod
    def _where(builder, start, end, conditions=()):
        where = list(conditions)
        if builder is not None:
            where.append(f'"builder_name" = {quoteString(builder)}')
        if start is not None:
            where.append(f"time >= {int(start * 1e9)}")
        if end is not None:
            where.append(f"time < {int(end * 1e9)}")
        return (" WHERE " + " AND ".join(where)) if where else ""

    # -- what the store holds -------------------------------------------------------------------

    def stateKey(self):
        """None: the server does the work, the page does not cache its views
        (:class:`buildbot_stats.www.cache.ViewCache`)."""
        return None

    def _once(self, key, ask):
        # the panels' threads ask together: one asks, the others wait (re-entrant: an
        # answer may need another, firstTime the fields)
        with self._known_lock:
            if key not in self._known:
                self._known[key] = ask()
            return self._known[key]

    def measurements(self):
        return self._once('measurements', lambda: [
            v[0] for s in self.query("SHOW MEASUREMENTS") for v in s['values']])

    def builderNames(self):
        """Every builder with points, sorted."""
        names = {v[1] for s in self.query('SHOW TAG VALUES WITH KEY = "builder_name"')
                 for v in s['values']}
        return sorted(names)

    # -- the queries of the report and the web page (same names as the SQLite reader) --------

    def buildDurations(self, builder=None, start=None, end=None):
        """``{builder: [(end time, build number, duration), ...]}`` by time, from the
        ``duration`` field of the ``<builder>-build-times`` measurements (the first point
        of each build)."""
        names = [m for m in self.measurements() if m.endswith('-build-times')]
        if builder is not None:
            names = [m for m in names if m == f"{builder}-build-times"]
        out = {}
        for m in names:
            b = m[:-len('-build-times')]
            seen = set()
            where = self._where(None, start, end, ['"duration" >= 0'])
            q = f'SELECT "duration", {BUILD_COLUMNS} FROM {self._from(m)}{where}'
            for row in self._rows(q):
                _, number, _ = buildOf(row)
                # the first point of each build (by time: the tag form's, of a build in both)
                if number in seen or not isNumber(row.get('duration')):
                    continue
                seen.add(number)
                out.setdefault(b, []).append((row['time'] / 1e3, number, float(row['duration'])))
        return out

    def _measurement(self, measurement, columns, builder, start, end, conditions=()):
        cols = ", ".join(quoteIdent(c) for c in columns)
        q = (f"SELECT {BUILD_COLUMNS}, {cols} FROM {self._from(measurement)}"
             f"{self._where(builder, start, end, conditions)}")
        for row in self._rows(q):
            b, number, _ = buildOf(row)
            yield (b, row['time'] / 1e3, number, *(row.get(c) for c in columns))

    def buildResults(self, builder=None, start=None, end=None):
        """``{builder: [(time, build number, result), ...]}`` from ``builds``."""
        out = {}
        for b, t, number, result in self._measurement('builds', ['result'], builder, start,
                                                      end, ['"result_code" >= 0']):
            out.setdefault(b, []).append((t, number, result))
        return out

    def queueTimes(self, builder=None, start=None, end=None):
        """``{builder: [(time, build number, queue time), ...]}`` from ``build_requests``."""
        out = {}
        for b, t, number, value in self._measurement('build_requests', ['queue_time'],
                                                     builder, start, end,
                                                     ['"queue_time" >= 0']):
            out.setdefault(b, []).append((t, number, float(value)))
        return out

    def stepDurations(self, builder=None, start=None, end=None):
        """``{(builder, step name): [(time, build number, duration), ...]}`` from ``steps``."""
        out = {}
        for b, t, number, step, value in self._measurement(
                'steps', ['step_name', 'duration'], builder, start, end, VISIBLE_STEPS):
            out.setdefault((b, step), []).append((t, number, float(value)))
        return out

    def testCounts(self, builder=None, start=None, end=None):
        """``{builder: [(time, build number, passed, failed, skipped), ...]}`` from ``tests``."""
        out = {}
        for b, t, number, passed, failed, skipped in self._measurement(
                'tests', ['passed', 'failed', 'skipped'], builder, start, end,
                ['"total" >= 0']):
            out.setdefault(b, []).append((t, number, passed or 0, failed or 0, skipped or 0))
        return out

    def customSeries(self, builder=None, start=None, end=None):
        """``{series: [(time, builder, build number, {field: number}), ...]}`` of the
        property and data series (every measurement but ``*-build-times`` and the build
        statistics measurements); numeric fields only, not the identifiers (the build
        number...); a build in both forms counts in its tag form
        (:mod:`buildbot_stats.reading.forms`)."""
        out = {}
        for m in self._customMeasurements(builder):
            q = (f"SELECT *::field, {BUILD_COLUMNS} FROM {self._from(m)}"
                 f"{self._where(builder, start, end)}")
            points = []
            for row in self._rows(q):
                b, number, tagged = buildOf(row)
                numbers = {k: float(v) for k, v in row.items()
                           if k not in _NOT_FIELDS and k not in IDENTIFIERS and isStatistic(k)
                           and isNumber(v)}
                if numbers:
                    points.append(((row['time'] / 1e3, b, number, numbers), tagged))
            kept = oneFormPerBuild(points, lambda p: None if p[0][2] is None else p[0][1:3],
                                   lambda p: p[1])
            if kept:
                out[m] = [p for p, _ in kept]
        return dict(sorted(out.items()))

    def _customMeasurements(self, builder):
        return [m for m in self.measurements() if isCustom(m)
                and (builder is None or m.startswith(builder + '-'))]

    # -- what InfluxDB computes ---------------------------------------------------------------

    def rawSince(self):
        """0: what InfluxDB holds is read as it is (a retention policy's deletions are not
        known here)."""
        return 0

    def firstTime(self):
        """The time (seconds) of the oldest point, None for an empty database: the first
        point of each measurement (``LIMIT 1``, which reads the first block of each series,
        where ``first()`` would read them all). A query without a time range opens every
        shard of the measurement (a week of points each, by default): with the rollups,
        the first weekly row of the database bounds the search to its week
        (:meth:`_firstTimeFromRollups`)."""
        def ask():
            names = list(self.numericFields())
            if self.hasRollups():
                return self._firstTimeFromRollups(names)
            return self.firstOf(f"SELECT * FROM {self._from(m)} LIMIT 1" for m in names)
        return self._once('first', ask)

    def firstOf(self, statements):
        """The earliest time (seconds) the answers of ``statements`` hold, or None."""
        firsts = [v[0] / 1e3 for answer in self.queries(statements) for s in answer
                  for v in s['values'] if v[0] is not None]
        return min(firsts, default=None)

    def _firstTimeFromRollups(self, names):
        """:meth:`firstTime` of a database with rollups: ``W``, the start of the earliest
        week rolled up, then each measurement's first point before ``W`` + 7 days (a point
        older than the rollups, not rolled up, is found too); when there is none (the raw
        points of that time are gone: a retention policy), the first point after, or the
        first hour rolled up, the earlier (as the embedded store: "the oldest point or
        rollup")."""
        rollup_names = [m for m in names if m not in NOT_ROLLED_UP]
        week = self.firstOf(f"SELECT * FROM {quoteIdent(WEEKLY)}.{quoteIdent(m)} LIMIT 1"
                             for m in rollup_names)
        if week is None:
            return self.firstOf(f"SELECT * FROM {self._from(m)} LIMIT 1" for m in names)
        bound = int(week) + 7 * 86400
        first = self.firstOf(f"SELECT * FROM {self._from(m)} WHERE time < {bound}s LIMIT 1"
                              for m in names)
        if first is not None:
            return first
        hour = self.firstOf(f"SELECT * FROM {quoteIdent(HOURLY)}.{quoteIdent(m)}"
                             f" WHERE time >= {int(week)}s LIMIT 1" for m in rollup_names)
        later = self.firstOf(f"SELECT * FROM {self._from(m)} WHERE time >= {bound}s LIMIT 1"
                              for m in names)
        return min((t for t in (hour, later) if t is not None), default=None)

    def numericFields(self):
        """``{measurement: [numeric field names]}`` (``SHOW FIELD KEYS``)."""
        def ask():
            out = {}
            for s in self.query("SHOW FIELD KEYS"):
                names = [k for k, kind in s['values'] if kind in ('float', 'integer')]
                if names:
                    out[s['name']] = names
            return out
        return self._once('fields', ask)

    def _kindMeasurements(self, kind, builder):
        """``{measurement: [fields]}`` a kind reads."""
        fields = self.numericFields()
        if kind.name == 'durations':
            names = [m for m in fields if m.endswith(BUILD_TIMES)
                     and (builder is None or m == f"{builder}{BUILD_TIMES}")]
        elif kind.name == 'custom':
            names = [m for m in self._customMeasurements(builder) if m in fields]
        else:
            names = [kind.measurement] if kind.measurement in fields else []
        out = {}
        for m in names:
            if kind.fields == (POINTS,):
                # a count of the points: of a field every point of the capture has
                wanted = [f for f in ('result_code', 'build_number', 'success')
                          if f in fields[m]][:1]
            elif kind.fields:
                wanted = [f for f in kind.fields if f in fields[m]]
            else:
                wanted = [f for f in fields[m] if f not in IDENTIFIERS]
            if wanted:
                out[m] = wanted
        return out

    def hasRollups(self):
        """True when the database has the rollups of ``buildbot-stats influxdb-rollups``
        (:mod:`buildbot_stats.storage.influxdb.rollups`)."""
        def ask():
            names = {v[0] for s in self.query(f"SHOW RETENTION POLICIES ON {quoteIdent(self.db)}")
                     for v in s['values']}
            return all(policy in names for policy, _, _, _ in LEVELS)
        return self._once('rollups', ask)

    def summarize(self, kind_name, builder=None, start=None, end=None, period=None,
                  by_builder=True):
        """The same answer as :meth:`StoreReader.summarize
        <buildbot_stats.reading.sqlite.StoreReader.summarize>`. With the rollups of
        ``buildbot-stats influxdb-rollups``, from them for the whole hours and days they
        cover and from the raw points elsewhere (:meth:`summarizeRollups`); without, computed
        by InfluxDB from the raw points (:meth:`summarizeRaw`)."""
        if self.hasRollups():
            return self.summarizeRollups(kind_name, builder, start, end, period, by_builder)
        return self.summarizeRaw(kind_name, builder, start, end, period, by_builder)

    def summarizeRollups(self, kind_name, builder=None, start=None, end=None, period=None,
                         by_builder=True):
        """:meth:`summarize` from the rollups: counts, sums, minimums and maximums exact,
        medians and 90th percentiles estimated from the hours' and days' percentiles (the
        custom series: the median, from the periods' medians)."""
        kind = KINDS[kind_name]
        measurements = self._kindMeasurements(kind, builder)
        if not measurements:
            return {}
        if period is not None and start is None:
            first = self.firstTime()
            if first is None:
                return {}
            start = first // period * period
        watermark = int((self.clock() - SETTLED) // 3600 * 3600)
        p = plan(start, end, watermark, 0, [], period)
        counted = kind.fields == (POINTS,) or kind.name == 'tests'
        acc = {}

        def bucket(key, t):
            k = (key, None if period is None else int(t // period * period))
            b = acc.get(k)
            if b is None:
                b = acc[k] = _Bucket(Aggregate(sketched=not counted))
            return b

        tags = [quoteIdent(t) for t in (('builder_name',) + GROUP_TAGS[kind.name])]
        conditions = KIND_CONDITIONS.get(kind.name, ())
        # every statement first, then one request for all of them
        rollup_reads, raw_reads = [], []
        for policy, ranges, length in ((HOURLY, p.hours, 3600), (DAILY, p.days, 86400),
                                       (WEEKLY, p.weeks, 7 * 86400)):
            # per period of the level's own length, each period is one row: its median and
            # p90 are the answer (_Bucket), the other percentiles not needed
            wanted = SINGLE_ROW_PERCENTILES if period == length else PERCENTILES
            for lo, hi in ranges:
                for m, fields in measurements.items():
                    columns = ", ".join(quoteIdent(c) for c in rollupColumns(kind, fields,
                                                                             wanted))
                    rollup_reads.append((m, fields, (
                        f"SELECT {columns} FROM {quoteIdent(policy)}.{quoteIdent(m)}"
                        f"{self._where(builder, lo, hi, conditions)}"
                        f" GROUP BY {', '.join(tags)}")))
        for lo, hi in p.raw:
            for m, fields in measurements.items():
                cols = ", ".join(quoteIdent(f) for f in fields)
                raw_reads.append((m, fields, (
                    f"SELECT {cols} FROM {self._from(m)}"
                    f"{self._where(builder, lo, hi, conditions)} GROUP BY {', '.join(tags)}")))
        answers = iter(self.queries([q for _, _, q in rollup_reads + raw_reads]))
        for m, fields, _ in rollup_reads:
            for series in next(answers):
                row_tags = series.get('tags') or {}
                columns = series['columns']
                for values in series['values']:
                    self._addRollupRow(kind, m, fields, row_tags, dict(zip(columns, values)),
                                       by_builder, bucket)
        for m, fields, _ in raw_reads:
            for series in next(answers):
                row_tags = series.get('tags') or {}
                values = {}
                for row in series['values']:
                    t = row[0] / 1e3
                    for f, v in zip(fields, row[1:]):
                        if isNumber(v):
                            field = POINTS if kind.fields == (POINTS,) else f
                            values.setdefault(
                                (kind.group(m, row_tags, field, by_builder),
                                 t // period * period if period else 0), []).append(v)
                for (key, t), vs in values.items():
                    agg = bucket(key, t).agg
                    if kind.fields == (POINTS,):
                        agg.count += len(vs)
                    else:
                        agg.addValues(vs)
        out = {}
        for (key, when), b in acc.items():
            st = b.stats()
            if period is None:
                out[key] = st
            else:
                out.setdefault(key, []).append((when, st))
        if period is not None:
            for rows in out.values():
                rows.sort(key=lambda r: r[0])
        return out

    @staticmethod
    def _addRollupRow(kind, m, fields, tags, row, by_builder, bucket):
        t = row['time'] / 1e3
        if kind.fields == (POINTS,):
            if row.get('points'):
                bucket(kind.group(m, tags, POINTS, by_builder), t).agg.count += row['points']
            return
        for f in fields:
            names = _rollupNames(kind.name, f)
            n = row.get(names['count'])
            if not n:
                continue
            b = bucket(kind.group(m, tags, f, by_builder), t)
            # the values not zero: counted for the failed tests only
            nonzero = (row.get('failed_nonzero') or 0) if f == 'failed' else n
            b.agg.addRow(n, row.get(names['sum']), row.get(names['min']),
                         row.get(names['max']), nonzero, None)
            if b.agg.quantiles is not None:
                if kind.name == 'custom':
                    median = row.get(names['median'])
                    if median is not None:
                        b.rows.append((n, None, None, None, median))
                else:
                    b.rows.append((n, row.get(names['min']), row.get(names['max']),
                                   [row.get(c) for c in names['percentiles']], None))

    def summarizeRaw(self, kind_name, builder=None, start=None, end=None, period=None,
                     by_builder=True):
        """:meth:`summarize` computed by InfluxDB from the raw points (``count``, ``sum``,
        ``min``, ``max``, ``median``, ``percentile(.., 90)``, ``GROUP BY time(period)``):
        exact, but it reads every point of the range."""
        kind = KINDS[kind_name]
        counted_only = kind.fields == (POINTS,) or kind.name == 'tests'
        tags = (('builder_name',) if by_builder and kind.name != 'durations' else ()) \
            + GROUP_TAGS[kind.name]
        if period is not None and start is None:
            first = self.firstTime()
            if first is None:
                return {}
            start = first // period * period
        out = {}
        for m, fields in self._kindMeasurements(kind, builder).items():
            columns = [f"{fn.format(quoteIdent(f))} AS {quoteIdent(f'{f}|{name}')}"
                       for f in fields for name, fn in AGGREGATES
                       if not (counted_only and name in ('median', 'p90'))]
            group = [quoteIdent(t) for t in tags]
            if period is not None:
                group.insert(0, f"time({int(period)}s)")
            q = (f"SELECT {', '.join(columns)} FROM {self._from(m)}"
                 f"{self._where(builder, start, end, KIND_CONDITIONS.get(kind.name, ()))}"
                 + (f" GROUP BY {', '.join(group)}" if group else "")
                 + (" fill(none)" if period is not None else ""))
            answers = self.query(q)
            nonzero = self._nonzero(m, fields, builder, start, end, group, period) \
                if kind.name == 'tests' else {}
            for series in answers:
                row_tags = series.get('tags') or {}
                for values in series['values']:
                    row = dict(zip(series['columns'], values))
                    when = None if period is None else row['time'] / 1e3
                    for f in fields:
                        count = row.get(f"{f}|count")
                        if not count:
                            continue
                        field = POINTS if kind.fields == (POINTS,) else f
                        key = kind.group(m, row_tags, field, by_builder)
                        if counted_only and kind.fields == (POINTS,):
                            stats = Stats(count)
                        else:
                            stats = Stats(count, row.get(f"{f}|sum"), row.get(f"{f}|min"),
                                          row.get(f"{f}|max"),
                                          nonzero.get((tuple(sorted(row_tags.items())), when, f)),
                                          row.get(f"{f}|median"), row.get(f"{f}|p90"))
                        if period is None:
                            out[key] = _merged(out.get(key), stats)
                        else:
                            out.setdefault(key, {})[when] = _merged(
                                out.get(key, {}).get(when), stats)
        if period is not None:
            out = {k: sorted(v.items()) for k, v in out.items()}
        return out

    def _nonzero(self, m, fields, builder, start, end, group, period):
        """``{(tags, time, field): count of non-zero values}`` (tests' builds with failures)."""
        out = {}
        for f in fields:
            q = (f"SELECT count({quoteIdent(f)}) AS \"n\" FROM {self._from(m)}"
                 f"{self._where(builder, start, end, [f'{quoteIdent(f)} != 0'])}"
                 + (f" GROUP BY {', '.join(group)}" if group else ""))
            for series in self.query(q):
                tags = tuple(sorted((series.get('tags') or {}).items()))
                for t, n in series['values']:
                    out[(tags, None if period is None else t / 1e3, f)] = n
        return out

    # -- the latest builds ------------------------------------------------------------------

    def recentDurations(self, builder=None, start=None, end=None, n=200):
        """``{builder: [(time, build number, duration), ...]}``: the latest ``n`` builds of
        each builder in the range, by time. Looked for in the last day of the range first,
        then the last 4 weeks, then all of it (:data:`RECENT_WINDOWS`): ``ORDER BY time DESC
        LIMIT`` opens every shard of its time range, a week each by default."""
        names = list(self._kindMeasurements(KINDS['durations'], builder))
        limit = int(n) + 20  # a few more than n: a build in both forms (its first point counts)
        top = self.clock() if end is None else end
        found = {}
        for window in RECENT_WINDOWS:
            lo = None if window is None else top - window
            if lo is not None and start is not None and lo <= start:
                lo = None
            wanted = [m for m in names if len(found.get(m, ())) < limit]
            if not wanted:
                break
            statements = [f'SELECT "duration", {BUILD_COLUMNS} FROM {self._from(m)}'
                          f"{self._where(None, start if lo is None else lo, end, [DURATION_SET])}"
                          f" ORDER BY time DESC LIMIT {limit}" for m in wanted]
            for m, answer in zip(wanted, self.queries(statements)):
                found[m] = [dict(zip(s['columns'], v)) for s in answer for v in s['values']]
            if lo is None:
                break
        out = {}
        for m in names:
            rows, seen = [], set()
            # builds ending in the same second (Buildbot's times are whole seconds) by
            # number: InfluxDB orders the points of one time by series key, which a build
            # number as a tag is part of and as a field is not
            for row, number in sorted(((r, buildOf(r)[1]) for r in found.get(m, ())),
                                      key=lambda rn: (rn[0]['time'], rn[1] or 0)):
                if number is None or number not in seen:
                    seen.add(number)
                    rows.append((row['time'] / 1e3, number, float(row['duration'])))
            if rows:
                out[m[:-len(BUILD_TIMES)]] = rows[-n:]
        return dict(sorted(out.items()))

    def lastTests(self, builder=None, start=None, end=None):
        """``{builder: (time, build number, passed, failed, skipped)}``: the last ``tests``
        point of each builder in the range."""
        out = {}
        q = (f'SELECT "passed", "failed", "skipped", {BUILD_COLUMNS} FROM {self._from("tests")}'
             f"{self._where(builder, start, end, [TOTAL_SET])}"
             ' GROUP BY "builder_name" ORDER BY time DESC LIMIT 1')
        for s in self.query(q):
            for values in s['values']:
                row = dict(zip(s['columns'], values), **(s.get('tags') or {}))
                b, number, _ = buildOf(row)
                out[b] = (row['time'] / 1e3, number,
                          *(row.get(f) or 0 for f in ('passed', 'failed', 'skipped')))
        return out

    def lastFailures(self, builder=None, start=None, end=None):
        """``{builder: (time, build number, result)}``: the last build of each builder whose
        result counts as failed."""
        skip = sorted(PASSED_RESULTS | NOT_COUNTED_RESULTS)
        conditions = [f'"result" != {quoteString(r)}' for r in skip]
        q = (f'SELECT "result_code", "result", {BUILD_COLUMNS} FROM {self._from("builds")}'
             f"{self._where(builder, start, end, conditions)}"
             ' GROUP BY "builder_name" ORDER BY time DESC LIMIT 1')
        out = {}
        for s in self.query(q):
            for values in s['values']:
                row = dict(zip(s['columns'], values), **(s.get('tags') or {}))
                b, number, _ = buildOf(row)
                out[b] = (row['time'] / 1e3, number, row.get('result'))
        return out

    def changePoints(self, builder=None, start=None, end=None):
        """The change points kept in ``change_points``, newest first (same as the SQLite
        reader's)."""
        if changes.CHANGE_POINTS not in self.measurements():
            return []
        q = (f"SELECT * FROM {self._from(changes.CHANGE_POINTS)}"
             f"{self._where(builder, start, end)}")
        out = []
        for row in self._rows(q):
            tags = {k: row.get(k) for k in ('builder_name', 'series', 'direction')}
            record = changes.changeRecord(row['time'] / 1e3, tags, row)
            if record is not None:
                out.append(record)
        return changes.byTime(out)

    def measuredSeries(self, builder=None, start=None, end=None, newest=None):
        """Every series change detection looks at (same as the SQLite reader's)."""
        if newest is not None:
            return changes.newestSeries(self, newest, builder, start, end)
        return changes.measuredSeries(self, builder, start, end)

    def newestStarts(self, count, builder=None):
        """``{builder: start}`` (as the SQLite reader's): the time of the ``count``-th newest
        point of each group of each measured measurement (``ORDER BY time DESC LIMIT 1
        OFFSET count - 1`` per group: InfluxDB reads each series from its newest block), the
        earliest of a builder's groups; None for a builder with a group of fewer points."""
        reads = [(m, '"duration"', [DURATION_SET], ())
                 for m in self._kindMeasurements(KINDS['durations'], builder)]
        for m, fields, conditions, tags in (
                ('steps', '"duration"', VISIBLE_STEPS, ('step_name',)),
                ('build_requests', '"queue_time"', ['"queue_time" >= 0'], ()),
                ('tests', '"total"', [TOTAL_SET], ())):
            if m in self.measurements():
                reads.append((m, fields, conditions, tags))
        reads.extend((m, '*::field', [], ()) for m in self._customMeasurements(builder))
        out = {}
        for m, fields, conditions, tags in reads:
            group = ' GROUP BY ' + ', '.join(quoteIdent(t) for t in ('builder_name',) + tags)
            by_series = m[:-len(BUILD_TIMES)] if m.endswith(BUILD_TIMES) else None
            where = self._where(None if by_series else builder, None, None, conditions)
            base = f"SELECT {fields} FROM {self._from(m)}{where}"
            bounds = {}
            for offset in (0, count - 1):
                for series in self.query(f"{base}{group} ORDER BY time DESC LIMIT 1"
                                         f" OFFSET {offset}"):
                    key = tuple(sorted((series.get('tags') or {}).items()))
                    bounds[key] = series['values'][0][0] / 1e3 if offset else None
            for key, t in bounds.items():
                b = dict(key).get('builder_name') or by_series
                if not b:
                    continue
                if b in out and (out[b] is None or t is None):
                    out[b] = None
                else:
                    out[b] = t if b not in out else min(out[b], t)
        return out

    # -- the per-test history: the primitives of reading.tests.TestQueries --------------------
    # A run's key is (builder, build number); a test's key is its name. CaptureTestHistory
    # writes the build number as a field, but it is read through buildOf like every point's.

    def testRuns(self, builder=None, start=None, end=None):
        """The :class:`~buildbot_stats.reading.tests.Run` of every build with test results
        (the ``test_runs`` measurement), by time."""
        q = (f"SELECT *::field, {BUILD_COLUMNS} FROM {self._from(TEST_RUNS)}"
             f"{self._where(builder, start, end)}")
        runs = {}
        for row in self._rows(q):
            b, number, _ = buildOf(row)
            if b is None or number is None:
                continue
            counts = tuple(_int(row.get(k)) or 0 for k in ('passed', 'failed', 'skipped',
                                                          'flaky'))
            revision = row.get('revision')
            runs[(b, number)] = Run((b, number), b, number, _int(row.get('buildid')),
                                    buildEnd(row['time'], number) / 1e3,
                                    None if revision is None else str(revision),
                                    _int(row.get('buildset')), counts)
        return sorted(runs.values(), key=lambda r: (r.time, r.number))

    def _caseRows(self, columns, runs, conditions=()):
        """The ``test_cases`` points of ``runs`` (one query per builder, over the time span
        of its runs), as dicts, only those of these runs."""
        keys = {r.key for r in runs}
        by_builder = {}
        for r in runs:
            by_builder.setdefault(r.builder, []).append(r.time)
        cols = ", ".join(quoteIdent(c) for c in columns)
        for b, times in sorted(by_builder.items()):
            # a run's points: from its end, moved by the build-number spread (< 1 s)
            lo, hi = min(times), max(times) + 1 + SPAN_NS / 1e9
            where = self._where(b, lo, hi, conditions)
            q = f"SELECT {BUILD_COLUMNS}, {cols} FROM {self._from(TEST_CASES)}{where}"
            for row in self._rows(q):
                key = buildOf(row)[:2]
                if key in keys:
                    yield key, row

    def _failuresOf(self, runs):
        out, seen = [], set()
        for key, row in self._caseRows(
                ['test', 'outcome'], runs, ['("outcome" = \'failed\' OR "outcome" = \'flaky\')']):
            code = _OUTCOME_CODES.get(row.get('outcome'))
            # once per test and build: a build written before the build-number spread and
            # again after it (a backfill) has its points at both times
            if code is not None and row.get('test') is not None \
                    and (key, row['test']) not in seen:
                seen.add((key, row['test']))
                out.append((key, row['test'], code))
        return out

    def _outcomesAt(self, wanted):
        out = {}
        names = sorted(wanted)
        for i in range(0, len(names), NAME_CHUNK):
            chunk = names[i:i + NAME_CHUNK]
            runs = {r.key: r for n in chunk for r in wanted[n]}
            keys = {n: {r.key for r in wanted[n]} for n in chunk}
            which = "(" + " OR ".join(f'"test" = {quoteString(n)}' for n in chunk) + ")"
            for key, row in self._caseRows(['test', 'outcome', 'duration'],
                                           list(runs.values()), [which]):
                code = _OUTCOME_CODES.get(row.get('outcome'))
                if code is None or key not in keys.get(row.get('test'), ()):
                    continue
                out.setdefault(row['test'], {})[key] = (code, _seconds(row.get('duration')))
        return out

    def _durationsOf(self, runs):
        by_test = {}
        for key, row in self._caseRows(['test', 'duration'], runs, ['"duration" >= 0']):
            duration = row.get('duration')
            if row.get('test') is not None and isNumber(duration):
                by_test.setdefault(row['test'], {})[key] = _seconds(duration)
        order = [r.key for r in runs]
        return {test: [by_run.get(k) for k in order] for test, by_run in by_test.items()}

    def _testNames(self, test_keys):
        return {k: k for k in test_keys}

    def _testKeys(self, names):
        return {n: n for n in names}


#: The bins an unknown stretch between two known ranks is spread over (at most): with 3,
#: the medians and 90th percentiles of tests/test_influxdb_rollups.py's range came within
#: 2.01 % of the exact ones (1.31 points of rank) at every hour of the day, where one bin
#: at the middle gave 2.07 % (1.6 points): benchmarks/influx_rollup_error.py. (A sweep of
#: ranges ending at the present: 2 bins gave 3's worst case with a larger mean error, 8
#: no better than 3.)
GAP_BINS = 3


def percentileBins(count, lo, hi, percentiles):
    """``(values, weights)``: a period's values as far as its minimum, maximum and
    percentiles tell them. InfluxDB's ``percentile(f, p)`` of ``n`` values is the one of rank
    ``floor(n * p / 100 + 0.5)`` (none below rank 1), so each is a known value of a known
    rank; the values between two known ranks, unknown, are spread evenly on the line between
    them (in at most :data:`GAP_BINS` weighted bins). A period of at most 20 values is known
    whole. (A view reads thousands of rows: which rank each value has depends on ``n``
    only, worked out once per ``n``, :func:`_binLayout`.)"""
    if lo is None or hi is None or None in percentiles or len(percentiles) != len(PERCENTILES):
        return _percentileBins(count, lo, hi, percentiles)
    known = (lo, *percentiles, hi)
    layout, weights = _binLayout(int(count))
    return [known[a] + (known[b] - known[a]) * f if f else known[a]
            for a, b, f in layout], weights


def _gapBins(k, after):
    """``[(fraction, weight)]``: the unknown values between known ranks ``k`` and
    ``after``, in bins of whole values (as many in each as can be), each placed at the mean
    place of its values, ``fraction`` of the way from the value of rank ``k`` to that of
    ``after``."""
    w = after - k - 1
    m = min(w, GAP_BINS)
    bins, done = [], 0
    for g in range(m):
        size = (w - done) // (m - g)
        bins.append(((done + (size + 1) / 2) / (w + 1), float(size)))
        done += size
    return bins


@functools.lru_cache(maxsize=1024)
def _binLayout(n):
    """``([(a, b, fraction)], [weight])`` of :func:`percentileBins` for ``n`` values whose
    minimum, percentiles and maximum are all known (index 0, 1.., last of ``known``): each
    bin is ``known[a]`` (``fraction`` 0) or ``fraction`` of the way from ``known[a]`` to
    ``known[b]``."""
    indexes = range(len(PERCENTILES) + 2)
    return _rankLayout(_knownRanks(n, indexes[0], indexes[-1], indexes[1:-1]))


def _percentileBins(count, lo, hi, percentiles):
    """:func:`percentileBins` of a row with missing values (the general way)."""
    layout, weights = _rankLayout(_knownRanks(int(count), lo, hi, percentiles))
    return [a + (b - a) * f if f else a for a, b, f in layout], weights


def _knownRanks(n, lo, hi, percentiles):
    """``{rank: value}`` of a row of ``n`` values: its minimum (rank 1), its maximum (rank
    ``n``) and each of its percentiles (None: unknown) at InfluxDB's rank."""
    known = {}
    if lo is not None:
        known[1] = lo
    if hi is not None:
        known[n] = hi
    for p, v in zip(PERCENTILES, percentiles):
        k = math.floor(n * p / 100 + 0.5)
        if v is not None and 1 <= k <= n:
            known[k] = v
    return known


def _rankLayout(known):
    """``([(a, b, fraction)], [weight])`` of the values known by rank (``{rank: value}``):
    each known one (``a`` its value, ``fraction`` 0), then the unknown ones up to the next
    known rank in :func:`_gapBins` (``fraction`` of the way from ``a`` to ``b``, that next
    known value)."""
    ranks = sorted(known)
    layout, weights = [], []
    for i, k in enumerate(ranks):
        layout.append((known[k], known[k], 0.0))
        weights.append(1.0)
        if i + 1 < len(ranks) and ranks[i + 1] - k > 1:
            for f, w in _gapBins(k, ranks[i + 1]):
                layout.append((known[k], known[ranks[i + 1]], f))
                weights.append(w)
    return layout, weights


@functools.lru_cache(maxsize=256)
def _rollupNames(kind_name, field):
    """The columns of a field's rollup row: ``{'count': ..., 'percentiles': [...]}``."""
    if kind_name == 'custom':
        return {k: f"{k}_{field}" for k in ('count', 'sum', 'min', 'max', 'median')}
    names = {k: f"{field}_{k}" for k in ('count', 'sum', 'min', 'max')}
    names['percentiles'] = [f"{field}_p{q:02d}" for q in PERCENTILES]
    return names


#: Where the median and the 90th percentile are in a rollup row's percentiles.
_P50, _P90 = PERCENTILES.index(50), PERCENTILES.index(90)
#: The percentiles a period of one row is answered from: the 90th, and the median's
#: neighbours (the median of an even count is the mean of two middle values).
SINGLE_ROW_PERCENTILES = tuple(p for p in PERCENTILES if p >= 50)


def _middle(n, hi, percentiles):
    """The median of a rollup row's ``n`` values: InfluxDB's 50th percentile (the value of
    rank ``floor(n / 2 + 0.5)``) is the middle value of an odd count, the lower middle one
    of an even count, whose upper middle one (rank ``n / 2 + 1``) is a known percentile or
    read on the line to the next known rank, and the median their mean."""
    p50 = percentiles[_P50]
    if p50 is None or n % 2:
        return p50
    r = n // 2
    above = [(math.floor(n * p / 100 + 0.5), v) for p, v in zip(PERCENTILES, percentiles)
             if p > 50 and v is not None] + [(n, hi)]
    for k, v in above:
        if k > r and v is not None:
            return (p50 + p50 + (v - p50) / (k - r)) / 2
    return p50


class _Bucket:
    """One group's period (or range) in :meth:`InfluxReader.summarizeRollups`: its
    :class:`Aggregate` and the distributions of its rollup rows (``(count, min, max,
    percentiles, None)``, or ``(count, None, None, None, median)`` of a custom series),
    kept until the answer, so that a period of one row (a chart of hours from hourly
    rows, of days from daily ones) takes its median and 90th percentile from the row
    itself, InfluxDB's own, without a sketch of it."""

    __slots__ = ('agg', 'rows')

    def __init__(self, agg):
        self.agg, self.rows = agg, []

    def stats(self):
        agg, q = self.agg, self.agg.quantiles
        if q is not None and self.rows:
            if len(self.rows) == 1 and q.exact and not q.values and agg.min is not None:
                n, lo, hi, percentiles, median = self.rows[0]
                if percentiles is None:
                    p50 = p90 = median
                else:
                    p50, p90 = _middle(int(n), hi, percentiles), percentiles[_P90]
                if p50 is not None and p90 is not None:
                    return Stats(agg.count, agg.sum, agg.min, agg.max, agg.nonzero, p50, p90,
                                 exact=False)
            for n, lo, hi, percentiles, median in self.rows:
                if percentiles is None:
                    q.addWeighted([median], [n])
                else:
                    q.addWeighted(*percentileBins(n, lo, hi, percentiles))
        return _aggregateStats(agg)


def _aggregateStats(agg):
    if agg.min is None:
        return Stats(agg.count)
    if agg.quantiles is None:
        return Stats(agg.count, agg.sum, agg.min, agg.max, agg.nonzero)
    median, p90 = agg.quantiles.medianAndP90()
    return Stats(agg.count, agg.sum, agg.min, agg.max, agg.nonzero, median, p90,
                 agg.quantiles.exact)


def _merged(a, b):
    """Two answers of one group (from two measurements or two series): counts and sums add
    up; the median and p90 of the larger one stand for both (InfluxDB answers per query)."""
    if a is None:
        return b
    big = a if a.count >= b.count else b
    return Stats(a.count + b.count, _add(a.sum, b.sum), _pick(min, a.min, b.min),
                 _pick(max, a.max, b.max), _add(a.nonzero, b.nonzero), big.median, big.p90,
                 exact=False)


def _add(x, y):
    return y if x is None else x if y is None else x + y


def _pick(f, x, y):
    return y if x is None else x if y is None else f(x, y)


#: The columns of a row that are not fields: its time and those of BUILD_COLUMNS.
_NOT_FIELDS = frozenset({'time', 'builder_name', 'build_number_tag', 'build_number_field'})
