"""Burst: the cost of statistics on a real master that finishes N builds at once.

A real ``BuildMaster`` (SQLite database file, simple MQ, data API, logging to twistd.log as a
master does) with B builders and W in-process workers (Buildbot's ``LocalWorker``, protocol
'null': the worker costs no network and no second process) runs N builds of one quick step.
The builds are forced in bulk through a scheduler (N/B buildsets of B builders each).
The step runs on the master; when a stats service is configured it posts one
``yieldMetricsValue('bench', {'value': ...})``. Four captures per build (start time, end time,
duration, the ``buildnumber`` property) plus the ``CaptureData`` make 5 points per build.

Variants, each in a fresh process:

* ``none``: the same master and builds, no stats service: the baseline;
* ``buildbot``: Buildbot's own ``buildbot.statistics`` with its ``InfluxStorageService``
  (the ``influxdb`` client; a thread and a blocking HTTP write per point);
* ``ours``: ``buildbot_stats`` with ``stats.InfluxStorageService``;
* ``sqlite``: ``buildbot_stats`` with the embedded ``stats.SQLiteStorageService``;
* ``memory``: ``buildbot_stats`` with ``stats.InMemoryStorageService`` (the service and
  captures alone, no storage I/O);
* ``sqlite_norollups``: ``sqlite`` with the store's rollups switched off. Both SQLite
  variants end with a round of maintenance two hours on (the builds' hours closed and
  rolled up, as the master's round after each hour does), counted: ``sqlite`` minus
  ``sqlite_norollups`` is what the rollups cost the whole master.

Each reports the master's CPU seconds (``time.process_time``: every thread of the master
process, including the in-process workers, from the first buildset to the last point
written), the wall time until the last point was acknowledged by its store, the worst
reactor lag (a 10 ms LoopingCall's worst delay), and, for InfluxDB, how many points the
database holds afterwards.

    python benchmarks/burst.py --n 1000

``--mode finish`` measures the stats' own cost per build on the master's cheapest build:
no scheduler, no worker, no step. Each build is made and finished through
``master.data.updates`` as a real build does (``addBuild``, ``setBuildProperties`` with one
property,
``generateNewBuildEvent``, one ``yieldMetricsValue`` when a stats service runs,
``finishBuild``), one after the other. Every variant reports ``stats_us_per_build``: its CPU
(``time.process_time``, so the database thread and the stats' threads count) minus the
``none`` variant's, per build, in microseconds. The master's database is in memory by
default in this mode.

    python benchmarks/burst.py --mode finish --n 300 --variants none,buildbot,ours
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import harness  # noqa: E402

# 'ours_norecord': 'ours' with StatsService(record_data=False) (no build data record);
# '*_noregressions': 'ours' or 'sqlite' with StatsService(regressions=False) (no change
# detection after each build)
# 'sqlite_norollups': 'sqlite' with the rollups switched off (store_costs.NoRollups): with
# 'sqlite', what the rollups cost the whole master (both close the builds' hours at the end)
VARIANTS = ('none', 'buildbot', 'ours', 'sqlite', 'memory', 'ours_norecord',
            'ours_noregressions', 'sqlite_noregressions', 'sqlite_norollups')
DEFAULT_VARIANTS = ('none', 'buildbot', 'ours', 'sqlite')
POINTS_PER_BUILD = 5
# field values per build: 3 build times (one field each), property (name, value), data (value)
FIELDS_PER_BUILD = 6
DATA_NAME = 'bench'
PROPERTY = 'buildnumber'


# -- the child: one variant on one master ---------------------------------------------------


def stats_config(variant, port, db, basedir):
    """The ``c['services']`` entry of a variant, and a function giving points done so far."""
    if variant == 'none':
        return [], None
    if variant == 'buildbot':
        from buildbot import statistics as bbstats

        captures = [
            bbstats.CaptureBuildStartTimeAllBuilders(),
            bbstats.CaptureBuildEndTimeAllBuilders(),
            bbstats.CaptureBuildDurationAllBuilders(),
            bbstats.CapturePropertyAllBuilders(PROPERTY),
            bbstats.CaptureDataAllBuilders(DATA_NAME),
        ]
        backend = bbstats.InfluxStorageService(
            '127.0.0.1', port, 'root', 'root', db, captures, name='influx')
        # Buildbot's backend has no counters: count the writes its threads finish
        done = {'n': 0, 'failed': 0}
        post = backend.thd_postStatsValue

        def counted(*args, **kwargs):
            try:
                post(*args, **kwargs)
            except Exception:
                done['failed'] += 1
                raise
            done['n'] += 1

        backend.thd_postStatsValue = counted
        svc = bbstats.StatsService(storage_backends=[backend], name='StatsService')
        return [svc], lambda: (done['n'] + done['failed'], {'failed': done['failed']})

    from benchmarks.captures import seedCaptures
    from buildbot_stats import stats

    captures = seedCaptures(PROPERTY, DATA_NAME)
    if variant in ('ours', 'ours_norecord', 'ours_noregressions'):
        backend = stats.InfluxStorageService(
            url=f'http://127.0.0.1:{port}', db=db, captures=captures, name='influx')
    elif variant in ('sqlite', 'sqlite_noregressions', 'sqlite_norollups'):
        if variant == 'sqlite_norollups':
            from benchmarks.store_costs import NoRollups
            from buildbot_stats.storage.sqlite import writer as writer_module
            writer_module.Rollups = NoRollups
        backend = stats.SQLiteStorageService(
            path=os.path.join(basedir, 'stats.sqlite'), captures=captures, name='sqlite')
    elif variant == 'memory':
        backend = stats.InMemoryStorageService(captures, name='memory')
    else:
        raise SystemExit(f"unknown variant {variant!r}")
    svc = stats.StatsService(storage_backends=[backend], name='StatsService',
                             record_data=(variant != 'ours_norecord'),
                             regressions=not variant.endswith('_noregressions'))

    def progress():
        c = backend.counters
        return c.written + c.rejected + c.dropped, c.asDict()

    return [svc], progress


def master_config(variant, n_builders, n_workers, services, basedir, database='file'):
    from twisted.internet import defer

    from buildbot.plugins import schedulers
    from buildbot.plugins import util
    from buildbot.process.buildstep import BuildStep
    from buildbot.process.results import SUCCESS
    from buildbot.worker.local import LocalWorker

    class BenchStep(BuildStep):
        """One quick master-side step; posts one metric when a stats service runs."""

        name = 'bench'

        @defer.inlineCallbacks
        def run(self):
            svc = self.master.service_manager.namedServices.get('StatsService')
            if svc is not None:
                yield svc.yieldMetricsValue(
                    DATA_NAME, {'value': float(self.build.number)}, self.build.buildid)
            return SUCCESS

    factory = util.BuildFactory([BenchStep()])
    workers = [f'w{i}' for i in range(n_workers)]
    builders = [f'b{i}' for i in range(n_builders)]
    return {
        'workers': [LocalWorker(w) for w in workers],
        'protocols': {'null': {}},
        'builders': [
            util.BuilderConfig(name=b, workernames=workers, factory=factory) for b in builders
        ],
        'schedulers': [schedulers.Triggerable(name='bench', builderNames=builders)],
        'services': services,
        # 'file': Buildbot's usual SQLite file (a new connection per query: ~2.5 ms of CPU
        # each); 'memory': an in-memory SQLite database, a much cheaper master on which the
        # stats' own cost is a larger share
        'db_url': ('sqlite://' if database == 'memory'
                   else 'sqlite:///' + os.path.join(basedir, 'state.sqlite')),
        'buildbotNetUsageData': None,
        # identical pending requests would be merged into one build otherwise
        'collapseRequests': False,
        'title': f'burst-{variant}',
    }


def child(args):
    from twisted.internet import defer
    from twisted.internet import task

    basedir = tempfile.mkdtemp(prefix=f'bench_burst_{args.child}_', dir=args.tmpdir)

    async def main(reactor):
        try:
            await run_burst(reactor, args, basedir)
        except BaseException:
            traceback.print_exc()
            raise

    try:
        task.react(lambda reactor: defer.ensureDeferred(main(reactor)))
    finally:
        shutil.rmtree(basedir, ignore_errors=True)


async def run_burst(reactor, args, basedir):
    from twisted.internet import defer
    from twisted.python import log

    variant = args.child
    # a master logs to twistd.log; so does this one (Buildbot's backend logs per point)
    logfile = open(os.path.join(basedir, 'twistd.log'), 'a', encoding='utf-8')
    log.startLogging(logfile, setStdout=False)

    services, progress = stats_config(variant, args.influx_port, args.db, basedir)
    cfg = master_config(variant, args.builders, args.workers, services, basedir,
                        args.database)
    master = await harness.start_master(reactor, basedir, cfg)

    # every worker attached before the clock starts
    for _ in range(1000):
        if len(master.workers.connections) >= args.workers:
            break
        await task_sleep(reactor, 0.01)
    builderNames = [b.name for b in cfg['builders']]
    sched = master.scheduler_manager.namedServices['bench']

    finished = {'n': 0}
    goal = {'n': 0, 'd': None}
    room = {'d': None}

    def on_finished(key, msg):
        finished['n'] += 1
        if room['d'] is not None:
            d, room['d'] = room['d'], None
            d.callback(None)
        if goal['d'] is not None and finished['n'] >= goal['n']:
            d, goal['d'] = goal['d'], None
            d.callback(None)

    consumer = await master.mq.startConsuming(on_finished, ('builds', None, 'finished'))

    async def build(n):
        """Run n more builds; returns the CPU seconds spent submitting them."""
        target = finished['n'] + n
        goal['n'], goal['d'] = target, defer.Deferred()
        done = goal['d']
        submitted = finished['n']
        # Keep the master saturated with at most ``window`` builds requested and unfinished:
        # every builder always has work, and Buildbot's request distributor does not rescan
        # thousands of pending requests per new buildset (a cost of Buildbot, not of stats).
        while submitted < target:
            while submitted - finished['n'] >= args.window:
                room['d'] = defer.Deferred()
                await room['d']
            names = builderNames[:target - submitted]
            await sched.addBuildsetForSourceStamps(
                sourcestamps=[{'codebase': '', 'repository': '', 'branch': None,
                               'revision': None, 'project': ''}],
                reason='burst', builderNames=names)
            submitted += len(names)
        await done

    async def points_done(expected, timeout):
        details = {}
        if progress is None:
            return details
        deadline = time.monotonic() + timeout
        while True:
            done, details = progress()
            if done >= expected or time.monotonic() > deadline:
                return details
            # a counter read every 20 ms: waiting for a store's last batch (up to its 1 s
            # flush interval) must not cost the variants that wait more CPU than they spend
            await task_sleep(reactor, 0.02)

    from buildbot.process.properties import Properties
    from buildbot.process.results import SUCCESS

    svc = master.service_manager.namedServices.get('StatsService')
    builderids = [(await master.data.updates.findBuilderId(name)) for name in builderNames]
    workerid = next(iter(master.workers.workers.values())).workerid

    stats_on = {'on': svc is not None}

    async def finish(n):
        """Make and finish n builds through the data API's update methods, as Build does:
        no scheduler, no worker, no step."""
        updates = master.data.updates
        posting = svc if stats_on['on'] else None
        for i in range(n):
            buildid, number = await updates.addBuild(
                builderid=builderids[i % len(builderids)], buildrequestid=1,
                workerid=workerid)
            # Build sets its properties with setBuildProperties (setBuildProperty announces
            # any property as 'name' in Buildbot 4.3)
            props = Properties()
            props.setProperty(PROPERTY, number, 'burst')
            await updates.setBuildProperties(buildid, props)
            await updates.generateNewBuildEvent(buildid)
            if posting is not None:
                await posting.yieldMetricsValue(DATA_NAME, {'value': float(number)}, buildid)
            await updates.finishBuild(buildid, SUCCESS)

    # Warm-up: a master that has run a build has imported and cached what builds need (a
    # first build costs 100+ ms of imports on the reactor thread); so does the stats service.
    run = finish if args.mode == 'finish' else build
    warm = args.warmup * len(builderNames)
    if warm:
        await run(warm)
        await points_done(warm * POINTS_PER_BUILD, args.timeout)

    probe = harness.LagProbe(reactor)
    probe.start()
    cpu0 = time.process_time()
    reactor_cpu0 = time.thread_time()
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    wall0 = time.monotonic()
    await run(args.n)
    cpu_built = time.process_time() - cpu0
    wall_built = time.monotonic() - wall0

    expected = args.n * POINTS_PER_BUILD
    wall_points = wall_built
    details = await points_done((warm + args.n) * POINTS_PER_BUILD, args.timeout)
    recorder = getattr(svc, 'build_data_recorder', None)
    if recorder is not None:
        # the build-data record of the last builds (written within a second of their end)
        await recordWritten(recorder)
    if progress is not None:
        wall_points = time.monotonic() - wall0
    if variant.startswith('sqlite'):
        # the hours these builds wrote closed and rolled up, as the master's round after the
        # hour's end does (an eager round two hours on): counted in the master's CPU
        backend = svc.backends[0]
        while await backend._inThread(backend._writer.maintain, backend.path,
                                      time.time() + 7200, backend.keep,
                                      backend.keep_rollups, True):
            pass
        wall_points = time.monotonic() - wall0
    cpu = time.process_time() - cpu0
    reactor_cpu = time.thread_time() - reactor_cpu0
    lag = probe.stop()
    consumer.stopConsuming()

    result = {
        'builds': args.n if args.mode == 'finish' else finished['n'] - warm,
        'warmup_builds': warm,
        'cpu_s': cpu,
        # the reactor thread's share (the rest: Buildbot's database threads, the stores')
        'reactor_cpu_s': reactor_cpu,
        'cpu_builds_s': cpu_built,
        'wall_builds_s': wall_built,
        'wall_s': wall_points,
        'max_lag_ms': lag * 1000,
        'lags_over_20ms': probe.late,
        'ticks': probe.ticks,
        'points_expected': expected if progress else 0,
        'points_done': progress()[0] - warm * POINTS_PER_BUILD if progress else 0,
        'points_per_s': (expected / wall_points) if progress else 0.0,
        'peak_rss_mb': harness.peak_rss_mb(),
    }
    ru = resource.getrusage(resource.RUSAGE_SELF)
    result['user_s'], result['sys_s'] = ru.ru_utime - ru0.ru_utime, ru.ru_stime - ru0.ru_stime
    if details:
        result['counters'] = details
    if args.alternate and args.mode == 'finish' and recorder is not None:
        result['alternate'] = await alternate(args, svc, finish, progress, points_done,
                                              stats_on, warm)
    await master.stopService()
    await master.db.pool.stop()
    harness.emit(result)


async def alternate(args, svc, finish, progress, points_done, stats_on, warm):
    """The same master finishes ``--alternate-n`` builds (default ``--n``) in each of three
    states: its stats service unsubscribed (``off``), subscribed without the build-data
    record (``record_data=False``), and with it; ``args.alternate`` rounds, the order of the
    states turning at each round (a state is not always the one that runs on the largest
    database). The least CPU of each state, in one process, is the measure least disturbed by
    other work on the machine (and by process start-up). With the record, the CPU counted
    ends once its last rows are written.

    Beside it, ``record_attributed_us_per_call``: the CPU the record's own code took, the
    reactor thread's in ``record()`` plus Buildbot's database thread's in the recorder's
    transactions (``time.thread_time`` around each), per call: what the record costs, read
    without the noise of the rest of the master (it leaves out the thread hop of each
    transaction, one a second or per 500 builds)."""
    n = args.alternate_n or args.n
    recorder = svc.build_data_recorder
    attributed = attribute(recorder)
    cpu = {'off': [], 'norecord': [], 'record': []}
    states = list(cpu)
    for round_ in range(args.alternate):
        for state in states[round_ % 3:] + states[:round_ % 3]:
            if state == 'off':
                await svc.removeConsumers()
                stats_on['on'] = False
            else:
                stats_on['on'] = True
                svc.record_data = state == 'record'
                await svc.registerConsumers()
            before = progress()[0]
            cpu0 = time.process_time()
            await finish(n)
            if state != 'off':
                await points_done(before + n * POINTS_PER_BUILD, args.timeout)
                await recordWritten(recorder)
            cpu[state].append(time.process_time() - cpu0)
    least = {state: min(values) for state, values in cpu.items()}
    out = {'builds_per_run': n, 'off_cpu_s': cpu['off'], 'norecord_cpu_s': cpu['norecord'],
           'on_cpu_s': cpu['record'],
           'stats_us_per_build': 1e6 * (least['record'] - least['off']) / n,
           'stats_us_per_build_norecord': 1e6 * (least['norecord'] - least['off']) / n,
           # one yieldMetricsValue call per build: the record's cost per call
           'record_us_per_call': 1e6 * (least['record'] - least['norecord']) / n}
    if attributed is not None and attributed['calls']:
        out['record_attributed_us_per_call'] = (
            1e6 * (attributed['reactor'] + attributed['database']) / attributed['calls'])
        out['record_attributed'] = attributed
    return out


def attribute(recorder):
    """Counts the CPU of the record's own code (see :func:`alternate`); None for the recorder
    before one row per build (it wrote through Buildbot's setBuildData)."""
    thd_write = getattr(recorder, '_thdWrite', None)
    if thd_write is None:
        return None
    spent = {'reactor': 0.0, 'database': 0.0, 'calls': 0, 'transactions': 0}
    record = recorder.record

    def timedRecord(*args):
        t0 = time.thread_time()
        try:
            return record(*args)
        finally:
            spent['reactor'] += time.thread_time() - t0
            spent['calls'] += 1

    def timedWrite(*args):
        t0 = time.thread_time()  # Buildbot's database thread
        try:
            return thd_write(*args)
        finally:
            spent['database'] += time.thread_time() - t0
            spent['transactions'] += 1

    recorder.record = timedRecord
    recorder._thdWrite = timedWrite
    return spent


def recordWritten(recorder):
    """A Deferred: every yieldMetricsValue call recorded so far is written (``flush``; the
    recorder before one row per build had ``wait``: this script measures both)."""
    flush = getattr(recorder, 'flush', None)
    return flush() if flush is not None else recorder.wait()


def task_sleep(reactor, seconds):
    from twisted.internet import task

    return task.deferLater(reactor, seconds, lambda: None)


# -- the parent: every variant, one JSON line -----------------------------------------------


def parent(args):
    harness.exit_on_sigterm()
    variants = args.variants.split(',')
    server = None
    if {'buildbot', 'ours', 'ours_norecord', 'ours_noregressions'} & set(variants):
        server = harness.start_influxdb()
    out = {'bench': 'burst', 'mode': args.mode, 'n': args.n, 'builders': args.builders,
           'workers': args.workers, 'database': args.database}
    keys = []
    try:
        for variant in variants:
            # a variant named twice runs twice ('none_2'...): the spread between the runs
            # of one variant is the noise the other differences must be read against
            key = variant
            k = 1
            while key in out:
                k += 1
                key = f'{variant}_{k}'
            keys.append(key)
            extra = ['--mode', args.mode, '--alternate', args.alternate,
                     '--alternate-n', args.alternate_n,
                     '--n', args.n, '--builders', args.builders, '--workers', args.workers,
                     '--window', args.window, '--warmup', args.warmup,
                     '--timeout', args.timeout, '--database', args.database]
            db = f'burst_{key}'
            if server is not None:
                server.create_database(db)
                extra += ['--influx-port', server.port, '--db', db]
            res = harness.run_child(__file__, variant, extra)
            if (server is not None and variant in ('buildbot', 'ours', 'ours_norecord',
                                                   'ours_noregressions')
                    and 'error' not in res):
                res['influx_fields'] = harness.count_field_values(server.port, db)
                res['influx_fields_expected'] = (
                    args.n + res['warmup_builds']) * FIELDS_PER_BUILD
            out[key] = res
    finally:
        if server is not None:
            server.cleanup()
    base = out.get('none', {}).get('cpu_s')
    for key in keys:
        res = out[key]
        if key != 'none' and base and 'cpu_s' in res:
            res['cpu_overhead_pct'] = harness.r(100.0 * (res['cpu_s'] - base) / base)
            # the stats' own CPU per build, the database thread included
            res['stats_us_per_build'] = harness.r(1e6 * (res['cpu_s'] - base) / args.n)
    if base:
        out['none']['master_us_per_build'] = harness.r(1e6 * base / args.n)
    # With a variant named several times, the least CPU of each is the figure least
    # disturbed by other work on the machine
    least = {}
    for key in keys:
        cpu = out[key].get('cpu_s')
        variant = key.rsplit('_', 1)[0] if key not in VARIANTS else key
        if cpu is not None:
            least[variant] = min(cpu, least.get(variant, cpu))
    if len(keys) > len(least) and 'none' in least:
        out['least_cpu_s'] = least
        out['least_stats_us_per_build'] = {
            v: harness.r(1e6 * (cpu - least['none']) / args.n)
            for v, cpu in least.items() if v != 'none'}
    out['machine'] = harness.machine()
    harness.emit(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--n', type=int, default=1000, help='builds (default 1000)')
    p.add_argument('--builders', type=int, default=4)
    p.add_argument('--workers', type=int, default=4)
    p.add_argument('--warmup', type=int, default=1,
                   help='buildsets (of every builder) run before measuring (default 1)')
    p.add_argument('--window', type=int, default=32,
                   help='builds requested and not finished, at most (default 32)')
    p.add_argument('--variants', default=','.join(DEFAULT_VARIANTS),
                   help=f"comma-separated, among {', '.join(VARIANTS)}")
    p.add_argument('--timeout', type=float, default=600.0,
                   help='seconds to wait for the last point after the last build')
    p.add_argument('--tmpdir', default=None,
                   help="where the master's basedir (its SQLite file) goes (default: $TMPDIR)")
    p.add_argument('--database', choices=('file', 'memory'), default=None,
                   help="the master's database: an SQLite file (default of --mode builds) or "
                        "in memory (default of --mode finish)")
    p.add_argument('--alternate', type=int, default=0,
                   help="with --mode finish: after the measured run, the stats variants "
                        "also finish --n builds with their service unsubscribed, "
                        "subscribed with record_data=False and with record_data=True, this "
                        "many rounds, in the same process")
    p.add_argument('--alternate-n', type=int, default=0,
                   help="builds of each state in a round of --alternate (default: --n)")
    p.add_argument('--mode', choices=('builds', 'finish'), default='builds',
                   help="'builds' (default): real builds on in-process workers; 'finish': "
                        "builds made and finished through master.data.updates only")
    harness.run_main(p, child, parent, argv, defaults=_modeDefaults)


def _modeDefaults(args):
    if args.database is None:
        # finish: the master's cheapest build, so the stats' own cost shows (a file database
        # costs ~2.5 ms of CPU per query, and its noise would hide it)
        args.database = 'memory' if args.mode == 'finish' else 'file'



if __name__ == '__main__':
    main()
