"""``buildbot-stats export STORE``: series as CSV, JSON lines or InfluxDB line protocol."""

from __future__ import annotations

import collections
import contextlib
import csv
import json
import sys

from buildbot_stats.cli.common import TIME_HELP
from buildbot_stats.cli.common import CliError
from buildbot_stats.cli.common import isoTime
from buildbot_stats.cli.common import openStoreOrFail
from buildbot_stats.cli.common import parseTimeRange
from buildbot_stats.delivery.lineprotocol import LineEncoder
from buildbot_stats.delivery.lineprotocol import PointRejected
from buildbot_stats.point import to_epoch_ns
from buildbot_stats.storage.sqlite_reader import StoreError

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
    p.add_argument('--start', metavar='TIME', help=f"first time included; {TIME_HELP}")
    p.add_argument('--end', metavar='TIME', help="first time excluded (same forms)")
    p.add_argument('--output', '-o', metavar='FILE', help="default: standard output")
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


def writeCsv(points, f, counts):
    w = csv.writer(f, lineterminator='\n')
    w.writerow(CSV_COLUMNS)
    for p in points:
        tags = dict(p.tags)
        builder, number = tags.pop('builder_name', ''), tags.pop('build_number', '')
        extra = json.dumps(tags, sort_keys=True) if tags else ''
        for name, value in p.fields.items():
            w.writerow([isoTime(p.time), f"{p.time:.6f}", p.series, builder,
                        number, extra, name, csvValue(value)])
        counts['points'] += 1


def writeJsonl(points, f, counts):
    for p in points:
        f.write(json.dumps({'series': p.series, 'time': isoTime(p.time),
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


@contextlib.contextmanager
def outputFile(path, out):
    if path is None or path == '-':
        yield out
        return
    try:
        f = open(path, 'w', encoding='utf-8', newline='')
    except OSError as e:
        raise CliError(f"cannot write {path}: {e.strerror}") from None
    with f:
        yield f


def run(args, out):
    start, end = parseTimeRange(args.start, args.end)
    with openStoreOrFail(args.store) as store:
        try:
            names = store.matchSeries(args.series)
        except StoreError as e:
            raise CliError(str(e)) from None
        counts = collections.Counter()
        with outputFile(args.output, out) as f:
            WRITERS[args.format](store.points(names, start, end), f, counts)
    notes = [f"{n} {what}" for what, n in sorted(counts.items()) if what != 'points']
    if args.output or notes:
        msg = f"exported {counts['points']} points of {len(names)} series"
        if args.output:
            msg += f" to {args.output}"
        if notes:
            msg += "; " + "; ".join(notes)
        print(msg, file=sys.stderr)
    return 0
