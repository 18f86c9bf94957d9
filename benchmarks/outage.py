"""Outage: N points posted while InfluxDB is down, then InfluxDB comes back.

The parent reserves a loopback port for an InfluxDB 1.x that is *not* running yet. Variants,
each in a fresh process:

* ``none``: the same producer loop with nothing behind it (the process's own memory);
* ``buildbot``: Buildbot's own ``InfluxStorageService``, called as its captures do
  (``deferToThread(thd_postStatsValue)`` per point), ``--buildbot-n`` points (default
  2,000): every write fails, every point is lost, and nothing counts them;
* ``ours``: ``stats.InfluxStorageService`` with its default options (``buffer_limit``
  100,000 points, no spool), N points posted ``--chunk`` per reactor turn with the server
  down. Then the parent starts InfluxDB and the backend is left to recover by itself (its
  retry backoff, no flush call).

For ``ours`` it reports the resident memory before, after posting and at peak (``VmHWM``),
the documented bound on the buffer's memory, the counters after the outage and after the
recovery, whether they are exact (``added == N``, ``written + dropped == N``, the database
holds exactly ``written`` points), and the time from the server's start to the last point
written.

    python benchmarks/outage.py --n 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import harness  # noqa: E402
from benchmarks.throughput import SERIES  # noqa: E402
from benchmarks.throughput import point  # noqa: E402
from benchmarks.throughput import produce  # noqa: E402

VARIANTS = ('none', 'buildbot', 'ours')
# Python's cost of keeping one encoded line beyond its text: the bytes object header (33)
# and the pointer in its chunk's list (8), rounded up for the allocator's slack.
LINE_OVERHEAD_BYTES = 64


def memory_bound_mb(buffer_limit, batch_size, line_bytes, max_in_flight=1):
    """The documented bound on what the buffer adds to the master's memory during an
    outage: ``buffer_limit`` lines plus the batches in flight and the batch being filled, each
    line its length plus ``LINE_OVERHEAD_BYTES``, plus one request body (a batch joined)."""
    lines = buffer_limit + (max_in_flight + 1) * batch_size
    return (lines * (line_bytes + LINE_OVERHEAD_BYTES) + batch_size * line_bytes) / 2**20


# -- children -------------------------------------------------------------------------------


def run_reactor(body, args):
    from twisted.internet import defer
    from twisted.internet import task

    async def main(reactor):
        try:
            harness.emit(await body(reactor, args))
        except BaseException:
            traceback.print_exc()
            raise

    task.react(lambda reactor: defer.ensureDeferred(main(reactor)))


async def body_none(reactor, args):
    rss0 = harness.rss_mb()
    count = [0]

    def post(fields, series, tags, ts):
        count[0] += 1

    await produce(reactor, args.n, args.chunk, post)
    return {'points': count[0], 'rss_before_mb': rss0, 'rss_after_mb': harness.rss_mb(),
            'peak_rss_mb': harness.peak_rss_mb()}


async def body_buildbot(reactor, args):
    from twisted.internet import defer
    from twisted.internet import threads

    from buildbot.statistics.storage_backends.influxdb_client import InfluxStorageService

    backend = InfluxStorageService('127.0.0.1', args.influx_port, 'root', 'root', args.db, [])
    n = min(args.n, args.buildbot_n)
    rss0 = harness.rss_mb()
    wall0 = time.monotonic()
    ds = []

    def post(fields, series, tags, ts):
        ds.append(threads.deferToThread(backend.thd_postStatsValue, fields, series, tags))

    await produce(reactor, n, args.chunk, post)
    results = await defer.DeferredList(ds, consumeErrors=True)
    return {'points': n, 'lost': sum(1 for ok, _ in results if not ok),
            'counted': False, 'wall_s': time.monotonic() - wall0,
            'rss_before_mb': rss0, 'rss_after_mb': harness.rss_mb(),
            'peak_rss_mb': harness.peak_rss_mb()}


async def body_ours(reactor, args):
    from twisted.internet import defer
    from twisted.internet import task

    from buildbot_stats import stats

    backend = stats.InfluxStorageService(
        f'http://127.0.0.1:{args.influx_port}', db=args.db, reactor=reactor)
    await backend.startService()
    options = backend.options
    counters = backend.counters
    probe = harness.LagProbe(reactor)
    probe.start()
    rss0 = harness.rss_mb()
    cpu0, wall0 = time.process_time(), time.monotonic()

    def post(fields, series, tags, ts):
        backend.postStatsValue(fields, series, tags, timestamp=ts)

    await produce(reactor, args.n, args.chunk, post)
    posted = {
        'wall_post_s': time.monotonic() - wall0,
        'cpu_post_s': time.process_time() - cpu0,
        'rss_after_post_mb': harness.rss_mb(),
        'peak_rss_during_outage_mb': harness.peak_rss_mb(),
        'counters_outage': counters.asDict(),
    }
    # the parent starts InfluxDB when told, and answers on stdin
    go = defer.Deferred()
    threading.Thread(target=lambda: (sys.stdin.readline(),
                                     reactor.callFromThread(go.callback, None)),
                     daemon=True).start()
    print('POSTED ' + json.dumps(posted), flush=True)
    await go
    up = time.monotonic()
    deadline = up + args.timeout
    while counters.pending and time.monotonic() < deadline:
        await task.deferLater(reactor, 0.01, lambda: None)
    drain = time.monotonic() - up
    lag = probe.stop()
    line_bytes = len(harness_line(backend))
    bound = memory_bound_mb(options.buffer_limit, options.batch_size, line_bytes,
                            options.max_in_flight)
    result = dict(posted)
    result.update({
        'points': args.n,
        'buffer_limit': options.buffer_limit,
        'batch_size': options.batch_size,
        'line_bytes': line_bytes,
        'rss_before_mb': rss0,
        'rss_growth_mb': posted['peak_rss_during_outage_mb'] - rss0,
        'memory_bound_mb': bound,
        'within_bound': posted['peak_rss_during_outage_mb'] - rss0 <= bound,
        'recovery_s': drain,
        'counters': counters.asDict(),
        'max_lag_ms': lag * 1000,
        'peak_rss_mb': harness.peak_rss_mb(),
    })
    await backend.stopService()
    return result


def harness_line(backend):
    """One encoded line of this workload, as the backend encodes it."""
    from buildbot_stats.point import to_epoch_ns

    fields, series, tags, ts = point(123456)
    text, _ = backend.encoder.encode(series, fields, tags, to_epoch_ns(ts))
    return text.encode('utf-8')


def child(args):
    body = {'none': body_none, 'buildbot': body_buildbot, 'ours': body_ours}[args.child]
    run_reactor(body, args)


# -- the parent ----------------------------------------------------------------------------


def run_ours(args, server, db):
    cmd = [sys.executable, __file__, '--child', 'ours', '--n', str(args.n),
           '--chunk', str(args.chunk), '--timeout', str(args.timeout),
           '--influx-port', str(server.port), '--db', db]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=harness.ROOT)
    try:
        for ln in proc.stdout:
            if ln.startswith('POSTED '):
                break
        else:
            return {'error': f'ours failed before the outage ended: {proc.stderr.read()[-3000:]}'}
        server.start()
        server.create_database(db)
        proc.stdin.write('go\n')
        proc.stdin.flush()
        lines = [ln for ln in proc.stdout if ln.startswith('{')]
        proc.wait(args.timeout + 60)
    finally:
        if proc.poll() is None:
            proc.kill()
    if proc.returncode != 0 or not lines:
        return {'error': f'ours failed (exit {proc.returncode}): {proc.stderr.read()[-3000:]}'}
    res = json.loads(lines[-1])
    res['influx_points'] = harness.count_points(server.port, db, SERIES, 'value')
    c = res['counters']
    res['counters_exact'] = (
        c['added'] == args.n and c['pending'] == 0 and c['rejected'] == 0
        and c['written'] + c['dropped'] == args.n and res['influx_points'] == c['written'])
    return res


def parent(args):
    harness.exit_on_sigterm()
    variants = args.variants.split(',')
    server = harness.servers_module().InfluxDB1Server()  # port chosen, not started: down
    out = {'bench': 'outage', 'n': args.n}
    try:
        for variant in variants:
            db = f'outage_{variant}'
            if variant == 'ours':
                out[variant] = run_ours(args, server, db)
                continue
            out[variant] = harness.run_child(__file__, variant, [
                '--n', args.n, '--chunk', args.chunk, '--buildbot-n', args.buildbot_n,
                '--influx-port', server.port, '--db', db])
    finally:
        server.cleanup()
    out['machine'] = harness.machine()
    harness.emit(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--n', type=int, default=1_000_000, help='points (default 1,000,000)')
    p.add_argument('--buildbot-n', type=int, default=2000,
                   help="points for Buildbot's module (default 2,000)")
    p.add_argument('--chunk', type=int, default=2000,
                   help='points posted per reactor turn (default 2,000)')
    p.add_argument('--variants', default=','.join(VARIANTS),
                   help=f"comma-separated, among {', '.join(VARIANTS)}")
    p.add_argument('--timeout', type=float, default=300.0,
                   help='seconds to wait for the recovery')
    harness.run_main(p, child, parent, argv)


if __name__ == '__main__':
    main()
