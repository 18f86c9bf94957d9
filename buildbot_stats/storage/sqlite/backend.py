"""SQLiteStorageService: every point in an SQLite file beside the master (the default store).

The reactor thread only encodes a point (a few microseconds) and appends it to a queue.
One writer thread (a one-thread pool) owns the connection and commits the queue in
batches, one transaction each, in WAL mode so that other programs can read the file while
the master writes it, and runs the maintenance between them (rollups, retention) when an
hour closes (:func:`~buildbot_stats.storage.sqlite.rollups.nextClose`). Layout:
:mod:`buildbot_stats.storage.sqlite.schema`; value rules:
:mod:`buildbot_stats.storage.sqlite.values`; user docs: docs/storage-sqlite.rst.
"""

from __future__ import annotations

import collections
import os

from twisted.internet import defer
from twisted.internet import threads
from twisted.python import log
from twisted.python import threadpool

from buildbot import config

from buildbot_stats.captures.defaults import defaultCaptures
from buildbot_stats.checks import countProblem
from buildbot_stats.checks import durationProblem
from buildbot_stats.checks import report
from buildbot_stats.checks import seconds
from buildbot_stats.checks import shown
from buildbot_stats.storage.base import StatsStorageBase
from buildbot_stats.storage.base import describeBuildOf
from buildbot_stats.storage.sqlite.rollups import nextClose
from buildbot_stats.storage.sqlite.values import Rejected
from buildbot_stats.storage.sqlite.values import encodeRow
from buildbot_stats.storage.sqlite.writer import StoreWriter


#: the most test results one transaction writes (whole builds, at least one)
TEST_BATCH = 50_000
#: Seconds after the start to the first round of maintenance (rollups, retention), and
#: between the rounds while they fail. Then a round runs when an hour closes
#: (:func:`~buildbot_stats.storage.sqlite.rollups.nextClose`: every hour, GRACE after
#: it), and a round that leaves work is followed by the next at once (after the points
#: queued).
MAINTENANCE_INTERVAL = 60.0


