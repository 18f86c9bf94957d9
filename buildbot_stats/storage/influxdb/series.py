"""The series of the InfluxDB database a backend writes, and the limit on them.

InfluxDB keeps one series per measurement and tag set, and refuses the points of new series
past a limit: ``max-series-per-database`` of 1.x (1,000,000 by default; also
``max-values-per-tag``, 100,000 values of one tag of one measurement), the series quota of
a hosted InfluxDB Cloud 2 plan. The seed's captures tag ``build_number`` as Buildbot's module
does, so each of their series gets a new series per build (docs/scaling.rst).

* :class:`SeriesWatch` asks the server how many series the database holds, at the start and
  then every ``series_check_interval`` seconds (an hour by default), through the backend's
  own asynchronous HTTP client; it learns the limit from the server (1.x: ``SHOW
  DIAGNOSTICS``, which needs an admin user), else from the first refusal (whose message
  names it), else from the backend's ``max_series`` option; and logs one warning when the
  database passes :data:`WARN_AT` of it.
* :class:`LimitReport` explains the refusals: one error naming the limit, the series and the
  captures that hit it and the fix, then at most once per :data:`REPEAT_INTERVAL` with the
  count since (the writer counts every refused point in ``limit_rejected``).
"""

from __future__ import annotations

import csv
import io
import json
import urllib.parse

from twisted.internet import defer
from twisted.internet import task
from twisted.python import log

from buildbot_stats.delivery.sender import Outcome

#: Default of ``InfluxStorageService(series_check_interval=...)``, seconds.
CHECK_INTERVAL = 3600.0
#: The share of a limit past which the watch warns (once per crossing).
WARN_AT = 0.8
#: A limit refusal is explained at most this often (seconds); the points are counted always.
REPEAT_INTERVAL = 3600.0
#: After a refusal the watch checks again, at most this often (seconds): the refusal may
#: have taught it the limit, and the page and /metrics should show where the database is.
RECHECK_AFTER_REFUSAL = 60.0
#: The tag the seed's captures write with a new value for every build.
PER_BUILD_TAG = 'build_number'

#: One request, three statements (1.x InfluxQL): each answers or fails on its own.
STATEMENTS = ('SHOW SERIES CARDINALITY',
              f'SHOW TAG VALUES CARDINALITY WITH KEY = "{PER_BUILD_TAG}"',
              'SHOW DIAGNOSTICS')
#: The limits of ``SHOW DIAGNOSTICS``'s ``config-data`` (0: no limit).
DIAGNOSTIC_LIMITS = {'max-series-per-database': 'series', 'max-values-per-tag': 'tag_values'}


