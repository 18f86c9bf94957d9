"""What ``yieldMetricsValue`` leaves in Buildbot's database, so that it can be replayed.

Every call of a build is kept in memory while the build runs; when the build's ``finished``
message comes, its calls wait at most :data:`WRITE_INTERVAL` for the other builds finishing
meanwhile, and they are all written in ONE transaction of Buildbot's database pool (an
insert of every row): one build-data row per build, :data:`~buildbot_stats.history.builddata.RECORD_NAME`, holding
every data name (:mod:`buildbot_stats.history.builddata`). The backfill command and the
catch-up read it back (:mod:`buildbot_stats.history.reader`) and post the same points.

Why this shape: Buildbot's ``setBuildData`` is a transaction per call (an update, then an
insert), which made each ``yieldMetricsValue`` cost the master 0.5 to 3 ms of CPU; a row
per build, written with the others of the same second, costs a fraction of one transaction
(measured in docs/benchmarks.rst).

What a call's Deferred waits for: nothing of this; the record is written later. What a crash
loses: the record of the builds still running and of those finished in the last
:data:`WRITE_INTERVAL` (their live points went to the backends as usual). ``stopService``
writes everything held, builds still running included, within :data:`STOP_TIMEOUT`.

A row already stored for a build (a call after its end, a build pushed out of memory, a
master that stopped consuming meanwhile) is read in the same transaction and appended to.
Data that JSON cannot hold (a datetime, bytes, NaN...) still goes to the backends live but
is not recorded: it is logged once per data name and counted in
``StatsService.metrics()['unrecorded_data']``.
"""

from __future__ import annotations

from collections import OrderedDict

import sqlalchemy as sa
from twisted.internet import defer
from twisted.python import log

from buildbot_stats.deadline import within
from buildbot_stats.history.builddata import RECORD_NAME
from buildbot_stats.history.builddata import SOURCE
from buildbot_stats.history.builddata import encodeEntry
from buildbot_stats.history.builddata import encodeRecord
from buildbot_stats.history.builddata import recordEntries
from buildbot_stats.history.reader import IN_CHUNK
from buildbot_stats.history.reader import chunks
from buildbot_stats.messages import BUILD_FINISHED
from buildbot_stats.subscriptions import Subscription

#: Seconds the record of a finished build waits for those finishing after it, to share one
#: transaction (and what a crash may lose of the builds that ended last).
WRITE_INTERVAL = 1.0
#: Most builds in one transaction (the statement reading what is stored binds their ids).
MAX_BATCH = IN_CHUNK
#: Most builds whose calls are held while they run; past it, the build called least recently
#: is written as it stands (a later call appends to its row).
MAX_RUNNING = 10000
#: Ids of builds seen finishing, remembered so that a call arriving after the end is
#: written instead of held.
FINISHED_MEMO = 1000
#: Seconds ``StatsService.stopService`` waits for the record to be written: the master must
#: stop even when its database hangs.
STOP_TIMEOUT = 120.0


def _row(buildid, value):
    return {'buildid': buildid, 'name': RECORD_NAME, 'value': value, 'length': len(value),
            'source': SOURCE}


