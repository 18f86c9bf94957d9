"""StatsService: owns the backends, the one subscription table (the captures, the look-ups'
feeds, the build-data recorder), the look-ups, the tag policy and the one stop bound."""

from __future__ import annotations

import functools

from twisted.internet import defer
from twisted.python import log

from buildbot import config
from buildbot.util import service
from buildbot_stats.captures.base import CaptureError
from buildbot_stats.checks import CheckedArguments
from buildbot_stats.checks import aTypeName
from buildbot_stats.checks import booleanProblem
from buildbot_stats.checks import report
from buildbot_stats.checks import shown
from buildbot_stats.deadline import within
from buildbot_stats.history.catchup import CatchUp
from buildbot_stats.history.recorder import STOP_TIMEOUT as RECORD_STOP_TIMEOUT
from buildbot_stats.history.recorder import BuildDataRecorder
from buildbot_stats.lookups import Lookups
from buildbot_stats.messages import YIELD_DATA
from buildbot_stats.reading.gauges import TestGauges
from buildbot_stats.registry import registerServiceClass
from buildbot_stats.regressions import Regressions
from buildbot_stats.storage.base import StatsStorageBase
from buildbot_stats.storage.sqlite import SQLiteStorageService
from buildbot_stats.subscriptions import Subscription
from buildbot_stats.subscriptions import SubscriptionTable
from buildbot_stats.tagging import DEFAULT_MAX_TAG_VALUES
from buildbot_stats.tagging import TagPolicy
from buildbot_stats.tagging import checkTagOptions
from buildbot_stats.timestamps import DataClock
from buildbot_stats.timestamps import captureOffset


