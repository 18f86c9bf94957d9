"""The builds of the store benchmarks: what each build's points hold (drawn at random, seeded),
and stores of millions of them written fast: an SQLite store by direct SQL in the layout of
schema v3 (then rolled up by the store's own maintenance), an InfluxDB 1.x database by line
protocol.

9 points per build, as the default captures plus the build statistics captures write them:
``<builder>-build-times`` (duration), ``builds`` (result), ``build_requests`` (queue time),
``tests`` (passed, failed, skipped), ``steps`` (4 steps), ``<builder>-coverage`` (percent);
4 builders, the builds spread evenly over ``days`` up to ``now``.

``python benchmarks/storegen.py --points 10000000 --days 365 --sqlite FILE`` writes a store
(about 2 minutes on the test machine, rollups included); ``--influxdb URL --db NAME`` loads
the same points into InfluxDB.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

BUILDERS = ('compile', 'test', 'docs', 'package')
STEPS = ('checkout', 'configure', 'build', 'upload')
POINTS_PER_BUILD = 9


def drawBuild(rnd, i, n):
    """The numbers of build ``i`` of ``n``: durations grow slowly over the period, one build
    in ten fails."""
    duration = 60 + 30 * rnd.random() + 20 * (i / n)
    ok = rnd.random() > 0.1
    return {'duration': duration, 'ok': ok, 'queue_time': 5 * rnd.random(),
            'coverage': 80 + rnd.random(),
            'steps': [duration / 4 * (0.5 + rnd.random()) for _ in STEPS]}


def buildPoints(builder, number, t, b):
    """The 9 points ``(series, tags, fields, time)`` of one build (``b``: drawBuild's)."""
    base = {'builder_name': builder}
    tagged = dict(base, build_number=str(number))
    ok = b['ok']
    out = [(f'{builder}-build-times', tagged, {'duration': b['duration']}, t),
           ('builds', dict(base, result='success' if ok else 'failure'),
            {'result_code': 0 if ok else 2, 'success': int(ok), 'build_number': number,
             'duration': b['duration']}, t),
           ('build_requests', base, {'queue_time': b['queue_time'], 'build_number': number}, t),
           ('tests', base, {'passed': 500, 'failed': int(not ok), 'skipped': 3,
                            'total': 503 + int(not ok), 'build_number': number}, t)]
    out += [('steps', dict(base, step_name=step),
             {'duration': d, 'step_number': k, 'build_number': number, 'result_code': 0}, t)
            for k, (step, d) in enumerate(zip(STEPS, b['steps']))]
    out.append((f'{builder}-coverage', tagged, {'percent': b['coverage']}, t))
    return out


def builds(points, days, now, seed=1):
    """``(builder, number, time, drawn)`` of every build, oldest first."""
    rnd = random.Random(seed)
    n = max(1, points // POINTS_PER_BUILD)
    span = days * 86400
    for i in range(n):
        t = now - span + i * (span / n)
        yield BUILDERS[i % len(BUILDERS)], i // len(BUILDERS) + 1, t, drawBuild(rnd, i, n)


def allPoints(points, days, now, seed=1):
    for builder, number, t, b in builds(points, days, now, seed):
        yield from buildPoints(builder, number, t, b)


# -- SQLite ------------------------------------------------------------------------------------

def fillStore(path, points, days, now, seed=1, rollup=True, progress=None,
              through_writer=False):
    """A store of ``points`` points in ``path`` (written in the v3 layout by direct SQL, then
    rolled up by the store's own maintenance unless ``rollup`` is false); the number of
    points and the seconds the rollups took. ``through_writer``: written as the master
    writes them instead (the writer's transactions, its timer rounds when an hour closes:
    quiet days become raw-only days); the seconds are then the whole writing's."""
    if through_writer:
        return _fillThroughWriter(path, points, days, now, seed)
    from buildbot_stats.storage.sqlite.layout import INSERT_POINT
    from buildbot_stats.storage.sqlite.layout import Names
    from buildbot_stats.storage.sqlite.schema import migrate
    from buildbot_stats.storage.sqlite.writer import StoreWriter

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    migrate(conn)
    names = Names()
    sql = INSERT_POINT.format('REPLACE')
    batch, written = [], 0
    conn.execute("BEGIN")
    for series, tags, fields, t in allPoints(points, days, now, seed):
        batch.append(names.row(conn, series, round(t * 1e6), tags, fields))
        if len(batch) >= 100_000:
            conn.executemany(sql, batch)
            written += len(batch)
            batch = []
            if progress:
                progress(written)
    conn.executemany(sql, batch)
    written += len(batch)
    conn.execute("COMMIT")
    conn.close()
    seconds = 0.0
    if rollup:
        writer = StoreWriter(30.0)
        t0 = time.perf_counter()
        writer.open(path)
        while writer.maintain(path, now):
            pass
        seconds = time.perf_counter() - t0
        writer.close()
    return written, seconds


def _fillThroughWriter(path, points, days, now, seed):
    from buildbot_stats.storage.sqlite.rollups import nextClose
    from buildbot_stats.storage.sqlite.values import encodeRow
    from buildbot_stats.storage.sqlite.writer import StoreWriter

    writer = StoreWriter(30.0)
    t0 = time.perf_counter()
    rows, written, close = [], 0, None

    def write():
        nonlocal rows, written
        if rows:
            writer.write(path, rows)
            written += len(rows)
            rows = []

    for builder, number, t, b in builds(points, days, now, seed):
        if close is None:
            close = nextClose(t)
        while t >= close:
            write()
            while writer.maintain(path, close, eager=False):
                pass
            close = nextClose(close)
        rows += [encodeRow(*p) for p in buildPoints(builder, number, t, b)]
        if len(rows) >= 1000:
            write()
    write()
    while writer.maintain(path, now, eager=False):
        pass
    seconds = time.perf_counter() - t0
    writer.close()
    return written, seconds


# -- InfluxDB ----------------------------------------------------------------------------------

def lines(points, days, now, seed=1):
    """The line protocol of the points, ``build_number`` as a field (a tag per build number
    would pass InfluxDB's 100,000 values per tag), nanosecond times."""
    from buildbot_stats.delivery.lineprotocol import LineEncoder

    enc = LineEncoder()
    for series, tags, fields, t in allPoints(points, days, now, seed):
        tags = dict(tags)
        number = tags.pop('build_number', None)
        if number is not None:
            fields = dict(fields, build_number=int(number))
        line, _ = enc.encode(series, fields, tags, round(t * 1e6) * 1000)
        yield line


def loadInflux(url, db, points, days, now, seed=1, chunk=20_000, progress=None):
    """Write the points to InfluxDB ``db`` at ``url`` (created if missing); how many."""
    def post(path, body=None):
        req = urllib.request.Request(url + path, data=body, method='POST')
        with urllib.request.urlopen(req, timeout=300) as r:
            r.read()

    post('/query?' + urllib.parse.urlencode({'q': f'CREATE DATABASE "{db}"'}))
    buf, n = [], 0
    for line in lines(points, days, now, seed):
        buf.append(line)
        if len(buf) >= chunk:
            post(f'/write?db={db}&precision=ns', '\n'.join(buf).encode())
            n += len(buf)
            buf = []
            if progress:
                progress(n)
    if buf:
        post(f'/write?db={db}&precision=ns', '\n'.join(buf).encode())
        n += len(buf)
    return n


def main(argv=None):
    import urllib.parse  # noqa: F401

    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--points', type=int, default=10_000_000)
    p.add_argument('--days', type=int, default=365)
    p.add_argument('--now', type=float, default=None,
                   help="the time of the last build (default: now, rounded to the hour)")
    p.add_argument('--sqlite', metavar='FILE')
    p.add_argument('--no-rollups', action='store_true')
    p.add_argument('--influxdb', metavar='URL')
    p.add_argument('--db', default='bench')
    args = p.parse_args(argv)
    now = args.now or time.time() // 3600 * 3600
    out = {'points': args.points, 'days': args.days, 'now': now}
    if args.sqlite:
        t0 = time.perf_counter()
        n, rolled = fillStore(args.sqlite, args.points, args.days, now,
                              rollup=not args.no_rollups)
        out.update(sqlite_points=n, sqlite_seconds=time.perf_counter() - t0,
                   rollup_seconds=rolled, bytes=os.path.getsize(args.sqlite))
    if args.influxdb:
        t0 = time.perf_counter()
        out['influx_points'] = loadInflux(args.influxdb, args.db, args.points, args.days, now)
        out['influx_seconds'] = time.perf_counter() - t0
    print(json.dumps(out))


if __name__ == '__main__':
    main()
