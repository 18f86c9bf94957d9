"""Service cost: the stats' own CPU per build, without the master's noise.

``burst.py --mode finish`` measures the whole master, whose CPU varies by more from run to
run than the stats cost on a shared machine. This script measures only what the stats
service does per build, on Buildbot's fake master (its MQ, fake clock, a real in-memory
database whose queries run on the calling thread): for each of N builds it delivers the
messages a build produces that the service listens to (the property update, ``builds new``,
the ``yieldMetricsValue`` messages and ``finished``) and calls ``yieldMetricsValue``
``--calls`` times, with the seed's four captures per builder plus ``CaptureDataAllBuilders``
(4 + calls points per build). The look-ups are warm, as on a running master. The fake clock
moves ``1 / --rate`` seconds per build, so the build-data record (one row per build, the
builds ending within a second in one transaction, see docs/history.rst) is written as on a
master finishing ``--rate`` builds a second; ``recorder`` counts its transactions and rows.
``us_per_build_not_recording`` is the same with ``StatsService(record_data=False)``.
Variants: ``memory`` (``InMemoryStorageService``) and ``influx`` (``InfluxStorageService``
up to the encoded line in its buffer; nothing is sent). The figure is the reactor thread's
CPU (``time.thread_time``; the record's database work runs on it here), least of
``--repeat`` runs, in microseconds per build. What it leaves out: the simple MQ matching
each message against the service's consumers, and the garbage collector's share.

    python benchmarks/service_cost.py --n 20000 --repeat 5 [--calls 1] [--rate 100]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import importlib  # noqa: E402

# the test suite's filters of third-party warnings (buildbot.test makes warnings errors)
importlib.import_module('tests')
from buildbot.test.reactor import TestReactorMixin  # noqa: E402
from twisted.internet import defer  # noqa: E402
from twisted.trial import unittest  # noqa: E402
from twisted.web.resource import Resource  # noqa: E402
from treq.testing import StubTreq  # noqa: E402

from buildbot_stats.history import recorder as recorder_module  # noqa: E402

ARGS = {'n': 20000, 'repeat': 5, 'calls': 1, 'rate': 100.0}


class Accept(Resource):
    """An in-memory InfluxDB for the final flush: every write accepted."""

    isLeaf = True

    def render_POST(self, request):
        request.setResponseCode(204)
        return b''


def captures():
    from benchmarks.captures import seedCaptures

    return seedCaptures('buildnumber', 'bench')


class ServiceCost(TestReactorMixin, unittest.TestCase):

    def setUp(self):
        self.setup_test_reactor()

    @defer.inlineCallbacks
    def measure(self, variant, record=True):
        from buildbot.test.fake import fakemaster

        from buildbot_stats import stats

        master = yield fakemaster.make_master(self, wantData=True, wantMq=True, wantDb=True)
        # messages as the data API gives them (datetimes), as the real MQ delivers them
        master.mq.verifyMessages = False
        if variant == 'memory':
            backend = stats.InMemoryStorageService(captures(), name='memory')
        else:
            backend = stats.InfluxStorageService(
                'http://127.0.0.1:1', db='bench', captures=captures(), name='influx',
                reactor=self.reactor, batch_size=10_000_000, buffer_limit=10_000_000,
                http_client=StubTreq(Accept()))
        # record_data=False: what the captures cost, without keeping the data as Buildbot
        # build data
        svc = stats.StatsService(storage_backends=[backend], catch_up=False, record_data=record)
        yield svc.setServiceParent(master)
        # started and never stopped: stopping would flush to the stub on a fake clock;
        # the process ends with the measurement
        yield master.startService()
        svc.lookups.builder_names.put(1, 'b0')
        mq = master.mq
        start = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
        best = None
        buildid = 0
        for _ in range(ARGS['repeat']):
            builds = []
            for _ in range(ARGS['n']):
                buildid += 1
                builds.append({
                    'buildid': buildid, 'number': buildid, 'builderid': 1,
                    'buildrequestid': 1, 'workerid': 1, 'masterid': master.masterid,
                    'started_at': start, 'complete_at': start + datetime.timedelta(seconds=5),
                    'results': 0, 'state_string': 'finished', 'locks_duration_s': 0,
                    'properties': None})
            step = 1.0 / ARGS['rate']
            cpu0 = time.thread_time()
            for b in builds:
                key = str(b['buildid'])
                mq.callConsumer(('builds', key, 'properties', 'update'),
                                {'buildnumber': (b['number'], 'burst')})
                mq.callConsumer(('builds', key, 'new'), b)
                for _ in range(ARGS['calls']):
                    svc.yieldMetricsValue('bench', {'value': 1.0}, b['buildid'])
                    mq.callConsumer(('stats-yieldMetricsValue', 'stats-yield-data'),
                                    mq.productions[-1][1])
                    mq.clearProductions()
                mq.callConsumer(('builders', '1', 'builds', key, 'finished'), b)
                self.reactor.advance(step)
            # the last builds' record
            self.reactor.advance(recorder_module.WRITE_INTERVAL)
            cpu = time.thread_time() - cpu0
            best = cpu if best is None else min(best, cpu)
        self.assertEqual(svc.capture_errors, 0)
        recorder = svc.build_data_recorder
        out = {'transactions': recorder.writes, 'rows': recorder.rows,
               'unrecorded': recorder.unrecorded}
        self.assertEqual(recorder.rows, ARGS['n'] * ARGS['repeat'] if record else 0)
        self.assertEqual(backend.counters.added,
                         (4 + ARGS['calls']) * ARGS['n'] * ARGS['repeat'])
        return 1e6 * best / ARGS['n'], out

    @defer.inlineCallbacks
    def test_cost(self):
        out = {'bench': 'service_cost', 'n': ARGS['n'], 'repeat': ARGS['repeat'],
               'calls': ARGS['calls'], 'rate': ARGS['rate']}
        for variant in ('memory', 'influx'):
            recording, recorder = yield self.measure(variant)
            not_recording, _ = yield self.measure(variant, False)
            out[variant] = {
                'us_per_build': round(recording, 1),
                'us_per_build_not_recording': round(not_recording, 1),
                'us_per_call': round(recording / ARGS['calls'], 1),
                # the build data recorder's transactions and rows, in all the runs
                'recorder': recorder,
            }
        sys.__stdout__.write(json.dumps(out) + '\n')


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--n', type=int, default=ARGS['n'], help='builds per run (default 20000)')
    p.add_argument('--repeat', type=int, default=ARGS['repeat'],
                   help='runs; the least CPU counts (default 5)')
    p.add_argument('--calls', type=int, default=ARGS['calls'],
                   help='yieldMetricsValue calls per build (default 1)')
    p.add_argument('--rate', type=float, default=ARGS['rate'],
                   help='builds finished per second of the fake clock (default 100)')
    args = p.parse_args()
    ARGS.update(n=args.n, repeat=args.repeat, calls=args.calls, rate=args.rate)
    from twisted.trial import reporter

    result = reporter.TreeReporter(sys.stderr)
    unittest.TestSuite([ServiceCost('test_cost')]).run(result)
    result.done()
    sys.exit(0 if result.wasSuccessful() else 1)


if __name__ == '__main__':
    main()
