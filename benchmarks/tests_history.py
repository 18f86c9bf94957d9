"""Per-test history: the size and speed of the answers at 10,000 tests x 1,000 builds, and
the cost of recording one build's 10,000 results on a real master.

Two parts, each variant in a fresh process; one JSON line:

* ``store``: a store of ``--tests`` test cases per build x ``--builds`` builds of one
  builder (10,000,000 results by default), written by the embedded store's own writer
  (``StoreWriter``, as the master's writer thread writes it), with what the answers look
  for: 100 flaky tests (failing at random, 1 build in 10, some of them on a rerun that
  passed), 20 tests broken for a while then fixed, 3 failing since the last builds, 50
  tests (of 200 ms or more) 50 % slower over the last 10 builds, and every 10th build a
  second build of the same revision. It reports the bytes per stored result (the ``test_results`` table and its
  index of failures, from SQLite's ``dbstat``; and the whole file), and the time of each
  answer (least and median of ``--repeat`` runs, from a reader opened afresh): the flaky,
  failing, slowest and slower tables alone, every table at once (what the page asks), one
  test's history, each over every build and over the last 7 days; and whether the slower
  tests were found by change detection at the build where they began.

* ``record``: a real ``BuildMaster`` (SQLite database file, as a master runs) with a
  ``StatsService`` whose backend runs ``CaptureTestHistory``: a build with ``--cases``
  test results (submitted through Buildbot's data API as ``addTestResult`` does) is
  finished ``--repeat`` times with the service subscribed and as many times unsubscribed,
  alternating. Reported: the process's CPU (every thread: Buildbot's database thread, the
  merge, the store's writer) from ``finishBuild`` until the backend has written the
  results, least of each state, and their difference (the recording's cost); the reactor
  thread's CPU; the longest slice of the reactor thread's own CPU in one go (one call of
  ``runUntilCurrent`` or ``doIteration``) in each run; and the worst lateness of a 1 ms
  timer (which also counts the threads holding the interpreter lock and the machine's
  load), subscribed and unsubscribed (Buildbot's own work). Variants: ``sqlite`` (the embedded store) and ``influx`` (a real InfluxDB 1.x).

    python benchmarks/tests_history.py                      # both parts, full size
    python benchmarks/tests_history.py --part store --builds 100 --tests 1000
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import harness  # noqa: E402

T0 = 1_700_000_000.0
BUILD_EVERY = 1800.0  # seconds between builds: 1,000 builds are 21 days
BUILDER = 'linux'


# -- the store ---------------------------------------------------------------------------


def testNames(n):
    return [f"tests.unit.test_module_{i // 40:04d}.TestCase{i % 7}.test_behaviour_{i:05d}"
            for i in range(n)]


def generate(path, builds, tests, seed=21):
    """Write the store; returns what the answers should find."""
    from buildbot_stats.outcomes import FAILED
    from buildbot_stats.outcomes import FLAKY
    from buildbot_stats.outcomes import PASSED
    from buildbot_stats.outcomes import SKIPPED
    from buildbot_stats.outcomes import TestRun
    from buildbot_stats.storage.sqlite.writer import StoreWriter

    rng = random.Random(seed)
    names = testNames(tests)
    base = [0.001 + rng.lognormvariate(-4, 1.5) for _ in range(tests)]
    flaky = set(rng.sample(range(tests), min(100, tests // 10)))
    rest = [i for i in range(tests) if i not in flaky]
    # broken at a new revision, fixed 10 or 20 builds later (never across a build of the
    # same revision again, which would make them flaky by definition)
    broken = {i: (10 * rng.randrange(max(builds // 20, 1)), 10 * rng.randrange(1, 3))
              for i in rng.sample(rest, min(20, tests // 50))}
    skipped = set(rng.sample(range(tests), tests // 100))
    rest = [i for i in rest if i not in broken and i not in skipped]
    failing_now = set(rng.sample(rest, 3))
    slowing = set(rng.sample([i for i in rest if i not in failing_now], min(50, tests // 20)))
    for i in slowing:
        # slow enough for +50 % to be more than MIN_SLOWDOWN_SECONDS (50 ms)
        base[i] = max(base[i], 0.2)
    writer = StoreWriter(30.0)
    revision = 0
    started = time.monotonic()
    for b in range(builds):
        if b % 10 != 9:
            revision += 1
        run = TestRun(BUILDER, b + 1, 1000 + b, T0 + BUILD_EVERY * b,
                      revision=f"{revision:040x}", buildset=5000 + b, branch='main')
        cases = []
        for i, name in enumerate(names):
            outcome = PASSED
            if i in skipped:
                outcome = SKIPPED
            elif i in flaky and rng.random() < 0.1:
                outcome = FLAKY if rng.random() < 0.3 else FAILED
            elif i in broken and broken[i][0] <= b < broken[i][0] + broken[i][1]:
                outcome = FAILED
            elif i in failing_now and b >= builds - 5:
                outcome = FAILED
            duration = base[i] * rng.lognormvariate(0, 0.05)
            if i in slowing and b >= builds - 10:
                duration *= 1.5
            cases.append((name, outcome, None if outcome == SKIPPED else duration))
        writer.write(path, [], [(run, cases)])
    writer.close()
    return {'flaky': sorted(names[i] for i in flaky), 'slowing': sorted(names[i] for i in slowing),
            'failing_now': sorted(names[i] for i in failing_now),
            'write_s': time.monotonic() - started}


def timed(fn, repeat):
    times = []
    result = None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return {'least_ms': 1000 * min(times), 'median_ms': 1000 * statistics.median(times)}, result


def run_store(args):
    from buildbot_stats.reading.sqlite import openStore

    tmp = tempfile.mkdtemp(prefix='bench_tests_', dir=args.tmpdir)
    try:
        path = os.path.join(tmp, 'stats.sqlite')
        expected = generate(path, args.builds, args.tests)
        results = args.builds * args.tests
        conn = sqlite3.connect(path)
        table = conn.execute("SELECT SUM(pgsize) FROM dbstat WHERE name IN"
                             " ('test_results', 'test_results_failures')").fetchone()[0]
        conn.close()
        out = {'results': results, 'write_s': expected['write_s'],
               'bytes_per_result': table / results,
               'file_bytes_per_result': os.path.getsize(path) / results}
        end = T0 + BUILD_EVERY * args.builds
        ranges = {'all': (None, None, None), '7d': (None, end - 7 * 86400, None)}
        flaky_name = expected['flaky'][0]
        for label, (b, start, stop) in ranges.items():
            figures = {}
            for name, call in (
                    ('flaky', lambda r: r.flakyTests(b, start, stop)),
                    ('failing', lambda r: r.failingTests(b, start, stop)),
                    ('slowest', lambda r: r.slowestTests(b, start, stop)),
                    ('slowing', lambda r: r.slowingTests(b, start, stop)),
                    ('all_tables', lambda r: r.testAnswers(b, start, stop)),
                    ('history', lambda r: r.testHistory(BUILDER, flaky_name, start, stop))):
                def fresh(call=call):
                    with openStore(path) as reader:
                        return call(reader)
                figures[name], answer = timed(fresh, args.repeat)
                if name == 'all_tables':
                    found = {t: [row['test'] for row in answer[t]]
                             for t in ('flaky', 'slowing', 'new_failures')}
                    figures['found'] = {
                        'flaky': len(set(found['flaky']) & set(expected['flaky'])),
                        'flaky_rows': len(found['flaky']),
                        'slowing': len(set(found['slowing']) & set(expected['slowing'])),
                        'slowing_rows': len(found['slowing']),
                        # change detection names the first slower build (the 10th last)
                        'slowing_method': answer['slowing_method'],
                        'slowing_since_right': sum(
                            1 for row in answer['slowing']
                            if (row['since'] or {}).get('number') == args.builds - 9),
                        'failing_now': sorted(set(found['new_failures'])
                                              & set(expected['failing_now'])) ==
                        expected['failing_now'],
                    }
            out[label] = figures
        out['peak_rss_mb'] = harness.peak_rss_mb()
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# -- recording on a real master ----------------------------------------------------------------


class ReactorSlices:
    """The longest run of the reactor thread's own CPU (``time.thread_time``) in one go:
    each call of the reactor's ``runUntilCurrent`` (timed calls, callbacks from threads) and
    ``doIteration`` (I/O callbacks) is a slice. Time waiting for the interpreter lock or in
    ``epoll`` is not CPU: a thread's work shows up as lateness (``LagProbe``), not here."""

    def __init__(self, reactor):
        self.reactor = reactor
        self.longest = 0.0
        self._saved = {}

    def start(self):
        self.longest = 0.0
        for name in ('runUntilCurrent', 'doIteration'):
            original = getattr(self.reactor, name)
            self._saved[name] = original

            def timed(*args, _original=original):
                t = time.thread_time()
                try:
                    return _original(*args)
                finally:
                    spent = time.thread_time() - t
                    if spent > self.longest:
                        self.longest = spent
            setattr(self.reactor, name, timed)

    def stop(self):
        for name, original in self._saved.items():
            setattr(self.reactor, name, original)
        self._saved = {}
        return self.longest


