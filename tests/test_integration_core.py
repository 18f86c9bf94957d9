"""A real master, a real worker (over PB on loopback) and real builds, with every spec
capture recording into the in-memory backend."""

from __future__ import annotations

from twisted.internet import defer

from buildbot.plugins import schedulers
from buildbot.plugins import steps
from buildbot.plugins import util
from buildbot.process.buildstep import BuildStep
from buildbot.process.results import SUCCESS
from buildbot.test.util.integration import RunMasterBase

from buildbot_stats import stats


class ReportCoverage(stats.StatsStepMixin, BuildStep):
    name = 'coverage'

    @defer.inlineCallbacks
    def run(self):
        yield self.yieldMetricsValue('coverage', {'percent': 87.5, 'lines': 1200})
        return SUCCESS


def masterConfig(backend):
    c = {}
    c['schedulers'] = [
        schedulers.ForceScheduler(name="force", builderNames=["alpha", "beta"]),
    ]
    alpha = util.BuildFactory()
    alpha.addStep(steps.ShellCommand(command=['echo', 'hello']))
    alpha.addStep(steps.SetProperty(property='warnings', value=3))
    alpha.addStep(ReportCoverage())
    beta = util.BuildFactory()
    beta.addStep(steps.ShellCommand(command=['true']))
    c['builders'] = [
        util.BuilderConfig(name="alpha", workernames=["local1"], factory=alpha),
        util.BuilderConfig(name="beta", workernames=["local1"], factory=beta),
    ]
    c['services'] = [stats.StatsService(storage_backends=[backend], name="StatsService")]
    return c


def epoch(dt):
    return dt.timestamp()


