"""The master of the backfill and catch-up tests: a real Buildbot master in a process of its
own (:class:`tests.masterprocess.MasterProcess`) with local workers, that can be killed with
SIGKILL and started again on the same directory and database.

Its master.cfg reads what varies from environment variables: the InfluxDB URL and database
(``STATS_INFLUX_URL``, ``STATS_DB``) and the SQLite store (``STATS_SQLITE``). Builds are asked
for through a file: writing ``N`` to ``<basedir>/submit`` makes the master submit buildsets
until it has submitted N (each builds ``alpha`` and ``beta``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from tests.masterprocess import MasterProcess

DEADLINE = 120.0  # seconds; generous for a loaded 2-core machine

MASTER_CFG = textwrap.dedent('''\
    import os

    from twisted.internet import defer
    from twisted.internet import task

    from buildbot.plugins import schedulers, steps, util, worker
    from buildbot.process.buildstep import BuildStep
    from buildbot.process.results import SUCCESS
    from buildbot.util import service

    from benchmarks.captures import everyFamily
    from buildbot_stats import stats
    from buildbot_stats.history import catchup

    # checkpoints often, so that the test sees the marks move
    catchup.CHECKPOINT_INTERVAL = 0.5


    class ReportCoverage(stats.StatsStepMixin, BuildStep):
        name = 'coverage'

        @defer.inlineCallbacks
        def run(self):
            n = self.build.number
            yield self.yieldMetricsValue('coverage', {'percent': 50.5 + n, 'lines': 1000 + n})
            yield self.yieldMetricsValue('coverage', {'percent': 60.5 + n, 'lines': 2000 + n})
            return SUCCESS


    class UnitTests(BuildStep):
        name = 'unit'

        @defer.inlineCallbacks
        def run(self):
            setid = yield self.addTestResultSet('unit', 'pass_fail', 'boolean')
            for i in range(3):
                self.addTestResult(setid, '1' if i else '0', test_name=f't{i}')
            return SUCCESS


    class Submitter(service.BuildbotService):
        """Submits buildsets until it has submitted the number in <basedir>/submit."""

        name = 'submitter'

        def startService(self):
            self.loop = task.LoopingCall(self.poll)
            self.loop.clock = self.master.reactor
            self.loop.start(0.2)
            return super().startService()

        def stopService(self):
            self.loop.stop()
            return super().stopService()

        @defer.inlineCallbacks
        def poll(self):
            path = os.path.join(self.master.basedir, 'submit')
            done_path = path + '.done'
            try:
                with open(path) as f:
                    wanted = int(f.read().strip() or 0)
            except (OSError, ValueError):
                return
            try:
                with open(done_path) as f:
                    done = int(f.read().strip() or 0)
            except (OSError, ValueError):
                done = 0
            sched = self.master.scheduler_manager.namedServices.get('trigger')
            if sched is None:  # not configured yet
                return
            while done < wanted:
                yield sched.addBuildsetForSourceStampsWithDefaults(
                    'test', builderNames=['alpha', 'beta'])
                done += 1
                with open(done_path, 'w') as f:
                    f.write(str(done))


    c = BuildmasterConfig = {}
    c['buildbotNetUsageData'] = None
    c['db'] = {'db_url': os.environ.get('STATS_DB_URL', 'sqlite:///state.sqlite')}
    c['protocols'] = {'pb': {'port': 'tcp:0:interface=127.0.0.1'}}
    c['collapseRequests'] = False
    c['workers'] = [worker.LocalWorker('local1'), worker.LocalWorker('local2')]
    c['schedulers'] = [schedulers.Triggerable(
        name='trigger', builderNames=['alpha', 'beta'],
        codebases={'': {'repository': 'https://example.org/demo.git', 'branch': 'main'}})]
    alpha = util.BuildFactory()
    alpha.addStep(steps.SetProperty(property='warnings', value=util.Interpolate('%(prop:buildnumber)s')))
    alpha.addStep(ReportCoverage())
    alpha.addStep(UnitTests())
    beta = util.BuildFactory()
    beta.addStep(steps.SetProperty(property='warnings', value=7))
    c['builders'] = [
        util.BuilderConfig(name='alpha', workernames=['local1'], factory=alpha),
        util.BuilderConfig(name='beta', workernames=['local2'], factory=beta),
    ]
    # one of every family, and one limited to a builder, in another unit
    captures = everyFamily('warnings', 'coverage') + [
        stats.CaptureBuildDuration('alpha', report_in='minutes')]
    c['services'] = [
        Submitter(),
        stats.StatsService(storage_backends=[
            stats.InfluxStorageService(
                os.environ['STATS_INFLUX_URL'], None, None, None,
                os.environ.get('STATS_DB', 'live'), captures, create_database=True,
                flush_interval=0.1, stop_timeout=5.0),
            stats.SQLiteStorageService(os.environ.get('STATS_SQLITE', 'stats.sqlite'),
                                       captures, flush_interval=0.1),
        ], extra_tags={'site': 'test'}),
    ]
''')


def backfillCommand(*args, env=None):
    """``buildbot-stats backfill ARGS`` in a subprocess: (exit status, stdout, stderr)."""
    p = subprocess.run(
        [sys.executable, '-c', 'import sys; from buildbot_stats.cli.main import main; '
         'sys.exit(main())', 'backfill'] + list(args),
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=DEADLINE)
    return p.returncode, p.stdout, p.stderr


class HistoryMaster(MasterProcess):
    """The master of :data:`MASTER_CFG` in ``basedir``, writing to the InfluxDB at
    ``influx_url`` (database ``db``) and to the SQLite store ``sqlite``; its own database at
    ``db_url``."""

    def __init__(self, basedir, influx_url, db='live', sqlite='stats.sqlite',
                 db_url='sqlite:///state.sqlite'):
        env = dict(os.environ, STATS_INFLUX_URL=influx_url, STATS_DB=db,
                   STATS_SQLITE=sqlite, STATS_DB_URL=db_url)
        super().__init__(basedir, env, db_url=db_url)

    def create(self):
        """Its master.cfg, and its database's schema."""
        self.writeConfig(MASTER_CFG)
        self.upgrade()
        return self

    def submit(self, n):
        with open(os.path.join(self.basedir, 'submit'), 'w') as f:
            f.write(str(n))

    # -- reading its database (read-only) -------------------------------------------------------

    def finishedBuilds(self):
        return self.query("SELECT COUNT(*) FROM builds WHERE complete_at IS NOT NULL")[0][0]

    def lastCompleteAt(self):
        return self.query("SELECT MAX(complete_at) FROM builds")[0][0]

    def marks(self):
        """{state name: value} of the catch-up marks in Buildbot's state table."""
        rows = self.query(
            "SELECT o.name, s.name, s.value_json FROM object_state s JOIN objects o"
            " ON o.id = s.objectid WHERE o.class_name = 'buildbot_stats.catchup'")
        return {f"{obj}:{name}": json.loads(value) for obj, name, value in rows}

    def dbSnapshot(self):
        """Every row of the tables a backfill reads (to prove it wrote nothing)."""
        out = {}
        for table in ('builds', 'build_properties', 'steps', 'build_data', 'object_state',
                      'objects', 'test_result_sets', 'buildrequests', 'buildsets'):
            rows = self.query(f"SELECT * FROM {table}")
            out[table] = sorted(
                repr(tuple(bytes(v) if isinstance(v, memoryview) else v for v in row))
                for row in rows)
        return out