class SeriesWatch:
    """The database's series, checked at the start and every ``interval`` seconds.

    :param label: how log lines name the backend and its database (no credentials)
    :param ask: ``ask(url, body, headers)``, the backend's
        :meth:`~buildbot_stats.delivery.sender.HTTPBatchSender.ask`
    :param base_url: the server's base URL
    :param headers: the backend's request headers (credentials)
    :param db: the 1.x database, or None with ``bucket``
    :param bucket: the 2.x bucket (``org`` with it): the count is asked in Flux
    :param configured: the backend's ``max_series`` (None: not given)
    :param hint: a callable returning what the log says about the seed's layout
    """

    def __init__(self, label, ask, base_url, headers, reactor, interval=CHECK_INTERVAL,
                 db=None, bucket=None, org=None, configured=None, hint=None):
        self.label = label
        self.ask = ask
        self.base_url = base_url
        self.headers = headers
        self.reactor = reactor
        self.interval = interval
        self.db, self.bucket, self.org = db, bucket, org
        self.configured = configured
        self.hint = hint or (lambda: '')
        self.series = None          # the database's series cardinality, once known
        self.tag_values = None      # the most build_number values of one measurement (1.x)
        self.tag_values_of = None   # ... and that measurement
        self.server = {}            # 'series' / 'tag_values' -> the limit SHOW DIAGNOSTICS gave
        self.learned = {}           # the same, learned from refusals
        self.checks = 0             # checks that got an answer
        self.warned = set()         # the limits past WARN_AT already warned about
        self._loop = None
        self._checking = None
        self._soon = None           # the check a refusal asked for
        self._stopped = False
        self._last_check = None
        self._said = set()          # problems logged once

    # -- life cycle ------------------------------------------------------------------------

    def start(self):
        """Check now (in the background) and then every ``interval`` seconds."""
        self._stopped = False
        if not self.interval:
            return
        self._loop = task.LoopingCall(self.check)
        self._loop.clock = self.reactor
        self._loop.start(self.interval, now=True).addErrback(
            log.err, f"buildbot_stats: {self.label}: series checks stopped")

    def stop(self):
        """No more checks; the one under way is given up. A Deferred that fires once it has
        ended (so that the backend closes its connections after it)."""
        self._stopped = True
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        if self._soon is not None and self._soon.active():
            self._soon.cancel()
        self._soon = None
        checking = self._checking
        if checking is None:
            return defer.succeed(None)
        ended = defer.Deferred()
        checking.addBoth(lambda _: ended.callback(None))
        checking.cancel()
        return ended

    # -- the limit ---------------------------------------------------------------------------

    def limit(self, what='series'):
        """``(limit, where it comes from)`` of ``what`` (``'series'`` or ``'tag_values'``):
        the server's, else one learned from a refusal, else (series only) ``max_series``;
        ``(None, None)`` when unknown. 0 is no limit."""
        if what in self.server:
            return self.server[what], 'reported by the server'
        if what in self.learned:
            return self.learned[what], 'learned from a refusal'
        if what == 'series' and self.configured is not None:
            return self.configured, 'from max_series'
        return None, None

    def learn(self, limit):
        """A refusal named ``limit`` (a :class:`~buildbot_stats.delivery.sender.Limit`):
        keep its value, and check again soon so that the page and /metrics show it."""
        what = {'max-series-per-database': 'series', 'max-values-per-tag': 'tag_values',
                'series cardinality': 'series'}.get(limit.name)
        news = False
        if what is not None and limit.value is not None:
            # a limit other than the one known: the server's configuration changed, or the
            # limit was unknown: keep it and check at once (SHOW DIAGNOSTICS, when allowed,
            # then gives the server's word again)
            news = self.limit(what)[0] != limit.value
            self.learned[what] = limit.value
            if news:
                self.server.pop(what, None)
        now = self.reactor.seconds()
        if self.interval and not self._stopped and (self._soon is None
                                                     or not self._soon.active()) and (
                news or self._last_check is None
                or now - self._last_check >= RECHECK_AFTER_REFUSAL):
            self._soon = self.reactor.callLater(0, self.check)

    def usage(self):
        """``{'series': fraction, 'tag_values': fraction}`` of the known limits."""
        out = {}
        for what, count in (('series', self.series), ('tag_values', self.tag_values)):
            limit, _ = self.limit(what)
            if count is not None and limit:
                out[what] = count / limit
        return out

    def nearLimit(self):
        """True when a count has passed :data:`WARN_AT` of its limit."""
        return any(u >= WARN_AT for u in self.usage().values())

    def metrics(self):
        """What the backend's ``metrics()`` adds (numbers only, known ones only)."""
        out = {}
        if self.series is not None:
            out['series'] = self.series
        limit, _ = self.limit('series')
        if limit is not None:
            out['series_limit'] = limit
        if self.tag_values is not None:
            out['build_number_values'] = self.tag_values
        limit, _ = self.limit('tag_values')
        if limit is not None:
            out['values_per_tag_limit'] = limit
        out['series_limit_warning'] = 1 if self.nearLimit() else 0
        return out

    # -- a check ----------------------------------------------------------------------------

    def check(self):
        """Ask the server now; a Deferred that never fails (a problem is logged once)."""
        if self._stopped:
            return defer.succeed(None)
        if self._checking is not None:
            return self._checking
        self._last_check = self.reactor.seconds()
        if self.bucket is not None:
            d = self._askFlux()
        else:
            d = self._askInfluxQL()
        d.addErrback(self._failed)
        d.addBoth(self._checked)
        self._checking = d
        return d

    def _checked(self, _):
        self._checking = None

    def _failed(self, failure):
        if failure.check(defer.CancelledError):
            return None
        log.err(failure, f"buildbot_stats: {self.label}: checking the series failed")
        return None

    def _askInfluxQL(self):
        body = urllib.parse.urlencode({'db': self.db, 'q': ';'.join(STATEMENTS)})
        headers = dict(self.headers)
        headers[b'Content-Type'] = [b'application/x-www-form-urlencoded']
        d = self.ask(f"{self.base_url}/query", body.encode('utf-8'), headers)
        d.addCallback(self._influxQLAnswer)
        return d

    def _influxQLAnswer(self, answer):
        doc = self._json(answer)
        if doc is None:
            return
        results = {r.get('statement_id'): r for r in doc.get('results') or []
                   if isinstance(r, dict)}
        cardinality, tag_values, diagnostics = (results.get(i, {}) for i in range(3))
        if 'error' in cardinality:
            self._once('cardinality', f"cannot read the series cardinality: "
                       f"{cardinality['error']}")
        else:
            self.series = sum(_int(v[0]) or 0 for s in cardinality.get('series') or []
                              for v in s.get('values') or [])
        if 'error' not in tag_values:
            counts = [(_int(v[0]) or 0, s.get('name')) for s in tag_values.get('series') or []
                      for v in s.get('values') or []]
            self.tag_values, self.tag_values_of = max(counts, default=(0, None))
        if 'error' in diagnostics:
            self._once('diagnostics', f"the server's series limit cannot be read ("
                       f"{diagnostics['error']}: SHOW DIAGNOSTICS needs an admin user); it is "
                       "learned from the first refusal, or give max_series=... to be warned "
                       f"at {WARN_AT:.0%} of it")
        else:
            for s in diagnostics.get('series') or []:
                if s.get('name') != 'config-data' or not s.get('values'):
                    continue
                row = dict(zip(s.get('columns') or [], s['values'][0]))
                for key, what in DIAGNOSTIC_LIMITS.items():
                    if _int(row.get(key)) is not None:
                        self.server[what] = _int(row[key])
        self.checks += 1
        self._warnIfNear()

    def _askFlux(self):
        bucket = self.bucket.replace('\\', '\\\\').replace('"', '\\"')
        query = ('import "influxdata/influxdb"\n'
                 f'influxdb.cardinality(bucket: "{bucket}", start: 1970-01-01T00:00:00Z)')
        params = {'org': self.org} if self.org is not None else {}
        url = f"{self.base_url}/api/v2/query"
        if params:
            url += '?' + urllib.parse.urlencode(params)
        headers = dict(self.headers)
        headers[b'Content-Type'] = [b'application/json']
        headers[b'Accept'] = [b'application/csv']
        body = json.dumps({'query': query, 'type': 'flux'}).encode('utf-8')
        d = self.ask(url, body, headers)
        d.addCallback(self._fluxAnswer)
        return d

    def _fluxAnswer(self, answer):
        if isinstance(answer, Outcome):
            self._once('unreachable', f"cannot check the series: {answer.message}")
            return
        status, body = answer
        if status in (404, 405):
            # InfluxDB 3 has no Flux, and no series cardinality to ask about
            self._once('no-flux', f"the server answers no series cardinality (HTTP {status} "
                       "to a Flux query: InfluxDB 3.x has none); not checked")
            return
        if status != 200:
            self._once(f'http-{status}', f"cannot read the series cardinality: HTTP "
                       f"{status}: {body[:200].decode('utf-8', 'replace')}")
            return
        value = _fluxValue(body)
        if value is None:
            self._once('flux-answer', "the answer to influxdb.cardinality() holds no _value")
            return
        self.series = value
        self.checks += 1
        self._warnIfNear()

    def _json(self, answer):
        if isinstance(answer, Outcome):
            self._once('unreachable', f"cannot check the series: {answer.message}")
            return None
        status, body = answer
        try:
            doc = json.loads(body.decode('utf-8'))
        except ValueError:
            doc = None
        if status != 200 or not isinstance(doc, dict):
            text = body[:200].decode('utf-8', 'replace').strip()
            self._once(f'http-{status}', f"cannot check the series: HTTP {status}: {text}")
            return None
        return doc

    def _once(self, key, text):
        if key not in self._said:
            self._said.add(key)
            log.msg(f"buildbot_stats: {self.label}: {text}")

    def _warnIfNear(self):
        usage = self.usage()
        for what, fraction in usage.items():
            if fraction < WARN_AT:
                self.warned.discard(what)
                continue
            if what in self.warned:
                continue
            self.warned.add(what)
            limit, source = self.limit(what)
            if what == 'series':
                held = (f"the database holds {self.series:,} series, {fraction:.0%} of its "
                        f"limit ({limit:,}, {source}: max-series-per-database in InfluxDB "
                        "1.x)")
            else:
                held = (f"the measurement {self.tag_values_of!r} holds {self.tag_values:,} "
                        f"values of the tag {PER_BUILD_TAG!r}, {fraction:.0%} of "
                        f"max-values-per-tag ({limit:,}, {source})")
            log.msg(f"buildbot_stats: warning: {self.label}: {held}; past it InfluxDB "
                    f"refuses the points of every new series.{self.hint()} See "
                    "docs/scaling.rst, 'InfluxDB's series limit'.")


