"""Catch-up at start: the builds a master finished while its points were not safe, replayed.

Progress is kept per backend in Buildbot's own state table (``master.db.state``, the store
behind Buildbot's ``StateMixin``), so it follows the master's database, not a file of ours:

* object ``"<service name>/<backend name>"`` of class ``buildbot_stats.catchup``;
* state ``safe_until.<masterid>``: epoch seconds; every point of every build this master
  finished before it has been written (or rejected for its content) by that backend.

A checkpoint every ``CHECKPOINT_INTERVAL`` seconds (and one when the service stops) moves
the mark: it notes the time and the backend's ``added`` counter, and at the next checkpoint,
if the backend has since written (or rejected) that many points, the noted time minus
``MARGIN`` becomes the new mark. A backend that cannot write (database down) keeps its old
mark; one that dropped a point (buffer full, stop timeout) keeps it until the master
restarts, whose catch-up replays from it.

When the service starts, :class:`CatchUp` reads the marks and, in the background, replays
this master's builds that finished since the oldest mark (minus ``MARGIN``) through the
service, in slices of ``SLICE_SECONDS`` of reactor time. Replays are idempotent (points are
identical, see docs/history.rst), so an overlap is harmless. A backend with no mark yet (the
service's first start, a backend just added) gets the start time as its mark: catch-up
covers only what happens after the service is first configured; older builds are the job
of ``buildbot-stats backfill``.
"""

from __future__ import annotations

import time

from twisted.internet import defer
from twisted.internet import task
from twisted.python import log

from buildbot_stats.history.reader import BuildReader
from buildbot_stats.history.replay import Replayer

STATE_CLASS = 'buildbot_stats.catchup'
#: seconds between two checkpoints
CHECKPOINT_INTERVAL = 60.0
#: seconds a mark stays behind the checkpoint it comes from (MQ delays, whole-second times)
MARGIN = 10.0
#: the catch-up gives the reactor back after this much work
SLICE_SECONDS = 0.01
#: builds read per batch by the catch-up
BATCH_SIZE = 100


