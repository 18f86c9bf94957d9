"""What the embedded store's rollups cost the writer, and what a point costs on disk.

``python benchmarks/store_costs.py`` writes the builds of :mod:`benchmarks.storegen` through
the store's own writer (:class:`~buildbot_stats.storage.sqlite.writer.StoreWriter`), in
batches as the master's writer thread gets them, with the maintenance run at every hour
of the points' clock (as the backend's timer does), and the same with the rollups switched
off; each variant in a fresh process, alternating, least of ``--repeat``. Prints ONE JSON
line: per batch size, the writer thread's CPU seconds with and without rollups, the share
of the rollups (target: at most 5 %), and the file's bytes per point (rollups included;
target: at most 120). ``--parts`` adds, in separate runs (the timing wrappers cost a little),
the rollups' own CPU: ``thread_time`` around the writer's calls of
:class:`~buildbot_stats.storage.sqlite.rollups.Rollups` (``writing`` + ``written``: the
points side; ``maintain``: closing hours, days, weeks), least of ``--repeat``. ``--store FILE`` also measures a store written by
``benchmarks/storegen.py`` (its bytes per point, its tables' shares).
"""

from __future__ import annotations

import argparse
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
                       ('maintain', 'maintenance_cpu_s')):
        wrap(name, part)
    return Timed


def child(variant, points, batch, days):
    from buildbot_stats.storage.sqlite import writer as writer_module
    from buildbot_stats.storage.sqlite.rollups import GRACE
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
    next_hour = (rows[0][1] // 3_600_000_000 + 1) * 3600
    for k in range(0, len(rows), batch):
        chunk = rows[k:k + batch]
        t0 = time.thread_time()
        w.write(path, chunk)
        write_cpu += time.thread_time() - t0
        clock = chunk[-1][1] / 1e6
        if clock >= next_hour + GRACE:
            t0 = time.thread_time()
            while w.maintain(path, clock):
                pass
            maintain_cpu += time.thread_time() - t0
            next_hour = (clock // 3600 + 1) * 3600
    t0 = time.thread_time()
    while w.maintain(path, now + 2 * 3600):
        pass
    maintain_cpu += time.thread_time() - t0
    w.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    w.close()
    size = os.path.getsize(path)
    out = {'write_cpu_s': write_cpu, 'maintain_cpu_s': maintain_cpu,
           'total_cpu_s': write_cpu + maintain_cpu, 'points': len(rows),
           'bytes_per_point': size / len(rows), 'bytes': size}
    if variant == 'parts':
        out.update(spent)
    return out


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
    p.add_argument('--child', help=argparse.SUPPRESS)
    p.add_argument('--batch', type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.points, args.batch, args.days)))
        return
    out = {'bench': 'store_costs', 'points': args.points, 'days': args.days, 'batches': {}}
    for batch in map(int, args.batches.split(',')):
        variants = ('off', 'on', 'parts') if args.parts else ('off', 'on')
        runs = {v: [] for v in variants}
        for _ in range(args.repeat):
            for variant in variants:
                res = subprocess.run(
                    [sys.executable, __file__, '--child', variant, '--batch', str(batch),
                     '--points', str(args.points), '--days', str(args.days)],
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
