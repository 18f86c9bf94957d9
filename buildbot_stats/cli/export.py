"""``buildbot-stats export STORE``: series as CSV, JSON lines or InfluxDB line protocol."""

from __future__ import annotations

import collections
import contextlib
import csv
import itertools
import json
import sys

from buildbot_stats.cli.common import addTimeRange
from buildbot_stats.cli.common import isoTime
from buildbot_stats.cli.common import openStoreOrFail
from buildbot_stats.cli.common import timeRange
from buildbot_stats.cli.common import plural
from buildbot_stats.cli.safewrite import atomicOpen
from buildbot_stats.cli.safewrite import checkOutput
from buildbot_stats.delivery.lineprotocol import LineEncoder
from buildbot_stats.delivery.lineprotocol import PointRejected
from buildbot_stats.point import to_epoch_ns

FORMATS = ('csv', 'jsonl', 'line')
CSV_COLUMNS = ['time', 'timestamp', 'series', 'builder_name', 'build_number', 'tags', 'field',
               'value']


def addParser(sub):
    p = sub.add_parser(
        'export', help="write series as CSV, JSON lines or InfluxDB line protocol",
        description="Write the points of a store, filtered by series and time, to stdout or a "
        "file. 'line' is InfluxDB line protocol (nanosecond timestamps): load it with "
        "`influx -import` or POST it to /write?precision=ns to move to InfluxDB.")
    p.add_argument('store', metavar='STORE', help="the SQLite store")
    p.add_argument('--format', '-f', choices=FORMATS, default='csv',
                   help="csv (one row per field), jsonl (one JSON object per point) or line "
                   "(InfluxDB line protocol); default: csv")
    p.add_argument('--series', '-s', action='append', metavar='NAME',
                   help="a series name or shell pattern (alpha-*); repeat for more; "
                   "default: every series")
    addTimeRange(p, "the first time included", "the first time excluded")
    p.add_argument('--output', '-o', metavar='FILE',
                   help="default: standard output; the file is replaced only once the "
                   "export is complete, and never when it is the store")
    p.set_defaults(func=run)
    return p


def csvValue(value):
    if value is None:
        return ''
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def exportTime(seconds):
    """One form for every row: ISO 8601, UTC, always with microseconds."""
    return isoTime(seconds, timespec='microseconds')


def writeCsv(points, f, counts):
    w = csv.writer(f, lineterminator='\n')
    w.writerow(CSV_COLUMNS)
    for p in points:
        tags = dict(p.tags)
        fields = dict(p.fields)
        builder, number = tags.pop('builder_name', ''), tags.pop('build_number', None)
        if number is None:
            # StatsService(build_number='field'), or a build statistics measurement
            number = fields.pop('build_number', '')
        extra = json.dumps(tags, sort_keys=True) if tags else ''
        for name, value in fields.items():
            w.writerow([exportTime(p.time), f"{p.time:.6f}", p.series, builder,
                        number, extra, name, csvValue(value)])
        counts['points'] += 1


def writeJsonl(points, f, counts):
    for p in points:
        f.write(json.dumps({'series': p.series, 'time': exportTime(p.time),
                            'timestamp': p.time, 'tags': p.tags, 'fields': p.fields},
                           ensure_ascii=False) + '\n')
        counts['points'] += 1


def writeLine(points, f, counts):
    encoder = LineEncoder()
    for p in points:
        try:
            line, dropped = encoder.encode(p.series, p.fields, p.tags,
                                           to_epoch_ns(p.time))
        except PointRejected as e:
            counts[f"point rejected ({e.reason})"] += 1
            continue
        for _, reason in dropped:
            counts[f"field or tag left out ({reason})"] += 1
        f.write(line + '\n')
        counts['points'] += 1


WRITERS = {'csv': writeCsv, 'jsonl': writeJsonl, 'line': writeLine}


def toStdout(path):
    return path is None or path == '-'


@contextlib.contextmanager
def outputFile(path, out, store):
    """Standard output, or ``path`` written atomically (never the store)."""
    if toStdout(path):
        yield out
        return
    with atomicOpen(path, '--output', protect=store, newline='') as f:
        yield f


def started(points):
    """``points`` (an iterator) with its first item already read: the query has run, so a
    store that fails it (damaged, locked) fails before a header is written to standard
    output."""
    first = next(points, None)
    return iter(()) if first is None else itertools.chain([first], points)


def run(args, out):
    start, end = timeRange(args)
    with openStoreOrFail(args.store) as store:
        if not toStdout(args.output):
            checkOutput(args.output, '--output', protect=args.store)  # before the points
        names = store.matchSeries(args.series)
        counts = collections.Counter()
        points = started(store.points(names, start, end))
        with outputFile(args.output, out, args.store) as f:
            WRITERS[args.format](points, f, counts)
    notes = [f"{n} {what}" for what, n in sorted(counts.items()) if what != 'points']
    if not toStdout(args.output) or notes:
        msg = f"exported {plural(counts['points'], 'point')} of {len(names)} series"
        if not toStdout(args.output):
            msg += f" to {args.output}"
        if notes:
            msg += "; " + "; ".join(notes)
        print(msg, file=sys.stderr)
    return 0
