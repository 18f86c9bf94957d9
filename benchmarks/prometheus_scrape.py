"""Prometheus scrape: the cost of ``/metrics`` with 500 builders x 20 steps worth of series.

The backend is filled with the points of ``--builds-per-builder`` builds of each of
``--builders`` builders (two results each), ``--steps`` steps per build and test counts, so
that every series a busy master has exists: a counter and a duration histogram per builder
and result, queue and turnaround histograms per builder, a step histogram per builder and
step, test counters per builder and outcome. The present is computed at each scrape from
``--builders`` builders, a running build on every tenth and a pending request on every
fifth (the data API reads themselves run in Buildbot's database thread: not measured here).

Then ``--scrapes`` scrapes go through the backend's own HTTP server, one after the other,
by a client in a process of its own, started before the backend is filled (Prometheus is
remote: a client in the benchmark's process would add its garbage collections to the
figures, one forked per scrape the cost of forking a large process), while a producer keeps
handing the backend points (100 every 10 ms) and a probe measures the reactor's lag every
10 ms.

Variants, each in a fresh process:

* ``ours``: :meth:`PrometheusStorageService.scrape`: the snapshot, then the exposition a
  slice of about 256 samples at a time on the reactor, streamed to the client;
* ``thread``: the snapshot on the reactor, the whole exposition in a thread
  (``deferToThread``), then written at once;
* ``inline``: the same registry serialized on the reactor thread, as
  ``prometheus_client.twisted.MetricsResource`` does (the reference: what not to do);
* ``none``: no scrape, the producer and the probe alone for ``--scrapes`` seconds (the lag
  the process has anyway: its own garbage collections, the machine's other jobs).

It prints one JSON line: per variant the series and samples exposed, the body size, scrape
wall time (median and worst), the reactor's worst lag during the scrapes and the CPU
seconds of the process.

    python benchmarks/prometheus_scrape.py --builders 500 --steps 20
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
import traceback
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import harness  # noqa: E402

VARIANTS = ('none', 'ours', 'thread', 'inline')

# The scraper: one process, started while the benchmark's process is small (a fork of the
# filled process would cost the reactor tens of milliseconds per scrape, which a remote
# Prometheus does not); it reads a URL per line and answers "seconds bytes".
CLIENT = ('import sys, time, urllib.request\n'
          'for url in sys.stdin:\n'
          '    t = time.monotonic()\n'
          '    body = urllib.request.urlopen(url.strip(), timeout=600).read()\n'
          '    print(time.monotonic() - t, len(body), flush=True)\n')
RESULTS = ('success', 'failure')


def fill(backend, builders, steps, builds):
    tags0 = {'worker': 'w1', 'branch': 'main', 'repository': 'r', 'project': 'p'}
    for b in range(builders):
        builder = f'builder-{b:04d}'
        for n in range(builds):
            result = RESULTS[n % 2]
            tags = dict(tags0, builder_name=builder, result=result)
            duration = 30.0 + (b * 7 + n * 13) % 3000
            backend.postStatsValue({'duration': duration, 'build_number': n, 'result_code': 0},
                                   'builds', tags)
            backend.postStatsValue({'queue_time': (n * 5) % 600, 'turnaround_time': duration,
                                    'build_number': n}, 'build_requests', tags)
            for s in range(steps):
                backend.postStatsValue({'duration': (s * 11 + n) % 900, 'build_number': n},
                                       'steps', dict(tags, step_name=f'step-{s:02d}'))
            backend.postStatsValue({'passed': 100, 'failed': n % 3, 'skipped': 4,
                                    'build_number': n}, 'tests', tags)


def presentData(builders, now):
    import datetime

    names = [{'builderid': b, 'name': f'builder-{b:04d}', 'masterids': [1]}
             for b in range(builders)]
    running = [{'builderid': b, 'masterid': 1, 'workerid': b} for b in range(0, builders, 10)]
    pending = [{'builderid': b, 'submitted_at': datetime.datetime.fromtimestamp(
        now - b, datetime.timezone.utc)} for b in range(0, builders, 5)]
    workers = [{'connected_to': [{'masterid': 1}]} for _ in range(builders // 10)]
    return names, running, pending, workers


def child(args):
    from twisted.internet import defer
    from twisted.internet import reactor
    from twisted.internet import task
    from twisted.internet import protocol
    from twisted.internet import threads

    from buildbot_stats import stats
    from buildbot_stats.storage.prometheus import snapshot as prometheus
    from buildbot_stats.storage.prometheus.http import metricsSite

    result = {}

    class Scraper(protocol.ProcessProtocol):
        def __init__(self):
            self.waiting = []
            self.buffer = b''

        def outReceived(self, data):
            self.buffer += data
            while b'\n' in self.buffer:
                line, self.buffer = self.buffer.split(b'\n', 1)
                seconds, size = line.split()
                self.waiting.pop(0).callback((float(seconds), int(size)))

    scraper = Scraper()
    reactor.spawnProcess(scraper, sys.executable, [sys.executable, '-u', '-c', CLIENT],
                         env=os.environ)

    backend = stats.PrometheusStorageService(port=None, name='prom')
    backend.reconfigService(port=None)
    t0 = time.monotonic()
    fill(backend, args.builders, args.steps, args.builds_per_builder)
    result['fill_s'] = time.monotonic() - t0
    result['points'] = backend.counters.written

    def snapshot():
        data = presentData(args.builders, reactor.seconds())
        builders, running, pending, workers = data
        backend._present.families = prometheus.presentFamilies(
            *prometheus.buildersOfMaster(builders, 1), running, pending, workers, 1,
            reactor.seconds())
        backend._health.families = prometheus.healthFamilies(
            {'backends': {backend.name: backend.metrics()}})
        return defer.succeed(None)

    backend.snapshot = snapshot
    # what the backend reads of a master: its reactor
    backend.parent = type('Parent', (), {'master': type('Master', (), {'reactor': reactor})})

    def wholeScrape(serialize):
        @defer.inlineCallbacks
        def scrape(accept=None, accept_encoding=None, start=None, write=None):
            yield snapshot()
            body, headers = yield serialize(prometheus.exposition, backend.registry, accept,
                                            accept_encoding)
            start(headers)
            write(body)
            return headers
        return scrape

    pieceTimes = []  # (CPU, wall) seconds of each piece the reactor wrote

    if args.child == 'ours':
        from buildbot_stats.storage.prometheus import backend as service_module

        sliced = service_module.slicedExposition

        def timedExposition(sources, accept):
            headers, pieces = sliced(sources, accept)

            def timed():
                while True:
                    cpu, wall = time.thread_time(), time.perf_counter()
                    try:
                        piece = next(pieces)
                    except StopIteration:
                        return
                    pieceTimes.append((time.thread_time() - cpu, time.perf_counter() - wall))
                    yield piece
            return headers, timed()

        service_module.slicedExposition = timedExposition
    elif args.child == 'inline':
        backend.scrape = wholeScrape(lambda f, *a: defer.succeed(f(*a)))
    elif args.child == 'thread':
        backend.scrape = wholeScrape(threads.deferToThread)

    port = reactor.listenTCP(0, metricsSite(lambda: backend), interface='127.0.0.1')
    url = f'http://127.0.0.1:{port.getHost().port}/metrics'

    def get():
        with urllib.request.urlopen(url, timeout=600) as resp:
            return resp.read()

    def scrapeFromAnotherProcess():
        d = defer.Deferred()
        scraper.waiting.append(d)
        scraper.transport.write(url.encode() + b'\n')
        return d

    produced = [0]

    def produce():
        for i in range(100):
            n = produced[0] = produced[0] + 1
            backend.postStatsValue({'duration': float(n % 900), 'build_number': n}, 'steps',
                                   {'builder_name': f'builder-{n % args.builders:04d}',
                                    'step_name': f'step-{n % args.steps:02d}',
                                    'result': 'success'})

    @defer.inlineCallbacks
    def run():
        try:
            # one warm-up scrape: first-use imports and allocations
            body = yield threads.deferToThread(get)
            lines = body.decode().splitlines()
            result['body_bytes'] = len(body)
            result['samples'] = sum(1 for ln in lines if ln and not ln.startswith('#'))
            result['families'] = sum(1 for ln in lines if ln.startswith('# TYPE'))
            gcStart, gcPauses = [], []

            def gcWatch(phase, info):
                # garbage collections during the scrapes: a full one stops every thread
                if phase == 'start':
                    gcStart[:] = [time.perf_counter()]
                elif gcStart:
                    gcPauses.append((info['generation'], time.perf_counter() - gcStart[0]))

            gc.callbacks.append(gcWatch)
            producer = task.LoopingCall(produce)
            producer.start(0.01)
            probe = harness.LagProbe(reactor)
            probe.start()
            cpu0 = time.process_time()
            times = []
            if args.child == 'none':
                yield task.deferLater(reactor, args.scrapes, lambda: None)
            for _ in range(args.scrapes if args.child != 'none' else 0):
                seconds, size = yield scrapeFromAnotherProcess()
                times.append(seconds)
            result['cpu_s'] = time.process_time() - cpu0
            gc.callbacks.remove(gcWatch)
            result['gc_full'] = sum(1 for g, _ in gcPauses if g == 2)
            result['gc_max_ms'] = max((p for _, p in gcPauses), default=0) * 1000
            result['max_lag_ms'] = probe.stop() * 1000
            result['late_ticks'] = probe.late
            producer.stop()
            if times:
                result['scrape_median_s'] = statistics.median(times)
                result['scrape_max_s'] = max(times)
            result['points_during_scrapes'] = produced[0]
            result['peak_rss_mb'] = harness.peak_rss_mb()
            if pieceTimes:
                # the reactor's own work per piece: CPU time is what the machine's other
                # jobs cannot inflate
                result['pieces'] = len(pieceTimes)
                result['piece_cpu_max_ms'] = max(c for c, _ in pieceTimes) * 1000
                result['piece_cpu_median_ms'] = statistics.median(
                    c for c, _ in pieceTimes) * 1000
                result['piece_wall_max_ms'] = max(w for _, w in pieceTimes) * 1000
        except Exception:
            result['error'] = traceback.format_exc()
        finally:
            scraper.transport.closeStdin()
            yield port.stopListening()
            reactor.stop()

    reactor.callWhenRunning(run)
    reactor.run()
    harness.emit(result)


def parent(args):
    variants = [v for v in args.variants.split(',') if v]
    result = {'bench': 'prometheus_scrape', 'builders': args.builders, 'steps': args.steps,
              'scrapes': args.scrapes, 'machine': harness.machine()}
    passed = ['--builders', args.builders, '--steps', args.steps, '--scrapes', args.scrapes,
              '--builds-per-builder', args.builds_per_builder]
    for variant in variants:
        result[variant] = harness.run_child(os.path.abspath(__file__), variant, passed)
    harness.emit(result)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--builders', type=int, default=500)
    parser.add_argument('--steps', type=int, default=20)
    parser.add_argument('--builds-per-builder', type=int, default=4)
    parser.add_argument('--scrapes', type=int, default=10)
    parser.add_argument('--variants', default=','.join(VARIANTS))
    harness.run_main(parser, child, parent, argv)


if __name__ == '__main__':
    main()