def record_config(variant, args, basedir):
    from buildbot.plugins import schedulers
    from buildbot.plugins import util
    from buildbot.process.buildstep import BuildStep
    from buildbot.worker.local import LocalWorker

    from buildbot_stats import stats

    captures = [stats.CaptureTestHistory()]
    if variant == 'sqlite':
        backend = stats.SQLiteStorageService(path=os.path.join(basedir, 'stats.sqlite'),
                                             captures=captures, name='sqlite')
    else:
        backend = stats.InfluxStorageService(url=f'http://127.0.0.1:{args.influx_port}',
                                             db=args.db, captures=captures, name='influx')
    return {
        'workers': [LocalWorker('w0')],
        'protocols': {'null': {}},
        'builders': [util.BuilderConfig(name=BUILDER, workernames=['w0'],
                                        factory=util.BuildFactory([BuildStep()]))],
        'schedulers': [schedulers.Triggerable(name='bench', builderNames=[BUILDER])],
        'services': [stats.StatsService(storage_backends=[backend], name='StatsService',
                                        catch_up=False)],
        'db_url': 'sqlite:///' + os.path.join(basedir, 'state.sqlite'),
        'buildbotNetUsageData': None,
        'title': 'tests-history',
    }, backend


async def run_record(reactor, args, basedir):
    from twisted.internet import task

    from buildbot.process.results import SUCCESS

    cfg, backend = record_config(args.child, args, basedir)
    master = await harness.start_master(reactor, basedir, cfg)
    svc = master.service_manager.namedServices['StatsService']
    updates = master.data.updates
    builderid = await updates.findBuilderId(BUILDER)
    workerid = next(iter(master.workers.workers.values())).workerid
    names = testNames(args.cases)
    rng = random.Random(5)

    async def buildWithResults():
        buildid, _ = await updates.addBuild(builderid=builderid, buildrequestid=1,
                                            workerid=workerid)
        stepid, _, _ = await updates.addStep(buildid=buildid, name='tests')
        setid = await updates.addTestResultSet(builderid, buildid, stepid, 'JUnit reports',
                                               'pass_fail', 'boolean')
        values = [{'test_name': n, 'value': '0' if rng.random() < 0.01 else '1',
                   'duration_ns': int(rng.lognormvariate(-4, 1.5) * 1e9)} for n in names]
        for i in range(0, len(values), 3000):  # as Buildbot's TestResultSubmitter batches
            await updates.addTestResults(builderid, setid, values[i:i + 3000])
        await updates.completeTestResultSet(setid, tests_passed=0, tests_failed=0)
        await updates.generateNewBuildEvent(buildid)
        return buildid

    async def written(target):
        while True:
            c = backend.counters
            if c.written + c.rejected + c.dropped >= target:
                return
            await backend.flush(60)
            await task.deferLater(reactor, 0.001, lambda: None)

    async def finishOnce(subscribed):
        buildid = await buildWithResults()
        del gc_pauses[:]
        if subscribed:
            await svc.registerConsumers()
        else:
            await svc.removeConsumers()
        target = backend.counters.added + (args.cases + (1 if args.child == 'influx' else 0))
        probe = harness.LagProbe(reactor, interval=0.001)
        probe.start()
        slices.start()
        cpu0, rcpu0 = time.process_time(), time.thread_time()
        await updates.finishBuild(buildid, SUCCESS)
        if subscribed:
            await svc.drain()
            await written(target)
        else:
            await task.deferLater(reactor, 0.05, lambda: None)
        cpu, rcpu = time.process_time() - cpu0, time.thread_time() - rcpu0
        longest = slices.stop()
        gcs = max((p for p, _ in gc_pauses), default=0.0), sum(1 for _, g in gc_pauses if g == 2)
        # the last 50 ms wait of an unsubscribed run is idle: no CPU
        return cpu, rcpu, probe.stop(), longest, gcs

    slices = ReactorSlices(reactor)
    gc_pauses = []
    gc_started = {}

    def on_gc(phase, info):
        if phase == 'start':
            gc_started['t'] = (time.perf_counter(), info['generation'])
        elif 't' in gc_started:
            t, generation = gc_started.pop('t')
            gc_pauses.append((time.perf_counter() - t, generation))

    gc.callbacks.append(on_gc)
    await finishOnce(True)  # warm-up: imports, caches, the store's first open
    on, off = [], []
    for _ in range(args.repeat):
        off.append(await finishOnce(False))
        on.append(await finishOnce(True))
    result = {
        'cases': args.cases,
        'on_cpu_ms': [1000 * run[0] for run in on],
        'off_cpu_ms': [1000 * run[0] for run in off],
        'record_cpu_ms': 1000 * (min(run[0] for run in on) - min(run[0] for run in off)),
        'on_reactor_cpu_ms': 1000 * min(run[1] for run in on),
        'off_reactor_cpu_ms': 1000 * min(run[1] for run in off),
        # the longest reactor slice of each run, the least and the most of the runs
        'on_longest_slice_ms': [1000 * run[3] for run in on],
        'off_longest_slice_ms': [1000 * run[3] for run in off],
        'on_worst_lag_ms': 1000 * max(run[2] for run in on),
        'off_worst_lag_ms': 1000 * max(run[2] for run in off),
        # the garbage collector's longest pause and its full collections, in each run
        'on_gc': [(1000 * run[4][0], run[4][1]) for run in on],
        'off_gc': [(1000 * run[4][0], run[4][1]) for run in off],
        'counters': backend.counters.asDict(),
        'peak_rss_mb': harness.peak_rss_mb(),
    }
    await master.stopService()
    await master.db.pool.stop()
    return result


