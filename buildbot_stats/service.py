"""StatsService: owns the backends and the MQ subscriptions of their captures."""

from __future__ import annotations

import functools

from twisted.internet import defer
from twisted.python import log
from twisted.python.failure import Failure

from buildbot import config
from buildbot.util import service
from buildbot.util.deferwaiter import DeferWaiter

from buildbot_stats.messages import YIELD_DATA
from buildbot_stats.captures.base import CaptureError
from buildbot_stats.checks import CheckedArguments
from buildbot_stats.checks import aTypeName
from buildbot_stats.checks import shown
from buildbot_stats.deadline import within
from buildbot_stats.history.catchup import CatchUp
from buildbot_stats.history.recorder import STOP_TIMEOUT as RECORD_STOP_TIMEOUT
from buildbot_stats.history.recorder import BuildDataRecorder
from buildbot_stats.lookups import Lookups
from buildbot_stats.reading.gauges import TestGauges
from buildbot_stats.registry import registerServiceClass
from buildbot_stats.messages import normalizeMessage
from buildbot_stats.storage.base import StatsStorageBase
from buildbot_stats.storage.sqlite import SQLiteStorageService
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
        self.consumers = {}
        self._captures_by_key = {}
        self._inflight = DeferWaiter()
        self._data_clock = DataClock()
        # every cached look-up the captures share, kept current from the MQ
        self.lookups = Lookups(self)
        # the extra tags and the cardinality guard, configured by reconfigService
        self.tag_policy = TagPolicy()
        self.capture_errors = 0
        self.foreign_messages = 0
        # yieldMetricsValue data kept as Buildbot build data, for backfill and catch-up
        self.build_data_recorder = BuildDataRecorder(self)
        self.record_data = True
        # replays at start what the backends missed (docs/history.rst)
        self.catch_up = True
        self.catchup = CatchUp(self)
        # the flaky, failing and slower tests per builder for /metrics, read from the
        # store the page reads (the answers' side: buildbot_stats.reading)
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
                    build_number='tag'):
        checkTagOptions("StatsService", extra_tags, max_tag_values, build_number)
        if not isinstance(catch_up, bool):
            config.error(f"StatsService: catch_up must be True or False, got {shown(catch_up)}")
        if not isinstance(record_data, bool):
            config.error("StatsService: record_data must be True or False, got "
                         f"{shown(record_data)}")
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
                        build_number='tag'):
        self.tag_policy.configure(extra_tags, max_tag_values, build_number)
        self.catch_up = catch_up
        self.record_data = record_data
        if storage_backends is None:
            storage_backends = self.defaultStorageBackends()
        yield self._reconfigBackends(list(storage_backends))
        self._wireCaptures()
        self._warnUnknownBuilders()
        yield self.registerConsumers()

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
        by_key = {}
        for number, cap in enumerate(captures):
            cap.attach(self, owners[id(cap)], captureOffset(number))
            by_key.setdefault(tuple(cap.routingKey), []).append(cap)
        self._captures_by_key = by_key

    def _warnUnknownBuilders(self):
        """One log line for each capture naming a builder this master's configuration does
        not have: a typo records nothing, silently. Not a configuration error: the builder
        may be added later (or by a reconfig)."""
        builders = getattr(getattr(self.master, 'config', None), 'builders', None)
        if not isinstance(builders, (list, tuple)):
            return  # no master configuration to compare with (a backend used alone)
        known = {getattr(b, 'name', None) for b in builders}
        for caps in self._captures_by_key.values():
            for cap in caps:
                for name in cap.namedBuilders():
                    if name not in known:
                        log.msg(f"buildbot_stats: warning: {cap.describe()} names the builder "
                                f"{name!r}, which this master does not have; it records "
                                "nothing until a builder of that name exists")

    # -- MQ subscriptions --------------------------------------------------------------

    @defer.inlineCallbacks
    def registerConsumers(self):
        """Consume every routing key the captures need, once each.

        One consumer per routing key dispatches to the captures current at the time of the
        message, so a reconfig never leaves two consumers for a capture nor drops one.
        """
        wanted = set(self._captures_by_key)
        for key in list(self.consumers):
            if key not in wanted:
                yield self.consumers.pop(key).stopConsuming()
        for key in sorted(wanted - set(self.consumers), key=repr):
            self.consumers[key] = yield self.master.mq.startConsuming(
                functools.partial(self._dispatch, key), key
            )
        # the messages that keep current the look-ups the captures use
        uses = {name for caps in self._captures_by_key.values() for cap in caps
                for name in getattr(cap, 'uses', ())}
        yield self.lookups.startConsuming(self.master.mq, uses)
        # which builds are new (nothing recorded yet) and which ended, for the recorder
        if self.record_data:
            yield self.build_data_recorder.startConsuming(self.master.mq)
        else:
            yield self.build_data_recorder.stopConsuming()

    @defer.inlineCallbacks
    def removeConsumers(self):
        consumers = list(self.consumers.values())
        self.consumers = {}
        for consumer in consumers:
            yield consumer.stopConsuming()
        yield self.lookups.stopConsuming()
        yield self.build_data_recorder.stopConsuming()

    def _dispatch(self, key, routingKey, msg):
        # the same shape under every MQ (the wamp MQ sends datetimes as epoch seconds)
        msg = normalizeMessage(routingKey, msg)
        if not self._fromThisMaster(msg):
            self.foreign_messages += 1
            return
        for cap in self._captures_by_key.get(key, ()):
            # most captures finish at once (their look-ups are cached): no Deferred then
            try:
                result = cap.consumer(routingKey, msg)
            except Exception:
                self._captureFailed(Failure(), cap, msg)
                continue
            if result is not None and isinstance(result, defer.Deferred):
                result.addErrback(self._captureFailed, cap, msg)
                self._inflight.add(result)

    def _fromThisMaster(self, msg):
        # With several masters on one MQ every master sees every build; only the one that
        # ran the build (or took the yieldMetricsValue call) writes its points. A message
        # without masterid is everyone's. Edge cases (a master dying mid-build):
        # docs/multimaster.rst.
        ours = self.master.masterid
        theirs = msg.get('masterid') if isinstance(msg, dict) else None
        return ours is None or theirs is None or theirs == ours

    def _captureFailed(self, failure, cap, msg):
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

        ``capture_errors``, ``foreign_messages``, ``cache_misses`` (data API look-ups the
        :class:`~buildbot_stats.lookups.Lookups` could not answer), ``demoted_tags`` (tags written as fields past
        ``max_tag_values``), ``unrecorded_data`` (yieldMetricsValue calls not kept as
        build data, see docs/history.rst) and ``backends``: ``{backend name: backend.metrics()}``
        (an InfluxDB backend's include ``limit_rejected`` and its database's series and
        limit: docs/scaling.rst, "InfluxDB's series limit").
        """
        return {
            'capture_errors': self.capture_errors,
            'foreign_messages': self.foreign_messages,
            'cache_misses': sum(self.lookups.misses.values()),
            'demoted_tags': len(self.tag_policy.demoted),
            'unrecorded_data': self.build_data_recorder.unrecorded,
            'backends': {b.name: b.metrics() for b in self.backends},
        }

    # -- data from build steps --------------------------------------------------------------

    def yieldMetricsValue(self, data_name, post_data, buildid):
        """Post ``post_data`` (a dict of fields) as ``data_name`` for build ``buildid``.

        The point is stamped with the time of this call. It reaches the backends through
        the MQ message ``('stats-yieldMetricsValue', 'stats-yield-data')`` and the
        CaptureData captures that match it. Unless ``record_data=False``, it is also
        recorded as the build's data ``stats.<data_name>`` (docs/history.rst), so that a
        backfill replays it; the Deferred fires once that write is done.
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
        if not self.record_data:
            return defer.succeed(None)
        # a Deferred: the step waits until the data is kept as build data
        return self.build_data_recorder.record(buildid, data_name, post_data, timestamp)

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

    def _hasHistory(self):
        db = getattr(self.master, 'db', None)
        return (getattr(db, 'pool', None) is not None and hasattr(db, 'state')
                and getattr(self.master, 'masterid', None) is not None)

    # -- stopping -----------------------------------------------------------------------------

    def drain(self):
        """A Deferred that fires when every capture still running has handed its points
        to the backends (not when the backends have written them: see ``flush``)."""
        return self._inflight.wait()

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
        pending. The yieldMetricsValue calls still being recorded as build data (Buildbot's
        database, not a backend) are written meanwhile, within their own bound. The
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
            drained = yield within(reactor, self.drain(), deadline - reactor.seconds())
            if not drained:
                log.msg("buildbot_stats: error: captures still running at the stop bound "
                        f"({self.stopBound()} s); their points are not stored")
            # the backends are child services: stopped in parallel, each until the deadline;
            # alongside, the build data still being recorded goes to Buildbot's database
            recorded = self.build_data_recorder.wait(RECORD_STOP_TIMEOUT)
            yield super().stopService()
            yield recorded
        finally:
            for b in backends:
                b.stop_deadline = None
        if self.catch_up and self._hasHistory():
            yield self.catchup.checkpointAtStop()
        log.msg(f"buildbot_stats: {self.name} stopped: {self.metrics()}")

