"""What the embedded store's rollups cost the writer, and what a point costs on disk.

``python benchmarks/store_costs.py`` writes the builds of :mod:`benchmarks.storegen` through
the store's own writer (:class:`~buildbot_stats.storage.sqlite.writer.StoreWriter`), in
batches as the master's writer thread gets them, with a round of maintenance whenever an
hour of the points' clock closes, not eager (as the backend's timer runs them), and the
same with the rollups switched off; each variant in a fresh process, alternating, least
of ``--repeat``. Prints ONE JSON line: per batch size, the writer thread's CPU seconds
with and without rollups, the share of the rollups (target: at most 5 %), and the file's
bytes per point (rollups included; target: at most 120). ``--parts`` adds, in separate
runs (the timing wrappers cost a little), the rollups' own CPU: ``thread_time`` around
the writer's calls of :class:`~buildbot_stats.storage.sqlite.rollups.Rollups`
(``writing`` + ``written``: the
points side; ``maintain`` and ``due``: closing hours, days, weeks), least of ``--repeat``.
``--store FILE`` also measures a store written by ``benchmarks/storegen.py`` (its bytes per
point, its tables' shares); ``--code DIR`` measures another checkout's package (A/B runs).
``--paired`` measures the rollups' share as the master pays it instead (:func:`childPaired`:
both writers in one process, the points encoded batch by batch), each of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import inspect
import itertools
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
if '--code' in sys.argv:
    # another checkout's package measured by this benchmark (an older release: A/B runs)
    sys.path.insert(0, os.path.abspath(sys.argv[sys.argv.index('--code') + 1]))

from benchmarks import harness  # noqa: E402
from benchmarks import storegen  # noqa: E402


class NoRollups:
    """Rollups switched off: what the writer costs without them."""

    def __init__(self, *args):
        self.watermark = 0

    def opened(self, conn):
        pass

    def writing(self, conn, prepared, rows, replaced):
        return None

    def written(self, kept):
        pass

    def forget(self):
        pass

    def maintain(self, conn, now, max_hours=None):
        return False

    def due(self, now):
        return False


def timed(cls, spent):
    """``cls`` with its writer-facing methods adding their thread_time to ``spent``."""
    class Timed(cls):
        pass

    def wrap(name, part):
        method = getattr(cls, name)

        def timedMethod(self, *args, **kwargs):
            t0 = time.thread_time()
            try:
                return method(self, *args, **kwargs)
            finally:
                spent[part] += time.thread_time() - t0
        setattr(Timed, name, timedMethod)
    for name, part in (('writing', 'points_side_cpu_s'), ('written', 'points_side_cpu_s'),
                       ('maintain', 'maintenance_cpu_s'), ('due', 'maintenance_cpu_s')):
        if not hasattr(cls, name):
            continue  # (an older release's Rollups, run by --code)
        wrap(name, part)
    return Timed


def nextClose(now):
    """When the first hour after ``now`` closes (``rollups.nextClose``, which an older release
    measured by ``--code`` has not)."""
    from buildbot_stats.storage.sqlite.rollups import GRACE
    from buildbot_stats.storage.sqlite.rollups import HOUR
    return ((now - GRACE) // HOUR + 1) * HOUR + GRACE


def takesEager(writer):
    """Whether the measured release's ``StoreWriter.maintain`` has ``eager`` (its master's
    rounds when an hour closes are not eager); an older one's master ran eager rounds."""
    return 'eager' in inspect.signature(writer.maintain).parameters