class LimitReport:
    """Explains the points a server refused for a limit: the first refusal at once, then at
    most once per :data:`REPEAT_INTERVAL`, with the points refused since.

    :param describe: ``describe(lines)``: what the refused batch's lines say about the
        series and the captures that hit the limit (a sentence, or '')
    :param fix: ``fix(limit)``: what to do about it (a sentence)
    """

    def __init__(self, label, reactor, watch=None, describe=None, fix=None,
                 interval=REPEAT_INTERVAL):
        self.label = label
        self.reactor = reactor
        self.watch = watch
        self.describe = describe or (lambda lines: '')
        self.fix = fix or (lambda limit: '')
        self.interval = interval
        self.refused = 0          # points refused for a limit, since the start
        self.unsaid = 0           # ... since the last message
        self.messages = 0
        self._last = None

    def __call__(self, outcome, chunk, count):
        """The writer's ``on_limit``."""
        self.refused += count
        self.unsaid += count
        if self.watch is not None:
            self.watch.learn(outcome.limit)
        now = self.reactor.seconds()
        if self._last is not None and now - self._last < self.interval:
            return
        self._last = now
        self.messages += 1
        since = ('' if self.messages == 1 else
                 f" ({self.unsaid} points refused for it since the last message)")
        where = self.describe(chunk.lines)
        log.msg(f"buildbot_stats: error: {self.label}: InfluxDB refused "
                f"{count} point{'s' if count != 1 else ''}{since}: its limit "
                f"{outcome.limit.describe()} is reached ({outcome.message}).{where} "
                f"{self.fix(outcome.limit)} Every point refused for a limit is counted in "
                f"limit_rejected; this message repeats at most every "
                f"{self.interval / 3600:g} h.")
        self.unsaid = 0


