"""PrometheusStorageService on a real master with a real worker, scraped by a real Prometheus
(Debian's ``prometheus`` package) every second; the PromQL answers must match the builds."""

from __future__ import annotations

import math
import os
import socket

from twisted.internet import defer
from twisted.internet import reactor
from twisted.internet import task
from twisted.internet import threads
from twisted.python import log
from twisted.trial import unittest
from twisted.web.client import HTTPConnectionPool

import treq

from buildbot.data import resultspec
from buildbot.plugins import schedulers
from buildbot.plugins import steps
from buildbot.plugins import util
from buildbot.process.buildstep import BuildStep
from buildbot.process.results import FAILURE
from buildbot.process.results import SUCCESS
from buildbot.test.util.integration import RunMasterBase

from buildbot_stats import stats
from tests.servers import PROMETHEUS
from tests.servers import PrometheusServer
from tests.servers import free_port
from tests.test_integration_buildstats import RunTests
from tests.test_prometheus_unit import docQueries

BUCKETS = [0.5, 1, 2, 3, 5, 10, 60]
DEADLINE = 60.0  # seconds a PromQL answer may take to match (scrapes are every second)


class Gate:
    """Build steps wait at the gate until the test opens it."""

    def __init__(self):
        self.isOpen = False
        self.waiting = []
        self.entered = defer.Deferred()

    def wait(self):
        if self.isOpen:
            return defer.succeed(None)
        d = defer.Deferred()
        self.waiting.append(d)
        if not self.entered.called:
            self.entered.callback(None)
        return d

    def open(self):
        self.isOpen = True
        waiting, self.waiting = self.waiting, []
        for d in waiting:
            d.callback(None)


GATE = Gate()


class Hold(BuildStep):
    """Waits at the module's gate: holds a build (and the worker) while the test looks."""

    name = 'hold'

    @defer.inlineCallbacks
    def run(self):
        yield GATE.wait()
        return SUCCESS


def masterConfig(backends, www_port=None):
    c = {}
    c['schedulers'] = [
        schedulers.ForceScheduler(name="force", builderNames=["good", "bad", "held"]),
    ]
    good = util.BuildFactory()
    good.addStep(steps.ShellCommand(name='compile', command=['echo', 'compiled']))
    good.addStep(RunTests())
    bad = util.BuildFactory()
    bad.addStep(steps.ShellCommand(name='compile', command=['false']))
    held = util.BuildFactory()
    held.addStep(Hold())
    c['builders'] = [
        util.BuilderConfig(name=name, workernames=["local1"], factory=factory)
        for name, factory in [('good', good), ('bad', bad), ('held', held)]
    ]
    c['services'] = [stats.StatsService(storage_backends=backends, name="StatsService")]
    if www_port is not None:
        c['www'] = {'port': f'tcp:{www_port}:interface=127.0.0.1',
                    'plugins': {'metrics': {}}}
    return c


def histogramQuantile(q, values, bounds):
    """Prometheus' histogram_quantile of the observations ``values`` (its interpolation)."""
    bounds = list(bounds) + [math.inf]
    counts = [sum(1 for v in values if v <= b) for b in bounds]
    rank = q * counts[-1]
    for i, (bound, count) in enumerate(zip(bounds, counts)):
        if count >= rank:
            if bound == math.inf:
                return bounds[-2]
            lower, below = (0.0, 0) if i == 0 else (bounds[i - 1], counts[i - 1])
            return lower + (bound - lower) * (rank - below) / (count - below)
    raise AssertionError('no bucket')


def httpGet(url, **kwargs):
    """treq.get on a connection of its own, closed after the answer (a clean reactor)."""
    return treq.get(url, pool=HTTPConnectionPool(reactor, persistent=False), **kwargs)


def seconds(start, end):
    return (end - start).total_seconds()


