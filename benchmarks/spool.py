"""What the crash-safe spool costs: postStatsValue per point, the journal's one write per
reactor iteration, the open of each chunk's file, and with ``spool_fsync`` the fsync run
in the thread pool.

Variants, each in a fresh process, all on one ``InfluxStorageService`` whose server is
down (a closed port; with ``flush_interval`` at an hour nothing but full batches is tried,
the same for every variant):

* ``memory``: no spool (the points wait in memory only);
* ``spool``: ``spool_dir`` set: every line reaches the kernel (survives a SIGKILL);
* ``fsync``: ``spool_dir`` and ``spool_fsync=True`` (survives a power cut).

The points come ``--per-turn`` at a time, one group per reactor iteration (as builds
finishing together do), so the journal writes ``--n / --per-turn`` times.

    python benchmarks/spool.py --n 50000 --per-turn 50 [--dir DIR]

``--dir`` is where the spool lives (default: the system's temporary directory); its file
system type is reported, since fsync on tmpfs costs nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import harness  # noqa: E402

VARIANTS = ('memory', 'spool', 'fsync')
# the per-point cost postStatsValue must stay under (it was asserted by a test before)
TARGET_POST_US = 200.0


def _us(values):
    if not values:
        return {'count': 0}
    values = sorted(values)
    return {'count': len(values), 'mean_us': statistics.fmean(values) * 1e6,
            'p99_us': values[min(len(values) - 1, int(len(values) * 0.99))] * 1e6,
            'max_us': values[-1] * 1e6}


def child(args):
    from twisted.internet import defer
    from twisted.internet import task

    from buildbot_stats import stats
    from buildbot_stats.delivery import spool as spoolmod

    variant = args.child
    spool_dir = tempfile.mkdtemp(prefix='bench_spool_', dir=args.dir)
    writes, opens, fsyncs = [], [], []
    real_fsync = os.fsync

    def timed_fsync(fd):
        t = time.perf_counter()
        real_fsync(fd)
        fsyncs.append(time.perf_counter() - t)

    spoolmod.os.fsync = timed_fsync

    async def main(reactor):
        options = {}
        if variant != 'memory':
            options = dict(spool_dir=spool_dir, spool_fsync=(variant == 'fsync'),
                           spool_max_bytes=10**9)
        backend = stats.InfluxStorageService(
            '127.0.0.1', harness_closed_port(), None, None, 'db', [], name='bench',
            flush_interval=3600.0, retry_interval=3600.0, buffer_limit=10**6,
            stop_timeout=0.0, **options)
        await backend.startService()
        spool = backend._writer.spool
        if spool is not None:
            write, open_ = spool.writePending, spool._openJournal

            def timedWrite():
                t = time.perf_counter()
                write()
                writes.append(time.perf_counter() - t)

            def timedOpen():
                t = time.perf_counter()
                seg = open_()
                opens.append(time.perf_counter() - t)
                return seg

            spool.writePending, spool._openJournal = timedWrite, timedOpen
        probe = harness.LagProbe(reactor)
        probe.start()
        post = 0.0
        tags = {'builder_name': 'builder-1', 'build_number': '1234'}
        fields = {'duration': 12.5, 'end-time': '2024-05-01T10:05:00+00:00'}
        for turn in range(args.n // args.per_turn):
            t = time.perf_counter()
            for i in range(args.per_turn):
                backend.postStatsValue(fields, 'builder-1-build-times', tags,
                                       1.7e9 + turn + i * 1e-6)
            post += time.perf_counter() - t
            await task.deferLater(reactor, 0, lambda: None)  # the next reactor iteration
        if spool is not None:
            await spool.drain()
        lag = probe.stop()
        n = args.per_turn * (args.n // args.per_turn)
        result = {
            'points': n,
            'post_us_per_point': post / n * 1e6,
            'post_target_us': TARGET_POST_US,
            'journal_writes': _us([w for w in writes if w > 0]),
            'file_opens': _us(opens),
            'fsyncs_in_thread_pool': _us(fsyncs),
            'max_lag_ms': lag * 1000,
            'pending': backend.counters.pending,
        }
        if spool is not None:
            result['writes_per_turn'] = spool.writes / (args.n // args.per_turn)
            result['spool_bytes'] = spool.bytes
        await backend.stopService()
        harness.emit(result)

    try:
        task.react(lambda reactor: defer.ensureDeferred(main(reactor)))
    finally:
        shutil.rmtree(spool_dir, ignore_errors=True)


def harness_closed_port():
    return harness.servers_module().free_port()


def parent(args):
    base = tempfile.mkdtemp(dir=args.dir)
    try:
        fstype = subprocess.run(['stat', '-f', '-c', '%T', base], capture_output=True,
                                text=True).stdout.strip()
    finally:
        shutil.rmtree(base, ignore_errors=True)
    result = {'bench': 'spool', 'n': args.n, 'per_turn': args.per_turn,
              'filesystem': fstype, 'machine': harness.machine()}
    for variant in args.variants.split(','):
        extra = ['--n', str(args.n), '--per-turn', str(args.per_turn)]
        if args.dir:
            extra += ['--dir', args.dir]
        result[variant] = harness.run_child(__file__, variant, extra)
    harness.emit(result)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--n', type=int, default=50_000, help='points (default 50000)')
    p.add_argument('--per-turn', type=int, default=50,
                   help='points posted per reactor iteration (default 50)')
    p.add_argument('--dir', default=None, help='where the spool lives (default: $TMPDIR)')
    p.add_argument('--variants', default=','.join(VARIANTS))
    harness.run_main(p, child, parent, argv)


if __name__ == '__main__':
    main()
