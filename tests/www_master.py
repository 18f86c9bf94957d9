"""A real master with buildbot-www and the Statistics page, a real worker and real builds:
what the web page tests (HTTP and browser) share."""

from __future__ import annotations

import json
import os
import urllib.request

from twisted.internet import defer
from twisted.internet import threads

from buildbot.plugins import schedulers
from buildbot.plugins import steps
from buildbot.plugins import util
from buildbot.process.buildstep import BuildStep
from buildbot.process.results import FAILURE
from buildbot.process.results import SUCCESS
from buildbot.test.util.integration import RunMasterBase

from buildbot_stats import stats
from tests import test_integration_buildstats as buildstats
from buildbot_stats.storage.sqlite.values import encodeRow
from buildbot_stats.storage.sqlite.writer import StoreWriter

STORE = 'stats.sqlite'
ADMIN = ('admin', 'secret-pw')


class RunTests(stats.StatsStepMixin, buildstats.RunTests):
    """3 passed tests, 1 failed and 2 skipped; then a coverage value and a data series
    named <script>."""

    @defer.inlineCallbacks
    def run(self):
        yield super().run()
        number = self.build.number
        yield self.yieldMetricsValue('coverage', {'percent': 80.0 + number})
        yield self.yieldMetricsValue('<script>', {'value': number})
        return SUCCESS


class MaybeFail(BuildStep):
    """Fails the builds whose property ``fail`` is set."""

    name = 'maybe-fail'

    def run(self):
        return defer.succeed(FAILURE if self.getProperty('fail') else SUCCESS)


def captures():
    return [
        stats.CaptureBuildDurationAllBuilders(),
        stats.CaptureBuildResults(),
        stats.CaptureQueueTimes(),
        stats.CaptureStepTimes(),
        stats.CaptureTestResults(),
        stats.CaptureTestHistory(),
        stats.CaptureDataAllBuilders('coverage'),
        stats.CaptureDataAllBuilders('<script>'),
    ]


def masterConfig(backends, restricted=False, dashboard=None, service_options=None):
    c = {}
    c['schedulers'] = [schedulers.ForceScheduler(
        name="force", builderNames=["alpha", "beta"],
        properties=[util.BooleanParameter(name='fail', default=False)])]
    alpha = util.BuildFactory()
    alpha.addStep(steps.ShellCommand(command=['echo', 'hello']))
    # hidden in Buildbot's UI: out of the page's slowest steps (as worker_preparation)
    alpha.addStep(steps.SetProperty(property='warnings', value=3, hideStepIf=True))
    alpha.addStep(RunTests())
    alpha.addStep(MaybeFail())
    beta = util.BuildFactory()
    beta.addStep(steps.ShellCommand(command=['true']))
    c['builders'] = [
        util.BuilderConfig(name="alpha", workernames=["local1"], factory=alpha),
        util.BuilderConfig(name="beta", workernames=["local1"], factory=beta),
    ]
    c['services'] = [stats.StatsService(storage_backends=backends, name="StatsService",
                                        **(service_options or {}))]
    c['www'] = {
        'port': 'tcp:0:interface=127.0.0.1',
        'plugins': {'wsgi_dashboards': [dashboard or stats.statsDashboard()]},
    }
    if restricted:
        c['www']['auth'] = util.UserPasswordAuth([ADMIN])
        c['www']['authz'] = util.Authz(
            allowRules=[util.AnyEndpointMatcher(role="admins")],
            roleMatchers=[util.RolesFromUsername(roles=['admins'], usernames=[ADMIN[0]])])
    return c


def oldBuildRow(builder, number, duration, when):
    """A point of a build at ``when`` (history older than the test's builds)."""
    return encodeRow(series=f'{builder}-build-times', fields={'duration': duration},
                     tags={'builder_name': builder, 'build_number': str(number)}, time=when)


def writeRows(path, rows):
    """Write points into the store as another program would, while the master writes it
    (each waits for the other's transaction), in a thread."""
    def write():
        writer = StoreWriter(30.0)
        try:
            writer.write(path, rows)
        finally:
            writer.close()
    return threads.deferToThread(write)


@defer.inlineCallbacks
def maintainStore(master):
    """Run the SQLite backend's maintenance (rollups, retention) until it is done, as its
    timer does every minute."""
    service = master.service_manager.namedServices['StatsService']
    for backend in service.backends:
        if hasattr(backend, 'maintain'):
            while (yield backend.maintain()):
                pass


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class PageMasterMixin:
    """Starts the master, runs builds, answers HTTP from a thread (never the reactor's)."""

    proto = 'pb'

    @defer.inlineCallbacks
    def startMaster(self, restricted=False, backends=None, dashboard=None,
                    service_options=None):
        if backends is None:
            backends = [stats.SQLiteStorageService(path=STORE, captures=captures(),
                                                   flush_interval=0.1, name='sqlite')]
        yield self.setup_master(masterConfig(backends, restricted, dashboard, service_options))
        self.master = self.tested_master.master
        self.base = f"http://127.0.0.1:{self.master.www.getPortnum()}/"

    @defer.inlineCallbacks
    def runBuilds(self, plan):
        """``plan``: ``[(builder, fail), ...]``; the finished builds, in order."""
        builds = []
        for builder, fail in plan:
            b = yield self.doForceBuild(wantProperties=True,
                                        forceParams={'builderNames': [builder], 'fail': fail})
            builds.append(b)
        # every point written: the store is read by another connection
        service = self.master.service_manager.namedServices['StatsService']
        for backend in service.backends:
            yield backend.flush(30)
        return builds

    def storePath(self):
        return os.path.join(self.master.basedir, STORE)

    def get(self, path, cookie=None, auth=None):
        """``(status, body)`` of a GET, run in a thread."""
        def fetch():
            req = urllib.request.Request(self.base + path)
            if cookie:
                req.add_header('Cookie', cookie)
            if auth:
                import base64
                token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
                req.add_header('Authorization', 'Basic ' + token)
            opener = urllib.request.build_opener(NoRedirect)
            try:
                with opener.open(req, timeout=30) as r:
                    return r.status, r.read().decode('utf-8'), r.headers
            except urllib.error.HTTPError as e:
                return e.code, e.read().decode('utf-8', 'replace'), e.headers
        return threads.deferToThread(fetch)

    def getJson(self, path):
        d = self.get(path)
        d.addCallback(lambda r: (r[0], json.loads(r[1]) if r[0] == 200 else None))
        return d


__all__ = ['ADMIN', 'PageMasterMixin', 'RunMasterBase', 'maintainStore', 'masterConfig',
           'oldBuildRow', 'writeRows']
