"""What every master of the site shares: database, message queue, workers, builders and the
statistics. Each master's ``master.cfg`` calls :func:`configure` with its own name.

Two masters share one PostgreSQL database and one crossbar router (Buildbot's ``wamp`` MQ);
each has its own worker. Every master runs the same StatsService: each writes the points of
the builds it ran, and only those, to the shared InfluxDB (tagged with its name) and to its own
``stats.sqlite``. See docs/multimaster.rst.

The site's addresses come from the environment, with the defaults a real site would edit:

- ``BUILDBOT_DB_URL``: ``postgresql+psycopg2://buildbot@db.example.org/buildbot`` (SQLAlchemy 2
  maps a bare ``postgresql://`` to psycopg 3; name the driver you installed);
- ``BUILDBOT_MQ_URL``: ``ws://mq.example.org:8080/ws`` (a crossbar ``websocket`` transport);
- ``BUILDBOT_MQ_REALM``: ``buildbot``;
- ``BUILDBOT_INFLUXDB_URL``: ``http://influxdb.example.org:8086``;
- ``BUILDBOT_PB_PORT``: ``tcp:9989`` (where this master's workers connect);
- ``BUILDBOT_WWW_PORT``: ``8010``;
- ``BUILDBOT_WORKER_PASSWORD``: ``pass``.
"""

import os

from twisted.internet import defer

from buildbot.plugins import schedulers
from buildbot.plugins import steps
from buildbot.plugins import util
from buildbot.plugins import worker
from buildbot.process.buildstep import BuildStep
from buildbot.process.results import SUCCESS

from buildbot_stats import stats

# master name -> the worker that connects to it
WORKERS = {'master-a': 'worker-a', 'master-b': 'worker-b'}


def setting(name, default):
    return os.environ.get(name, default)


class RunTests(BuildStep):
    """Reports 4 tests as Buildbot test results: 3 passed, 1 failed."""

    name = 'unit-tests'

    @defer.inlineCallbacks
    def run(self):
        setid = yield self.addTestResultSet('unit tests', 'pass_fail', 'boolean')
        for test, ok in [('t1', '1'), ('t2', '1'), ('t3', '1'), ('t4', '0')]:
            yield self.addTestResult(setid, ok, test_name=test)
        return SUCCESS


class ReportCoverage(stats.StatsStepMixin, BuildStep):
    """A custom step that reports a figure of its own through yieldMetricsValue."""

    name = 'coverage'

    @defer.inlineCallbacks
    def run(self):
        yield self.yieldMetricsValue('coverage', {'percent': 87.5, 'lines': 1200})
        return SUCCESS


def captures():
    return [
        # Buildbot's own statistics (historical series '<builder>-build-times' etc.)
        stats.CaptureBuildStartTimeAllBuilders(),
        stats.CaptureBuildEndTimeAllBuilders(),
        stats.CaptureBuildDurationAllBuilders(),
        stats.CapturePropertyAllBuilders('warnings'),
        stats.CaptureDataAllBuilders('coverage'),
        # the build statistics: measurements builds, build_requests, steps, tests
        stats.CaptureBuildResults(),
        stats.CaptureQueueTimes(),
        stats.CaptureStepTimes(),
        stats.CaptureTestResults(),
    ]


def configure(c, master_name, extra_tags=None):
    """Fill the BuildmasterConfig ``c`` of master ``master_name`` (a key of WORKERS);
    ``extra_tags`` are added to the ``master`` tag of every point."""
    c['title'] = 'buildbot_stats multi-master example'
    c['buildbotNetUsageData'] = None
    # -- several masters: one database, one message queue ------------------------------
    c['multiMaster'] = True
    c['db'] = {'db_url': setting('BUILDBOT_DB_URL',
                                 'postgresql+psycopg2://buildbot@db.example.org/buildbot')}
    c['mq'] = {'type': 'wamp',
               'router_url': setting('BUILDBOT_MQ_URL', 'ws://mq.example.org:8080/ws'),
               'realm': setting('BUILDBOT_MQ_REALM', 'buildbot')}
    c['protocols'] = {'pb': {'port': setting('BUILDBOT_PB_PORT', 'tcp:9989')}}
    c['www'] = {'port': setting('BUILDBOT_WWW_PORT', '8010'), 'plugins': {}}
    # every master knows every worker; each worker connects to one master
    password = setting('BUILDBOT_WORKER_PASSWORD', 'pass')
    c['workers'] = [worker.Worker(name, password) for name in sorted(WORKERS.values())]

    # -- builders ------------------------------------------------------------------------
    app = util.BuildFactory()
    app.addStep(steps.ShellCommand(name='compile', command=['echo', 'compiled']))
    app.addStep(RunTests())
    app.addStep(steps.SetProperty(property='warnings', value=2))
    app.addStep(ReportCoverage())
    c['builders'] = [
        # a build runs on whichever master claims its request first; a forced build can
        # name its worker, and so its master (enforceChosenWorker)
        util.BuilderConfig(name='app', workernames=sorted(WORKERS.values()), factory=app,
                           canStartBuild=util.enforceChosenWorker),
    ]
    # every request its own build (Buildbot merges compatible pending requests by default)
    c['collapseRequests'] = False
    c['schedulers'] = [
        schedulers.ForceScheduler(name='force', builderNames=['app'],
                                  properties=[util.WorkerChoiceParameter()]),
    ]

    # -- statistics: the same on every master --------------------------------------------
    shared = captures()
    # appended: c['services'] = [...] would drop the services already there
    c.setdefault('services', []).append(
        stats.StatsService(
            storage_backends=[
                # one InfluxDB database for the site; every point carries its master's name
                stats.InfluxStorageService(
                    setting('BUILDBOT_INFLUXDB_URL', 'http://influxdb.example.org:8086'),
                    None, None, None, 'buildbot', shared, create_database=True),
                # and each master's own embedded store, in its basedir
                stats.SQLiteStorageService(captures=shared),
            ],
            extra_tags=dict(extra_tags or {}, master=master_name),
            name='StatsService',
        ),
    )
