"""Backfill speed: N builds from a generated SQLite master database, replayed through the
seed's captures and the four build statistics captures, into InfluxDB 1.x and into the SQLite
store. Figures: builds/s, points, peak memory and resident memory at 25 %, 50 % and 100 % of
the builds (flat: it does not grow with the number of builds), and the worst reactor lag.

Variants (each in a fresh process, see harness.py):

* ``influx``: ``buildbot-stats backfill``'s code path into InfluxDB 1.x (50 ms slices, the
  start-up heap frozen out of the garbage collector's sight, as the command does);
* ``sqlite``: the same into the SQLite store;
* ``influx-catchup``: into InfluxDB at the catch-up's pace (10 ms slices, 100-build
  batches) and without ``gc.freeze()``, as inside a master: the worst reactor lag is the
  figure to read, beside ``worst_gc_ms``, the longest pause of CPython's garbage collector
  (which any master has, with or without us), and ``longest_slice_ms``, the most CPU time of
  the reactor thread one run of replay work took between two turns of the reactor (a
  collection inside it included; time the machine gave to other processes excluded).

Usage::

    python benchmarks/backfill.py --n 10000 [--variants influx,sqlite,influx-catchup]

The master database is generated once per run (direct inserts through Buildbot's own table
definitions, a few seconds for 10,000 builds) in a temporary master directory.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time

import harness

BUILDERS = 10
STEPS = 4

MASTER_CFG = textwrap.dedent('''\
    import os
    from buildbot.plugins import schedulers, util, worker
    from benchmarks.captures import everyFamily
    from buildbot_stats import stats

    c = BuildmasterConfig = {}
    c['buildbotNetUsageData'] = None
    c['db'] = {'db_url': 'sqlite:///state.sqlite'}
    c['protocols'] = {'pb': {'port': 'tcp:0:interface=127.0.0.1'}}
    c['workers'] = [worker.Worker('w0', 'pw')]
    names = [f'b{i}' for i in range(%(builders)d)]
    c['builders'] = [util.BuilderConfig(name=n, workernames=['w0'], factory=util.BuildFactory())
                     for n in names]
    c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=names)]
    captures = everyFamily('warnings', 'coverage')
    if os.environ['BENCH_BACKEND'] == 'influx':
        backend = stats.InfluxStorageService(os.environ['BENCH_INFLUX_URL'], None, None, None,
                                             os.environ['BENCH_DB'], captures,
                                             create_database=True)
    else:
        backend = stats.SQLiteStorageService(os.environ['BENCH_SQLITE'], captures)
    c['services'] = [stats.StatsService(storage_backends=[backend])]
''')


def generate(basedir, n):
    """A master directory whose state.sqlite holds ``n`` finished builds."""
    subprocess.run([sys.executable, '-c', 'from buildbot.scripts.runner import run; run()',
                    'create-master', '-q', '-r', '--db', 'sqlite:///state.sqlite', basedir],
                   check=True, capture_output=True)
    with open(os.path.join(basedir, 'master.cfg'), 'w') as f:
        f.write(MASTER_CFG % {'builders': BUILDERS})
    import sqlalchemy as sa

    from buildbot.db import model

    from buildbot_stats.history.builddata import RECORD_NAME
    from buildbot_stats.history.builddata import encodeEntry
    from buildbot_stats.history.builddata import encodeRecord

    t = model.Model.metadata.tables
    engine = sa.create_engine(f"sqlite:///{os.path.join(basedir, 'state.sqlite')}")
    rnd = random.Random(42)
    start = 1_700_000_000
    rows = {k: [] for k in ('masters', 'builders', 'workers', 'buildsets', 'sourcestamps',
                            'buildset_sourcestamps', 'buildrequests', 'builds',
                            'build_properties', 'steps', 'test_result_sets', 'build_data')}
    rows['masters'].append(dict(id=1, name='bench', name_hash='0' * 40, active=0,
                                last_active=start))
    for b in range(BUILDERS):
        rows['builders'].append(dict(id=b + 1, name=f'b{b}', name_hash=f'{b:040d}'))
    for w in range(4):
        rows['workers'].append(dict(id=w + 1, name=f'w{w}', info='{}', paused=0, graceful=0))
    numbers = [0] * BUILDERS
    stepid = 0
    for i in range(1, n + 1):
        builder = rnd.randrange(BUILDERS)
        numbers[builder] += 1
        submitted = start + i * 60
        started = submitted + rnd.randint(0, 30)
        done = started + rnd.randint(30, 900)
        result = rnd.choice([0, 0, 0, 0, 1, 2])
        rows['sourcestamps'].append(dict(
            id=i, ss_hash=f'{i:040x}', branch=rnd.choice(['main', 'dev']), revision=f'{i:x}',
            repository='https://example.org/repo.git', codebase='', project='demo',
            created_at=submitted))
        rows['buildsets'].append(dict(id=i, reason='bench', submitted_at=submitted, complete=1,
                                      complete_at=done, results=result))
        rows['buildset_sourcestamps'].append(dict(id=i, buildsetid=i, sourcestampid=i))
        rows['buildrequests'].append(dict(id=i, buildsetid=i, builderid=builder + 1,
                                          priority=0, complete=1, results=result,
                                          submitted_at=submitted, complete_at=done,
                                          waited_for=0))
        rows['builds'].append(dict(id=i, number=numbers[builder], builderid=builder + 1,
                                   buildrequestid=i, workerid=rnd.randint(1, 4), masterid=1,
                                   started_at=started, complete_at=done, locks_duration_s=0,
                                   state_string='finished', results=result))
        for name, value in (('warnings', rnd.randint(0, 50)), ('buildnumber', numbers[builder]),
                            ('branch', 'main')):
            rows['build_properties'].append(dict(buildid=i, name=name, value=json.dumps(value),
                                                 source='bench'))
        at = started
        for s in range(STEPS):
            stepid += 1
            end = at + (done - started) // STEPS
            rows['steps'].append(dict(id=stepid, number=s, name=f'step{s}', buildid=i,
                                      started_at=at, complete_at=end, state_string='done',
                                      results=0, urls_json='[]', hidden=0))
            at = end
        rows['test_result_sets'].append(dict(
            id=i, builderid=builder + 1, buildid=i, stepid=stepid, description='unit',
            category='pass_fail', value_unit='boolean', tests_passed=rnd.randint(90, 100),
            tests_failed=rnd.randint(0, 3), complete=1))
        if i % 2:
            # the record of yieldMetricsValue (buildbot_stats.history.builddata)
            value = encodeRecord({'coverage': [
                encodeEntry(started + 10.5, {'percent': 80.0 + i % 10})]})
            rows['build_data'].append(dict(buildid=i, name=RECORD_NAME, value=value,
                                           length=len(value), source='buildbot_stats'))
    with engine.begin() as conn:
        for table, values in rows.items():
            if values:
                conn.execute(t[table].insert(), values)
    engine.dispose()


def child(args):
    from twisted.internet import reactor

    from buildbot_stats.cli.common import runReactor
    from buildbot_stats.history import backfill as bf
    from buildbot_stats.history import replay

    variant = args.child
    os.environ['BENCH_BACKEND'] = 'sqlite' if variant == 'sqlite' else 'influx'
    os.environ['BENCH_INFLUX_URL'] = f'http://127.0.0.1:{args.influx_port}'
    os.environ['BENCH_DB'] = args.db
    os.environ['BENCH_SQLITE'] = os.path.join(args.basedir, f'stats-{os.getpid()}.sqlite')
    slices = {}
    if variant == 'influx-catchup':
        slices = {'slice_seconds': 0.01, 'batch_size': 100}
    memory = {}

    class Progress:
        def __init__(self, total):
            self.total = total

        def __call__(self, done):
            for pct in (25, 50, 100):
                if done >= self.total * pct / 100 and pct not in memory:
                    memory[pct] = harness.rss_mb()

        def close(self):
            pass

    orig = replay.Replayer.__init__

    def init(self, *a, **kw):
        kw.update(slices)
        orig(self, *a, **kw)

    replay.Replayer.__init__ = init
    probe = harness.LagProbe(reactor)

    gc_pauses = []
    gc_started = {}

    def on_gc(phase, info):
        if phase == 'start':
            gc_started['t'] = time.perf_counter()
        elif 't' in gc_started:
            gc_pauses.append(time.perf_counter() - gc_started.pop('t'))

    gc.callbacks.append(on_gc)

    async def main(reactor):
        master, svc = await bf.openMaster(args.basedir, reactor)
        if variant != 'influx-catchup':
            gc.freeze()  # as buildbot-stats backfill does
        probe.start()
        try:
            return await bf.backfill(master, svc, progress_factory=Progress)
        finally:
            probe.stop()
            await master.close()

    t0 = time.monotonic()
    result, seconds, _ = runReactor(main)
    wall = time.monotonic() - t0
    (name, counters), = result.backends.items()
    harness.emit({
        'builds': result.builds,
        'builds_per_s': result.builds / seconds,
        'seconds': seconds,
        'wall_s': wall,
        'points': counters['added'],
        'written': counters['written'],
        'rejected': counters['rejected'],
        'dropped': counters['dropped'],
        'capture_errors': result.capture_errors,
        'max_lag_ms': probe.worst * 1000,
        'worst_gc_ms': max(gc_pauses, default=0.0) * 1000,
        'longest_slice_ms': result.longest_slice * 1000,
        'rss_mb_at_pct': {str(k): v for k, v in sorted(memory.items())},
        'peak_rss_mb': harness.peak_rss_mb(),
    })


def parent(args):
    harness.exit_on_sigterm()
    basedir = tempfile.mkdtemp(prefix='buildbot_stats_backfill_bench_')
    influx = None
    try:
        t0 = time.monotonic()
        generate(os.path.join(basedir, 'master'), args.n)
        generated = time.monotonic() - t0
        influx = harness.start_influxdb()
        out = {'bench': 'backfill', 'n': args.n, 'generate_s': generated,
               'machine': harness.machine()}
        for variant in args.variants.split(','):
            db = f'bench_{variant.replace("-", "_")}'
            res = harness.run_child(__file__, variant, [
                '--n', args.n, '--influx-port', influx.port, '--db', db,
                '--basedir', os.path.join(basedir, 'master')])
            if variant != 'sqlite' and 'error' not in res:
                res['in_influxdb'] = harness.count_points(influx.port, db, 'builds',
                                                          'result_code')
            out[variant] = res
        harness.emit(out)
    finally:
        if influx is not None:
            influx.cleanup()
        shutil.rmtree(basedir, ignore_errors=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--n', type=int, default=10000, help="builds (default 10000)")
    parser.add_argument('--variants', default='influx,sqlite,influx-catchup')
    parser.add_argument('--basedir', help=argparse.SUPPRESS)
    harness.run_main(parser, child, parent, argv)


if __name__ == '__main__':
    main()
