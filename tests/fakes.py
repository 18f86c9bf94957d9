"""Shared set-up for unit tests on Buildbot's fake master (fake clock, real in-memory DB)."""

from __future__ import annotations

from twisted.internet import defer

from buildbot.test import fakedb
from buildbot.test.fake import fakemaster
from buildbot.test.reactor import TestReactorMixin

from buildbot_stats import stats

MASTERID = fakedb.FakeDBConnector.MASTER_ID
# epoch seconds of the builds inserted below
STARTED_AT = 1_700_000_000
COMPLETE_AT = 1_700_000_042


class FakeMasterMixin(TestReactorMixin):
    """A fake master with data API, MQ and DB, and helpers to insert and finish builds."""

    @defer.inlineCallbacks
    def setUpFakeMaster(self):
        self.setup_test_reactor()
        self.master = yield fakemaster.make_master(self, wantData=True, wantMq=True, wantDb=True)
        # the fake MQ's validators predate Buildbot 4's build messages (datetimes, extra keys);
        # we deliver messages exactly as the data API returns them, like the real MQ does
        self.master.mq.verifyMessages = False
        yield self.master.db.insert_test_data([
            fakedb.Master(id=MASTERID),
            fakedb.Worker(id=13, name='wrk'),
            fakedb.Builder(id=79, name='alpha'),
            fakedb.Builder(id=80, name='beta'),
            fakedb.Buildset(id=98, results=0, reason='because'),
        ])
        self._next_build = 20

    @defer.inlineCallbacks
    def insertBuild(self, builderid=79, number=None, masterid=MASTERID, properties=None,
                    started_at=STARTED_AT, complete_at=COMPLETE_AT):
        buildid = self._next_build
        self._next_build += 1
        if number is None:
            number = buildid - 20
        rows = [
            fakedb.BuildRequest(id=buildid, buildsetid=98, builderid=builderid),
            fakedb.Build(id=buildid, number=number, builderid=builderid,
                         buildrequestid=buildid, workerid=13, masterid=masterid, results=0,
                         started_at=started_at, complete_at=complete_at),
        ]
        if masterid != MASTERID:
            rows.insert(0, fakedb.Master(id=masterid))
        for name, value in (properties or {}).items():
            rows.append(fakedb.BuildProperty(buildid=buildid, name=name, value=value))
        yield self.master.db.insert_test_data(rows)
        build = yield self.master.data.get(('builds', buildid))
        return build

    @defer.inlineCallbacks
    def startStats(self, backends):
        self.svc = stats.StatsService(storage_backends=backends)
        yield self.svc.setServiceParent(self.master)
        yield self.master.startService()
        self.addCleanup(self.master.stopService)
        return self.svc

    @defer.inlineCallbacks
    def finishBuild(self, build):
        """Deliver the build's 'finished' message and wait until the captures are done."""
        self.master.mq.callConsumer(
            ('builders', str(build['builderid']), 'builds', str(build['buildid']), 'finished'),
            build,
        )
        yield self.svc.drain()

    @defer.inlineCallbacks
    def yieldData(self, data_name, post_data, build):
        """yieldMetricsValue, then deliver the message the fake MQ does not route."""
        self.master.mq.clearProductions()
        yield self.svc.yieldMetricsValue(data_name, post_data, build['buildid'])
        for key, msg in self.master.mq.productions:
            self.master.mq.callConsumer(key, msg)
        yield self.svc.drain()
