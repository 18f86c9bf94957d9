"""The Statistics page's server time on a large store: read every panel's data and render the
HTML, for each range and for all builders or one.

``python benchmarks/www_page.py --points 100000`` builds a store of that many points (spread
over 30 days, 4 builders, 9 points per build: duration, result, queue time, tests, 4 steps,
one data value), then times ``page.view`` (``collect`` + ``Page.render``, what the ``view`` route does
between the authz check and the answer, ``page.view``) and prints ONE JSON line: per view,
the median and the worst of ``--repeat`` runs in milliseconds with the page's cache empty
(``median_ms``, ``max_ms``; ``cpu_median_ms``: the CPU time of the process, less sensitive
to a loaded machine), the same view again while the store is unchanged (``cached_median_ms``,
``cached_max_ms``: the page's :class:`ViewCache`), and the HTML size. The target (issue 11) is
at most 300 ms per view for 100,000 points. Not included: the two hops to the reactor per
request (the authz check and the builder ids, a data API read each), a few milliseconds.
"""

from __future__ import annotations

import argparse
import itertools
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
from buildbot_stats.reading.sqlite import openStore  # noqa: E402
from buildbot_stats.storage.sqlite.schema import migrate  # noqa: E402
from buildbot_stats.storage.sqlite.values import encodeRow  # noqa: E402
from buildbot_stats.www import page  # noqa: E402

BUILDERS = ('compile', 'test', 'docs', 'package')
STEPS = ('checkout', 'configure', 'build', 'upload')
POINTS_PER_BUILD = 9
DAYS = 30


def row(series, fields, tags, time):
    return encodeRow(series=series, tags=tags, fields=fields, time=time)


def buildRows(builder, number, t, duration, ok, queue_time, coverage):
    """The 9 points of one build (duration, result, queue time, tests, 4 steps, coverage)."""
    base = {'builder_name': builder}
    rows = [row(f'{builder}-build-times', {'duration': duration},
                dict(base, build_number=str(number)), t),
            row('builds', {'result_code': 0 if ok else 2, 'success': int(ok),
                           'build_number': number, 'duration': duration},
                dict(base, result='success' if ok else 'failure'), t),
            row('build_requests', {'queue_time': queue_time, 'build_number': number}, base, t),
            row('tests', {'passed': 500, 'failed': int(not ok), 'skipped': 3,
                          'total': 503 + int(not ok), 'build_number': number}, base, t)]
    rows += [row('steps', {'duration': duration / 4, 'step_number': n, 'build_number': number,
                           'result_code': 0}, dict(base, step_name=step), t)
             for n, step in enumerate(STEPS)]
    rows.append(row(f'{builder}-coverage', {'percent': coverage},
                    dict(base, build_number=str(number)), t))
    return rows


def insert(conn, rows):
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO points (series, time_us, builder, build_number, tags, fields)"
                     " VALUES (?, ?, ?, ?, ?, ?)", rows)
    conn.execute("COMMIT")


def fillStore(path, points, now, seed=1):
    rnd = random.Random(seed)
    builds = points // POINTS_PER_BUILD
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn)
    rows = []
    for i in range(builds):
        t = now - DAYS * 86400 + i * (DAYS * 86400 / builds)
        duration = 60 + 30 * rnd.random() + 20 * (i / builds)
        ok = rnd.random() > 0.1
        queue_time = 5 * rnd.random()
        rows += buildRows(BUILDERS[i % len(BUILDERS)], i // len(BUILDERS) + 1, t, duration, ok,
                          queue_time, 80 + rnd.random())
    insert(conn, rows)
    conn.close()
    return len(rows)


def addBuild(path, number, t):
    """One more build of every builder at ``t``, as a master writes them (a transaction)."""
    conn = sqlite3.connect(path, isolation_level=None)
    insert(conn, [r for builder in BUILDERS
                  for r in buildRows(builder, number, t, 70.0, True, 1.0, 80.0)])
    conn.close()


def timeView(path, builder, range_name, now, repeat, numbers):
    """Per run: ``cold``, the view as the first after the master started (the page's mirror
    and cache empty: the view is read from the store while the mirror reads the whole store
    in a thread of its own, ``mirror_load``, until it is done); ``cached``, the same view
    again (store unchanged); ``after_write``, the view after one more build of every builder
    was written (the mirror reads those points only, the page is computed and rendered)."""
    from buildbot_stats.reading.mirror import StoreMirror
    from buildbot_stats.www.cache import ViewCache
    from buildbot_stats.www.ranges import timeWindow

    ids = {b: n + 1 for n, b in enumerate(BUILDERS)}

    def once(cache, mirror):
        t0, c0 = time.perf_counter(), time.process_time()
        start, end = timeWindow(range_name, now)
        with openStore(path) as reader:
            html = page.view(reader, builder, range_name, start, end, ids, '../../../', None,
                             'store', now, cache=cache, mirror=mirror)
        return (time.perf_counter() - t0) * 1000, (time.process_time() - c0) * 1000, html

    figures = {k: [] for k in ('cold', 'cold_cpu', 'mirror_load', 'cached', 'after_write',
                               'after_write_cpu')}
    for _ in range(repeat):
        cache, mirror = ViewCache(), StoreMirror()
        t0 = time.perf_counter()
        ms, cpu, html = once(cache, mirror)
        figures['cold'].append(ms)
        figures['cold_cpu'].append(cpu)
        mirror.idle.wait()
        figures['mirror_load'].append((time.perf_counter() - t0) * 1000)
        assert mirror.full_reads == 1
        figures['cached'].append(once(cache, mirror)[0])
        number = next(numbers)
        # a time of its own: schema v2 keeps one point per series, tags and time
        addBuild(path, number, now - 60 + (number % 10_000) / 100)
        ms, cpu, _ = once(cache, mirror)
        assert mirror.updates == 1
        figures['after_write'].append(ms)
        figures['after_write_cpu'].append(cpu)
    out = {}
    for k, v in figures.items():
        out[f'{k}_median_ms'] = statistics.median(v)
        if not k.endswith('cpu'):
            out[f'{k}_max_ms'] = max(v)
    out['html_bytes'] = len(html)
    return out


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
        numbers = itertools.count(10_000_000)  # the build numbers of addBuild
        for builder in (None, BUILDERS[0]):
            for range_name in ('24h', '7d', '30d', 'all'):
                key = f"{builder or 'all builders'} {range_name}"
                views[key] = timeView(path, builder, range_name, now, args.repeat, numbers)
    print(json.dumps(harness.r({'bench': 'www_page', 'points': written,
                                'target_ms': 300, 'views': views,
                                'machine': harness.machine()})))


if __name__ == '__main__':
    main()