class SQLiteStorageService(StatsStorageBase):
    """Keeps every point in an SQLite file.

    :param path: the file (default ``'stats.sqlite'``); a relative path is relative to the
        master's basedir (to the current directory when used without a master)
    :param captures: the captures to store; ``None`` means the default set
        (:func:`buildbot_stats.captures.defaults.defaultCaptures`)
    :param name: the backend name (default ``'SQLiteStorageService'``)
    :param batch_size: most points per transaction; a queue this long is written at once
        (default 1000)
    :param flush_interval: seconds a point may wait in the queue (default 1.0)
        (every duration here: seconds, or a string such as ``'2s'``, ``'1m'``)
    :param max_pending: points (and test results, see ``CaptureTestHistory``) the queue
        holds while the file cannot be written; beyond, the oldest are dropped and counted
        (default 100000; the test results of the latest build are always kept)
    :param stop_timeout: seconds ``stopService`` waits for the queue to be written
        (default 30.0; 0: it does not wait); under a :class:`StatsService`, see its one stop
        bound
    :param busy_timeout: seconds one write waits for a lock held by another program
        (default 5.0)
    :param keep: how long raw points are kept (``'90d'``, or seconds); older ones are
        deleted in small batches, their rollups stay, and the test results of the builds
        older than that go too (default None: kept forever)
    :param keep_rollups: how long the hourly and daily rollups are kept (default None:
        forever); at least ``keep``
    """

    def checkConfig(self, path='stats.sqlite', captures=None, batch_size=1000,
                    flush_interval=1.0, max_pending=100000, stop_timeout=30.0,
                    busy_timeout=5.0, keep=None, keep_rollups=None):
        owner = self.name or type(self).__name__
        if not isinstance(path, str) or not path:
            config.error(f"{owner}: path must be a non-empty string, got {shown(path)}")
        report(owner,
               countProblem('batch_size', batch_size),
               countProblem('max_pending', max_pending),
               durationProblem('flush_interval', flush_interval),
               durationProblem('stop_timeout', stop_timeout, zero=True),
               durationProblem('busy_timeout', busy_timeout),
               durationProblem('keep', keep, none_means='raw points kept forever'),
               durationProblem('keep_rollups', keep_rollups, none_means='rollups kept forever'))
        raw, rolled = seconds(keep), seconds(keep_rollups)
        if raw is not None and rolled is not None and rolled < raw:
            config.error(f"{owner}: keep_rollups ({shown(keep_rollups)}) must be at least "
                         f"keep ({shown(keep)}): the rollups summarize the points deleted")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.capturesArgument() is None:
            self.captures = defaultCaptures()
        self.path = None
        self._queue = collections.deque()
        # whole builds' test results (CaptureTestHistory): (TestRun, cases), and how many
        # results they hold
        self._tests = collections.deque()
        self._queued_results = 0
        self._pool = None
        self._shutdown_trigger = None
        self._writer = None
        self._writing = None  # the Deferred of the batch being written
        self._timer = None
        self._flush_waiters = []  # (points done when it fires, Deferred)
        self._logged_kinds = set()
        self._failing = False
        self._stopping = False
        self.rejections = collections.Counter()
        self.batches = 0
        self._maintenance = None  # the timer of the next round
        self._maintaining = None  # the Deferred of the round being run
        self._maintaining_eager = True  # whether that round is eager (see maintain)
        self._maintenance_failing = False
        self.maintenance_rounds = 0

    def reconfigService(self, path='stats.sqlite', captures=None, batch_size=1000,
                        flush_interval=1.0, max_pending=100000, stop_timeout=30.0,
                        busy_timeout=5.0, keep=None, keep_rollups=None):
        self.path = self.resolvePath(path)
        self.keep = seconds(keep)
        self.keep_rollups = seconds(keep_rollups)
        self.batch_size = batch_size
        self.flush_interval = seconds(flush_interval)
        self.max_pending = max_pending
        self.stop_timeout = seconds(stop_timeout)
        self.busy_timeout = seconds(busy_timeout)
        if self._writer is not None:
            self._writer.busy_timeout = self.busy_timeout
        return defer.succeed(None)

    def resolvePath(self, path):
        path = os.path.expanduser(path)
        if os.path.isabs(path):
            return path
        base = getattr(self.master, 'basedir', None) if self.master is not None else None
        return os.path.abspath(os.path.join(base or os.getcwd(), path))

    @property
    def reactor(self):
        if self.master is not None:
            return self.master.reactor
        # standalone use (a script, no master): the process's reactor
        from twisted.internet import reactor

        return reactor

    # -- life cycle --------------------------------------------------------------------

    @defer.inlineCallbacks
    def startService(self):
        yield super().startService()
        self._pool = threadpool.ThreadPool(minthreads=1, maxthreads=1, name=f"stats-{self.name}")
        self._writer = StoreWriter(self.busy_timeout)
        self._pool.start()
        # standalone use: a script that stops its reactor without stopping us must not
        # hang at exit on the writer thread
        self._shutdown_trigger = self.reactor.addSystemEventTrigger(
            'during', 'shutdown', self._stopPool)
        self._kick()
        self._scheduleMaintenance(MAINTENANCE_INTERVAL)

    def _stopPool(self):
        self._shutdown_trigger = None
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.stop()

    def stopTimeout(self):
        return self.stop_timeout

    @defer.inlineCallbacks
    def stopService(self):
        if self._pool is not None:
            budget = self.stopBudget()
            yield self.flush(timeout=budget)
            # no new write from now on; one waiting for a lock gives up within BUSY_SLICE
            self._stopping = True
            self._cancelTimer()
            self._cancelMaintenance()
            self._writer.abort.set()
            if self._writing is not None:
                yield self._writing
            if self._maintaining is not None:
                yield self._maintaining
            if self._queue or self._tests:
                lost = len(self._queue) + self._queued_results
                self._queue.clear()
                self._tests.clear()
                self._queued_results = 0
                self.counters.dropped += lost
                log.msg(f"buildbot_stats: {self.name}: error: {lost} points could not be written "
                        f"to {self.path} within the stop bound ({budget:g} s) and are lost")
            try:
                yield self._inThread(self._writer.close)
            except Exception as e:
                log.err(e, f"buildbot_stats: {self.name}: closing {self.path}")
            if self._shutdown_trigger is not None:
                self.reactor.removeSystemEventTrigger(self._shutdown_trigger)
            self._stopPool()
        self._cancelTimer()
        self._cancelMaintenance()
        self._stopping = False
        self._fireFlushWaiters(force=True)
        yield super().stopService()

    def _inThread(self, f, *args):
        return threads.deferToThreadPool(self.reactor, self._pool, f, *args)

    # -- points ------------------------------------------------------------------------

    def postStatsValue(self, post_data, series_name, context=None, timestamp=None):
        if timestamp is None:
            timestamp = self.reactor.seconds()
        self.counters.added += 1
        try:
            row = encodeRow(series_name, context, post_data, timestamp)
        except Rejected as e:
            self._reject(e, series_name, context)
            return
        self._queue.append(row)
        if len(self._queue) > self.max_pending:
            self._queue.popleft()
            self.counters.dropped += 1
            if self.counters.dropped == 1 or self.counters.dropped % 10000 == 0:
                log.msg(f"buildbot_stats: {self.name}: error: the queue is full "
                        f"(max_pending={self.max_pending}); {self.counters.dropped} oldest "
                        "points dropped so far")
        self._kick()

    def postTestResults(self, run, cases):
        """Keep one build's test results (a :class:`~buildbot_stats.outcomes.TestRun` and
        its ``(name, outcome, duration)`` cases) in the store's test tables; returns at
        once. Each result counts as a point in the delivery counters."""
        n = len(cases)
        if not n:
            return
        self.counters.added += n
        self._tests.append((run, cases))
        self._queued_results += n
        # the oldest builds' results go first; the newest build's are always kept
        while (len(self._queue) + self._queued_results > self.max_pending
               and len(self._tests) > 1):
            _, dropped = self._tests.popleft()
            self._queued_results -= len(dropped)
            self.counters.dropped += len(dropped)
            log.msg(f"buildbot_stats: {self.name}: error: the queue is full "
                    f"(max_pending={self.max_pending}); the test results of a build "
                    f"({len(dropped)}) were dropped")
        self._kick()

    def _reject(self, e, series, tags):
        self.counters.rejected += 1
        self.rejections[e.reason.split(':')[0]] += 1
        kind = (series if isinstance(series, str) else None,) + e.kind()
        if kind in self._logged_kinds:
            return
        self._logged_kinds.add(kind)
        where = f" field {e.field!r}" if e.field else ""
        log.msg(
            f"buildbot_stats: {self.name}: rejected a point of series {series!r}{where}"
            f"{describeBuildOf(tags)}: {e.reason}; further points rejected for this reason "
            "are only counted"
        )

    # -- writing -----------------------------------------------------------------------

    def _kick(self, now=False):
        """Start a write if one is due, else make sure one is scheduled.

        While the file cannot be written only the timer retries, once per flush_interval.
        """
        if self._pool is None or self._stopping or self._writing is not None or not (
                self._queue or self._tests):
            return
        # a build's test results are written at once: they come in thousands
        due = (now or self._flush_waiters or len(self._queue) >= self.batch_size
               or self._tests)
        if due and not (self._failing and self._timer is not None):
            self._startWrite()
        elif self._timer is None:
            self._timer = self.reactor.callLater(self.flush_interval, self._onTimer)

    def _onTimer(self):
        self._timer = None
        self._kick(now=True)

    def _cancelTimer(self):
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _startWrite(self):
        self._cancelTimer()
        n = min(len(self._queue), self.batch_size)
        batch = [self._queue.popleft() for _ in range(n)]
        # whole builds of test results, at least one, up to TEST_BATCH results
        tests, results = [], 0
        while self._tests and (not tests or results + len(self._tests[0][1]) <= TEST_BATCH):
            tests.append(self._tests.popleft())
            results += len(tests[-1][1])
        self._queued_results -= results
        self._writing = d = self._inThread(self._writer.write, self.path, batch, tests)
        d.addCallbacks(self._written, self._writeFailed, errbackArgs=(batch, tests))
        d.addErrback(log.err, f"buildbot_stats: {self.name}: the writer")

    def _written(self, n):
        self._writing = None
        self.batches += 1
        self.counters.written += n
        if self._failing:
            self._failing = False
            log.msg(f"buildbot_stats: {self.name}: writing to {self.path} works again")
        self._fireFlushWaiters()
        self._kick()

    def _writeFailed(self, failure, batch, tests=()):
        self._writing = None
        # back at the front, in order; retried after flush_interval
        self._queue.extendleft(reversed(batch))
        self._tests.extendleft(reversed(tests))
        self._queued_results += sum(len(cases) for _, cases in tests)
        while (len(self._queue) + self._queued_results > self.max_pending
               and len(self._tests) > 1):
            _, cases = self._tests.pop()
            self._queued_results -= len(cases)
            self.counters.dropped += len(cases)
        while len(self._queue) > self.max_pending:
            self._queue.pop()
            self.counters.dropped += 1
        self.counters.retries += 1
        if not self._failing:
            self._failing = True
            log.msg(f"buildbot_stats: {self.name}: error: cannot write to {self.path}: "
                    f"{failure.getErrorMessage()}; {len(self._queue)} points kept, retrying "
                    f"every {self.flush_interval}s")
        if self._timer is None and self._pool is not None and not self._stopping:
            self._timer = self.reactor.callLater(self.flush_interval, self._onTimer)
        self._fireFlushWaiters()

    # -- maintenance -------------------------------------------------------------------

    def _scheduleMaintenance(self, delay):
        self._cancelMaintenance()
        if self._pool is not None and not self._stopping:
            self._maintenance = self.reactor.callLater(delay, self.maintain, eager=False)

    def _cancelMaintenance(self):
        if self._maintenance is not None and self._maintenance.active():
            self._maintenance.cancel()
        self._maintenance = None

    def maintain(self, eager=True):
        """Run one round of maintenance now, in the writer thread after the batches queued
        (rollups of the hours that closed, then retention); the next round follows at once
        when work remains, else when the next hour closes. A Deferred firing True
        when work remains. The timer's rounds are not ``eager``: a quiet store's closed
        hours wait and close a few at a time
        (:meth:`~buildbot_stats.storage.sqlite.rollups.Rollups.due`).
        """
        self._cancelMaintenance()
        if self._pool is None or self._stopping:
            return defer.succeed(False)
        if self._maintaining is not None:
            if not eager or self._maintaining_eager:
                return self._maintaining
            # a timer's round is running, which may leave closed hours waiting: an eager
            # round after it
            after = defer.Deferred()

            def again(result):
                self.maintain(eager=True).chainDeferred(after)
                return result
            self._maintaining.addBoth(again)
            return after
        now = self.reactor.seconds()
        self._maintaining_eager = eager
        self._maintaining = d = self._inThread(self._writer.maintain, self.path, now,
                                               self.keep, self.keep_rollups, eager)

        def done(more):
            self._maintaining = None
            self.maintenance_rounds += 1
            if self._maintenance_failing:
                self._maintenance_failing = False
                log.msg(f"buildbot_stats: {self.name}: the maintenance of {self.path} works "
                        "again")
            now = self.reactor.seconds()
            self._scheduleMaintenance(0 if more else nextClose(now) - now)
            return more

        def failed(failure):
            self._maintaining = None
            if not self._maintenance_failing:
                self._maintenance_failing = True
                log.msg(f"buildbot_stats: {self.name}: error: the maintenance of {self.path} "
                        f"(rollups, retention) failed: {failure.getErrorMessage()}; retried "
                        f"every {MAINTENANCE_INTERVAL:g}s, the points are still written")
            self._scheduleMaintenance(MAINTENANCE_INTERVAL)
            return False

        d.addCallbacks(done, failed)
        return d

    # -- flushing ----------------------------------------------------------------------

    def _done(self):
        c = self.counters
        return c.written + c.rejected + c.dropped

    def flush(self, timeout=None):
        """A Deferred firing True once every point posted so far ended (written, rejected
        or dropped), False after ``timeout`` seconds (``None``: ``stop_timeout``, so that a
        file that cannot be written never hangs the master's shutdown)."""
        d = defer.Deferred()
        entry = [self.counters.added, d, None]
        if timeout is None:
            timeout = getattr(self, 'stop_timeout', 30.0)
        entry[2] = self.reactor.callLater(timeout, self._flushTimedOut, entry)
        self._flush_waiters.append(entry)
        self._fireFlushWaiters()
        self._kick(now=True)
        return d

    def _flushTimedOut(self, entry):
        entry[2] = None
        if entry in self._flush_waiters:
            self._flush_waiters.remove(entry)
            entry[1].callback(self._done() >= entry[0])

    def _fireFlushWaiters(self, force=False):
        done = self._done()
        ready = [e for e in self._flush_waiters if force or done >= e[0]]
        # the list is updated before any callback runs: a callback may flush again
        self._flush_waiters = [e for e in self._flush_waiters if e not in ready]
        for target, d, timer in ready:
            if timer is not None and timer.active():
                timer.cancel()
            d.callback(done >= target)
