"""Change points on the read side (docs/regressions.rst): what change detection reads from a
store, the same for every reader (the measured series, one number per build; the change
points kept in the series ``change_points``), the records of the changes found and kept,
and their wording for the page, the command and the log.

Pure functions over a reader's answers; each reader (:class:`StoreReader`,
:class:`InfluxReader`) has
the two queries as its methods ``measuredSeries`` and ``changePoints``.
"""

from __future__ import annotations

import array
import bisect
import fnmatch
import itertools
import json
import operator

from buildbot_stats.reading.summary import fmtSeconds
# the series the kept change points are written to (the store's rollups leave it out)
from buildbot_stats.storage.sqlite.rollups import CHANGE_POINTS

#: The measured series' names (``name`` of ``(builder, name)``), by where they come from:
#: the build's duration, a step's (``step:<step name>``), the queue time, the number of
#: tests, and ``<series>.<field>`` for each numeric field of a property or data series
#: (without its ``<builder>-`` prefix).
DURATION = 'duration'
STEP_PREFIX = 'step:'
QUEUE = 'queue'
TESTS = 'tests'

#: The defaults of :class:`~buildbot_stats.regressions.Regressions` the command shows too (it
#: reads them from here, without importing the master's side): the smallest change
#: reported (relative), and the series where a fall, not a rise, is for the worse.
DEFAULT_MIN_SIZE = 0.1
DEFAULT_HIGHER_IS_BETTER = (TESTS,)

#: Fields of a custom series that are not measurements.
NOT_MEASURED = frozenset({'build_number'})

#: The fields of a change point, with their type (the rest of a stored point is ignored).
FIELDS = {'build_number': int, 'last_build_number': int, 'before': float, 'after': float,
          'size': float, 'confidence': float, 'worse': bool, 'withdrawn': bool,
          'revision': str, 'branch': str, 'url': str, 'authors': list, 'comments': list,
          'changes': int, 'found_at': float, 'summary': str}


def describeSeries(name):
    """How a page or a command names a measured series: ``build duration``, ``step
    'compile'``, ``queue time``, ``tests``, ``coverage.percent``."""
    if name == DURATION:
        return "build duration"
    if name.startswith(STEP_PREFIX):
        return f"step {name[len(STEP_PREFIX):]!r}"
    if name == QUEUE:
        return "queue time"
    if name == TESTS:
        return "tests run"
    return name


def fmtValue(series, value):
    """A median of a series: ``1.50s`` or ``1.7m`` for a time, else the number."""
    if value is None:
        return '?'
    return fmtSeconds(value) if isTime(series) else f"{value:g}"


def fmtSize(record):
    """``+23%`` (``up``/``down`` when the median before was 0)."""
    size = record.get('size')
    return f"{size * 100:+.0f}%" if size is not None else record['direction']


def word(record):
    """``slower``/``faster`` for a time, else ``worse``/``better``."""
    if isTime(record['series']):
        return 'slower' if record['direction'] == 'up' else 'faster'
    return 'worse' if record['worse'] else 'better'


def headline(record):
    """What changed, in the words of the page, the command and the log: ``app: build
    duration +200% slower (1.00s -> 3.00s) since build #16``."""
    series = record['series']
    return (f"{record['builder']}: {describeSeries(series)} {fmtSize(record)} {word(record)} "
            f"({fmtValue(series, record['before'])} -> {fmtValue(series, record['after'])}) "
            f"since build #{record['build_number']}")


def details(record):
    """``['revision abc', 'branch main', '1 change by Alice']``: what is known of it."""
    out = []
    if record.get('revision'):
        out.append(f"revision {record['revision']}")
    if record.get('branch'):
        out.append(f"branch {record['branch']}")
    if record.get('changes'):
        who = ', '.join(record.get('authors') or []) or 'unknown authors'
        out.append(f"{record['changes']} change{'s' if record['changes'] != 1 else ''} "
                   f"by {who}")
    return out


def fmtConfidence(confidence):
    """``99.87%``; ``>99.99%`` rather than a rounded 100 %."""
    if confidence is None:
        return '?'
    if confidence >= 0.9999:
        return '>99.99%'
    return f"{confidence * 100:.2f}%"


def isTime(name):
    """True for the series whose values are seconds (build, step and queue times)."""
    return name in (DURATION, QUEUE) or name.startswith(STEP_PREFIX)


def matches(name, patterns):
    """True when ``name`` matches one of the shell ``patterns`` (``step:*``)."""
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def measuredSeries(reader, builder=None, start=None, end=None):
    """``{(builder, name): [(time, build number, value), ...]}`` by time: every series a
    change can be looked for in, from ``reader``'s queries (``builder``: one builder's;
    ``start <= time < end``)."""
    out = {}
    for b, builds in reader.buildDurations(builder, start, end).items():
        out[(b, DURATION)] = [(t, n, float(d)) for t, n, d in builds]
    for (b, step), runs in reader.stepDurations(builder, start, end).items():
        out[(b, STEP_PREFIX + str(step))] = runs
    for b, runs in reader.queueTimes(builder, start, end).items():
        out[(b, QUEUE)] = runs
    for b, runs in reader.testCounts(builder, start, end).items():
        out[(b, TESTS)] = [(t, n, float(p + f + s)) for t, n, p, f, s in runs]
    for series, points in reader.customSeries(builder, start, end).items():
        for t, b, n, numbers in points:
            if b is None:
                continue
            short = series[len(b) + 1:] if series.startswith(f"{b}-") else series
            for field, value in numbers.items():
                if field not in NOT_MEASURED:
                    out.setdefault((b, f"{short}.{field}"), []).append((t, n, value))
    return {key: byTimeOnly(rows) for key, rows in out.items() if key[0] is not None}