@registerServiceClass
class StatsService(CheckedArguments, service.BuildbotService):
    """Routes Buildbot's events through the captures to the storage backends.

    :param storage_backends: a list of :class:`StatsStorageBase` instances; ``None`` means
        the embedded default (see the docs)
    :param name: the service name (default ``'StatsService'``)
    :param build_number: ``'tag'`` (default, Buildbot's layout) or ``'field'``: where the
        seed's captures write the build number (docs/migration.rst)
    """

    name = "StatsService"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.backends = []
        self._captures = []  # of every backend, each once, in the order of the config
        self._data_clock = DataClock()
        # every cached look-up the captures share, kept current from the MQ
        self.lookups = Lookups(self)
        # the extra tags and the cardinality guard, configured by reconfigService
        self.tag_policy = TagPolicy()
        self.capture_errors = 0
        # yieldMetricsValue data kept as Buildbot build data, for backfill and catch-up
        self.build_data_recorder = BuildDataRecorder(self)
        self.record_data = True
        # replays at start what the backends missed (docs/history.rst)
        self.catch_up = True
        self.catchup = CatchUp(self)
        # change detection (docs/regressions.rst), None when off; a component of the
        # subscription table (after the captures: the build's points are under way)
        self.regressions = None
        # ONE MQ consumer per routing key, for every component that wants messages
        # (buildbot_stats.subscriptions): the look-ups' feeds first, then the captures (this
        # service's own subscriptions), the recorder, then any component subscribed later
        self.subscription_table = SubscriptionTable(lambda: self.master)
        self._own_components = (self.lookups, self, self.build_data_recorder)
        self._components = list(self._own_components)
        self._consuming = False  # between registerConsumers and removeConsumers
        # the flaky, failing and slower tests per builder for /metrics, read from the
        # store the page reads (the answers' side: buildbot_stats.reading); it consumes
        # nothing from the MQ, so it is no component of the subscription table
        self.test_gauges = TestGauges(self)

    # -- configuration --------------------------------------------------------------

    #: set once the service has had a parent (a master): from then on, iterating it is
    #: Buildbot's business (its children, the backends)
    _attached = False

    def setServiceParent(self, parent):
        self._attached = True
        return super().setServiceParent(parent)

    def __iter__(self):
        if not self._attached and not self.running:
            # Buildbot's load_services iterates c['services']: a StatsService given alone,
            # not in a list, is iterated as its children (none yet) and silently not run
            config.error("c['services'] must be a list of services, got a StatsService: "
                         "write c.setdefault('services', []).append(stats.StatsService(...))")
            return iter(())
        return super().__iter__()

    def checkConfig(self, storage_backends=None, extra_tags=None,
                    max_tag_values=DEFAULT_MAX_TAG_VALUES, catch_up=True, record_data=True,
                    build_number='tag', regressions=True):
        checkTagOptions("StatsService", extra_tags, max_tag_values, build_number)
        report("StatsService", booleanProblem('catch_up', catch_up),
               booleanProblem('record_data', record_data))
        if not isinstance(regressions, (bool, Regressions)) and regressions is not None:
            config.error("StatsService: regressions must be True, False or "
                         f"stats.Regressions(...), got {shown(regressions)}")
        if storage_backends is None:
            return
        if not isinstance(storage_backends, (list, tuple)):
            if isinstance(storage_backends, StatsStorageBase):
                kind = type(storage_backends).__name__
                config.error(f"StatsService: storage_backends must be a list of storage "
                             f"backends, got a single {kind}: write "
                             f"storage_backends=[stats.{kind}(...)]")
            else:
                config.error(f"StatsService: storage_backends must be a list of storage "
                             f"backends, got {aTypeName(storage_backends)}")
            return
        names = set()
        for number, backend in enumerate(storage_backends):
            if not isinstance(backend, StatsStorageBase):
                # its type, not its value: a value in the wrong place may be a secret
                config.error(
                    f"StatsService: storage_backends[{number}] is {aTypeName(backend)}, not "
                    "a storage backend (use stats.InfluxStorageService, "
                    "stats.SQLiteStorageService or a subclass of stats.StatsStorageBase)"
                )
                continue
            if backend.name in names:
                config.error(
                    f"StatsService: two storage backends are named {backend.name!r}; "
                    "give each a distinct name=..."
                )
            names.add(backend.name)
            # its captures were checked by the backend itself (StatsStorageBase)

    @defer.inlineCallbacks
    def reconfigService(self, storage_backends=None, extra_tags=None,
                        max_tag_values=DEFAULT_MAX_TAG_VALUES, catch_up=True, record_data=True,
                        build_number='tag', regressions=True):
        self.tag_policy.configure(extra_tags, max_tag_values, build_number)
        self.catch_up = catch_up
        self.record_data = record_data
        if storage_backends is None:
            storage_backends = self.defaultStorageBackends()
        yield self._reconfigBackends(list(storage_backends))
        self._wireCaptures()
        self._warnUnknownBuilders()
        yield self._reconfigRegressions(regressions)
        yield self.registerConsumers()

    @defer.inlineCallbacks
    def _reconfigRegressions(self, regressions):
        """The change detection of ``regressions`` (True: the default settings), a
        component of the subscription table (:meth:`subscribe`); one already running with
        the same settings keeps running (and what it holds)."""
        new = Regressions() if regressions is True else (regressions or None)
        old = self.regressions
        if old is not None and new is not None and old.options() == new.options():
            return
        if old is not None and self.running:
            yield old.stop(self.stopBound())
        self.regressions = new
        if new is not None:
            new.attach(self)
            # subscribed before the old one leaves: the key is never dropped meanwhile
            yield self.subscribe(new)
            if self.running:
                new.start()
        if old is not None:
            yield self.unsubscribe(old)

    def defaultStorageBackends(self):
        """The backends used when ``storage_backends`` is not given: the embedded store,
        ``stats.sqlite`` in the master's basedir, with the default captures."""
        return [SQLiteStorageService()]

    @defer.inlineCallbacks
    def _reconfigBackends(self, new_backends):
        old_by_name = {b.name: b for b in self.backends}
        kept = []
        for new in new_backends:
            old = old_by_name.pop(new.name, None)
            if old is not None and old is not new and old.canReconfigWithSibling(new):
                # the running backend keeps its buffer and connections
                yield old.reconfigServiceWithSibling(new)
                old.captures = new.captures
                kept.append(old)
                continue
            if old is not None and old is not new:
                yield self._removeBackend(old)
            if new.parent is not self:
                yield new.setServiceParent(self)
            kept.append(new)
        for old in old_by_name.values():
            yield self._removeBackend(old)
        self.backends = kept

    @defer.inlineCallbacks
    def _removeBackend(self, backend):
        log.msg(f"buildbot_stats: removing storage backend {backend.name!r}")
        # removeService stops it, which flushes what it holds
        yield backend.disownServiceParent()

    def _wireCaptures(self):
        owners = {}
        captures = []
        for backend in self.backends:
            for cap in backend.captures:
                if id(cap) not in owners:
                    owners[id(cap)] = []
                    captures.append(cap)
                owners[id(cap)].append(backend)
        for number, cap in enumerate(captures):
            cap.attach(self, owners[id(cap)], captureOffset(number))
        self._captures = captures

    def _warnUnknownBuilders(self):
        """One log line for each capture naming a builder this master's configuration does
        not have: a typo records nothing, silently. Not a configuration error: the builder
        may be added later (or by a reconfig)."""
        builders = getattr(getattr(self.master, 'config', None), 'builders', None)
        if not isinstance(builders, (list, tuple)):
            return  # no master configuration to compare with (a backend used alone)
        known = {getattr(b, 'name', None) for b in builders}
        for cap in self._captures:
            for name in cap.namedBuilders():
                if name not in known:
                    log.msg(f"buildbot_stats: warning: {cap.describe()} names the builder "
                            f"{name!r}, which this master does not have; it records "
                            "nothing until a builder of that name exists")

    # -- MQ subscriptions --------------------------------------------------------------

    def subscribe(self, component):
        """Add a component to the subscription table (the contract:
        :mod:`buildbot_stats.subscriptions`): its ``subscriptions()`` are consumed from now
        on (from the first configuration, when the service has none yet), and at every
        reconfig. A Deferred, fired once its consumers are in place."""
        if component not in self._components:
            self._components.append(component)
        return self.registerConsumers() if self._consuming else defer.succeed(None)

    def unsubscribe(self, component):
        """Remove a component added by :meth:`subscribe` (a Deferred)."""
        if component in self._components and component not in self._own_components:
            self._components.remove(component)
            if hasattr(component, 'subscribed'):
                component.subscribed(set())
        return self.registerConsumers() if self._consuming else defer.succeed(None)

    def subscriptions(self):
        """The captures' part of the table: each capture's routing key, replayed messages
        included, only those of builds this master ran."""
        return [Subscription(cap.routingKey, cap.consumer, cap.describe(), replayed=True,
                             failed=functools.partial(self._captureFailed, cap))
                for cap in self._captures]

    @defer.inlineCallbacks
    def registerConsumers(self):
        """Consume every routing key the components want now, once each (see
        :mod:`buildbot_stats.subscriptions`): keys no longer wanted are unsubscribed, new
        ones subscribed. The consumers dispatch to what is current when a message arrives,
        so a reconfig never leaves two consumers for a key nor drops one."""
        # the caches the captures read are kept current from the MQ while they are used
        self.lookups.follow({name for cap in self._captures for name in getattr(cap, 'uses', ())})
        self.build_data_recorder.enabled = self.record_data
        self._consuming = True
        wanted = [(component, component.subscriptions()) for component in self._components]
        yield self.subscription_table.update([sub for _, subs in wanted for sub in subs])
        yield self._tellSubscribed(wanted)

    @defer.inlineCallbacks
    def removeConsumers(self):
        """Consume nothing (the components are told; :meth:`registerConsumers` starts
        again)."""
        self._consuming = False
        yield self.subscription_table.stop()
        yield self._tellSubscribed([(c, ()) for c in self._components])

    @defer.inlineCallbacks
    def _tellSubscribed(self, wanted):
        consumed = self.subscription_table.keys
        for component, subs in wanted:
            if hasattr(component, 'subscribed'):
                yield component.subscribed({tuple(s.key) for s in subs} & consumed)

    def dispatchReplayed(self, key, routingKey, msg):
        """Hand a message a backfill or a catch-up replays to the subscriptions of ``key``
        that take replayed messages (the captures), as if it came from the MQ."""
        self.subscription_table.dispatch(tuple(key), routingKey, msg, replayed=True)

    def wantsReplayed(self, key):
        """Whether some subscription takes the replayed messages of ``key``."""
        return self.subscription_table.wants(key, replayed=True)

    @property
    def foreign_messages(self):
        """Messages skipped because another master ran the build."""
        return self.subscription_table.foreign_messages

    def _captureFailed(self, cap, failure, routingKey, msg):
        self.capture_errors += 1
        if failure.check(CaptureError):
            log.msg(f"buildbot_stats: error: {failure.value}")
        else:
            build = msg.get('build_data', msg) if isinstance(msg, dict) else {}
            log.err(
                failure,
                f"buildbot_stats: {cap.describe()} failed for build #{build.get('number')} "
                f"(buildid {build.get('buildid')}, builderid {build.get('builderid')})",
            )

    # -- counters -----------------------------------------------------------------------

    def metrics(self):
        """Every counter of the service in one dict: the one place to read them.

        ``capture_errors``, ``foreign_messages``, ``subscriber_errors`` (failures of the
        other components of the subscription table: look-ups, recorder, change detection),
        ``cache_misses`` (data API look-ups the :class:`~buildbot_stats.lookups.Lookups`
        could not answer), ``demoted_tags`` (tags written as fields past
        ``max_tag_values``), ``unrecorded_data`` (yieldMetricsValue calls not kept as build
        data, see docs/history.rst), ``regressions`` (change detection's counters,
        docs/regressions.rst; absent when it is off) and ``backends``: ``{backend name:
        backend.metrics()}`` (an InfluxDB backend's include ``limit_rejected`` and its
        database's series and limit: docs/scaling.rst, "InfluxDB's series limit").
        """
        counters = {
            'capture_errors': self.capture_errors,
            'foreign_messages': self.foreign_messages,
            'subscriber_errors': self.subscription_table.errors,
            'cache_misses': sum(self.lookups.misses.values()),
            'demoted_tags': len(self.tag_policy.demoted),
            'unrecorded_data': self.build_data_recorder.unrecorded,
        }
        if self.regressions is not None:
            counters['regressions'] = self.regressions.metrics()
        counters['backends'] = {b.name: b.metrics() for b in self.backends}
        return counters

    # -- data from build steps --------------------------------------------------------------

    def yieldMetricsValue(self, data_name, post_data, buildid):
        """Post ``post_data`` (a dict of fields) as ``data_name`` for build ``buildid``.

        The point is stamped with the time of this call. It reaches the backends through
        the MQ message ``('stats-yieldMetricsValue', 'stats-yield-data')`` and the
        CaptureData captures that match it. Unless ``record_data=False``, it is also kept
        for the build's record (one build-data row written when the build finishes,
        docs/history.rst), so that a backfill replays it. The Deferred fires once the
        message is produced (after a data API look-up of the build when its ``new``
        message was not seen); it does not wait for the record.
        """
        timestamp = self._data_clock.next(self.master.reactor.seconds())
        build_data = self.lookups.builds.lookup(buildid)
        if type(build_data) is defer.Deferred:
            return build_data.addCallback(self._produceData, data_name, post_data, buildid,
                                          timestamp)
        try:
            return self._produceData(build_data, data_name, post_data, buildid, timestamp)
        except Exception:
            return defer.fail()

    def _produceData(self, build_data, data_name, post_data, buildid, timestamp):
        if build_data is None:
            raise ValueError(f"yieldMetricsValue({data_name!r}): no build with id {buildid!r}")
        msg = {
            'data_name': data_name,
            'post_data': post_data,
            'build_data': build_data,
            'masterid': self.master.masterid,
            'timestamp': timestamp,
        }
        self.master.mq.produce(YIELD_DATA, msg)
        if self.record_data:
            # kept in memory, written when the build ends: the step does not wait for it
            self.build_data_recorder.record(build_data, data_name, post_data, timestamp)
        return defer.succeed(None)

    # -- catch-up -------------------------------------------------------------------------------

    @defer.inlineCallbacks
    def startService(self):
        yield super().startService()
        # what troubleshooting looks for first (docs/quickstart.rst): is the service there?
        backends = ', '.join(
            f"{type(b).__name__} {b.name!r} ({len(b.captures)} "
            f"capture{'' if len(b.captures) == 1 else 's'})" for b in self.backends) or 'none'
        log.msg(f"buildbot_stats: {self.name} started; backends: {backends}")
        if self.catch_up and self._hasHistory():
            # in the background: the master's start is not delayed
            self.catchup.start()
        if self.regressions is not None:
            # the full analysis, once what the catch-up replays is in the store
            self.regressions.start(after=self.catchup.whenDone())

    def _hasHistory(self):
        db = getattr(self.master, 'db', None)
        return (getattr(db, 'pool', None) is not None and hasattr(db, 'state')
                and getattr(self.master, 'masterid', None) is not None)

    # -- stopping -----------------------------------------------------------------------------

    def drain(self):
        """A Deferred that fires when every capture still running has handed its points
        to the backends (not when the backends have written them: see ``flush``)."""
        return self.subscription_table.drain()

    def stopBound(self):
        """The most seconds :meth:`stopService` waits for points to be written: the largest
        ``stop_timeout`` among the backends (the spool files are written on top)."""
        return max((b.stopTimeout() for b in self.backends), default=0.0)

    @defer.inlineCallbacks
    def stopService(self):
        """One stop sequence, within one bound (:meth:`stopBound`): stop a catch-up in
        progress and consuming, let the captures still running hand over their points, then
        stop every backend at once, each flushing once with what is left of the bound (its
        own ``stop_timeout`` at most), then keeping (spool) or counting what is still
        pending. The record of yieldMetricsValue calls (Buildbot's database, not a backend),
        builds still running included, is written meanwhile, within its own bound. The
        catch-up's mark is recorded last, from the backends' final counters."""
        reactor = self.master.reactor
        deadline = reactor.seconds() + self.stopBound()
        backends = list(self.backends)
        for b in backends:
            b.stop_deadline = deadline
        try:
            # a replay may be waiting for a backend's flush: never past the bound either
            stopped = yield within(reactor, defer.maybeDeferred(self.catchup.stopReplay),
                                    deadline - reactor.seconds())
            if not stopped:
                log.msg("buildbot_stats: error: the catch-up was still running at the stop "
                        f"bound ({self.stopBound()} s); the next start replays from its mark")
            yield self.removeConsumers()
            if self.regressions is not None:
                # it writes through the backends: stopped before them
                yield self.regressions.stop(max(0.0, deadline - reactor.seconds()))
            drained = yield within(reactor, self.drain(), deadline - reactor.seconds())
            if not drained:
                log.msg("buildbot_stats: error: captures still running at the stop bound "
                        f"({self.stopBound()} s); their points are not stored")
            # the backends are child services: stopped in parallel, each until the deadline;
            # alongside, the record of yieldMetricsValue calls goes to Buildbot's database
            recorded = self.build_data_recorder.wait(RECORD_STOP_TIMEOUT)
            yield super().stopService()
            yield recorded
        finally:
            for b in backends:
                b.stop_deadline = None
        if self.catch_up and self._hasHistory():
            yield self.catchup.checkpointAtStop()
        log.msg(f"buildbot_stats: {self.name} stopped: {self.metrics()}")