def child(variant, points, batch, days, rounds_as='master'):
    from buildbot_stats.storage.sqlite import writer as writer_module
    from buildbot_stats.storage.sqlite.values import encodeRow

    spent = {'points_side_cpu_s': 0.0, 'maintenance_cpu_s': 0.0}
    if variant == 'off':
        writer_module.Rollups = NoRollups
    elif variant == 'parts':
        writer_module.Rollups = timed(writer_module.Rollups, spent)
    d = tempfile.mkdtemp()
    path = os.path.join(d, 'stats.sqlite')
    w = writer_module.StoreWriter(30.0)
    now = time.time() // 3600 * 3600
    rows = [encodeRow(s, tags, fields, t)
            for s, tags, fields, t in storegen.allPoints(points, days, now)]
    write_cpu = maintain_cpu = 0.0
    rounds = 0
    if rounds_as == 'master' and not takesEager(w):
        # an older release (--code): its master ran an eager round every minute
        every, lazy = 60.0, {}
    elif rounds_as == 'master':
        # this release's master: a round when an hour closes, not eager
        every, lazy = None, {'eager': False}
    else:  # 'hourly': an eager round when an hour closes (the first measurements' way)
        every, lazy = None, {}

    def following(t):
        return t + every if every else nextClose(t)
    next_round = following(rows[0][1] / 1e6)
    for k in range(0, len(rows), batch):
        chunk = rows[k:k + batch]
        t0 = time.thread_time()
        w.write(path, chunk)
        write_cpu += time.thread_time() - t0
        clock = chunk[-1][1] / 1e6
        while clock >= next_round:
            # each round the points' clock passed (a batch of 1,000 points of a quiet
            # store spans hours)
            t0 = time.thread_time()
            while w.maintain(path, next_round, **lazy):
                pass
            maintain_cpu += time.thread_time() - t0
            rounds += 1
            next_round = following(next_round)
            if every and clock >= next_round:
                # minutes without a point: rounds with nothing new, each as costly as the
                # next one, measured once
                idle = int((clock - next_round) // every)
                t0 = time.thread_time()
                w.maintain(path, next_round, **lazy)
                maintain_cpu += (time.thread_time() - t0) * (idle + 1)
                rounds += idle + 1
                next_round += (idle + 1) * every
    t0 = time.thread_time()
    while w.maintain(path, now + 2 * 3600):
        pass
    maintain_cpu += time.thread_time() - t0
    w.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    w.close()
    size = os.path.getsize(path)
    out = {'write_cpu_s': write_cpu, 'maintain_cpu_s': maintain_cpu, 'rounds': rounds,
           'total_cpu_s': write_cpu + maintain_cpu, 'points': len(rows),
           'bytes_per_point': size / len(rows), 'bytes': size}
    if variant == 'parts':
        out.update(spent)
    return out


def childPaired(points, batch, days):
    """Two writers in one process, one with the rollups and one without (:class:`NoRollups`),
    each batch written by both in turn (the order alternating), encoded just before and
    freed after, as the master's are; a round of maintenance of the first writer when an
    hour closes, as its master runs them. The machine's speed drifts over seconds: written
    batch by batch, both writers see the same drift, and the same memory. Unlike
    :func:`child`, whose points are all encoded before the clock starts (one block of
    memory, in order: each touched again in order, the processor's prefetch helps), what the
    rollups keep is scattered among the writer's other objects, as in the master."""
    from buildbot_stats.storage.sqlite import writer as writer_module
    from buildbot_stats.storage.sqlite.values import encodeRow

    # (an older release measured by --code: an eager round when an hour closes, not the
    # round a minute its master ran)
    lazy = {'eager': False} if takesEager(writer_module.StoreWriter) else {}
    d = tempfile.mkdtemp()
    with_rollups, without = writer_module.StoreWriter(30.0), writer_module.StoreWriter(30.0)
    on_path, off_path = os.path.join(d, 'on.sqlite'), os.path.join(d, 'off.sqlite')
    with_rollups.open(on_path)
    without.open(off_path)
    without.rollups = NoRollups()
    now = time.time() // 3600 * 3600
    spent = {'on_write_cpu_s': 0.0, 'off_write_cpu_s': 0.0, 'on_maintain_cpu_s': 0.0}
    pair = [('on_write_cpu_s', with_rollups, on_path), ('off_write_cpu_s', without, off_path)]
    source = storegen.allPoints(points, days, now)
    next_round = None
    written = 0
    while True:
        chunk = [encodeRow(s, tags, fields, t)
                 for s, tags, fields, t in itertools.islice(source, batch)]
        if not chunk:
            break
        written += len(chunk)
        pair.reverse()
        for part, writer, path in pair:
            t0 = time.thread_time()
            writer.write(path, chunk)
            spent[part] += time.thread_time() - t0
        clock = chunk[-1][1] / 1e6
        if next_round is None:
            next_round = nextClose(chunk[0][1] / 1e6)
        while clock >= next_round:
            t0 = time.thread_time()
            while with_rollups.maintain(on_path, next_round, **lazy):
                pass
            spent['on_maintain_cpu_s'] += time.thread_time() - t0
            next_round = nextClose(next_round)
        del chunk
    t0 = time.thread_time()
    while with_rollups.maintain(on_path, now + 2 * 3600):
        pass
    spent['on_maintain_cpu_s'] += time.thread_time() - t0
    with_rollups.close()
    without.close()
    on = spent['on_write_cpu_s'] + spent['on_maintain_cpu_s']
    spent.update(points=written, rollup_share=(on - spent['off_write_cpu_s']) / on,
                 rollup_maintenance_share=spent['on_maintain_cpu_s'] / on)
    return spent


def tableShares(path):
    """``{table or index: bytes}`` of a store (SQLite's dbstat)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return dict(conn.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name"))
    finally:
        conn.close()


def measureStore(path):
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    points = conn.execute("SELECT COUNT(*) FROM points").fetchone()[0]
    rollup_rows = conn.execute("SELECT COUNT(*) FROM rollups").fetchone()[0]
    conn.close()
    size = os.path.getsize(path)
    shares = tableShares(path)
    return {'points': points, 'bytes': size, 'bytes_per_point': size / points,
            'rollup_rows': rollup_rows,
            'bytes_per_point_by_table': {k: v / points for k, v in sorted(shares.items())}}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--points', type=int, default=300_000)
    p.add_argument('--days', type=int, default=30)
    p.add_argument('--batches', default='1000,9',
                   help="batch sizes (default 1000: a burst, 9: one build a transaction)")
    p.add_argument('--repeat', type=int, default=3)
    p.add_argument('--store', help="also measure this store (from storegen.py)")
    p.add_argument('--parts', action='store_true',
                   help="also the rollups' own CPU (points side, maintenance), timed apart")
    p.add_argument('--code', metavar='DIR',
                   help="measure the package of another checkout (e.g. a git worktree of an"
                        " older commit) instead of this one's")
    p.add_argument('--rounds', choices=('master', 'hourly'), default='master',
                   help="when the maintenance runs: as the measured code's master runs it"
                        " (default; this release: a round when an hour closes, not eager; an"
                        " older release, with --code: an eager round every minute), or"
                        " 'hourly': an eager round when an hour closes")
    p.add_argument('--paired', action='store_true',
                   help="both writers (with and without rollups) in one process, batch by"
                        " batch, the points encoded per batch as the master's are: the"
                        " rollups' share of the writer's CPU in each of --repeat runs")
    p.add_argument('--child', help=argparse.SUPPRESS)
    p.add_argument('--batch', type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child == 'paired':
        print(json.dumps(childPaired(args.points, args.batch, args.days)))
        return
    if args.child:
        print(json.dumps(child(args.child, args.points, args.batch, args.days, args.rounds)))
        return
    if args.paired:
        out = {'bench': 'store_costs', 'mode': 'paired', 'points': args.points,
               'days': args.days, 'code': args.code or ROOT, 'batches': {}}
        for batch in map(int, args.batches.split(',')):
            runs = [json.loads(subprocess.run(
                [sys.executable, __file__, '--child', 'paired', '--batch', str(batch),
                 '--points', str(args.points), '--days', str(args.days)]
                + (['--code', args.code] if args.code else []),
                capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1])
                for _ in range(args.repeat)]
            shares = sorted(r['rollup_share'] for r in runs)
            out['batches'][batch] = {
                'rollup_share_least': shares[0], 'rollup_share_median':
                shares[len(shares) // 2], 'runs': runs}
        out['load'] = os.getloadavg()
        out['machine'] = harness.machine()
        print(json.dumps(harness.r(out)))
        return
    out = {'bench': 'store_costs', 'points': args.points, 'days': args.days,
           'rounds': args.rounds, 'code': args.code or ROOT, 'batches': {}}
    for batch in map(int, args.batches.split(',')):
        variants = ('off', 'on', 'parts') if args.parts else ('off', 'on')
        runs = {v: [] for v in variants}
        for _ in range(args.repeat):
            for variant in variants:
                res = subprocess.run(
                    [sys.executable, __file__, '--child', variant, '--batch', str(batch),
                     '--points', str(args.points), '--days', str(args.days),
                     '--rounds', args.rounds]
                    + (['--code', args.code] if args.code else []),
                    capture_output=True, text=True, check=True)
                runs[variant].append(json.loads(res.stdout.strip().splitlines()[-1]))
        on = min(runs['on'], key=lambda r: r['total_cpu_s'])
        off = min(runs['off'], key=lambda r: r['total_cpu_s'])
        out['batches'][batch] = {
            'with_rollups': on, 'without_rollups': off,
            'rollup_share': (on['total_cpu_s'] - off['total_cpu_s']) / on['total_cpu_s'],
            'rollup_maintenance_share': on['maintain_cpu_s'] / on['total_cpu_s']}
        if args.parts:
            out['batches'][batch]['rollups_own_cpu_s'] = {
                part: min(r[part] for r in runs['parts'])
                for part in ('points_side_cpu_s', 'maintenance_cpu_s')}
    if args.store:
        out['store'] = measureStore(args.store)
    out['load'] = os.getloadavg()
    out['machine'] = harness.machine()
    print(json.dumps(harness.r(out)))


if __name__ == '__main__':
    main()
