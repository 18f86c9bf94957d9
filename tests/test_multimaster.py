"""Two real masters sharing PostgreSQL and a crossbar router (Buildbot's wamp MQ), each with
its own worker, both writing to one InfluxDB and each to its own SQLite store: every build's
points are written exactly once, by the master that ran it, with the values and types one
master gives. The masters run the shipped examples/multimaster configuration.

Builds are forced through each master's REST API; the test waits on what the servers say
(REST, InfluxDB, the SQLite files), with generous deadlines, never on fixed sleeps.
"""

from __future__ import annotations

import datetime
import os
from collections import Counter

from twisted.trial import unittest

from buildbot.process.results import RETRY
from buildbot.process.results import SUCCESS

from buildbot_stats.reading.sqlite import StoreError
from buildbot_stats.reading.sqlite import StoreReader
from tests import multimaster
from tests.servers import InfluxDB1Server
from tests.waiting import pollUntil

DB = 'buildbot'
UTC = datetime.timezone.utc
# points of one 'app' build: build-times (start, end, duration), warnings, coverage, builds,
# build_requests, tests, and one steps point per step
APP_STEPS = ['worker_preparation', 'compile', 'unit-tests', 'SetProperty', 'coverage']
APP_POINTS = 8 + len(APP_STEPS)
MEASUREMENTS = ['app-build-times', 'app-warnings', 'app-coverage', 'builds', 'build_requests',
                'tests', 'steps', 'gated-build-times']
# what one master writes (tests/test_integration_*.py), as InfluxDB stores it
FIELD_TYPES = {
    'app-build-times': {'start-time': 'string', 'end-time': 'string', 'duration': 'float'},
    'app-coverage': {'percent': 'float', 'lines': 'integer'},
    'app-warnings': {'name': 'string', 'value': 'integer'},
    'builds': {'result_code': 'integer', 'success': 'integer', 'build_number': 'integer',
               'duration': 'float'},
    'build_requests': {'build_number': 'integer', 'queue_time': 'float',
                       'turnaround_time': 'float'},
    'steps': {'step_number': 'integer', 'build_number': 'integer', 'result_code': 'integer',
              'duration': 'float'},
    'tests': {'passed': 'integer', 'failed': 'integer', 'skipped': 'integer',
              'total': 'integer', 'result_sets': 'integer', 'build_number': 'integer'},
}

# a test-only builder whose one step waits for a file: a build to kill its master in
GATED_CFG = '''
from buildbot.plugins import schedulers as _schedulers
from buildbot.plugins import steps as _steps
from buildbot.plugins import util as _util

_gated = _util.BuildFactory()
_gated.addStep(_steps.ShellCommand(name='wait-for-gate', command=[
    'sh', '-c', _util.Interpolate('while [ ! -e %(prop:gate)s ]; do sleep 0.1; done')]))
c['builders'].append(_util.BuilderConfig(name='gated', workernames=['worker-a', 'worker-b'],
                                         factory=_gated))
c['schedulers'].append(_schedulers.ForceScheduler(
    name='force-gated', builderNames=['gated'], properties=[_util.StringParameter('gate')]))
'''


def iso(epoch):
    return datetime.datetime.fromtimestamp(epoch, tz=UTC).isoformat()


def buildKey(point):
    """(builder, build number) of a point, whichever family of capture wrote it."""
    tags, fields = point['tags'], point['fields']
    number = tags.get('build_number', fields.get('build_number'))
    return tags['builder_name'], int(number)