class RealMasterTest(RunMasterBase):
    proto = 'pb'

    def allCaptures(self):
        return [
            stats.CaptureBuildStartTime('alpha'),
            stats.CaptureBuildEndTime('alpha'),
            stats.CaptureBuildDuration('alpha'),
            stats.CaptureBuildDuration('alpha', report_in='minutes'),
            stats.CaptureBuildStartTimeAllBuilders(),
            stats.CaptureBuildEndTimeAllBuilders(),
            stats.CaptureBuildDurationAllBuilders(report_in='hours'),
            stats.CaptureProperty('alpha', 'warnings'),
            stats.CapturePropertyAllBuilders('(buildnumber|warnings)$', regex=True),
            stats.CaptureData('coverage', 'alpha'),
            stats.CaptureDataAllBuilders('coverage'),
        ]

    @defer.inlineCallbacks
    def test_every_spec_capture_on_real_builds(self):
        backend = stats.InMemoryStorageService(self.allCaptures(), name='mem')
        yield self.setup_master(masterConfig(backend))

        build_a = yield self.doForceBuild(
            wantProperties=True, forceParams={'builderNames': ['alpha']})
        build_b = yield self.doForceBuild(
            wantProperties=True, forceParams={'builderNames': ['beta']})
        self.assertEqual(build_a['results'], SUCCESS)
        self.assertEqual(build_b['results'], SUCCESS)
        # stopping the master drains the captures still running
        yield self.tested_master.shutdown()

        a_tags = {'builder_name': 'alpha', 'build_number': str(build_a['number'])}
        b_tags = {'builder_name': 'beta', 'build_number': str(build_b['number'])}
        a_start, a_end = build_a['started_at'], build_a['complete_at']
        b_start, b_end = build_b['started_at'], build_b['complete_at']
        a_secs = (a_end - a_start).total_seconds()
        b_secs = (b_end - b_start).total_seconds()

        us = 1e-6
        expected = [
            # (series, fields, tags, timestamp = build time + capture number microseconds)
            ('alpha-build-times', {'start-time': a_start.isoformat()}, a_tags, epoch(a_start)),
            ('alpha-build-times', {'end-time': a_end.isoformat()}, a_tags, epoch(a_end) + us),
            ('alpha-build-times', {'duration': a_secs}, a_tags, epoch(a_end) + 2 * us),
            ('alpha-build-times', {'duration': a_secs / 60}, a_tags, epoch(a_end) + 3 * us),
            ('alpha-build-times', {'start-time': a_start.isoformat()}, a_tags,
             epoch(a_start) + 4 * us),
            ('alpha-build-times', {'end-time': a_end.isoformat()}, a_tags, epoch(a_end) + 5 * us),
            ('alpha-build-times', {'duration': a_secs / 3600}, a_tags, epoch(a_end) + 6 * us),
            ('beta-build-times', {'start-time': b_start.isoformat()}, b_tags,
             epoch(b_start) + 4 * us),
            ('beta-build-times', {'end-time': b_end.isoformat()}, b_tags, epoch(b_end) + 5 * us),
            ('beta-build-times', {'duration': b_secs / 3600}, b_tags, epoch(b_end) + 6 * us),
            ('alpha-warnings', {'name': 'warnings', 'value': 3}, a_tags, epoch(a_end) + 7 * us),
            ('alpha-warnings', {'name': 'warnings', 'value': 3}, a_tags, epoch(a_end) + 8 * us),
            ('alpha-buildnumber', {'name': 'buildnumber', 'value': build_a['number']}, a_tags,
             epoch(a_end) + 8 * us),
            ('beta-buildnumber', {'name': 'buildnumber', 'value': build_b['number']}, b_tags,
             epoch(b_end) + 8 * us),
        ]
        def key(series, fields, tags, ts):
            return (series, sorted(fields.items()), sorted(tags.items()), round(ts * 1e6))

        build_points = [p for p in backend.points if not p.series.endswith('-coverage')]
        self.assertEqual(
            sorted(key(p.series, p.fields, p.tags, p.time) for p in build_points),
            sorted(key(*e) for e in expected),
        )

        coverage = [p for p in backend.points if p.series == 'alpha-coverage']
        self.assertEqual([p.fields for p in coverage],
                         [{'percent': 87.5, 'lines': 1200}] * 2)
        for p in coverage:
            self.assertEqual(p.tags, a_tags)
            # stamped when the step posted it: during the build
            self.assertGreaterEqual(p.time, epoch(a_start) - 1)
            self.assertLessEqual(p.time, epoch(a_end) + 1)
        # the two data captures are capture numbers 9 and 10: same call, 1 us apart
        self.assertEqual(round((coverage[1].time - coverage[0].time) * 1e6), 1)
        self.assertEqual(len(backend.points), len(expected) + 2)
        svc = self.master.service_manager.namedServices['StatsService']
        self.assertEqual(svc.capture_errors, 0)
        # builds started after the service: their data and properties came from the MQ
        # (the builders were announced before the service started: asked once each)
        self.assertEqual((svc.lookups.misses['builds'], svc.lookups.misses['properties'],
                          svc.lookups.misses['builder_names']), (0, 0, 2))

    @defer.inlineCallbacks
    def test_reconfig_on_a_real_master(self):
        from buildbot.test.util.integration import DictLoader

        from buildbot_stats.captures import BUILD_FINISHED

        first = stats.InMemoryStorageService([stats.CaptureBuildStartTime('alpha')], name='mem')
        yield self.setup_master(masterConfig(first))
        yield self.doForceBuild(forceParams={'builderNames': ['alpha']})

        # master.cfg edited: the same backend name, other captures
        second = stats.InMemoryStorageService(
            [stats.CaptureBuildDuration('alpha'), stats.CaptureData('coverage', 'alpha')],
            name='mem')
        cfg = masterConfig(second)
        cfg['workers'] = self.master_config_dict['workers']
        cfg['protocols'] = self.master_config_dict['protocols']
        self.master.config_loader = DictLoader(cfg)
        yield self.master.reconfig()

        # the service's consumers (its one subscription table), beside Buildbot's own: every
        # routing key once, the build's end included (the captures and the build-data record)
        table = self.master.service_manager.namedServices['StatsService'].subscription_table
        ours = [tuple(q.filter) for q in self.master.mq.impl.qrefs
                if getattr(q.callback, 'func', None) == table._consume]
        self.assertEqual(sorted(ours, key=repr), sorted(set(ours), key=repr))
        self.assertIn(BUILD_FINISHED, ours)
        self.assertEqual(set(ours), table.keys)

        yield self.doForceBuild(forceParams={'builderNames': ['alpha']})
        yield self.tested_master.shutdown()
        # the running backend was kept (its points too); the new captures took effect
        self.assertEqual([sorted(p.fields) for p in first.points],
                         [['start-time'], ['lines', 'percent'], ['duration']])
        self.assertEqual(second.points, [])