class CatchUp:
    """The catch-up and the checkpoints of one :class:`StatsService`."""

    def __init__(self, service):
        self.service = service
        self.replayer = None
        self.caught_up = False
        self._running = None
        self._loop = None
        self._pending = {}  # backend name -> (time, added) at the last checkpoint
        self._frozen = set()  # backends that dropped points: their marks stay
        self._objectids = {}
        self._checkpointing = None
        # set by stopReplay: a replay that ends during the service's stop must not start
        # the checkpoints again (they would run after the service lost its master)
        self._stopped = False
        self.last_result = None

    @property
    def master(self):
        return self.service.master

    @property
    def reactor(self):
        return self.master.reactor

    def _stateKey(self):
        return f"safe_until.{self.master.masterid}"

    @defer.inlineCallbacks
    def _objectid(self, backend):
        if backend.name not in self._objectids:
            self._objectids[backend.name] = yield self.master.db.state.getObjectId(
                f"{self.service.name}/{backend.name}", STATE_CLASS)
        return self._objectids[backend.name]

    @defer.inlineCallbacks
    def getMark(self, backend):
        oid = yield self._objectid(backend)
        mark = yield self.master.db.state.getState(oid, self._stateKey(), None)
        return mark

    @defer.inlineCallbacks
    def setMark(self, backend, when):
        oid = yield self._objectid(backend)
        yield self.master.db.state.setState(oid, self._stateKey(), when)

    # -- start ---------------------------------------------------------------------------------

    def start(self):
        """Begin in the background; returns at once (the master's start is not delayed)."""
        if self._running is not None:
            return
        self._stopped = False
        self._running = d = task.deferLater(self.reactor, 0, self._run)
        d.addErrback(log.err, "buildbot_stats: catch-up failed; the next start retries it")
        d.addBoth(self._ran)

    def whenDone(self):
        """A Deferred firing (with None) once the replay under way, if any, has ended."""
        if self._running is None:
            return defer.succeed(None)
        done = defer.Deferred()

        def fire(result):
            done.callback(None)
            return result
        self._running.addBoth(fire)
        return done

    def _ran(self, _):
        self._running = None
        if self.service.running and not self._stopped and self._loop is None:
            self._loop = task.LoopingCall(self.checkpoint)
            self._loop.clock = self.reactor
            d = self._loop.start(CHECKPOINT_INTERVAL, now=True)
            d.addErrback(log.err, "buildbot_stats: catch-up checkpoints stopped")

    @defer.inlineCallbacks
    def _run(self):
        svc = self.service
        started = self.reactor.seconds()
        marks = {}
        for b in svc.backends:
            mark = yield self.getMark(b)
            if mark is None:
                # first start with this backend: only what happens from now on
                yield self.setMark(b, started)
            else:
                marks[b.name] = float(mark)
        if not marks:
            self.caught_up = True
            log.msg("buildbot_stats: catch-up: first start of these backends, nothing to "
                    "replay (older builds: buildbot-stats backfill)")
            return
        since = min(marks.values()) - MARGIN
        reader = BuildReader(self.master.db, since=since, until=started,
                             masterid=self.master.masterid)
        total = yield reader.count()
        if not total:
            self.caught_up = True
            log.msg(f"buildbot_stats: catch-up: no build finished since {isoTime(since)}, "
                    "nothing to replay")
            return
        log.msg(f"buildbot_stats: catch-up: replaying {total} builds finished between "
                f"{isoTime(since)} and {isoTime(started)} in the background")
        t0 = time.monotonic()
        self.replayer = replayer = Replayer(svc, reader, self.reactor,
                                            slice_seconds=SLICE_SECONDS, batch_size=BATCH_SIZE)
        try:
            result = yield replayer.run()
        finally:
            self.replayer = None
        stopped = replayer._stopped
        self.last_result = result
        points = sum(c['added'] for c in result.backends.values())
        if stopped:
            log.msg(f"buildbot_stats: catch-up: interrupted by the stop after {result.builds} "
                    f"of {total} builds; the next start replays them again")
            return
        self.caught_up = True
        log.msg(f"buildbot_stats: catch-up: done, {result.builds} builds replayed, {points} "
                f"points posted, {result.builds_without_data} builds without a "
                f"yieldMetricsValue record, "
                f"{time.monotonic() - t0:.1f} s")

    # -- checkpoints ---------------------------------------------------------------------------

    @defer.inlineCallbacks
    def checkpoint(self):
        """Move each backend's mark to the last checkpoint whose points are all safe."""
        if not self.caught_up or self._checkpointing is not None:
            return
        self._checkpointing = defer.Deferred()
        try:
            now = self.reactor.seconds()
            # the captures of builds already finished hand over their points first
            yield self.service.drain()
            for b in list(self.service.backends):
                m = b.metrics()
                prev = self._pending.get(b.name)
                if prev is None:
                    # a backend added by a reconfig has no mark yet: from now on, it has
                    mark = yield self.getMark(b)
                    if mark is None:
                        yield self.setMark(b, now)
                elif self._safe(b, m, prev[1]):
                    yield self.setMark(b, prev[0] - MARGIN)
                self._pending[b.name] = (now, m.get('added', 0))
        except Exception as e:
            log.err(e, "buildbot_stats: catch-up checkpoint")
        finally:
            d, self._checkpointing = self._checkpointing, None
            d.callback(None)

    @defer.inlineCallbacks
    def stopReplay(self):
        """Stop a catch-up in progress and the checkpoints (the service is stopping)."""
        self._stopped = True
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        if self.replayer is not None:
            self.replayer.stop()
        if self._running is not None:
            yield self._running
        if self._checkpointing is not None:
            yield self._checkpointing

    @defer.inlineCallbacks
    def checkpointAtStop(self):
        """After the backends flushed at stop: a backend that has written everything gets
        the stop time as its mark."""
        if not self.caught_up:
            return
        now = self.reactor.seconds()
        for b in list(self.service.backends):
            m = b.metrics()
            if self._safe(b, m, m.get('added', 0)):
                try:
                    yield self.setMark(b, now - MARGIN)
                except Exception as e:
                    log.err(e, "buildbot_stats: catch-up: recording the mark at stop")

    def _safe(self, backend, m, added):
        """The first ``added`` points given to ``backend`` are written or rejected, and it
        never dropped one in this process (the builds of a dropped point are somewhere
        after the mark: it stays there, and the next start replays from it)."""
        if m.get('dropped', 0):
            if backend.name not in self._frozen:
                self._frozen.add(backend.name)
                log.msg(f"buildbot_stats: catch-up: backend {backend.name!r} dropped points; "
                        "its mark stays where it is and the next start replays from it")
            return False
        return m.get('written', 0) + m.get('rejected', 0) >= added


def isoTime(seconds):
    import datetime

    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime(
        '%Y-%m-%d %H:%M:%S UTC')