class TwoMasters(unittest.TestCase):
    timeout = 300

    def setUp(self):
        why = multimaster.missing()
        if why:
            raise unittest.SkipTest(why)
        self.influx = InfluxDB1Server.start_new()
        self.addCleanup(self.influx.cleanup)
        self.influx.create_database(DB)
        self.site = multimaster.MultiMaster(self.influx, extra_cfg=GATED_CFG)
        self.addCleanup(self.site.cleanup)
        self.gate = os.path.join(self.site.basedir, 'gate')
        # runs first: a build still waiting for the gate ends, whatever happened
        self.addCleanup(lambda: open(self.gate, 'w').close())
        self.site.start()
        self.a, self.b = self.site.masters['master-a'], self.site.masters['master-b']
        self.builderids = {b['name']: b['builderid'] for b in self.a.get('builders')['builders']}
        self.masterNames = {m['masterid']: os.path.basename(m['name'])
                            for m in self.a.get('masters')['masters']}

    def tearDown(self):
        # no capture error, no traceback, no delivery failure, on either master
        for name, master in self.site.masters.items():
            log = master.logText()
            for bad in ('buildbot_stats: error', 'Traceback', 'Unhandled'):
                self.assertNotIn(bad, log, f'{name} logged {bad!r}:\n{log[-3000:]}')

    # -- helpers ---------------------------------------------------------------------------

    def force(self, builder, master=None, **params):
        master = master or self.a
        scheduler = 'force-gated' if builder == 'gated' else 'force'
        bsid, _ = master.rpc(f'forceschedulers/{scheduler}', 'force',
                             builderid=str(self.builderids[builder]), **params)
        return bsid

    def buildsOf(self, bsid, master=None):
        """The builds of a buildset's one request, oldest first."""
        master = master or self.a
        requests = master.get(f'buildrequests?buildsetid={bsid}')['buildrequests']
        builds = []
        for request in requests:
            builds += master.get(f'buildrequests/{request["buildrequestid"]}/builds')['builds']
        return sorted(builds, key=lambda b: b['buildid'])

    def finishedBuild(self, bsid, master=None):
        def done():
            builds = self.buildsOf(bsid, master)
            return builds[-1] if builds and builds[-1]['complete'] else None
        return pollUntil(done, f'the build of buildset {bsid}')

    def influxPoints(self):
        """Every point of every measurement (tags, fields, ns time)."""
        present = set(self.influx.measurements(DB))
        points = []
        for measurement in MEASUREMENTS:
            if measurement in present:
                for p in self.influx.read_points(DB, measurement):
                    points.append(dict(p, series=measurement))
        return points

    def influxOf(self, builds):
        keys = {(self.builderName(b), b['number']) for b in builds}
        return [p for p in self.influxPoints() if buildKey(p) in keys]

    def builderName(self, build):
        return {v: k for k, v in self.builderids.items()}[build['builderid']]

    def storePoints(self, master_name):
        path = os.path.join(self.site.masters[master_name].basedir, 'stats.sqlite')
        try:
            store = StoreReader(path)
        except StoreError:
            # not created yet, or created and its schema not written yet
            return []
        with store:
            return [{'series': p.series, 'tags': p.tags, 'fields': p.fields,
                     'time': round(p.time * 1e6) * 1000} for p in store.points()]

    def comparable(self, points):
        return Counter((p['series'], tuple(sorted(p['tags'].items())),
                        tuple(sorted((k, float(v) if isinstance(v, (int, float)) else v)
                                     for k, v in p['fields'].items())), p['time'])
                       for p in points)

    def waitWritten(self, builds, per_build):
        """Until InfluxDB and the store of the master that ran each build hold its points."""
        want = len(builds) * per_build
        pollUntil(lambda: len(self.influxOf(builds)) >= want, f'{want} points in InfluxDB')
        for build in builds:
            runner = self.masterNames[build['masterid']]
            key = (self.builderName(build), build['number'])
            pollUntil(lambda: sum(buildKey(p) == key for p in self.storePoints(runner))
                      >= per_build, f'{per_build} points of {key} in the store of {runner}')

    def assertWrittenOnceByItsMaster(self, builds, per_build):
        influx = self.influxPoints()
        stores = {name: self.storePoints(name) for name in self.site.masters}
        for build in builds:
            key = (self.builderName(build), build['number'])
            runner = self.masterNames[build['masterid']]
            mine = [p for p in influx if buildKey(p) == key]
            self.assertEqual(len(mine), per_build, (key, mine))
            self.assertEqual({p['tags']['master'] for p in mine}, {runner}, key)
            # no point twice (same series, tags and time): InfluxDB would have merged them
            self.assertEqual(len({(p['series'], tuple(sorted(p['tags'].items())), p['time'])
                                  for p in mine}), per_build, key)
            for name, points in stores.items():
                stored = [p for p in points if buildKey(p) == key]
                if name == runner:
                    # the same points as in InfluxDB, once
                    self.assertEqual(self.comparable(stored), self.comparable(mine), key)
                else:
                    self.assertEqual(stored, [], f'{name} stored points of {key}')

    # -- the tests -----------------------------------------------------------------------------

    def test_builds_on_both_masters_written_once_by_the_master_that_ran_them(self):
        workers = ['worker-a', 'worker-b'] * 3
        bsids = [self.force('app', workername=w) for w in workers]
        builds = [self.finishedBuild(bsid) for bsid in bsids]
        self.waitWritten(builds, APP_POINTS)

        runners = [self.masterNames[b['masterid']] for b in builds]
        self.assertEqual(runners, ['master-a', 'master-b'] * 3)
        self.assertEqual([b['results'] for b in builds], [SUCCESS] * 6)
        self.assertWrittenOnceByItsMaster(builds, APP_POINTS)
        self.assertOneMastersValues(builds)
        for measurement, types in FIELD_TYPES.items():
            self.assertEqual(self.influx.field_types(DB, measurement), types, measurement)

        # -- a reconfig of master A (one more tag) changes nothing on master B
        with open(self.a.cfg_path, encoding='utf-8') as f:
            cfg = f.read()
        self.site.writeConfig(self.a, cfg.replace(
            "site_config.configure(c, 'master-a')",
            "site_config.configure(c, 'master-a', extra_tags={'config': 'second'})"))
        b_log = len(self.b.logText())
        self.a.reconfig()
        after = [self.finishedBuild(self.force('app', workername=w))
                 for w in ['worker-a', 'worker-b']]
        self.waitWritten(after, APP_POINTS)
        self.assertWrittenOnceByItsMaster(builds + after, APP_POINTS)
        tags = {self.masterNames[b['masterid']]: {p['tags'].get('config')
                                                  for p in self.influxOf([b])}
                for b in after}
        self.assertEqual(tags, {'master-a': {'second'}, 'master-b': {None}})
        self.assertNotIn('Loading configuration', self.b.logText()[b_log:])

    def assertOneMastersValues(self, builds):
        """The values one master writes (the formulas of tests/test_integration_*.py)."""
        for build in builds:
            points = self.influxOf([build])
            by_series = {}
            for p in points:
                by_series.setdefault(p['series'], []).append(p)
            start, end = build['started_at'], build['complete_at']
            worker = {'master-a': 'worker-a', 'master-b': 'worker-b'}[
                self.masterNames[build['masterid']]]
            self.assertEqual(sorted(tuple(p['fields'].items()) for p in
                                    by_series['app-build-times']),
                             sorted([(('start-time', iso(start)),), (('end-time', iso(end)),),
                                     (('duration', end - start),)]))
            self.assertEqual([p['fields'] for p in by_series['app-warnings']],
                             [{'name': 'warnings', 'value': 2}])
            [coverage] = by_series['app-coverage']
            self.assertEqual(coverage['fields'], {'percent': 87.5, 'lines': 1200})
            # stamped by the step during the build, with the reactor's sub-second time
            self.assertTrue(start * 10**9 <= coverage['time'] <= (end + 1) * 10**9)
            # ...which JSON carried as a float: not cut to the second as the build times are
            self.assertNotEqual(coverage['time'] % 10**9, 0)
            [result] = by_series['builds']
            self.assertEqual(result['fields'], {'result_code': SUCCESS, 'success': 1,
                                                'build_number': build['number'],
                                                'duration': end - start})
            self.assertEqual(result['tags']['worker'], worker)
            self.assertEqual(result['tags']['result'], 'success')
            # the build's end, + number ms (builds ending in one second), + capture 5 in us
            self.assertEqual(result['time'],
                             (end * 10**6 + build['number'] % 1000 * 1000 + 5) * 1000)
            [request] = by_series['build_requests']
            req = self.a.get(f'buildrequests/{build["buildrequestid"]}')['buildrequests'][0]
            self.assertEqual(request['fields']['queue_time'], start - req['submitted_at'])
            [tests] = by_series['tests']
            self.assertEqual(tests['fields'], {'passed': 3, 'failed': 1, 'skipped': 0,
                                               'total': 4, 'result_sets': 1,
                                               'build_number': build['number']})
            steps = self.a.get(f'builds/{build["buildid"]}/steps')['steps']
            self.assertEqual(sorted((p['tags']['step_name'], p['fields']['duration'])
                                    for p in by_series['steps']),
                             sorted((s['name'], s['complete_at'] - s['started_at'])
                                    for s in steps))
            self.assertEqual(sorted(s['name'] for s in steps), sorted(APP_STEPS))

    def test_a_master_killed_mid_build(self):
        # one build on each master first, written everywhere before the crash
        before = [self.finishedBuild(self.force('app', workername=w))
                  for w in ['worker-a', 'worker-b']]
        self.waitWritten(before, APP_POINTS)

        bsid = self.force('gated', gate=self.gate)

        def waiting():
            for build in self.buildsOf(bsid):
                steps = self.a.get(f'builds/{build["buildid"]}/steps')['steps']
                if any(s['name'] == 'wait-for-gate' and s['started_at'] for s in steps):
                    return build
            return None
        killed = pollUntil(waiting, 'the gated build to run its step')
        victim = self.masterNames[killed['masterid']]
        other = 'master-b' if victim == 'master-a' else 'master-a'
        survivor = self.site.masters[other]
        stored_before = {name: self.comparable(self.storePoints(name))
                         for name in self.site.masters}
        influx_before = self.comparable(self.influxPoints())

        # the victim's machine goes down: its master and its worker die at once
        survivor_log = len(survivor.logText())
        self.site.masters[victim].kill()
        self.site.workers[victim].kill()

        # the survivor's heartbeat expires the victim: its build ends as RETRY, finished by
        # the survivor on the victim's behalf; nobody writes it (it belongs to the victim)
        def retried():
            build = survivor.get(f'builds/{killed["buildid"]}')['builds'][0]
            return build if build['complete'] else None
        ended = pollUntil(retried, f'{other} to expire {victim}')
        self.assertEqual(ended['results'], RETRY)
        self.assertIn(f'doing housekeeping for master {killed["masterid"]} ',
                      survivor.logText()[survivor_log:])
        # Buildbot 4.3 leaves the request claimed by the dead master (its unclaim deletes
        # only the caller's own claims): nobody runs it until that master starts again
        request = survivor.get(f'buildrequests?buildsetid={bsid}')['buildrequests'][0]
        self.assertEqual(request['claimed_by_masterid'], killed['masterid'])

        # the victim's master comes back (not yet its worker): its start-up housekeeping
        # unclaims the request; new work on the survivor picks it up with its own
        self.site.masters[victim].start()
        pollUntil(lambda: not survivor.get(
            f'buildrequests?buildsetid={bsid}')['buildrequests'][0]['claimed'],
            'the request to be unclaimed')
        open(self.gate, 'w').close()
        trigger = self.force('gated', master=survivor, gate=self.gate)
        retry = pollUntil(lambda: [
            b for b in self.buildsOf(bsid, survivor)[1:] if b['complete']],
            'the retried build')[0]
        fresh = self.finishedBuild(trigger, survivor)
        self.assertEqual(self.masterNames[retry['masterid']], other)
        self.assertEqual(retry['results'], SUCCESS)
        gated_points = 3 + 1 + 1 + 2  # build-times, builds, build_requests, 2 steps
        self.waitWritten([retry, fresh], gated_points)

        # the victim's worker is back too; a build on the restarted master
        self.site.workers[victim].start()
        later = self.finishedBuild(self.force('app', workername='worker-' + victim[-1]))
        self.assertEqual(self.masterNames[later['masterid']], victim)
        self.waitWritten([later], APP_POINTS)

        # the killed build was finished by the survivor on the victim's behalf, and the
        # survivor leaves it to the victim (masterid); the restarted victim's catch-up
        # replays the builds it finished while down, so that build is written once, by the
        # master that ran it, with its RETRY result
        self.waitWritten([ended], gated_points)
        self.assertWrittenOnceByItsMaster(before + [later], APP_POINTS)
        self.assertWrittenOnceByItsMaster([retry, fresh, ended], gated_points)
        [result] = [p for p in self.influxOf([ended]) if p['series'] == 'builds']
        self.assertEqual(result['tags']['result'], 'retry')
        # the restarted master wrote nothing twice: what it held before the crash is still
        # there once, and it added the points of its new build and of the killed one only
        added = self.comparable(self.storePoints(victim)) - stored_before[victim]
        self.assertEqual(sum(added.values()), APP_POINTS + gated_points)
        self.assertEqual(self.comparable(self.storePoints(victim)) - added,
                         stored_before[victim])
        new_in_influx = self.comparable(self.influxPoints()) - influx_before
        self.assertEqual(sum(new_in_influx.values()), APP_POINTS + 3 * gated_points)
        self.assertEqual(max(self.comparable(self.influxPoints()).values()), 1)
