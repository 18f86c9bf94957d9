"""Throughput: N distinct points handed to a backend and delivered to a real InfluxDB 1.x.

Variants, each in a fresh process, against one InfluxDB started for the run (a database
per variant):

* ``ceiling``: the same N points as raw line protocol, encoded beforehand and posted
  straight to ``/write`` in 5,000-line batches, one request after the other (what InfluxDB
  itself takes on this machine: the ceiling);
* ``buildbot``: Buildbot's own ``InfluxStorageService`` (the ``influxdb`` client), called the
  way Buildbot's captures call it: ``deferToThread(thd_postStatsValue)`` per point. It is
  slow, so it gets ``--buildbot-n`` points (default 5,000), not N;
* ``ours``: ``stats.InfluxStorageService`` with its default options, started standalone
  on the reactor; ``postStatsValue`` is called ``--chunk`` points per reactor turn, and the
  producer waits while more than half the buffer (``buffer_limit``) is pending, so nothing
  is dropped and the figure is the backend's sustained rate, end to end.
* ``ours_serial``: ``ours`` with ``max_in_flight=1`` (one request at a time, the order
  kept);
* ``none``: the same producer loop with nothing behind it (the cost of the loop itself).

A variant named twice runs twice (``ours_2``...): the spread is the noise.

Each reports the wall time from the first point handed over until the last one was
acknowledged by InfluxDB, points/s, CPU seconds of the process, the worst reactor lag and,
for InfluxDB variants, how many points the database holds afterwards.

    python benchmarks/throughput.py --n 500000
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import harness  # noqa: E402

VARIANTS = ('none', 'ceiling', 'buildbot', 'ours', 'ours_serial')
DEFAULT_VARIANTS = ('none', 'ceiling', 'buildbot', 'ours')
SERIES = 'throughput'
BASE_TS = 1_700_000_000.0  # a fixed epoch second: reruns overwrite, never add
BATCH = 5000


def point(i):
    """The i-th distinct point: (fields, series, tags, timestamp in seconds).

    Points differ by their timestamp (1 us apart); the tags take 1,600 combinations, as the
    builds of a busy master do over a day. One series per point would measure InfluxDB's
    series index instead of its write path."""
    return ({'value': float(i), 'number': i}, SERIES,
            {'builder_name': f'builder{i % 16}', 'build_number': str(i % 100)},
            BASE_TS + i * 1e-6)


def line(i):
    fields, series, tags, ts = point(i)
    return (f"{series},build_number={tags['build_number']},builder_name={tags['builder_name']}"
            f" number={i}i,value={float(i)!r} {round(ts * 1e6) * 1000}")


# -- children -------------------------------------------------------------------------------


def child_ceiling(args):
    import http.client

    bodies = ['\n'.join(line(i) for i in range(s, min(s + BATCH, args.n))).encode()
              for s in range(0, args.n, BATCH)]
    conn = http.client.HTTPConnection('127.0.0.1', args.influx_port, timeout=60)
    path = f'/write?db={args.db}&precision=ns'
    cpu0, wall0 = time.process_time(), time.monotonic()
    for body in bodies:
        conn.request('POST', path, body, {'Content-Type': 'text/plain'})
        resp = conn.getresponse()
        resp.read()
        if resp.status != 204:
            raise SystemExit(f'InfluxDB answered {resp.status}')
    wall = time.monotonic() - wall0
    return {'points': args.n, 'wall_s': wall, 'points_per_s': args.n / wall,
            'cpu_s': time.process_time() - cpu0, 'peak_rss_mb': harness.peak_rss_mb()}


def run_reactor(args, body):
    from twisted.internet import defer
    from twisted.internet import task

    async def main(reactor):
        try:
            harness.emit(await body(reactor, args))
        except BaseException:
            traceback.print_exc()
            raise

    # react() exits the process when ``main`` is done
    task.react(lambda reactor: defer.ensureDeferred(main(reactor)))


async def produce(reactor, n, chunk, post, may_post=None):
    """Hand points 0..n-1 to ``post``, ``chunk`` per reactor turn; wait while not
    ``may_post()``."""
    from twisted.internet import task

    i = 0
    while i < n:
        while may_post is not None and not may_post():
            await task.deferLater(reactor, 0.001, lambda: None)
        end = min(i + chunk, n)
        for j in range(i, end):
            fields, series, tags, ts = point(j)
            post(fields, series, tags, ts)
        i = end
        # let the reactor run (the writer's I/O, the lag probe) between chunks
        await task.deferLater(reactor, 0, lambda: None)


async def body_none(reactor, args):
    probe = harness.LagProbe(reactor)
    probe.start()
    cpu0, wall0 = time.process_time(), time.monotonic()
    count = [0]

    def post(fields, series, tags, ts):
        count[0] += 1

    await produce(reactor, args.n, args.chunk, post)
    wall = time.monotonic() - wall0
    return {'points': count[0], 'wall_s': wall, 'points_per_s': args.n / wall,
            'cpu_s': time.process_time() - cpu0, 'max_lag_ms': probe.stop() * 1000,
            'peak_rss_mb': harness.peak_rss_mb()}


async def body_buildbot(reactor, args):
    from twisted.internet import defer
    from twisted.internet import threads

    from buildbot.statistics.storage_backends.influxdb_client import InfluxStorageService

    backend = InfluxStorageService('127.0.0.1', args.influx_port, 'root', 'root', args.db, [])
    n = min(args.n, args.buildbot_n)
    probe = harness.LagProbe(reactor)
    probe.start()
    cpu0, wall0 = time.process_time(), time.monotonic()
    ds = []

    def post(fields, series, tags, ts):
        # what buildbot.statistics.capture.Capture._store does for every point
        ds.append(threads.deferToThread(backend.thd_postStatsValue, fields, series, tags))

    await produce(reactor, n, args.chunk, post)
    results = await defer.DeferredList(ds, consumeErrors=True)
    wall = time.monotonic() - wall0
    failed = sum(1 for ok, _ in results if not ok)
    return {'points': n, 'failed': failed, 'wall_s': wall, 'points_per_s': n / wall,
            'cpu_s': time.process_time() - cpu0, 'max_lag_ms': probe.stop() * 1000,
            'peak_rss_mb': harness.peak_rss_mb()}


async def body_ours(reactor, args, **options):
    from buildbot_stats import stats

    backend = stats.InfluxStorageService(
        f'http://127.0.0.1:{args.influx_port}', db=args.db, reactor=reactor, **options)
    await backend.startService()
    limit = backend.options.buffer_limit
    counters = backend.counters
    probe = harness.LagProbe(reactor)
    probe.start()
    cpu0, wall0 = time.process_time(), time.monotonic()

    def post(fields, series, tags, ts):
        backend.postStatsValue(fields, series, tags, timestamp=ts)

    await produce(reactor, args.n, args.chunk, post,
                  may_post=lambda: counters.pending <= limit // 2)
    wall_posted = time.monotonic() - wall0
    ok = await backend.flush(timeout=args.timeout)
    wall = time.monotonic() - wall0
    cpu = time.process_time() - cpu0
    lag = probe.stop()
    await backend.stopService()
    return {'points': args.n, 'flushed': ok, 'wall_posted_s': wall_posted, 'wall_s': wall,
            'points_per_s': args.n / wall, 'cpu_s': cpu,
            'cpu_us_per_point': cpu / args.n * 1e6, 'max_lag_ms': lag * 1000,
            'lags_over_20ms': probe.late,
            'counters': counters.asDict(), 'peak_rss_mb': harness.peak_rss_mb()}


def child(args):
    variant = args.child
    if variant == 'ceiling':
        harness.emit(child_ceiling(args))
        return
    if variant == 'ours_serial':
        run_reactor(args, lambda reactor, args: body_ours(reactor, args, max_in_flight=1))
        return
    body = {'none': body_none, 'buildbot': body_buildbot, 'ours': body_ours}[variant]
    run_reactor(args, body)


# -- the parent ----------------------------------------------------------------------------


def parent(args):
    harness.exit_on_sigterm()
    variants = args.variants.split(',')
    server = harness.start_influxdb()
    out = {'bench': 'throughput', 'n': args.n}
    keys = []
    try:
        for variant in variants:
            key, k = variant, 1
            while key in out:
                k += 1
                key = f'{variant}_{k}'
            keys.append(key)
            db = f'throughput_{key}'
            server.create_database(db)
            res = harness.run_child(__file__, variant, [
                '--n', args.n, '--chunk', args.chunk, '--buildbot-n', args.buildbot_n,
                '--timeout', args.timeout, '--influx-port', server.port, '--db', db])
            if variant != 'none' and 'error' not in res:
                res['influx_points'] = harness.count_points(server.port, db, SERIES, 'value')
            out[key] = res
    finally:
        server.cleanup()
    ceiling = out.get('ceiling', {}).get('points_per_s')
    if ceiling:
        for key in keys:
            if not key.startswith(('none', 'ceiling')) and 'points_per_s' in out[key]:
                out[key]['of_ceiling_pct'] = harness.r(
                    100.0 * out[key]['points_per_s'] / ceiling)
    out['machine'] = harness.machine()
    harness.emit(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--n', type=int, default=500_000, help='points (default 500,000)')
    p.add_argument('--buildbot-n', type=int, default=5000,
                   help="points for Buildbot's module (default 5,000; it does ~500/s)")
    # A master posts a few points per MQ message; 2,000 per turn (the earlier default) holds
    # the reactor about 7 ms, so the answers of the requests in flight wait behind it
    p.add_argument('--chunk', type=int, default=500,
                   help='points handed over per reactor turn (default 500)')
    p.add_argument('--variants', default=','.join(DEFAULT_VARIANTS),
                   help=f"comma-separated, among {', '.join(VARIANTS)}")
    p.add_argument('--timeout', type=float, default=600.0)
    harness.run_main(p, child, parent, argv)


if __name__ == '__main__':
    main()