class PrometheusRealMasterTest(RunMasterBase):
    proto = 'pb'
    timeout = 180

    def setUp(self):
        if not os.access(PROMETHEUS, os.X_OK):
            raise unittest.SkipTest(f"{PROMETHEUS} not found: install Debian's 'prometheus' "
                                    "package (scripts/install-servers.sh does)")
        global GATE
        GATE = Gate()
        self.addCleanup(GATE.open)

    @defer.inlineCallbacks
    def promql(self, expr, *labels, want=None):
        """Poll the query until ``want(answer)`` holds (or DEADLINE passes); the answer."""
        deadline = reactor.seconds() + DEADLINE
        while True:
            answer = yield threads.deferToThread(self.prometheus.values, expr, *labels)
            if want is None or want(answer) or reactor.seconds() > deadline:
                return answer
            yield task.deferLater(reactor, 0.25, lambda: None)

    @defer.inlineCallbacks
    def promqlEquals(self, expr, labels, expected):
        answer = yield self.promql(expr, *labels, want=lambda a: a == expected)
        self.assertEqual(answer, expected, expr)

    @defer.inlineCallbacks
    def force(self, builder):
        """Force a build; a Deferred firing when its buildset completes."""
        done = defer.Deferred()
        bsids = []

        def complete(key, msg):
            if msg['bsid'] in bsids and not done.called:
                done.callback(msg['bsid'])

        consumer = yield self.master.mq.startConsuming(
            complete, ('buildsets', None, 'complete'))
        bsid, _ = yield self.master.data.control(
            'force', {'builderNames': [builder], 'reason': 'prometheus test'},
            ('forceschedulers', 'force'))
        bsids.append(bsid)
        done.addBoth(lambda r: (consumer.stopConsuming(), r)[1])
        return done

    @defer.inlineCallbacks
    def buildsOf(self, builder):
        builders = yield self.master.data.get(('builders',))
        builderid = [b['builderid'] for b in builders if b['name'] == builder][0]
        builds = yield self.master.data.get(
            ('builds',), filters=[resultspec.Filter('builderid', 'eq', [builderid])])
        return builds

    @defer.inlineCallbacks
    def test_promql_answers_match_the_builds(self):
        port = free_port()
        captures = [
            stats.CaptureBuildResults(), stats.CaptureQueueTimes(), stats.CaptureStepTimes(),
            stats.CaptureTestResults(),
            stats.CaptureBuildDurationAllBuilders(report_in='minutes'),
            stats.CaptureBuildStartTimeAllBuilders(),
        ]
        prom = stats.PrometheusStorageService(port=port, captures=captures, buckets=BUCKETS,
                                              name='prom')
        mem = stats.InMemoryStorageService(captures[:2], name='mem')
        self.prometheus = PrometheusServer.start_new(targets=[f'127.0.0.1:{port}'])
        self.addCleanup(self.prometheus.cleanup)
        yield self.setup_master(masterConfig([prom, mem]))
        self.assertEqual(prom.listeningPort, port)

        for builder in ['good', 'bad', 'good']:
            yield self.doForceBuild(forceParams={'builderNames': [builder]})

        # -- the present: one build held on the worker, a second request waiting behind it
        first = yield self.force('held')
        yield GATE.entered
        second = yield self.force('held')
        yield self.promqlEquals('buildbot_builds_running', ['builder'],
                                {('good',): 0, ('bad',): 0, ('held',): 1})
        yield self.promqlEquals('buildbot_build_requests_pending', ['builder'],
                                {('good',): 0, ('bad',): 0, ('held',): 1})
        yield self.promqlEquals('buildbot_workers_connected', [], {(): 1})
        yield self.promqlEquals('buildbot_workers_busy', [], {(): 1})
        age = yield self.promql('buildbot_build_requests_oldest_age_seconds', 'builder',
                                want=lambda a: a.get(('held',), 0) >= 2)
        self.assertGreaterEqual(age[('held',)], 2)
        self.assertEqual(age[('good',)], 0)
        GATE.open()
        yield first
        yield second
        yield self.promqlEquals('buildbot_build_requests_pending', ['builder'],
                                {('good',): 0, ('bad',): 0, ('held',): 0})
        yield self.promqlEquals('buildbot_builds_running', ['builder'],
                                {('good',): 0, ('bad',): 0, ('held',): 0})

        # -- counters and histograms of the finished builds
        yield self.promqlEquals(
            'sum by (builder, result) (buildbot_builds_total)', ['builder', 'result'],
            {('good', 'success'): 2, ('bad', 'failure'): 1, ('held', 'success'): 2})
        builds = {}
        for builder in ['good', 'bad', 'held']:
            builds[builder] = yield self.buildsOf(builder)
        self.assertEqual([b['results'] for b in builds['bad']], [FAILURE])
        durations = {b: [seconds(x['started_at'], x['complete_at']) for x in builds[b]]
                     for b in builds}
        expected = {(b,): histogramQuantile(0.9, durations[b], BUCKETS) for b in builds}
        answer = yield self.promql(
            'histogram_quantile(0.9, sum by (le, builder) '
            '(buildbot_build_duration_seconds_bucket))', 'builder',
            want=lambda a: set(a) == set(expected))
        self.assertEqual(set(answer), set(expected))
        for key, value in expected.items():
            self.assertAlmostEqual(answer[key], value, places=6, msg=key)
        # the held builds lasted at least the 2 s the test waited
        self.assertGreaterEqual(max(durations['held']), 2)

        queued = []
        for build in builds['held']:
            request = yield self.master.data.get(('buildrequests', build['buildrequestid']))
            queued.append(build['started_at'].timestamp() - request['submitted_at'].timestamp())
        answer = yield self.promql('buildbot_build_queue_seconds_sum', 'builder',
                                   want=lambda a: ('held',) in a)
        self.assertAlmostEqual(answer[('held',)], sum(queued), places=6)
        # the second request waited for the first build to end
        self.assertGreaterEqual(max(queued), 2)
        yield self.promqlEquals('buildbot_build_queue_seconds_count', ['builder'],
                                {('good',): 2, ('bad',): 1, ('held',): 2})
        yield self.promqlEquals('buildbot_step_duration_seconds_count{step="compile"}',
                                ['builder'], {('good',): 2, ('bad',): 1})
        yield self.promqlEquals('buildbot_tests_total', ['builder', 'outcome'],
                                {('good', 'passed'): 6, ('good', 'failed'): 2,
                                 ('good', 'skipped'): 4})

        # -- the seed captures: last values, in seconds whatever report_in says
        last = {b: max(builds[b], key=lambda x: x['number']) for b in builds}
        answer = yield self.promql('buildbot_last_build_duration_seconds', 'builder',
                                   want=lambda a: len(a) == 3)
        self.assertEqual(set(answer), {('good',), ('bad',), ('held',)})
        for b in builds:
            self.assertAlmostEqual(answer[(b,)],
                                   seconds(last[b]['started_at'], last[b]['complete_at']))
        yield self.promqlEquals('buildbot_last_build_start_timestamp_seconds', ['builder'],
                                {(b,): last[b]['started_at'].timestamp() for b in builds})

        # -- the service's health: the delivery counters of both backends
        stats_service = self.master.service_manager.namedServices['StatsService']
        counts = stats_service.metrics()['backends']
        self.assertEqual(counts['mem']['written'], len(mem.points))
        self.assertEqual(counts['mem']['written'], 2 * 5)  # builds + build_requests
        yield self.promqlEquals(
            'buildbot_stats_points_written_total', ['backend'],
            {('prom',): counts['prom']['written'], ('mem',): counts['mem']['written']})
        yield self.promqlEquals('buildbot_stats_points_rejected_total', ['backend'],
                                {('prom',): 0, ('mem',): 0})
        yield self.promqlEquals('buildbot_stats_capture_errors_total', [], {(): 0})
        self.assertEqual(self.prometheus.targets_health()[0][1], 'up')
        # every query of the docs is one Prometheus takes (an error raises)
        for query in docQueries():
            yield threads.deferToThread(self.prometheus.query, query)
        answer = yield threads.deferToThread(self.prometheus.values, docQueries()[0],
                                             'builder', 'result')
        self.assertEqual(answer, {('good', 'success'): 2, ('bad', 'failure'): 1,
                                  ('held', 'success'): 2})

        # -- both exposition formats, by the Accept header
        url = f'http://127.0.0.1:{port}/metrics'
        response = yield httpGet(url)
        text = yield response.text()
        self.assertEqual(response.headers.getRawHeaders('content-type'),
                         ['text/plain; version=0.0.4; charset=utf-8'])
        self.assertIn('buildbot_builds_total{builder="bad",result="failure"} 1.0\n', text)
        response = yield httpGet(url, headers={
            'Accept': 'application/openmetrics-text; version=1.0.0'})
        text = yield response.text()
        self.assertTrue(response.headers.getRawHeaders('content-type')[0].startswith(
            'application/openmetrics-text'))
        self.assertTrue(text.endswith('# EOF\n'))
        self.assertIn('buildbot_builds_total{builder="bad",result="failure"} 1.0\n', text)
        yield self.tested_master.shutdown()
        self.assertIsNone(prom.listeningPort)