# -- what a refused batch says ------------------------------------------------------------------

def _unescapedIndex(text, char, start=0):
    """The index of the first ``char`` in ``text`` from ``start`` not escaped by a
    backslash, or -1."""
    i = start
    while True:
        i = text.find(char, i)
        if i < 0:
            return -1
        backslashes = 0
        while i - backslashes > 0 and text[i - backslashes - 1] == '\\':
            backslashes += 1
        if backslashes % 2 == 0:
            return i
        i += 1


def _splitUnescaped(text, char):
    parts, start = [], 0
    while True:
        i = _unescapedIndex(text, char, start)
        if i < 0:
            parts.append(text[start:])
            return parts
        parts.append(text[start:i])
        start = i + 1


def _unescape(text):
    out, i = [], 0
    while i < len(text):
        if text[i] == '\\' and i + 1 < len(text):
            i += 1
        out.append(text[i])
        i += 1
    return ''.join(out)


def seriesOf(line):
    """``(series key, measurement, tags)`` of a line protocol line (bytes)."""
    text = line.decode('utf-8', 'replace')
    end = _unescapedIndex(text, ' ')
    key = text if end < 0 else text[:end]
    parts = _splitUnescaped(key, ',')
    tags = {}
    for part in parts[1:]:
        i = _unescapedIndex(part, '=')
        if i > 0:
            tags[_unescape(part[:i])] = _unescape(part[i + 1:])
    return key, _unescape(parts[0]), tags


def perBuildSeries(lines, limit=3):
    """The series of ``lines`` that carry a per-build tag, as ``{measurement: (builder,
    first series key)}`` (at most ``limit`` measurements): each build adds a series to
    each of them."""
    out = {}
    for line in lines:
        key, measurement, tags = seriesOf(line)
        if PER_BUILD_TAG in tags and measurement not in out:
            out[measurement] = (tags.get('builder_name'), key)
            if len(out) >= limit:
                break
    return out


def measurementsOf(lines, limit=3):
    """``{measurement: (builder, first series key)}`` of the first ``limit`` measurements."""
    out = {}
    for line in lines:
        key, measurement, tags = seriesOf(line)
        if measurement not in out:
            out[measurement] = (tags.get('builder_name'), key)
            if len(out) >= limit:
                break
    return out


def _fluxValue(body):
    """The ``_value`` of the first row of a Flux CSV answer, or None."""
    text = body.decode('utf-8', 'replace')
    rows = [r for r in csv.reader(io.StringIO(text)) if r and not r[0].startswith('#')]
    for i, row in enumerate(rows):
        if '_value' in row:
            column = row.index('_value')
            for values in rows[i + 1:]:
                if len(values) > column and _int(values[column]) is not None:
                    return _int(values[column])
            return None
    return None


def _int(value):
    if isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
