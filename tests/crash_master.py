"""The master of the spool crash test (tests/test_spool_crash.py): a real Buildbot master in a
process of its own (:class:`tests.masterprocess.MasterProcess`: twistd, its ``master.cfg``, an
SQLite database made by ``buildbot upgrade-master``), a LocalWorker, real builds running real
commands, and an InfluxDB backend with a spool.

Its master.cfg reads what varies from environment variables: the InfluxDB URL
(``CRASH_TEST_INFLUX_URL``) and the number of builds (``CRASH_TEST_BUILDS``).

- With BUILDS > 0 InfluxDB is unreachable: the master runs that many builds, logs ``crash-test:
  ... every one in the spool`` (:data:`MARK`) to its twistd.log right after the spool's write
  that holds the last point, and then waits to be killed (SIGKILL: a crash).
- With BUILDS = 0 it starts again on the same directory, sends what the spool holds, writes
  the backend's counters to ``counters.json`` and logs :data:`FLUSHED`; the test then stops it.
"""

from __future__ import annotations

import json
import os
import textwrap

from tests.masterprocess import MasterProcess

DB = 'crash'
DATA_NAME = 'crashdata'
POINTS_PER_BUILD = 5  # start time, end time, duration, the 'warnings' property, the data
BUILDERS = ('alpha', 'beta')
MARK = 'every one in the spool'
FLUSHED = 'crash-test: flushed'
COUNTERS = 'counters.json'

MASTER_CFG = textwrap.dedent('''\
    import json
    import os

    from twisted.internet import defer
    from twisted.internet import task
    from twisted.python import log

    from buildbot.plugins import schedulers, steps, util, worker
    from buildbot.process.buildstep import BuildStep
    from buildbot.process.results import SUCCESS
    from buildbot.util import service

    from buildbot_stats import stats

    DB = {DB!r}
    DATA_NAME = {DATA_NAME!r}
    POINTS_PER_BUILD = {POINTS_PER_BUILD!r}
    BUILDERS = {BUILDERS!r}
    BUILDS = int(os.environ.get('CRASH_TEST_BUILDS', '0'))  # unset: upgrade-master


    class PostData(stats.StatsStepMixin, BuildStep):
        name = 'post-data'

        @defer.inlineCallbacks
        def run(self):
            yield self.yieldMetricsValue(DATA_NAME, {{'number': self.build.number}})
            return SUCCESS


    class CrashTest(service.BuildbotService):
        """Once the worker is connected: with BUILDS, run them and say when the spool holds
        every point; without, send what the spool holds and write the counters."""

        name = 'crash-test'

        def checkConfig(self, backend):
            pass

        def reconfigService(self, backend):
            self.backend = backend

        @defer.inlineCallbacks
        def startService(self):
            yield super().startService()  # configured (the backend set) by this
            d = defer.ensureDeferred(self.run())
            d.addErrback(log.err, 'crash-test failed')

        async def run(self):
            reactor = self.master.reactor
            while not self.master.workers.connections:
                await task.deferLater(reactor, 0.05, lambda: None)
            if not BUILDS:
                ok = await self.backend.flush(timeout=60)
                with open(os.path.join(self.master.basedir, {COUNTERS!r} + '.tmp'), 'w') as f:
                    json.dump({{'flushed': ok, 'counters': self.backend.metrics()}}, f)
                os.rename(os.path.join(self.master.basedir, {COUNTERS!r} + '.tmp'),
                          os.path.join(self.master.basedir, {COUNTERS!r}))
                log.msg({FLUSHED!r})
                return
            expected = BUILDS * POINTS_PER_BUILD
            spool = self.backend._writer.spool
            write = spool.writePending
            told = []

            def writePending():
                write()
                if not told and self.backend.counters.added >= expected and not spool._pending:
                    told.append(True)
                    log.msg(f"crash-test: {{BUILDS}} builds finished; "
                            f"{{self.backend.counters.added}} points accepted, "
                            {MARK!r})

            spool.writePending = writePending
            sched = self.master.scheduler_manager.namedServices['crash']
            for i in range(BUILDS):
                await sched.addBuildsetForSourceStamps(
                    sourcestamps=[{{'codebase': '', 'repository': '', 'branch': None,
                                   'revision': None, 'project': ''}}],
                    reason='crash-test', builderNames=[BUILDERS[i % len(BUILDERS)]])


    if BUILDS:
        # InfluxDB is unreachable: nothing is sealed nor sent before the crash; every point
        # is in the open chunk, and so only in the spool's journal
        options = dict(flush_interval=60.0, retry_interval=60.0)
    else:
        options = dict(flush_interval=0.1, retry_interval=0.2, max_retry_delay=1.0)
    captures = [
        stats.CaptureBuildStartTimeAllBuilders(),      # capture 0: build start + 0 us
        stats.CaptureBuildEndTimeAllBuilders(),        # 1: build end + 1 us
        stats.CaptureBuildDurationAllBuilders(),       # 2: build end + 2 us
        stats.CapturePropertyAllBuilders('warnings'),  # 3: build end + 3 us
        stats.CaptureDataAllBuilders(DATA_NAME),       # 4: when the step posted + 4 us
    ]
    backend = stats.InfluxStorageService(
        os.environ['CRASH_TEST_INFLUX_URL'], None, None, None, DB, captures, name='influx',
        spool_dir='spool', jitter=0.0, stop_timeout=5.0, **options)

    factory = util.BuildFactory([
        steps.ShellCommand(command=['echo', 'built']),
        steps.SetProperty(property='warnings', value=util.Property('buildnumber')),
        PostData(),
    ])
    c = BuildmasterConfig = {{}}
    c['buildbotNetUsageData'] = None
    c['title'] = 'crash-test'
    c['db'] = {{'db_url': 'sqlite:///state.sqlite'}}
    c['protocols'] = {{'null': {{}}}}
    c['collapseRequests'] = False
    c['workers'] = [worker.LocalWorker('local1')]
    c['builders'] = [util.BuilderConfig(name=b, workernames=['local1'], factory=factory)
                     for b in BUILDERS]
    c['schedulers'] = [schedulers.Triggerable(name='crash', builderNames=list(BUILDERS))]
    # no catch-up from Buildbot's database at start: the spool alone must bring every point
    # back (with it, the restart would also replay the builds: the same points)
    c['services'] = [
        stats.StatsService(storage_backends=[backend], name='StatsService', catch_up=False),
        CrashTest(backend),
    ]
''').format(DB=DB, DATA_NAME=DATA_NAME, POINTS_PER_BUILD=POINTS_PER_BUILD, BUILDERS=BUILDERS,
            MARK=MARK, FLUSHED=FLUSHED, COUNTERS=COUNTERS)


class CrashMaster(MasterProcess):
    """The crash test's master in ``basedir``, writing to the InfluxDB at ``influx_url``."""

    name = 'crash-master'

    def __init__(self, basedir, influx_url):
        super().__init__(basedir, env=dict(os.environ, CRASH_TEST_INFLUX_URL=influx_url))
        self.writeConfig(MASTER_CFG)

    def run(self, builds):
        """Start it to run ``builds`` builds (0: to send the spool); returns once it runs."""
        self.env['CRASH_TEST_BUILDS'] = str(builds)
        self.start()

    def counters(self):
        """What the restarted master wrote once the spool was sent (after :data:`FLUSHED`)."""
        with open(os.path.join(self.basedir, COUNTERS), encoding='utf-8') as f:
            return json.load(f)
