"""BatchWriter: takes encoded lines, sends them in batches, and accounts for every one.

Every line ends in exactly one of three ways (the model is Telegraf's outputs):

* accepted: the server wrote it (``counters.written``)
* rejected: the server refused its content, or a 400 named how many it dropped; never
  retried (``counters.rejected``). Of those, the points refused because the server's
  cardinality limit was reached (the outcome names a
  :class:`~buildbot_stats.delivery.sender.Limit`) are counted apart too
  (``counters.limit_rejected``) and handed to ``on_limit``, which explains them
* dropped: no room left (buffer or spool full), ``max_retries`` exhausted, or the master
  stopped without a spool (``counters.dropped``)

Until then it is kept (``counters.pending``): a failed batch goes back to the front and is
tried again after a backoff. Up to ``max_in_flight`` requests are in flight at a time (each
holding its own batch, so the accounting stays exact); with one, points arrive in the order
they were posted.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.internet import task
from twisted.python import log

from buildbot_stats.delivery import sender as outcomes
from buildbot_stats.delivery.buffer import Chunk
from buildbot_stats.delivery.buffer import ChunkBuffer
from buildbot_stats.delivery.retry import Backoff


class BatchWriter:
    """
    :param sender: an :class:`~buildbot_stats.delivery.sender.HTTPBatchSender`
    :param options: a :class:`~buildbot_stats.delivery.retry.WriteOptions`
    :param counters: the backend's :class:`~buildbot_stats.counters.DeliveryCounters`
    :param reactor: timers come from it (a ``task.Clock`` in unit tests)
    :param label: what log messages call this writer: the backend and its destination
        (no credentials in it)
    :param spool: a :class:`~buildbot_stats.delivery.spool.Spool`, or None
    :param create_database: called on a 404 "database not found"; returns a Deferred
        firing True if it created the database
    :param on_limit: called as ``on_limit(outcome, chunk, count)`` when the server refused
        ``count`` points of ``chunk`` for the limit ``outcome.limit`` (instead of a log line
        per batch: the callee says it, as often as it sees fit)
    """

    def __init__(self, sender, options, counters, reactor, label, spool=None,
                 create_database=None, backoff=None, on_limit=None):
        self.sender = sender
        self.options = options
        self.counters = counters
        self.reactor = reactor
        self.label = label
        self.spool = spool
        self.create_database = create_database
        self.on_limit = on_limit
        self.backoff = backoff or Backoff(options)
        self.buffer = ChunkBuffer(options.batch_size, options.buffer_limit, self._droppedForRoom)
        self._inflight = {}            # the chunks being sent -> their requests (cancelled
                                       # at stop)
        self._retry_call = None         # the pending retry timer
        self._failures = 0             # failed attempts in a row
        self._trouble = None           # what went wrong last, while it is wrong
        self._last_logged = None
        self._finished = 0             # lines ended (written + rejected + dropped)
        self._flush_waiters = []
        self._last_create = None
        self._stopped = False
        self._running = False
        self._flush_loop = None
        self._report_loop = None
        self._reported = None

    # -- life cycle ---------------------------------------------------------------------

    @defer.inlineCallbacks
    def start(self):
        if self.spool is not None:
            for segment, lines in (yield self.spool.load()):
                self._restore(segment, lines)
        self._stopped = False
        self._running = True
        self._flush_loop = task.LoopingCall(self._tick)
        self._flush_loop.clock = self.reactor
        self._flush_loop.start(self.options.flush_interval, now=False)
        self._report_loop = task.LoopingCall(self._report)
        self._report_loop.clock = self.reactor
        self._report_loop.start(self.options.report_interval, now=False)
        self._kick()

    def _restore(self, segment, lines):
        chunks = [Chunk(lines, segment)]
        # the batch size may have shrunk since the file was written
        while any(len(c) > self.options.batch_size for c in chunks):
            chunks = [half for c in chunks for half in
                      (c.split() if len(c) > self.options.batch_size else (c,))]
        self.counters.added += len(lines)
        for c in chunks:
            self.buffer.sealed.append(c)
            self.buffer.count += len(c)
        self.buffer.makeRoom()
        log.msg(f"buildbot_stats: {self.label}: {len(lines)} points from the spool "
                f"({segment.path}) will be sent first")

    @defer.inlineCallbacks
    def stop(self, timeout=None):
        """Write what is pending within ``timeout`` seconds (default ``stop_timeout``); then
        keep the rest in the spool, or count it as dropped. Always returns within about
        ``timeout`` (plus the time to write the spool files)."""
        if not self._running:
            return
        for loop in (self._flush_loop, self._report_loop):
            if loop is not None and loop.running:
                loop.stop()
        yield self.flush(self.options.stop_timeout if timeout is None else timeout)
        self._running = False
        self._stopped = True
        if self._retry_call is not None and self._retry_call.active():
            self._retry_call.cancel()
        for request in list(self._inflight.values()):
            # InfluxDB hangs: give up on the requests, their chunks go back to the buffer
            if request is not None:
                request.cancel()
        if self.spool is not None:
            chunk = self.buffer.seal()
            if chunk is not None:
                self._sealed(chunk)
        left = self.buffer.takeAll()
        count = sum(len(c) for c in left)
        if self.spool is not None:
            for chunk in left:
                if chunk.segment is None:
                    # its journal could not be written: one more try, as a whole file
                    self.spool.add(chunk)
            yield self.spool.drain()
            if count:
                log.msg(f"buildbot_stats: {self.label}: stopping with {count} points not "
                        f"yet written; they are kept in the spool {self.spool.directory} and "
                        "sent at the next start")
        elif count:
            self.counters.dropped += count
            self._finished += count
            log.msg(f"buildbot_stats: error: {self.label}: stopping with {count} points "
                    f"not written ({self._trouble or 'no time left'}); they are lost "
                    "(set spool_dir to keep them across restarts)")
        self._report(final=True)
        self._fireFlushWaiters()

    def retarget(self, sender, options):
        """New destination or options (a reconfig); what is buffered stays and goes there."""
        self.sender = sender
        self.options = options
        self.backoff.options = options
        self.buffer.batch_size = options.batch_size
        self.buffer.limit = options.buffer_limit
        if self._flush_loop is not None:
            self._flush_loop.interval = options.flush_interval
        if self._report_loop is not None:
            self._report_loop.interval = options.report_interval
        self._kick()

    # -- adding ---------------------------------------------------------------------------

    def add(self, line):
        """One encoded line (bytes, no newline). Cheap: no timer per line; with a spool,
        the line joins the journal written once per reactor iteration."""
        self.counters.added += 1
        if self.spool is not None:
            self.spool.append(line)
        sealed = self.buffer.add(line)
        if sealed is not None:
            self._sealed(sealed)
            self._kick()

    def _sealed(self, chunk):
        if self.spool is None:
            return
        # the journal of the open chunk becomes this chunk's file
        self.spool.seal(chunk)
        # the spool's cap: the oldest chunks go, from memory and from disk alike
        while self.spool.bytes > self.spool.max_bytes and self.buffer.sealed:
            oldest = self.buffer.takeFirst()
            self._droppedForRoom(oldest, why="spool full")

    def _tick(self):
        chunk = self.buffer.seal()
        if chunk is not None:
            self._sealed(chunk)
        self._kick()

    # -- flushing -------------------------------------------------------------------------

    @property
    def pendingLines(self):
        return len(self.buffer) + sum(len(c) for c in self._inflight)

    def flush(self, timeout=None):
        """A Deferred firing True once every line pending now has ended, False if
        ``timeout`` seconds passed first. A retry waiting for its backoff is tried now."""
        self._tick_now()
        target = self._finished + self.pendingLines
        if self._finished >= target:
            return defer.succeed(True)
        d = defer.Deferred()
        entry = [target, d, None]
        if timeout is not None:
            entry[2] = self.reactor.callLater(timeout, self._flushTimedOut, entry)
        self._flush_waiters.append(entry)
        return d

    def _tick_now(self):
        chunk = self.buffer.seal()
        if chunk is not None:
            self._sealed(chunk)
        if (self._retry_call is not None and self._retry_call.active()
                and not isinstance(self._retry_call, _Waiting)):
            # a backoff is cut short; a database being created is waited for
            self._retry_call.cancel()
            self._retry_call = None
        self._kick()

    def _flushTimedOut(self, entry):
        if entry in self._flush_waiters:
            self._flush_waiters.remove(entry)
            entry[1].callback(False)

    def _fireFlushWaiters(self):
        done = [e for e in self._flush_waiters
                if self._finished >= e[0] or (self._stopped and self.pendingLines == 0)]
        for e in done:
            self._flush_waiters.remove(e)
            if e[2] is not None and e[2].active():
                e[2].cancel()
            e[1].callback(self._finished >= e[0])

    # -- sending --------------------------------------------------------------------------

    def _kick(self):
        while not self._stopped and len(self._inflight) < self.options.max_in_flight:
            if self._retry_call is not None and self._retry_call.active():
                return
            chunk = self.buffer.takeFirst()
            if chunk is None:
                return
            # a placeholder first: the answer may come before write() returns
            self._inflight[chunk] = None
            d = self.sender.write(chunk.body)
            if chunk in self._inflight:
                self._inflight[chunk] = d
            d.addCallback(self._outcome, chunk)
            d.addErrback(log.err, f"buildbot_stats: {self.label}: unexpected writer error")

    def _outcome(self, outcome, chunk):
        self._inflight.pop(chunk, None)
        kind = outcome.kind
        if kind == outcomes.ACCEPTED:
            self._recovered()
            self._end(chunk, written=len(chunk))
        elif kind == outcomes.PARTIAL:
            self._recovered()
            n = min(outcome.rejected, len(chunk))
            if outcome.limit is None:
                self._end(chunk, written=len(chunk) - n, rejected=n)
                log.msg(f"buildbot_stats: {self.label}: {n} of {len(chunk)} points rejected "
                        f"by the server: {outcome.message}")
            elif 0 < n < len(chunk):
                # InfluxDB 1.6 answers a partial write past its series limit by dropping the
                # first n points of the batch, not the n it refused (measured, see
                # docs/storage-influxdb.rst): which were written is unknown. The halves go
                # again (a point written twice lands once) until each refused line is alone
                # or among refused lines only: no point of an existing series is lost.
                self.buffer.putBack(*chunk.split())
            else:
                self._end(chunk, written=len(chunk) - n, rejected=n)
                if n:
                    self._limited(outcome, chunk, n)
        elif kind in (outcomes.BAD_REQUEST, outcomes.TOO_LARGE):
            self._recovered()
            if len(chunk) == 1:
                what = "too large" if kind == outcomes.TOO_LARGE else "refused"
                self._end(chunk, rejected=1)
                if outcome.limit is not None:
                    self._limited(outcome, chunk, 1)
                else:
                    log.msg(f"buildbot_stats: {self.label}: point {what} by the server, not "
                            f"retried: {outcome.message}; line: {_excerpt(chunk.lines[0])}")
            else:
                # find the bad line(s) by halves; resending the good ones is harmless since
                # every point carries its own timestamp (a rewrite replaces, never adds)
                self.buffer.putBack(*chunk.split())
        elif kind in (outcomes.AUTH, outcomes.NOT_FOUND):
            if (kind == outcomes.NOT_FOUND and outcome.database_not_found
                    and self.create_database is not None and self._mayCreate()):
                self._keep(chunk, outcome, delay=None, creating=True)
            else:
                self._keep(chunk, outcome, delay=self.options.slow_retry_interval)
        else:
            self._keep(chunk, outcome, delay=None)
        if self._stopped:
            # stop() took what is left
            self._fireFlushWaiters()
            return
        self._fireFlushWaiters()
        self._kick()

    def _keep(self, chunk, outcome, delay, creating=False):
        self._failures += 1
        chunk.failures += 1
        mr = self.options.max_retries
        if mr is not None and chunk.failures > mr and outcome.kind == outcomes.RETRY:
            self._end(chunk, dropped=len(chunk))
            log.msg(f"buildbot_stats: error: {self.label}: {len(chunk)} points dropped "
                    f"after {chunk.failures} failed attempts (max_retries={mr}): "
                    f"{outcome.message}")
            return
        self.buffer.putBack(chunk)
        if self._stopped:
            return
        if delay is None:
            delay = self.backoff.delay(self._failures, outcome.retry_after)
        self.counters.retries += 1
        if self._retry_call is not None and self._retry_call.active():
            # another batch in flight failed first: its retry timer sends this one too
            return
        self._noteTrouble(outcome, delay)
        if creating:
            d = self.create_database()
            d.addCallback(self._created)
            d.addErrback(_ignoreCancel, self.label)
            self._retry_call = _Waiting(d)
            return
        self._retry_call = self.reactor.callLater(delay, self._retryNow)

    def _mayCreate(self):
        now = self.reactor.seconds()
        if self._last_create is not None and now - self._last_create < \
                self.options.slow_retry_interval:
            return False
        self._last_create = now
        return True

    def _created(self, ok):
        self._retry_call = None
        if self._stopped:
            # stop() cancelled the creation (the sender answers a cancel as a failure):
            # no timer may outlive the writer
            return
        if ok:
            self._kick()
        else:
            self._retry_call = self.reactor.callLater(self.options.slow_retry_interval,
                                                     self._retryNow)

    def _retryNow(self):
        self._retry_call = None
        self._kick()

    def _end(self, chunk, written=0, rejected=0, dropped=0):
        self.counters.written += written
        self.counters.rejected += rejected
        self.counters.dropped += dropped
        self._finished += len(chunk)
        if chunk.segment is not None and self.spool is not None:
            self.spool.release(chunk.segment)

    def _limited(self, outcome, chunk, count):
        """``count`` points of ``chunk`` refused for a cardinality limit: counted apart,
        explained by ``on_limit`` (one line per batch would flood the log: each batch of a
        site past the limit is refused)."""
        self.counters.limit_rejected += count
        if self.on_limit is not None:
            try:
                self.on_limit(outcome, chunk, count)
            except Exception:
                log.err(None, f"buildbot_stats: {self.label}: explaining a limit refusal")
            return
        log.msg(f"buildbot_stats: error: {self.label}: {count} of {len(chunk)} points "
                f"refused by the server's {outcome.limit.describe()} limit: "
                f"{outcome.message}")

    def _droppedForRoom(self, chunk, why="buffer full"):
        first = self.counters.dropped == 0
        self._end(chunk, dropped=len(chunk))
        if first:
            # later drops are in the periodic report: one line per chunk would flood the log
            log.msg(f"buildbot_stats: error: {self.label}: {why}, dropping the oldest "
                    f"{len(chunk)} points ({self._trouble or 'the server is too slow'})")

    # -- telling the operator --------------------------------------------------------------

    def _noteTrouble(self, outcome, delay):
        self._trouble = outcome.message
        # one line per kind of trouble, not one per attempt; the report repeats the counters
        if outcome.message != self._last_logged:
            self._last_logged = outcome.message
            hint = ''
            if outcome.kind == outcomes.AUTH:
                hint = ' (check the credentials and their permissions)'
            elif outcome.kind == outcomes.NOT_FOUND:
                hint = (' (create the database/bucket, or set create_database=True)'
                        if outcome.database_not_found else ' (check the URL)')
            log.msg(f"buildbot_stats: error: {self.label}: write failed: "
                    f"{outcome.message}{hint}; {self.pendingLines} points kept, next attempt "
                    f"in {delay:.1f} s")

    def _recovered(self):
        if self._trouble is not None:
            log.msg(f"buildbot_stats: {self.label}: writing again after {self._failures} "
                    f"failed attempts; {self.counters!r}")
        self._trouble = None
        self._last_logged = None
        self._failures = 0

    def _report(self, final=False):
        snapshot = self.counters.asDict()
        # the points refused for a limit are told by on_limit, at its own pace
        snapshot['rejected'] -= self.counters.limit_rejected
        prev = self._reported or {}
        changed = any(snapshot[k] != prev.get(k, 0) for k in ('dropped', 'rejected'))
        if self._trouble is not None or changed or (final and snapshot['pending']):
            log.msg(f"buildbot_stats: {self.label}: {self.counters!r}"
                    + (f"; last error: {self._trouble}" if self._trouble else ''))
        self._reported = snapshot


class _Waiting:
    """Stands for a retry timer while the database is being created."""

    def __init__(self, d):
        self.d = d

    def active(self):
        return not self.d.called

    def cancel(self):
        self.d.cancel()


def _ignoreCancel(failure, label):
    if not failure.check(defer.CancelledError):
        log.err(failure, f"buildbot_stats: {label}: creating the database failed")


def _excerpt(line, limit=200):
    text = line.decode('utf-8', 'replace')
    return text if len(text) <= limit else text[:limit] + '...'