def child(args):
    if args.child == 'store':
        harness.emit(run_store(args))
        return
    from twisted.internet import defer
    from twisted.internet import task

    basedir = tempfile.mkdtemp(prefix=f'bench_tests_{args.child}_', dir=args.tmpdir)
    out = {}

    async def main(reactor):
        try:
            out.update(await run_record(reactor, args, basedir))
        except BaseException:
            traceback.print_exc()
            raise

    try:
        task.react(lambda reactor: defer.ensureDeferred(main(reactor)))
    finally:
        shutil.rmtree(basedir, ignore_errors=True)
        if out:
            harness.emit(out)


def parent(args):
    harness.exit_on_sigterm()
    out = {'bench': 'tests_history', 'machine': harness.machine(), 'builds': args.builds,
           'tests': args.tests, 'cases': args.cases, 'repeat': args.repeat,
           'load': os.getloadavg()}
    common = ['--builds', args.builds, '--tests', args.tests, '--cases', args.cases,
              '--repeat', args.repeat]
    if args.tmpdir:
        common += ['--tmpdir', args.tmpdir]
    if args.part in ('store', 'both'):
        out['store'] = harness.run_child(__file__, 'store', common)
    if args.part in ('record', 'both'):
        out['record_sqlite'] = harness.run_child(__file__, 'sqlite', common)
        server = harness.start_influxdb()
        try:
            server.create_database('tests_history')
            out['record_influx'] = harness.run_child(
                __file__, 'influx', common + ['--influx-port', server.port, '--db',
                                              'tests_history'])
        finally:
            server.cleanup()
    harness.emit(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--part', choices=('store', 'record', 'both'), default='both')
    p.add_argument('--builds', type=int, default=1000, help="builds in the store")
    p.add_argument('--tests', type=int, default=10000, help="test cases per build")
    p.add_argument('--cases', type=int, default=10000, help="results of a recorded build")
    p.add_argument('--repeat', type=int, default=5)
    p.add_argument('--tmpdir', default=None, help="where the store and masters go")
    harness.run_main(p, child, parent, argv)


if __name__ == '__main__':
    main()
