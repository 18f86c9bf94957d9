"""What ``yieldMetricsValue`` leaves in Buildbot's database, so that it can be replayed.

Each call is also recorded as Buildbot build data (``master.data.updates.setBuildData``)
named ``stats.<data_name>``: a JSON document (UTF-8 bytes)::

    {"format": 1, "values": [{"timestamp": 1718000000.123456, "post_data": {...}}, ...]}

one entry per call for that build and name, in call order, ``timestamp`` being the time the
live point carries. The backfill command and the catch-up read it back
(:mod:`buildbot_stats.history.reader`) and post the same points. Data that JSON cannot hold
(a datetime, bytes, NaN...) still goes to the backends live but is not recorded: it is
logged once per data name and counted in ``StatsService.metrics()['unrecorded_data']``.

Each write replaces the whole document, so the recorder must know what is stored before it
appends. It knows without reading when:

* it saw the build's ``new`` message, with an id above every build it ever recorded for: no
  one recorded anything for that build yet. Until the build's ``finished`` message, its
  values stay in memory whatever their number (bounded by the builds running at once);
* it wrote the values itself and still holds them (a bounded memo of finished or unknown
  builds; one evicted is read back once at its next call).

Calls for one build and name that arrive while a write of them is in flight are written
together in the next single write, in call order.
"""

from __future__ import annotations

from collections import OrderedDict

from twisted.internet import defer
from twisted.python import log

from buildbot.util.deferwaiter import DeferWaiter

from buildbot_stats.history.reader import BUILD_DATA_PREFIX
from buildbot_stats.history.reader import decodeBuildData
from buildbot_stats.history.reader import encodeBuildData
from buildbot_stats.deadline import within
from buildbot_stats.messages import normalizing

SOURCE = 'buildbot_stats'

#: Seconds ``StatsService.stopService`` waits for the writes in flight and pending: the master
#: must stop even when its database hangs.
STOP_TIMEOUT = 120.0

#: The MQ messages that tell the recorder which builds are new and which ones ended. Buildbot
#: announces each build event under three routing keys (builders/.../builds/<number>,
#: builds/<buildid>, workers/.../builds/<buildid>); these are ones neither the look-ups'
#: feeds (buildbot_stats.lookups.FEEDS) nor the captures consume, so each routing key keeps
#: one consumer.
FEEDS = {
    'new': ('workers', None, 'builds', None, 'new'),
    'finished': ('builds', None, 'finished'),
}


class _Series:
    """The recorded values of one build and data name, and the calls waiting to be
    written."""

    __slots__ = ('values', 'queue', 'waiters', 'busy')

    def __init__(self, values):
        # every value stored, in call order; None: not known (read it before writing)
        self.values = values
        self.queue = []
        self.waiters = []
        self.busy = False


