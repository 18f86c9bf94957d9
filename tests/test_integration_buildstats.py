"""The build statistics captures (results, queue times, steps, tests) on a real master with
a real worker (PB over loopback): builds that succeed, warn, fail and get cancelled, and a
step that produces test results."""

from __future__ import annotations

import re

from twisted.internet import defer

from buildbot.plugins import schedulers
from buildbot.plugins import steps
from buildbot.plugins import util
from buildbot.process.buildstep import BuildStep
from buildbot.process.results import CANCELLED
from buildbot.process.results import FAILURE
from buildbot.process.results import SUCCESS
from buildbot.process.results import WARNINGS
from buildbot.process.results import Results
from buildbot.test.util.integration import RunMasterBase

from buildbot_stats import stats

SOURCE = {'branch': 'main', 'repository': 'https://git.example.org/demo.git',
          'project': 'demo'}
EXTRA = {'master': 'm1', 'env': 'ci'}


class RunTests(BuildStep):
    """Reports 3 passed and 1 failed test, and 2 skipped ones, as Buildbot test results."""

    name = 'unit-tests'

    @defer.inlineCallbacks
    def run(self):
        setid = yield self.addTestResultSet('unit tests', 'pass_fail', 'boolean')
        for test, ok in [('t1', '1'), ('t2', '1'), ('t3', '1'), ('t4', '0')]:
            self.addTestResult(setid, ok, test_name=test)
        skipped = yield self.addTestResultSet('skipped tests', 'skip_only', 'boolean')
        for test in ['t5', 't6']:
            self.addTestResult(skipped, '1', test_name=test)
        return SUCCESS


class Lint(BuildStep):
    name = 'lint'
    warnOnWarnings = True

    def run(self):
        return defer.succeed(WARNINGS)


def masterConfig(backend, **service_kwargs):
    c = {}
    c['schedulers'] = [
        schedulers.ForceScheduler(name="force", builderNames=["good", "warn", "bad", "slow"]),
    ]
    good = util.BuildFactory()
    good.addStep(steps.ShellCommand(name='compile', command=['echo', 'compiled']))
    good.addStep(RunTests())
    warn = util.BuildFactory()
    warn.addStep(Lint())
    bad = util.BuildFactory()
    bad.addStep(steps.ShellCommand(name='compile', command=['false']))
    slow = util.BuildFactory()
    slow.addStep(steps.ShellCommand(name='sleep', command=['sleep', '60']))
    c['builders'] = [
        util.BuilderConfig(name=name, workernames=["local1"], factory=factory)
        for name, factory in [('good', good), ('warn', warn), ('bad', bad), ('slow', slow)]
    ]
    c['services'] = [stats.StatsService(storage_backends=[backend], name="StatsService",
                                        **service_kwargs)]
    return c


def micros(seconds):
    return round(seconds * 1e6)