def byTimeOnly(rows):
    """``rows`` by time (the readers answer by time: then no sort is made, a 1,000,000
    point store is read a third faster)."""
    if any(a[0] > b[0] for a, b in zip(rows, itertools.islice(rows, 1, None))):
        return sorted(rows, key=operator.itemgetter(0))
    return rows


def changeRecord(time, tags, fields):
    """A kept change point as a dict: ``time`` (of the first build after the change),
    ``builder``, ``series``, ``direction`` (``'up'``, ``'down'``) and the fields of
    :data:`FIELDS` (missing ones None; ``authors`` and ``comments`` lists); None when the
    point is not a change point (no builder or series)."""
    builder = tags.get('builder_name')
    series = tags.get('series')
    if builder is None or series is None:
        return None
    record = {'time': time, 'builder': builder, 'series': series,
              'direction': tags.get('direction')}
    for name, kind in FIELDS.items():
        value = fields.get(name)
        if value is None:
            record[name] = [] if kind is list else None
        elif kind is list:
            record[name] = _list(value)
        elif kind is bool:
            record[name] = value not in (0, False, '0', 'false', 'False')
        else:
            try:
                record[name] = kind(value)
            except (TypeError, ValueError):
                record[name] = None
    return record


def _list(value):
    """A list field is written as a JSON array in a string (InfluxDB has no lists)."""
    if isinstance(value, list):
        return [str(v) for v in value]
    try:
        decoded = json.loads(value)
    except (TypeError, ValueError):
        return [str(value)]
    return [str(v) for v in decoded] if isinstance(decoded, list) else [str(decoded)]


def changeFields(record):
    """The fields of the point of a change ``record`` (the inverse of
    :func:`changeRecord`): lists as JSON strings, booleans as 0 and 1, no None."""
    fields = {}
    for name, kind in FIELDS.items():
        value = record.get(name)
        if value is None:
            continue
        if kind is list:
            fields[name] = json.dumps(list(value), ensure_ascii=False)
        elif kind is bool:
            fields[name] = 1 if value else 0
        else:
            fields[name] = kind(value)
    return fields


def changeTags(record):
    return {'builder_name': record['builder'], 'series': record['series'],
            'direction': record['direction']}


def byTime(records):
    """Change records by time, newest first."""
    return sorted(records, key=lambda r: (r['time'], r['builder'], r['series']), reverse=True)


#: A build number the store does not know (a point without one) among a window's numbers.
NO_NUMBER = -1


class SeriesWindow:
    """The newest values of one measured series, held for the analysis after a build:
    their times, build numbers and values, 24 bytes a build."""

    __slots__ = ('times', 'numbers', 'values')

    def __init__(self, rows=()):
        self.times = array.array('d', (r[0] for r in rows))
        self.numbers = array.array('q', (NO_NUMBER if r[1] is None else r[1] for r in rows))
        self.values = array.array('d', (r[2] for r in rows))

    def number(self, i):
        n = self.numbers[i]
        return None if n == NO_NUMBER else n

    def positions(self, records):
        """``(position, direction)`` of change ``records`` among the values held: the
        position of the value of the record's first build (None: not held)."""
        out = []
        for r in records:
            at = bisect.bisect_left(self.times, r['time'] - 1e-6)
            inside = at < len(self.times) and abs(self.times[at] - r['time']) < 1e-3
            out.append((at if inside else None, r['direction']))
        return out

    def extend(self, rows, keep):
        """Add the ``rows`` newer than the newest held; keep the last ``keep``; True when
        any was added."""
        last = self.times[-1] if self.times else None
        added = False
        for t, n, v in rows:
            if last is None or t > last:
                self.times.append(t)
                self.numbers.append(NO_NUMBER if n is None else n)
                self.values.append(v)
                added = True
        if len(self.times) > keep:
            del self.times[:-keep], self.numbers[:-keep], self.values[:-keep]
        return added


def foundRecord(key, window, change, isWorse):
    """The record (:func:`changeRecord`'s shape) of a
    :class:`~buildbot_stats.analysis.changepoints.Change` found in the values of
    ``window`` (a :class:`SeriesWindow`) of the series ``key`` (``(builder, name)``);
    ``isWorse(name, direction)`` says whether it is for the worse. Not attributed yet."""
    builder, name = key
    i = change.index
    return {
        'time': window.times[i], 'builder': builder, 'series': name,
        'direction': change.direction, 'build_number': window.number(i),
        'last_build_number': window.number(i - 1), 'before': change.before,
        'after': change.after, 'size': change.ratio, 'confidence': change.confidence,
        'worse': isWorse(name, change.direction), 'withdrawn': False,
        'revision': None, 'branch': None, 'url': None, 'authors': [], 'comments': [],
        'changes': None, 'found_at': None, 'summary': None,
    }


#: The fields of a record that attribution fills in (a kept record's are reused).
ATTRIBUTION = ('revision', 'branch', 'url', 'authors', 'comments', 'changes', 'found_at',
               'summary')


def openWorse(records):
    """How many of the newest change ``records`` of one series (not withdrawn) are for the
    worse with no change after them: 0 once a change for the better came."""
    count = 0
    for record in sorted(records, key=lambda r: r['time']):
        count = count + 1 if record['worse'] else 0
    return count


def logLine(record, url=True):
    """One line for a log: ``app: build duration +200% slower (1.00s -> 3.00s) since build
    #16 (revision abc; branch main; 1 change by Alice), confidence >99.99%: <url>``."""
    line = headline(record)
    about = details(record)
    if about:
        line += f" ({'; '.join(about)})"
    if record.get('confidence') is not None:
        line += f", confidence {fmtConfidence(record['confidence'])}"
    if url and record.get('url'):
        line += f": {record['url']}"
    return line
