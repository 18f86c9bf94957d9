"""Change detection in the master: what got slower (or faster), and since which build.

:class:`Regressions` is configured in master.cfg (``StatsService(regressions=...)``) and run
by the :class:`~buildbot_stats.service.StatsService`, a component of its subscription table
(:mod:`buildbot_stats.subscriptions`: the builds' end, after the captures). Its one job is to keep the change
points of the store's series current, off the reactor:

* at start (after the catch-up), the full analysis of every series, in a thread of its own;
* after each build, only the series of that build's builder that got new values, in the
  same thread (one round at a time; builds finishing meanwhile join the next round);
* what it finds is kept in the store itself, as points of the series ``change_points``
  written through the service's backends (SQLite, InfluxDB: the page, the command, a
  Grafana annotation query and a restarted master all read them); a change is announced
  (attributed, written, logged) once; one that a later analysis no longer finds is
  written again as withdrawn.

The statistics are :mod:`buildbot_stats.analysis.changepoints`' (pure functions); the series,
the kept change points and their records are the read side's
(:mod:`buildbot_stats.reading.changes`); the attribution (revision, branch, the changes that
came in) is :mod:`buildbot_stats.history.attribution`'s, from Buildbot's data API on the
reactor. docs/regressions.rst is the user's side of it.
"""

from __future__ import annotations

import collections
import contextlib
import threading

from twisted.internet import defer
from twisted.internet import task
from twisted.internet import threads
from twisted.python import log
from twisted.python import threadpool

from buildbot import config
from buildbot.util import ComparableMixin

from buildbot_stats.analysis import changepoints
from buildbot_stats.checks import checkedInit
from buildbot_stats.checks import countProblem
from buildbot_stats.checks import numberProblem
from buildbot_stats.checks import report
from buildbot_stats.checks import shown
from buildbot_stats.deadline import within
from buildbot_stats.history.attribution import attribute
from buildbot_stats.messages import BUILD_FINISHED
from buildbot_stats.reading import changes as kept_changes
from buildbot_stats.reading.source import Source
from buildbot_stats.storage.influxdb import InfluxStorageService
from buildbot_stats.storage.sqlite import SQLiteStorageService
from buildbot_stats.storage.sqlite.schema import StoreError
from buildbot_stats.subscriptions import Subscription

#: Seconds a round waits for the captures still handling the build (then it reads anyway).
DRAIN_BOUND = 10.0
#: Seconds a round waits for the store's backend to write what it holds (checked every
#: WRITTEN_POLL seconds).
FLUSH_BOUND = 30.0
WRITTEN_POLL = 0.1
#: Seconds the stop waits for an analysis under way (cut short, it ends at once; an
#: InfluxDB query runs to its own timeout).
STOP_WAIT = 5.0


class AnalysisPool(threadpool.ThreadPool):
    """The one thread of the analyses; a daemon, so that a read still under way when the
    master stops never holds its exit."""

    def __init__(self):
        super().__init__(minthreads=1, maxthreads=1, name='buildbot_stats regressions')

    @staticmethod
    def threadFactory(*args, **kwargs):
        return threading.Thread(*args, daemon=True, **kwargs)


class Stopped(Exception):
    """The service stops: the analysis under way is left (found again at the next
    start)."""