class BuildDataRecorder:
    """Appends each ``yieldMetricsValue`` call to its build's ``stats.<data_name>`` data.

    :param owner: anything with a ``master`` attribute (the StatsService)
    :param max_size: the values kept of builds not running (finished, or started before the
        recorder listened), least recently used first out
    """

    def __init__(self, owner, max_size=1000):
        self._owner = owner
        self._max_size = max_size
        # (buildid, data_name) -> _Series: of running builds, and of any being written
        self._active = {}
        # (buildid, data_name) -> _Series of the others, idle; bounded
        self._memo = OrderedDict()
        # buildid -> the data names recorded for it, of builds known to have nothing stored
        # by anyone else: 'new' seen, 'finished' not yet
        self._running = {}
        # the highest buildid ever recorded for: a 'new' message of a build at or below it
        # (a late delivery) is not trusted to mean "nothing stored"
        self._highest = 0
        self._consumers = []
        self._writing = DeferWaiter()
        self._unencodable = set()
        self.unrecorded = 0
        self.reads = 0
        self.writes = 0

    # -- the MQ feeds ----------------------------------------------------------------------

    @defer.inlineCallbacks
    def startConsuming(self, mq):
        """Listen to the builds' ``new`` and ``finished`` messages (once; a reconfig keeps
        the feeds and what the recorder knows)."""
        if self._consumers:
            return
        for name, key in sorted(FEEDS.items()):
            method = self._buildNew if name == 'new' else self._buildFinished
            self._consumers.append((yield mq.startConsuming(normalizing(method), key)))

    @defer.inlineCallbacks
    def stopConsuming(self):
        """Stop listening. The builds it counted as running may end unseen from now on:
        their values join the bounded memo, and a build started while not listening is read
        before its first write."""
        consumers, self._consumers = self._consumers, []
        for consumer in consumers:
            yield consumer.stopConsuming()
        for buildid in list(self._running):
            self._buildEnded(buildid)

    def _buildNew(self, routingKey, msg):
        buildid = msg.get('buildid') if isinstance(msg, dict) else None
        if isinstance(buildid, int) and buildid > self._highest:
            self._running.setdefault(buildid, set())

    def _buildFinished(self, routingKey, msg):
        buildid = msg.get('buildid') if isinstance(msg, dict) else None
        if buildid in self._running:
            self._buildEnded(buildid)

    def _buildEnded(self, buildid):
        for name in self._running.pop(buildid):
            key = (buildid, name)
            series = self._active.get(key)
            if series is not None and not series.busy:
                self._rest(key, self._active.pop(key))

    def _rest(self, key, series):
        # an idle series of a build not running: the bounded memo keeps it
        memo = self._memo
        memo[key] = series
        memo.move_to_end(key)
        while len(memo) > self._max_size:
            memo.popitem(last=False)

    # -- recording -------------------------------------------------------------------------

    def record(self, buildid, data_name, post_data, timestamp):
        """Record one call; a Deferred that fires (with None) once it is written, or once
        it failed (logged and counted in ``unrecorded``)."""
        master = self._owner.master
        updates = getattr(getattr(master, 'data', None), 'updates', None)
        if updates is None or not hasattr(updates, 'setBuildData'):
            return defer.succeed(None)
        try:
            encodeBuildData([(timestamp, post_data)])
        except (TypeError, ValueError) as e:
            self.unrecorded += 1
            if data_name not in self._unencodable:
                self._unencodable.add(data_name)
                log.msg(f"buildbot_stats: yieldMetricsValue({data_name!r}) for buildid "
                        f"{buildid}: the data is not JSON ({e}); it is stored live but not "
                        "recorded as build data, so a backfill cannot rebuild it (logged once "
                        "per data name)")
            return defer.succeed(None)
        key = (buildid, data_name)
        series = self._active.get(key)
        if series is None:
            series = self._memo.pop(key, None)
            if series is None:
                names = self._running.get(buildid)
                series = _Series([] if names is not None else None)
            self._active[key] = series
            if buildid in self._running:
                self._running[buildid].add(data_name)
        if isinstance(buildid, int) and buildid > self._highest:
            self._highest = buildid
        d = defer.Deferred()
        series.queue.append((timestamp, post_data))
        series.waiters.append(d)
        if not series.busy:
            series.busy = True
            self._writing.add(self._write(master, updates, key, series))
        return d

    def wait(self, timeout=None):
        """A Deferred that fires when every call recorded so far is written (or failed),
        or, with ``timeout``, after that many seconds (logged with the calls not written)."""
        waiting = self._writing.wait()
        if timeout is None:
            return waiting
        # not a cancel: the writes go on, the stop just stops waiting for them
        d = within(self._owner.master.reactor, waiting, timeout)
        d.addCallback(self._waited, timeout)
        return d

    def _waited(self, finished, timeout):
        if not finished:
            pending = sum(len(series.queue) + (1 if series.busy else 0)
                          for series in self._active.values())
            log.msg(f"buildbot_stats: stopping with yieldMetricsValue calls still being "
                    f"recorded as build data after {timeout:g} s (about {pending}); they may "
                    "be lost if the master stops first")

    @defer.inlineCallbacks
    def _write(self, master, updates, key, series):
        buildid, data_name = key
        name = BUILD_DATA_PREFIX + data_name
        try:
            while series.queue:
                # what was queued until now goes in one write; what comes meanwhile, next
                batch, series.queue = series.queue, []
                waiters, series.waiters = series.waiters, []
                try:
                    if series.values is None:
                        self.reads += 1
                        series.values = yield self._stored(master, buildid, name)
                    values = series.values + batch
                    self.writes += 1
                    yield updates.setBuildData(buildid, name, encodeBuildData(values), SOURCE)
                    series.values = values
                except Exception as e:
                    # what is stored is not known now: read it before the next write
                    series.values = None
                    self.unrecorded += len(batch)
                    log.err(e, f"buildbot_stats: recording yieldMetricsValue({data_name!r}) "
                               f"as build data of buildid {buildid} ({len(batch)} calls)")
                for w in waiters:
                    w.callback(None)
        finally:
            series.busy = False
            if buildid not in self._running and self._active.get(key) is series:
                self._rest(key, self._active.pop(key))

    @defer.inlineCallbacks
    def _stored(self, master, buildid, name):
        db = getattr(master, 'db', None)
        if db is None or not hasattr(db, 'build_data'):
            return []
        model = yield db.build_data.getBuildData(buildid, name)
        if model is None or model.value is None:
            return []
        try:
            return decodeBuildData(model.value)
        except (ValueError, KeyError, TypeError):
            return []
