"""The Statistics page's server time on a large store: read every panel's data and render the
HTML, for each range and for all builders or one.

``python benchmarks/www_page.py --points 100000`` builds a store of that many points (spread
over 30 days, 4 builders, 9 points per build: duration, result, queue time, tests, 4 steps,
one data value), then times ``page.collect`` + ``Page.render`` (what the ``view`` route does
between the authz check and the answer) and prints ONE JSON line: per view, the median and
the worst of ``--repeat`` runs in milliseconds, and the HTML size. The target (issue 11) is at
most 300 ms per view for 100,000 points. Not included: the two hops to the reactor per request
(the authz check and the builder ids, a data API read each), a few milliseconds.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmarks import harness  # noqa: E402
from buildbot_stats.storage.sqlite_reader import openStore  # noqa: E402
from buildbot_stats.storage.sqlite_schema import migrate  # noqa: E402
from buildbot_stats.storage.sqlite_values import encodeRow  # noqa: E402
from buildbot_stats.www import page  # noqa: E402

BUILDERS = ('compile', 'test', 'docs', 'package')
STEPS = ('checkout', 'configure', 'build', 'upload')
POINTS_PER_BUILD = 9
DAYS = 30


def row(series, fields, tags, time):
    return encodeRow(series=series, tags=tags, fields=fields, time=time)


def fillStore(path, points, now, seed=1):
    rnd = random.Random(seed)
    builds = points // POINTS_PER_BUILD
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn)
    rows = []
    for i in range(builds):
        builder = BUILDERS[i % len(BUILDERS)]
        number = i // len(BUILDERS) + 1
        t = now - DAYS * 86400 + i * (DAYS * 86400 / builds)
        duration = 60 + 30 * rnd.random() + 20 * (i / builds)
        base = {'builder_name': builder}
        rows.append(row(f'{builder}-build-times', {'duration': duration},
                              dict(base, build_number=str(number)), t))
        ok = rnd.random() > 0.1
        rows.append(row('builds', {'result_code': 0 if ok else 2, 'success': int(ok),
                                         'build_number': number, 'duration': duration},
                              dict(base, result='success' if ok else 'failure'), t))
        rows.append(row('build_requests', {'queue_time': 5 * rnd.random(),
                                                 'build_number': number}, base, t))
        rows.append(row('tests', {'passed': 500, 'failed': int(not ok), 'skipped': 3,
                                        'total': 503 + int(not ok), 'build_number': number},
                              base, t))
        for n, step in enumerate(STEPS):
            rows.append(row('steps', {'duration': duration / 4, 'step_number': n,
                                            'build_number': number, 'result_code': 0},
                                  dict(base, step_name=step), t))
        rows.append(row(f'{builder}-coverage', {'percent': 80 + rnd.random()},
                              dict(base, build_number=str(number)), t))
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO points (series, time_us, builder, build_number, tags, fields)"
                     " VALUES (?, ?, ?, ?, ?, ?)", rows)
    conn.execute("COMMIT")
    conn.close()
    return len(rows)


def timeView(path, builder, range_name, now, repeat):
    from buildbot_stats.www.sources import timeWindow

    ids = {b: n + 1 for n, b in enumerate(BUILDERS)}
    times, size = [], 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        start, end = timeWindow(range_name, now)
        with openStore(path) as reader:
            data = page.collect(reader, builder, start, end)
        html = page.Page(data, builder, range_name, ids, '../../../', None, 'store',
                         now).render()
        times.append((time.perf_counter() - t0) * 1000)
        size = len(html)
    return {'median_ms': statistics.median(times), 'max_ms': max(times), 'html_bytes': size}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--points', type=int, default=100_000, help='points (default 100,000)')
    p.add_argument('--repeat', type=int, default=5, help='runs per view (default 5)')
    args = p.parse_args(argv)
    now = time.time()
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, 'stats.sqlite')
        written = fillStore(path, args.points, now)
        views = {}
        for builder in (None, BUILDERS[0]):
            for range_name in ('24h', '7d', '30d', 'all'):
                key = f"{builder or 'all builders'} {range_name}"
                views[key] = timeView(path, builder, range_name, now, args.repeat)
    print(json.dumps(harness.r({'bench': 'www_page', 'points': written,
                                'target_ms': 300, 'views': views,
                                'machine': harness.machine()})))


if __name__ == '__main__':
    main()