class BuildStatsRealMasterTest(RunMasterBase):
    proto = 'pb'

    def captures(self):
        return [
            stats.CaptureBuildResults(),                                   # 0
            stats.CaptureQueueTimes(),                                     # 1
            stats.CaptureStepTimes(),                                      # 2
            stats.CaptureTestResults(),                                    # 3
            stats.CaptureStepTimes('good', step_names=[re.compile('unit-.*'), 'nope']),  # 4
            stats.CaptureBuildDurationAllBuilders(),                       # 5 (spec capture)
        ]

    @defer.inlineCallbacks
    def forceBuild(self, builder, stop_on_step=None):
        params = dict(SOURCE, builderNames=[builder], reason='stats test')
        consumer = None
        if stop_on_step is not None:
            # cancel the build as soon as its long step runs on the worker
            def stepStarted(key, step):
                if step['name'] == stop_on_step:
                    self.master.data.control('stop', {'reason': 'cancelled by test'},
                                             ('builds', step['buildid']))
            consumer = yield self.master.mq.startConsuming(
                stepStarted, ('builds', None, 'steps', None, 'started'))
        build = yield self.doForceBuild(wantSteps=True, forceParams=params)
        if consumer is not None:
            yield consumer.stopConsuming()
        request = yield self.master.data.get(('buildrequests', build['buildrequestid']))
        buildset = yield self.master.data.get(('buildsets', request['buildsetid']))
        return build, request, buildset

    @defer.inlineCallbacks
    def test_results_queue_steps_tests_on_real_builds(self):
        backend = stats.InMemoryStorageService(self.captures(), name='mem')
        yield self.setup_master(masterConfig(backend, extra_tags=EXTRA))

        runs = {}
        for builder in ['good', 'warn', 'bad']:
            runs[builder] = yield self.forceBuild(builder)
        runs['slow'] = yield self.forceBuild('slow', stop_on_step='sleep')
        yield self.tested_master.shutdown()

        self.assertEqual({b: runs[b][0]['results'] for b in runs},
                         {'good': SUCCESS, 'warn': WARNINGS, 'bad': FAILURE,
                          'slow': CANCELLED})
        self.assertEqual(
            {b: [s['name'] for s in runs[b][0]['steps']] for b in runs},
            {'good': ['worker_preparation', 'compile', 'unit-tests'],
             'warn': ['worker_preparation', 'lint'],
             'bad': ['worker_preparation', 'compile'],
             'slow': ['worker_preparation', 'sleep']})

        def at(build, when, capture_number):
            return micros(when.timestamp() + build['number'] % 1000 * 1e-3
                          + capture_number * 1e-6)

        expected = []
        for builder, (build, request, buildset) in runs.items():
            tags = dict(EXTRA, builder_name=builder, worker='local1', **SOURCE)
            result = Results[build['results']]
            start, end = build['started_at'], build['complete_at']
            expected.append(('builds', dict(tags, result=result), {
                'result_code': build['results'],
                'success': 1 if build['results'] in (SUCCESS, WARNINGS) else 0,
                'build_number': build['number'],
                'duration': (end - start).total_seconds(),
            }, at(build, end, 0)))
            expected.append(('build_requests', dict(tags, result=result), {
                'build_number': build['number'],
                'queue_time': start.timestamp() - request['submitted_at'].timestamp(),
                'turnaround_time': end.timestamp() - buildset['submitted_at'],
            }, at(build, end, 1)))
            for step in build['steps']:
                point = ('steps', dict(tags, step_name=step['name'],
                                       result=Results[step['results']]), {
                    'step_number': step['number'],
                    'build_number': build['number'],
                    'result_code': step['results'],
                    'duration': (step['complete_at'] - step['started_at']).total_seconds(),
                })
                expected.append(point + (at(build, step['complete_at'], 2),))
                if step['name'] == 'unit-tests':
                    expected.append(point + (at(build, step['complete_at'], 4),))
            # the spec capture: historical series and tags, plus the extra tags
            expected.append((f'{builder}-build-times',
                             dict(EXTRA, builder_name=builder,
                                  build_number=str(build['number'])),
                             {'duration': (end - start).total_seconds()},
                             micros(end.timestamp() + 5e-6)))
        good = runs['good'][0]
        expected.append(('tests', dict(EXTRA, builder_name='good', worker='local1',
                                       result='success', **SOURCE), {
            'passed': 3, 'failed': 1, 'skipped': 2, 'total': 6, 'result_sets': 2,
            'build_number': good['number'],
        }, at(good, good['complete_at'], 3)))

        def key(series, tags, fields, ts):
            return (series, sorted(tags.items()), sorted(fields.items()), ts)

        got = sorted(key(p.series, p.tags, p.fields, micros(p.time))
                     for p in backend.points)
        self.assertEqual(got, sorted(key(*e) for e in expected))
        # every step of the cancelled build: the interrupted one is cancelled too
        slow_steps = [p for p in backend.points
                      if p.series == 'steps' and p.tags['builder_name'] == 'slow']
        self.assertEqual([p.tags['result'] for p in slow_steps], ['success', 'cancelled'])
        svc = self.master.service_manager.namedServices['StatsService']
        self.assertEqual(svc.capture_errors, 0)
        self.assertEqual(svc.tag_policy.demoted, set())
