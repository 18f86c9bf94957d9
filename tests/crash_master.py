"""Run by tests/test_spool_crash.py: a real Buildbot master (an SQLite database file,
LocalWorker, real builds running real commands) whose statistics go to an InfluxDB backend
with a spool.

    python tests/crash_master.py BASEDIR INFLUX_URL BUILDS

With BUILDS > 0 the master runs that many builds while InfluxDB is unreachable, logs
``crash-test: ... every one in the spool`` to BASEDIR/twistd.log right after the spool's
write holding the last point, and then waits to be killed (SIGKILL: a crash). With
BUILDS = 0 it starts again on the same BASEDIR, sends what the spool holds, prints the
backend's counters as one JSON line and stops.
"""

from __future__ import annotations

import json
import os
import sys

# the benchmarks' harness starts a real master from a config dict (run as a script: the
# checkout is not on sys.path)
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import harness  # noqa: E402

DB = 'crash'
DATA_NAME = 'crashdata'
POINTS_PER_BUILD = 5  # start time, end time, duration, the 'warnings' property, the data
BUILDERS = ('alpha', 'beta')


def captures():
    from buildbot_stats import stats

    return [
        stats.CaptureBuildStartTimeAllBuilders(),   # capture 0: build start + 0 us
        stats.CaptureBuildEndTimeAllBuilders(),     # 1: build end + 1 us
        stats.CaptureBuildDurationAllBuilders(),    # 2: build end + 2 us
        stats.CapturePropertyAllBuilders('warnings'),  # 3: build end + 3 us
        stats.CaptureDataAllBuilders(DATA_NAME),    # 4: when the step posted + 4 us
    ]


def master_config(basedir, backend):
    from twisted.internet import defer

    from buildbot.plugins import schedulers
    from buildbot.plugins import steps
    from buildbot.plugins import util
    from buildbot.process.buildstep import BuildStep
    from buildbot.process.results import SUCCESS
    from buildbot.worker.local import LocalWorker

    from buildbot_stats import stats

    class PostData(stats.StatsStepMixin, BuildStep):
        name = 'post-data'

        @defer.inlineCallbacks
        def run(self):
            yield self.yieldMetricsValue(DATA_NAME, {'number': self.build.number})
            return SUCCESS

    factory = util.BuildFactory([
        steps.ShellCommand(command=['echo', 'built']),
        steps.SetProperty(property='warnings', value=util.Property('buildnumber')),
        PostData(),
    ])
    return {
        'workers': [LocalWorker('local1')],
        'protocols': {'null': {}},
        'builders': [util.BuilderConfig(name=b, workernames=['local1'], factory=factory)
                     for b in BUILDERS],
        'schedulers': [schedulers.Triggerable(name='crash', builderNames=list(BUILDERS))],
        # no catch-up from Buildbot's database at start: the spool alone must bring every
        # point back (with it, the restart would also replay the builds: the same points)
        'services': [stats.StatsService(storage_backends=[backend], name='StatsService',
                                        catch_up=False)],
        'db_url': 'sqlite:///' + os.path.join(basedir, 'state.sqlite'),
        'buildbotNetUsageData': None,
        'collapseRequests': False,
        'title': 'crash-test',
    }


async def run(reactor, basedir, url, builds):
    from twisted.internet import defer
    from twisted.internet import task
    from twisted.python import log

    from buildbot_stats import stats

    log.startLogging(open(os.path.join(basedir, 'twistd.log'), 'a', encoding='utf-8'),
                     setStdout=False)
    if builds:
        # InfluxDB is unreachable: nothing is sealed nor sent before the crash; every point
        # is in the open chunk, and so only in the spool's journal
        options = dict(flush_interval=60.0, retry_interval=60.0)
    else:
        options = dict(flush_interval=0.1, retry_interval=0.2, max_retry_delay=1.0)
    backend = stats.InfluxStorageService(url, None, None, None, DB, captures(),
                                         name='influx', spool_dir='spool', jitter=0.0,
                                         stop_timeout=5.0, **options)
    master = await harness.start_master(reactor, basedir, master_config(basedir, backend))

    if not builds:
        ok = await backend.flush(timeout=60)
        counters = backend.metrics()
        await master.stopService()
        print(json.dumps({'flushed': ok, 'counters': counters}), flush=True)
        return

    expected = builds * POINTS_PER_BUILD
    spool = backend._writer.spool
    write = spool.writePending
    told = []

    def writePending():
        write()
        if not told and backend.counters.added >= expected and not spool._pending:
            told.append(True)
            log.msg(f"crash-test: {builds} builds finished; {backend.counters.added} "
                    "points accepted, every one in the spool")

    spool.writePending = writePending

    while not master.workers.connections:
        await task.deferLater(reactor, 0.05, lambda: None)
    sched = master.scheduler_manager.namedServices['crash']
    for i in range(builds):
        await sched.addBuildsetForSourceStamps(
            sourcestamps=[{'codebase': '', 'repository': '', 'branch': None,
                           'revision': None, 'project': ''}],
            reason='crash-test', builderNames=[BUILDERS[i % len(BUILDERS)]])
    await defer.Deferred()  # until killed


def main():
    from twisted.internet import defer
    from twisted.internet import task

    basedir, url, builds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    task.react(lambda reactor: defer.ensureDeferred(run(reactor, basedir, url, builds)))


if __name__ == '__main__':
    main()
