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
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request

from buildbot_stats.captures.testhistory import TEST_CASES
from buildbot_stats.captures.testhistory import TEST_MEASUREMENTS
from buildbot_stats.captures.testhistory import TEST_RUNS
from buildbot_stats.checks import shown
from buildbot_stats.outcomes import OUTCOMES
from buildbot_stats.reading import changes
from buildbot_stats.reading.forms import BUILD_NUMBER
from buildbot_stats.reading.forms import isStatistic
from buildbot_stats.reading.forms import oneFormPerBuild
from buildbot_stats.reading.sqlite import NOT_CUSTOM
from buildbot_stats.reading.sqlite import WORKER_PREPARATION
from buildbot_stats.reading.sqlite import isNumber
from buildbot_stats.reading.tests import Run
from buildbot_stats.reading.tests import TestQueries
from buildbot_stats.storage.influxdb.testlines import SPAN_NS
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
    (:mod:`buildbot_stats.reading.forms`)."""
    tag = _int(row.get('build_number_tag'))
    if tag is not None:
        return row.get('builder_name'), tag, True
    return row.get('builder_name'), _int(row.get('build_number_field')), False


#: The steps the page shows (as the SQLite reader): with a duration, not hidden
#: (``hideStepIf``: a tag only hidden steps have; a missing tag compares as ''), not
#: Buildbot's own worker_preparation.
VISIBLE_STEPS = ['"duration" >= 0', '"hidden" != \'true\'',
                 f'"step_name" != \'{WORKER_PREPARATION}\'']

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
                 retention_policy=None, ca_file=None, verify_ssl=True, timeout=10.0):
        self.url = url.rstrip('/')
        self.db = db
        self.rp = retention_policy
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

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- the wire -----------------------------------------------------------------------------

    def query(self, q):
        """Run InfluxQL; the list of ``series`` dicts of the (one) statement's result."""
        params = urllib.parse.urlencode({'db': self.db, 'q': q, 'epoch': 'ms'})
        request = urllib.request.Request(f"{self.url}/query?{params}", headers=self._headers)
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
        if 'error' in results[0]:
            raise StoreError(f"{self.path}: {results[0]['error']}")
        return results[0].get('series') or []

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

    def measurements(self):
        return [v[0] for s in self.query("SHOW MEASUREMENTS") for v in s['values']]

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

    def stepSummary(self, builder=None, start=None, end=None):
        """``{(builder, step name): {'runs', 'median', 'p90', 'max'}}``, computed by
        InfluxDB (``percentile`` is nearest-rank, as in the SQLite reader)."""
        where = self._where(builder, start, end, VISIBLE_STEPS)
        q = ('SELECT count("duration") AS "runs", median("duration") AS "median", '
             'percentile("duration", 90) AS "p90", max("duration") AS "max" '
             f'FROM {self._from("steps")}{where} GROUP BY "builder_name", "step_name"')
        out = {}
        for s in self.query(q):
            tags = s.get('tags') or {}
            row = dict(zip(s['columns'], s['values'][0]))
            out[(tags.get('builder_name'), tags.get('step_name'))] = {
                'runs': row['runs'], 'median': float(row['median']),
                'p90': float(row['p90']), 'max': float(row['max'])}
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
        statistics measurements); numeric fields only, the build number left out; a build
        in both forms counts in its tag form (:mod:`buildbot_stats.reading.forms`)."""
        out = {}
        for m in self.measurements():
            if m.endswith('-build-times') or m in NOT_CUSTOM or m in TEST_MEASUREMENTS:
                continue
            if builder is not None and not m.startswith(builder + '-'):
                continue
            q = (f"SELECT *::field, {BUILD_COLUMNS} FROM {self._from(m)}"
                 f"{self._where(builder, start, end)}")
            points = []
            for row in self._rows(q):
                b, number, tagged = buildOf(row)
                numbers = {k: float(v) for k, v in row.items()
                           if k not in _NOT_FIELDS and isStatistic(k) and isNumber(v)}
                if numbers:
                    points.append(((row['time'] / 1e3, b, number, numbers), tagged))
            kept = oneFormPerBuild(points, lambda p: None if p[0][2] is None else p[0][1:3],
                                   lambda p: p[1])
            if kept:
                out[m] = [p for p, _ in kept]
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

    def measuredSeries(self, builder=None, start=None, end=None):
        """Every series change detection looks at (same as the SQLite reader's)."""
        return changes.measuredSeries(self, builder, start, end)

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
                                    row['time'] / 1e3, None if revision is None else str(revision),
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
            lo, hi = min(times), max(times) + SPAN_NS / 1e9
            where = self._where(b, lo, hi, conditions)
            q = f"SELECT {BUILD_COLUMNS}, {cols} FROM {self._from(TEST_CASES)}{where}"
            for row in self._rows(q):
                key = buildOf(row)[:2]
                if key in keys:
                    yield key, row

    def _failuresOf(self, runs):
        out = []
        for key, row in self._caseRows(
                ['test', 'outcome'], runs, ['("outcome" = \'failed\' OR "outcome" = \'flaky\')']):
            code = _OUTCOME_CODES.get(row.get('outcome'))
            if code is not None and row.get('test') is not None:
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


#: The columns of a row that are not fields: its time and those of BUILD_COLUMNS.
_NOT_FIELDS = frozenset({'time', 'builder_name', 'build_number_tag', 'build_number_field'})