class Regressions(ComparableMixin):
    """Change detection in the master (docs/regressions.rst).

    :param max_pvalue: a change is significant below this p-value (default 0.0001)
    :param min_size: the smallest change of the medians reported, relative (default 0.1:
        10 %)
    :param min_builds: builds that must follow a change before it is reported, and precede
        it (default 5)
    :param history: the newest builds of each series the full analysis looks at (default
        10000)
    :param recent: the newest builds of each series held in memory and looked at again
        after each build (default 500)
    :param higher_is_better: series (names or shell patterns: ``'tests'``,
        ``'coverage.*'``) where a fall, not a rise, is the change for the worse (default
        ``('tests',)``)
    """

    compare_attrs = ('max_pvalue', 'min_size', 'min_builds', 'history', 'recent',
                     'higher_is_better')

    @checkedInit
    def __init__(self, max_pvalue=1e-4, min_size=kept_changes.DEFAULT_MIN_SIZE, min_builds=5,
                 history=10000, recent=500,
                 higher_is_better=kept_changes.DEFAULT_HIGHER_IS_BETTER):
        owner = type(self).__name__
        report(owner, numberProblem('max_pvalue', max_pvalue, below=1),
               numberProblem('min_size', min_size), countProblem('min_builds', min_builds),
               countProblem('history', history), countProblem('recent', recent))
        if isinstance(higher_is_better, str) or not isinstance(higher_is_better, (list, tuple)) \
                or not all(isinstance(p, str) and p for p in higher_is_better):
            config.error(f"{owner}: higher_is_better must be a list of series names or "
                         f"patterns, got {shown(higher_is_better)}")
        self.max_pvalue, self.min_size, self.min_builds = max_pvalue, min_size, min_builds
        self.history, self.recent = history, recent
        self.higher_is_better = tuple(higher_is_better) if isinstance(
            higher_is_better, (list, tuple)) else ()
        self.service = None
        self.windows = {}  # (builder, series) -> SeriesWindow
        self.open = {}  # (builder, series) -> open changes for the worse
        self._dirty = set()  # builder names whose builds finished since the last round
        self._round = None  # the Deferred of the round running
        self._pool = None
        self._working = None  # fires when the thread's work under way ends
        self._polling = None  # the timer of a round waiting for the backend to write
        self._reader = None  # the reader the thread uses, while it reads
        self._ready = False  # the full analysis is done: rounds after builds may run
        self._stopping = False
        self._warned = set()
        self.rounds = self.analyses = self.found = self.withdrawn = self.errors = 0

    def options(self):
        return tuple(getattr(self, name) for name in self.compare_attrs)

    def describe(self):
        return (f"{type(self).__name__}(" + ", ".join(
            f"{name}={getattr(self, name)!r}" for name in self.compare_attrs) + ")")

    def detector(self):
        return changepoints.ChangeDetector(max_pvalue=self.max_pvalue,
                                           min_magnitude=self.min_size,
                                           min_run=self.min_builds)

    def isWorse(self, series, direction):
        """True when a change of ``series`` in ``direction`` is for the worse: a rise,
        unless the series is higher-is-better (then a fall)."""
        better_up = kept_changes.matches(series, self.higher_is_better)
        return (direction == 'down') if better_up else (direction == 'up')

    def metrics(self):
        return {'rounds': self.rounds, 'analyses': self.analyses, 'found': self.found,
                'withdrawn': self.withdrawn, 'errors': self.errors}

    def openSlowdowns(self):
        """``{(builder, series): changes for the worse still open}`` (those not followed by
        a change back)."""
        return {k: v for k, v in self.open.items() if v}

    # -- life ------------------------------------------------------------------------------

    @property
    def master(self):
        return self.service.master

    @property
    def reactor(self):
        return self.master.reactor

    def attach(self, service):
        self.service = service

    def whyOff(self):
        """Why change detection cannot run for the service attached (None: it can). Before
        the backends are configured (the master's start), a backend of a readable kind
        is enough; once they are, the one read must be known (an InfluxDB 2.x bucket is
        not read)."""
        if not changepoints.available():
            return (f"the {changepoints.PACKAGE} package is not installed "
                    f"({changepoints.INSTALL})")
        readable = [b for b in self.service.backends
                    if isinstance(b, (SQLiteStorageService, InfluxStorageService))]
        configured = all(getattr(b, 'configured', True) for b in readable)
        if not readable or (configured and self._source().backend() is None):
            return ("the StatsService has no SQLite or InfluxDB 1.x backend to read the "
                    "series from")
        return None

    def start(self, after=None):
        """Start: the full analysis, once ``after`` (a Deferred: the catch-up) fired."""
        reason = self.whyOff()
        if reason is not None:
            log.msg(f"buildbot_stats: regressions: change detection is off: {reason}")
            return
        self._stopping = False
        self._pool = AnalysisPool()
        self._pool.start()
        d = defer.succeed(None) if after is None else after
        d.addBoth(lambda _: self._startRound(self._fullRound))

    @defer.inlineCallbacks
    def analyseNow(self):
        """The full analysis now, outside the master's start (the backfill's, once the
        builds it replayed are in the store); returns ``(changes found, withdrawn)``."""
        reason = self.whyOff()
        if reason is not None:
            log.msg(f"buildbot_stats: regressions: not analysed: {reason}")
            return None
        found, withdrawn = self.found, self.withdrawn
        own = self._pool is None
        if own:
            self._pool = AnalysisPool()
            self._pool.start()
        try:
            yield self._fullRound()
        finally:
            if own:
                pool, self._pool = self._pool, None
                pool.stop()
        return self.found - found, self.withdrawn - withdrawn

    @defer.inlineCallbacks
    def stop(self, bound):
        """Stop: nothing is announced after this; a round waiting for the store's backend
        is left, an analysis in the thread is cut short (an SQLite query interrupted, the
        loop over series left) and waited for, ``STOP_WAIT`` seconds (and ``bound``) at
        most. What they would have found is found again at the next start."""
        self._stopping = True
        self._dirty.clear()
        if self._polling is not None:
            self._polling.cancel()  # no timer of ours is left behind
        reader = self._reader
        if reader is not None and hasattr(reader, 'conn'):
            reader.conn.interrupt()  # SQLite: the query of the thread stops
        pool, self._pool = self._pool, None
        done = True
        if self._working is not None:
            done = yield within(self.reactor, self._working, min(bound, STOP_WAIT))
        if pool is not None:
            if done:
                pool.stop()
            else:
                # its one thread is a daemon: never joined, it ends with its read
                log.msg("buildbot_stats: regressions: an analysis was still reading the "
                        "store at the stop; its changes are found again at the next start")

    def subscriptions(self):
        """Its part of the service's subscription table (docs/architecture.rst): the end of
        every build this master ran, after the captures (registered before it), which have
        the build's points under way; nothing while it cannot run (:meth:`whyOff`).
        Replayed builds are not followed one by one: a backfill or the catch-up is analysed
        whole once it ends (:meth:`analyseNow`, :meth:`start`)."""
        if self.whyOff() is not None:
            return []
        return [Subscription(BUILD_FINISHED, self.buildFinished, 'change detection (Regressions)')]

    def buildFinished(self, routingKey, msg):
        """After the captures, for every build that finished on this master: its builder's
        series are looked at again."""
        if self._pool is None or self._stopping:
            return
        name = self.service.lookups.builder_names.lookup(msg.get('builderid'))
        if isinstance(name, defer.Deferred):
            name.addCallback(self._touched)
            name.addErrback(self._failed, "finding a builder's name")
        else:
            self._touched(name)

    def _touched(self, builder):
        if builder is None:
            return
        self._dirty.add(builder)
        if self._ready:
            self._startRound(self._buildsRound)

    # -- rounds ------------------------------------------------------------------------------

    def _startRound(self, how):
        if self._round is not None or self._stopping or self._pool is None:
            return
        self._round = d = defer.maybeDeferred(how)
        d.addErrback(self._failed, "an analysis round")
        d.addBoth(self._roundDone)

    def _roundDone(self, _):
        self._round = None
        if self._dirty and self._ready and not self._stopping:
            self._startRound(self._buildsRound)

    def _failed(self, failure, what):
        if self._stopping:
            # a round cut short by the stop (its wait cancelled, its analysis left): what
            # it would have found is found again at the next start
            return None
        self.errors += 1
        if failure.check(StoreError):
            key = str(failure.value)
            if key not in self._warned:
                self._warned.add(key)
                log.msg(f"buildbot_stats: regressions: error: {what}: the store cannot be "
                        f"read: {failure.value} (logged once)")
            return None
        log.err(failure, f"buildbot_stats: regressions: {what} failed")
        return None

    def _source(self):
        return Source(service=self.service, basedir=getattr(self.master, 'basedir', None))

    @defer.inlineCallbacks
    def _written(self):
        """The points of the builds so far handed over by the captures and written by the
        backend read, at its own pace (no batch is forced out for this), ``FLUSH_BOUND``
        seconds at most."""
        yield within(self.reactor, self.service.drain(), DRAIN_BOUND)
        backend = self._source().backend()
        if backend is None:
            return
        counters = backend.counters
        target = counters.added
        deadline = self.reactor.seconds() + FLUSH_BOUND
        while (counters.written + counters.rejected + counters.dropped < target
               and self.reactor.seconds() < deadline and not self._stopping):
            self._polling = task.deferLater(self.reactor, WRITTEN_POLL, lambda: None)
            try:
                yield self._polling
            finally:
                self._polling = None

    def _inThread(self, f, *args):
        """``f(*args)`` in the analysis thread; its Deferred (``self._working`` meanwhile,
        which the stop waits for)."""
        if self._pool is None or self._stopping:
            return defer.fail(Stopped())
        d = threads.deferToThreadPool(self.reactor, self._pool, f, *args)
        self._working = working = defer.Deferred()

        def done(result):
            self._working = None
            working.callback(None)
            return result
        d.addBoth(done)
        return d

    @defer.inlineCallbacks
    def _fullRound(self):
        try:
            yield self._written()
            found = yield self._inThread(self.analyseAll)
            yield self._announce(found)
        except StoreError as e:
            # a store not written yet (a new master), a database not created yet
            if not self._stopping:
                log.msg(f"buildbot_stats: regressions: nothing analysed at start: {e}")
            return
        finally:
            self._ready = True
        log.msg(f"buildbot_stats: regressions: {len(self.windows)} series analysed, "
                f"{sum(self.open.values())} changes for the worse open")

    @defer.inlineCallbacks
    def _buildsRound(self):
        builders, self._dirty = sorted(self._dirty), set()
        yield self._written()
        found = yield self._inThread(self.analyseBuilders, builders)
        yield self._announce(found)

    # -- in the thread ---------------------------------------------------------------------

    def analyseAll(self):
        """The full analysis: every series of the store, its newest ``history`` builds.
        Returns ``(new records, withdrawn records)``."""
        with self._reading() as reader:
            kept = reader.changePoints()
            series = reader.measuredSeries()
        return self._analyse(series, kept, self.history, full=True)

    def analyseBuilders(self, builders):
        """After builds of ``builders``: the series of those builders that got new values."""
        series, kept = {}, []
        with self._reading() as reader:
            for builder in builders:
                held = [w.times[-1] for k, w in self.windows.items()
                        if k[0] == builder and len(w.times)]
                since = min(held) if held else None
                kept.extend(reader.changePoints(builder))
                series.update(reader.measuredSeries(builder, start=since))
        return self._analyse(series, kept, self.recent, full=False)

    @contextlib.contextmanager
    def _reading(self):
        """The store's reader, interrupted by :meth:`stop` (an SQLite query in progress
        ends at once)."""
        with self._source().open() as reader:
            self._reader = reader
            try:
                yield reader
            finally:
                self._reader = None

    def _analyse(self, series, kept, keep, full):
        """The changes of ``series`` (``{key: rows}``) against the ``kept`` records. The
        windows and the open counts are replaced whole (the reactor reads them)."""
        self.rounds += 1
        detector = self.detector()
        windows = {} if full else self.windows
        open_ = {} if full else dict(self.open)
        kept_by = collections.defaultdict(list)
        for record in kept:
            kept_by[(record['builder'], record['series'])].append(record)
        new, gone = [], []
        for key in sorted(series, key=lambda k: (k[0], k[1])):
            if self._stopping:
                raise Stopped()
            rows = series[key]
            if full:
                rows = rows[-keep:]
                window = kept_changes.SeriesWindow(rows)
                windows[key] = kept_changes.SeriesWindow(rows[-self.recent:])
            else:
                window = windows.setdefault(key, kept_changes.SeriesWindow())
                if not window.extend(rows, self.recent):
                    continue
            self.analyses += 1
            records = [r for r in kept_by.get(key, ()) if not r['withdrawn']]
            n, g = self._compare(key, window, detector, records, full)
            new.extend(n)
            gone.extend(g)
            withdrawn = {id(r) for r in g}
            open_[key] = kept_changes.openWorse([r for r in records if id(r) not in withdrawn] + n)
        if full:
            for key, records in kept_by.items():
                if key not in open_:
                    open_[key] = kept_changes.openWorse([r for r in records if not r['withdrawn']])
        self.windows, self.open = windows, open_
        return new, gone

    def _compare(self, key, window, detector, records, full):
        found = detector.find(window.values)
        # a live window sees few builds before its first ones: only the newest changes it
        # holds can be withdrawn (a false alarm is withdrawn within a few builds)
        settled = 0 if full else max(0, len(window.values) - 2 * detector.window)
        result = changepoints.reconcile(found, window.positions(records),
                                        settled_from=settled)
        new = [kept_changes.foundRecord(key, window, change, self.isWorse) for change in result.new]
        return new, [records[k] for k in result.gone]

    # -- on the reactor: attribution, the points, the log -----------------------------------

    @defer.inlineCallbacks
    def _announce(self, found):
        new, gone = found
        if self._stopping:
            return
        now = self.reactor.seconds()
        for record in sorted(new, key=lambda r: r['time']):
            record['found_at'] = now
            try:
                yield attribute(self.master, record)
            except Exception as e:
                # the change is still news without its revision
                self.errors += 1
                log.msg(f"buildbot_stats: regressions: build #{record['build_number']} of "
                        f"{record['builder']!r} could not be read for its change: {e}")
            self.keep(record)
            self.found += 1
            log.msg(f"buildbot_stats: regressions: {kept_changes.logLine(record)}")
        for record in gone:
            record = dict(record, withdrawn=True)
            self.keep(record)
            self.withdrawn += 1
            log.msg("buildbot_stats: regressions: withdrawn (no longer found): "
                    f"{kept_changes.logLine(record)}")

    def keep(self, record):
        """Write change ``record`` (attributed) to every backend that keeps points."""
        # one line for a Grafana annotation's text (dashboards/grafana)
        record['summary'] = kept_changes.logLine(record, url=False)
        fields = kept_changes.changeFields(record)
        tags = kept_changes.changeTags(record)
        for backend in self.service.backends:
            if getattr(backend, 'keepsPoints', True):
                backend.postStatsValue(dict(fields), kept_changes.CHANGE_POINTS, dict(tags),
                                       record['time'])