class MetricsUnderBuildbotWeb(RunMasterBase):
    """``c['www']['plugins']['metrics'] = {}`` serves the same metrics under Buildbot's
    web server, at /plugins/metrics; a port in use is one log line, not a dead master."""

    proto = 'pb'
    timeout = 120

    @defer.inlineCallbacks
    def test_www_plugin_serves_metrics_and_port_in_use_keeps_master_running(self):
        taken = socket.socket()
        taken.bind(('127.0.0.1', 0))
        taken.listen(1)
        self.addCleanup(taken.close)
        port = taken.getsockname()[1]
        lines = []
        observer = lambda event: lines.append(log.textFromEventDict(event) or '')  # noqa: E731
        log.addObserver(observer)
        self.addCleanup(log.removeObserver, observer)

        prom = stats.PrometheusStorageService(port=port, name='prom')
        www_port = free_port()
        yield self.setup_master(masterConfig([prom], www_port=www_port))
        errors = [line for line in lines if 'cannot serve /metrics' in line]
        self.assertEqual(len(errors), 1, errors)
        self.assertIn(f"prom: cannot serve /metrics on 127.0.0.1:{port}", errors[0])
        self.assertIn("the master keeps running", errors[0])
        self.assertIsNone(prom.listeningPort)

        build = yield self.doForceBuild(forceParams={'builderNames': ['bad']})
        self.assertEqual(build['results'], FAILURE)
        base = f'http://127.0.0.1:{www_port}/plugins/metrics'
        deadline = reactor.seconds() + DEADLINE
        while True:
            response = yield httpGet(base)
            text = yield response.text()
            if 'result="failure"' in text or reactor.seconds() > deadline:
                break
            yield task.deferLater(reactor, 0.2, lambda: None)
        self.assertEqual(response.code, 200, text)
        self.assertIn('buildbot_builds_total{builder="bad",result="failure"} 1.0\n', text)
        self.assertIn('buildbot_workers_connected 1.0\n', text)
        response = yield httpGet(base + '/scripts.js')
        self.assertEqual(response.code, 200)
        body = yield response.content()
        self.assertEqual(body, b'')
        yield self.tested_master.shutdown()
