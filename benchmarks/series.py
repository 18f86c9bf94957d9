"""Series per capture: how many InfluxDB series each capture creates per build, measured.

InfluxDB 1.x refuses the points of new series past ``max-series-per-database`` (1,000,000 by
default), so a capture that creates a series per build has a horizon. This measures it: N
builds of a generated master database (10 builders, 4 steps, a ``warnings`` property, a
``coverage`` yieldMetricsValue on every other build: ``benchmarks/backfill.py``'s) are
replayed by ``buildbot-stats backfill``'s code path through a StatsService holding ONE
capture into a fresh database of a real InfluxDB 1.6, first the builds that ended in the
first half of the time range, then the rest; after each half ``SHOW SERIES EXACT
CARDINALITY`` (and the estimate, ``SHOW SERIES CARDINALITY``, what the backend checks
hourly) counts the database's series. The series added by the second half, divided by its
builds, is the capture's series per build; what remains is its fixed part (per builder,
worker, step...).

Variants: ``tag`` (Buildbot's layout, the default) and ``field``
(``StatsService(build_number='field')``), each in a fresh process.

Usage::

    python benchmarks/series.py --n 400 [--variants tag,field] [--captures duration,...]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import tempfile
import textwrap
import time

import harness
from backfill import generate

#: name -> the capture's constructor in master.cfg
CAPTURES = {
    'duration': 'stats.CaptureBuildDurationAllBuilders()',
    'start-time': 'stats.CaptureBuildStartTimeAllBuilders()',
    'end-time': 'stats.CaptureBuildEndTimeAllBuilders()',
    'property': "stats.CapturePropertyAllBuilders('warnings')",
    'data': "stats.CaptureDataAllBuilders('coverage')",
    'results': 'stats.CaptureBuildResults()',
    'queue': 'stats.CaptureQueueTimes()',
    'steps': 'stats.CaptureStepTimes()',
    'tests': 'stats.CaptureTestResults()',
}
#: the five seed captures together (the three build times share one series per build)
SEED = ('duration', 'start-time', 'end-time', 'property', 'data')
GROUPS = {'seed': SEED, 'all': tuple(CAPTURES)}

MASTER_CFG = textwrap.dedent('''\
    import os
    from buildbot.plugins import schedulers, util, worker
    from buildbot_stats import stats

    c = BuildmasterConfig = {}
    c['buildbotNetUsageData'] = None
    c['db'] = {'db_url': 'sqlite:///state.sqlite'}
    c['protocols'] = {'pb': {'port': 'tcp:0:interface=127.0.0.1'}}
    c['workers'] = [worker.Worker('w0', 'pw')]
    names = [f'b{i}' for i in range(10)]
    c['builders'] = [util.BuilderConfig(name=n, workernames=['w0'], factory=util.BuildFactory())
                     for n in names]
    c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=names)]
    CAPTURES = {%(captures)s}
    captures = [eval(CAPTURES[name]) for name in os.environ['BENCH_CAPTURES'].split(',')]
    backend = stats.InfluxStorageService(os.environ['BENCH_INFLUX_URL'], None, None, None,
                                         os.environ['BENCH_DB'], captures,
                                         create_database=True, series_check_interval=0)
    c['services'] = [stats.StatsService(storage_backends=[backend],
                                        build_number=os.environ['BENCH_FORM'],
                                        catch_up=False)]
''')


def masterCfg():
    captures = ', '.join(f'{k!r}: {v!r}' for k, v in CAPTURES.items())
    return MASTER_CFG % {'captures': captures}


def middle(basedir):
    """The end time that splits the builds in two halves, and the two counts."""
    conn = sqlite3.connect(os.path.join(basedir, 'state.sqlite'))
    try:
        ends = [r[0] for r in conn.execute("SELECT complete_at FROM builds ORDER BY "
                                           "complete_at, id")]
    finally:
        conn.close()
    half = len(ends) // 2
    # builds ending at the split time go to the second half (--since includes it)
    first = sum(1 for e in ends if e < ends[half])
    return ends[half], first, len(ends) - first


def series(port, db):
    exact = harness.influx_query(port, 'SHOW SERIES EXACT CARDINALITY', db)
    estimate = harness.influx_query(port, 'SHOW SERIES CARDINALITY', db)

    def total(answer):
        return sum(v[0] for r in answer.get('results', []) for s in r.get('series') or []
                   for v in s.get('values') or [])
    return total(exact), total(estimate)


def pointsStored(port, db):
    """The points the database holds: per measurement, the count of its most counted field
    (exact when every point of a measurement has the same fields: one capture per
    database)."""
    answer = harness.influx_query(port, 'SELECT count(*) FROM /.*/', db)
    return sum(max((v for v in s['values'][0][1:] if isinstance(v, int)), default=0)
               for r in answer.get('results', []) for s in r.get('series') or [])


def child(args):
    from twisted.internet import threads

    from buildbot_stats.cli.demo import runReactor
    from buildbot_stats.history import backfill as bf

    split, first, second = middle(args.basedir)
    os.environ['BENCH_INFLUX_URL'] = f'http://127.0.0.1:{args.influx_port}'
    os.environ['BENCH_FORM'] = args.child

    async def main(reactor):
        out = {'builds': first + second}
        for name in args.captures.split(','):
            db = f'series_{args.child}_{name.replace("-", "_")}'
            os.environ['BENCH_CAPTURES'] = ','.join(GROUPS.get(name, (name,)))
            os.environ['BENCH_DB'] = db
            points = lost = 0
            counts = []
            for since, until in ((None, split), (split, None)):
                master, svc = await bf.openMaster(args.basedir, reactor)
                try:
                    result, _, _ = await bf.backfill(master, svc, since=since, until=until)
                finally:
                    await master.close()
                (counters,) = result.backends.values()
                points += counters['written']
                lost += counters['rejected'] + counters['dropped']
                counts.append(await threads.deferToThread(series, args.influx_port, db))
            per_build = (counts[1][0] - counts[0][0]) / second
            out[name] = {
                'series_first_half': counts[0][0],
                'series_all': counts[1][0],
                'series_estimate': counts[1][1],
                'series_per_build': per_build,
                'series_fixed': counts[1][0] - per_build * (first + second),
                'points': points,
                'points_lost': lost,
                # fewer than 'points' would be points that overwrote each other
                'points_stored': await threads.deferToThread(pointsStored,
                                                             args.influx_port, db),
            }
        return out

    harness.emit(runReactor(main))


def parent(args):
    harness.exit_on_sigterm()
    basedir = tempfile.mkdtemp(prefix='buildbot_stats_series_bench_')
    influx = None
    try:
        master = os.path.join(basedir, 'master')
        t0 = time.monotonic()
        generate(master, args.n)
        with open(os.path.join(master, 'master.cfg'), 'w') as f:
            f.write(masterCfg())
        out = {'bench': 'series', 'n': args.n, 'generate_s': time.monotonic() - t0,
               'machine': harness.machine()}
        influx = harness.start_influxdb()
        for variant in args.variants.split(','):
            out[variant] = harness.run_child(__file__, variant, [
                '--n', args.n, '--influx-port', influx.port, '--basedir', master,
                '--captures', args.captures])
        harness.emit(out)
    finally:
        if influx is not None:
            influx.cleanup()
        shutil.rmtree(basedir, ignore_errors=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--n', type=int, default=400, help="builds (default 400)")
    parser.add_argument('--variants', default='tag,field')
    parser.add_argument('--captures', default=','.join([*CAPTURES, *GROUPS]),
                        help="captures (and groups: seed, all) to measure, comma-separated")
    parser.add_argument('--basedir', help=argparse.SUPPRESS)
    harness.run_main(parser, child, parent, argv)


if __name__ == '__main__':
    main()