class BuildDataRecorder:
    """Keeps each build's ``yieldMetricsValue`` calls and writes them as one row when the
    build finishes (see the module's doc).

    A component of the service's subscription table (:mod:`buildbot_stats.subscriptions`):
    it follows the builds' ``finished`` messages while :attr:`enabled`.

    :param owner: anything with a ``master`` attribute (the StatsService)
    """

    def __init__(self, owner):
        self._owner = owner
        #: False (``record_data=False``): nothing recorded, no subscription
        self.enabled = True
        # buildid -> {data_name: [entry]} of running builds, the one called last at the end
        self._held = OrderedDict()
        # buildid -> {data_name: [entry]} waiting for the next write
        self._ready = {}
        self._finished = OrderedDict()  # buildid -> None, the last FINISHED_MEMO builds
        # whether the 'finished' messages are delivered (else nothing is held)
        self._seeing = False
        self._timer = None
        self._writing = None  # the Deferred of the write in flight
        self._idle = []  # Deferreds fired when nothing is held for writing any more
        self._unencodable = set()
        self.unrecorded = 0
        #: transactions, and build rows written (inserted or appended to)
        self.writes = 0
        self.rows = 0

    # -- the subscription contract -----------------------------------------------------------

    def subscriptions(self):
        """The builds' ``finished`` message (every master's: a build ends where it ran)."""
        if not self.enabled:
            return []
        return [Subscription(BUILD_FINISHED, self._buildFinished, "build data recorder",
                             every_master=True)]

    def subscribed(self, keys):
        self._seeing = tuple(BUILD_FINISHED) in keys
        if not self._seeing:
            # their end would go unseen: what is held is written as it stands
            self._queueHeld()

    def _buildFinished(self, routingKey, msg):
        buildid = msg.get('buildid')
        if buildid is None:
            return
        self._finished[buildid] = None
        if len(self._finished) > FINISHED_MEMO:
            self._finished.popitem(last=False)
        data = self._held.pop(buildid, None)
        if data is not None:
            self._queue(buildid, data)

    # -- recording ------------------------------------------------------------------------------

    def record(self, build, data_name, post_data, timestamp):
        """Keep one call of the build ``build`` (its data API dict) for the build's row."""
        try:
            entry = encodeEntry(timestamp, post_data)
        except (TypeError, ValueError) as e:
            self.unrecorded += 1
            if data_name not in self._unencodable:
                self._unencodable.add(data_name)
                log.msg(f"buildbot_stats: yieldMetricsValue({data_name!r}) for buildid "
                        f"{build.get('buildid')}: the data is not JSON ({e}); it is stored "
                        "live but not recorded as build data, so a backfill cannot rebuild "
                        "it (logged once per data name)")
            return
        db = getattr(self._owner.master, 'db', None)
        if getattr(db, 'pool', None) is None or getattr(db, 'model', None) is None:
            return  # no database to record in (a master of unit tests)
        buildid = build['buildid']
        held = self._held.get(buildid)
        if held is None:
            if not self._seeing or buildid in self._finished or build.get('complete'):
                # its end was seen already, or will not be: written with the next batch
                self._queue(buildid, {data_name: [entry]})
                return
            held = self._held[buildid] = {}
            if len(self._held) > MAX_RUNNING:
                self._queue(*self._held.popitem(last=False))
        else:
            self._held.move_to_end(buildid)
        held.setdefault(data_name, []).append(entry)

    def _queueHeld(self):
        while self._held:
            self._queue(*self._held.popitem(last=False))

    def _queue(self, buildid, data):
        ready = self._ready.setdefault(buildid, {})
        for name, entries in data.items():
            ready.setdefault(name, []).extend(entries)
        self._schedule()

    def _schedule(self, now=False):
        if self._writing is not None or not self._ready:
            return  # the write in flight schedules the next one when it ends
        if now or len(self._ready) >= MAX_BATCH:
            self._cancelTimer()
            self._write()
        elif self._timer is None:
            self._timer = self._owner.master.reactor.callLater(WRITE_INTERVAL, self._timeUp)

    def _timeUp(self):
        self._timer = None
        self._schedule(now=True)

    def _cancelTimer(self):
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None

    # -- writing ------------------------------------------------------------------------------

    def _write(self):
        batch = {}
        for buildid in list(self._ready)[:MAX_BATCH]:
            batch[buildid] = self._ready.pop(buildid)
        db = getattr(self._owner.master, 'db', None)
        self.writes += 1
        d = self._writing = defer.maybeDeferred(db.pool.do, self._thdWrite,
                                                db.model.build_data, batch)
        d.addCallbacks(self._written, self._failed, callbackArgs=(batch,),
                       errbackArgs=(batch,))
        d.addBoth(self._writeEnded)

    @staticmethod
    def _thdWrite(conn, table, batch):
        """In Buildbot's database thread: the rows of ``batch`` inserted in one transaction
        (the common case: nothing is stored for a build that just ended), or, when one is
        stored already, read and appended to in a second one. Returns the build ids whose
        stored row is not ours (left alone)."""
        try:
            conn.execute(table.insert(), [_row(buildid, encodeRecord(entries))
                                          for buildid, entries in batch.items()])
            conn.commit()
            return []
        except sa.exc.IntegrityError:
            conn.rollback()  # (buildid, name) is unique: some build has its row already
        stored = {}
        for chunk in chunks(batch):
            q = sa.select(table.c.buildid, table.c.value).where(
                sa.and_(table.c.buildid.in_(chunk), table.c.name == RECORD_NAME))
            for row in conn.execute(q):
                stored[row.buildid] = row.value
        inserts, foreign = [], []
        for buildid, entries in batch.items():
            if buildid not in stored:
                inserts.append(_row(buildid, encodeRecord(entries)))
                continue
            try:
                old = recordEntries(stored[buildid])
            except (ValueError, KeyError, TypeError, AttributeError):
                foreign.append(buildid)
                continue
            for name, items in entries.items():
                old.setdefault(name, []).extend(items)
            value = encodeRecord(old)
            conn.execute(table.update().where(sa.and_(
                table.c.buildid == buildid, table.c.name == RECORD_NAME)).values(
                    value=value, length=len(value), source=SOURCE))
        if inserts:
            conn.execute(table.insert(), inserts)
        conn.commit()
        return foreign

    def _written(self, foreign, batch):
        self.rows += len(batch) - len(foreign)
        for buildid in foreign:
            calls = sum(len(entries) for entries in batch[buildid].values())
            self.unrecorded += calls
            log.msg(f"buildbot_stats: error: buildid {buildid} has a build data row named "
                    f"{RECORD_NAME!r} that is not buildbot_stats' record; {calls} "
                    "yieldMetricsValue calls were not recorded (the row is left alone)")

    def _failed(self, failure, batch):
        calls = sum(len(entries) for data in batch.values() for entries in data.values())
        self.unrecorded += calls
        log.err(failure, f"buildbot_stats: recording yieldMetricsValue as build data of "
                         f"{len(batch)} builds ({calls} calls); they are counted in "
                         "unrecorded_data")

    def _writeEnded(self, _):
        self._writing = None
        if self._ready:
            # while stopping (someone waits), at once; else the next interval
            self._schedule(now=bool(self._idle))
        else:
            idle, self._idle = self._idle, []
            for d in idle:
                d.callback(None)

    # -- stopping -------------------------------------------------------------------------------

    def flush(self):
        """Write everything held now, builds still running included: a Deferred firing once
        it is written (or failed, counted)."""
        self._queueHeld()
        if not self._ready and self._writing is None:
            return defer.succeed(None)
        d = defer.Deferred()
        self._idle.append(d)
        self._schedule(now=True)
        return d

    def wait(self, timeout):
        """:meth:`flush`, waited for ``timeout`` seconds at most (then one log line says how
        many calls were still being written: they are written if the database answers)."""
        d = within(self._owner.master.reactor, self.flush(), timeout)
        d.addCallback(self._waited, timeout)
        return d

    def pending(self):
        """Calls held or waiting to be written (not the write in flight)."""
        return sum(len(entries) for builds in (self._held, self._ready)
                   for data in builds.values() for entries in data.values())

    def _waited(self, finished, timeout):
        if not finished:
            log.msg(f"buildbot_stats: stopping with yieldMetricsValue calls still being "
                    f"recorded as build data after {timeout:g} s (about "
                    f"{self.pending()} waiting, and a write in flight); they may be lost if "
                    "the master stops first")
