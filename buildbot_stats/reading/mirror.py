"""The rows of the page's queries kept in memory, brought up to date from the store by
reading only the points written since (``id >`` the highest seen).

A view of the Statistics page over 100,000 points spends most of its time in SQLite reading
every point of its range and extracting its JSON fields. Builds add points; they rarely
change old ones. :class:`StoreMirror` keeps the rows of :meth:`StoreReader.rows` of every
kind for the whole store; :meth:`StoreMirror.sync` asks the reader for the rows of the
points with a higher row id than it has seen, and answers the page's queries from memory
with the same functions as the reader (:data:`~buildbot_stats.reading.sqlite.SHAPES`), so the answers are
the reader's.

When is everything read again: another file, another schema version, or points gone
(``COUNT(*)`` is not the count held plus the count written since: a retention deletion,
or schema v2's ``INSERT OR REPLACE``, which deletes the replaced row and writes a new one
with a higher id), or the row of the highest id seen is not the one held (a store
re-created at the same path).

Memory: about 250 bytes per point (24 MB for the 100,000 points of the benchmark, by
tracemalloc); a store of more than ``max_points`` (:data:`MAX_POINTS`, 1,000,000) is not
mirrored.
Thread-safe: :meth:`sync` runs under a lock and returns an immutable :class:`Snapshot`.
"""

from __future__ import annotations

import bisect
import os
import threading

from twisted.python import log

from buildbot_stats.reading import changes
from buildbot_stats.reading.sqlite import KINDS
from buildbot_stats.reading.sqlite import SHAPES
from buildbot_stats.reading.sqlite import StoreError
from buildbot_stats.reading.sqlite import openStore
from buildbot_stats.reading.sqlite import stepSummary


def _compact(rows, names):
    """``rows`` with one string object per distinct name (builder, step, series, result,
    field names; SQLite gives a new one per row): a third less memory."""
    def one(v):
        if type(v) is str:
            return names.setdefault(v, v)
        if type(v) is dict:
            return {names.setdefault(k, k): x for k, x in v.items()}
        return v

    return [tuple(map(one, row)) for row in rows]


class Snapshot:
    """The page's queries (same names and answers as :class:`StoreReader`'s) over the rows
    held at one moment."""

    def __init__(self, rows, builders, times=None):
        self._rows = rows  # {kind: [(time_us, id, builder, ...), ...] by time and id}
        self._times = times or {kind: [r[0] for r in rs] for kind, rs in rows.items()}
        self._builders = builders

    def _select(self, kind, builder, start, end):
        rows, times = self._rows[kind], self._times[kind]
        lo = 0 if start is None else bisect.bisect_left(times, round(start * 1e6))
        hi = len(rows) if end is None else bisect.bisect_left(times, round(end * 1e6))
        rows = rows[lo:hi] if (lo, hi) != (0, len(rows)) else rows
        if builder is not None:
            rows = [r for r in rows if r[2] == builder]
        return rows

    def builderNames(self):
        return list(self._builders)

    def buildDurations(self, builder=None, start=None, end=None):
        return SHAPES['durations'](self._select('durations', builder, start, end))

    def buildResults(self, builder=None, start=None, end=None):
        return SHAPES['results'](self._select('results', builder, start, end))

    def queueTimes(self, builder=None, start=None, end=None):
        return SHAPES['queue'](self._select('queue', builder, start, end))

    def stepDurations(self, builder=None, start=None, end=None):
        return SHAPES['steps'](self._select('steps', builder, start, end))

    def testCounts(self, builder=None, start=None, end=None):
        return SHAPES['tests'](self._select('tests', builder, start, end))

    def stepSummary(self, builder=None, start=None, end=None):
        return stepSummary(self._select('steps', builder, start, end))

    def customSeries(self, builder=None, start=None, end=None):
        return SHAPES['custom'](self._select('custom', builder, start, end))

    def changePoints(self, builder=None, start=None, end=None):
        return SHAPES['changes'](self._select('changes', builder, start, end))

    def measuredSeries(self, builder=None, start=None, end=None):
        return changes.measuredSeries(self, builder, start, end)


#: A store with more points is not mirrored (about 250 MB of memory at this size).
MAX_POINTS = 1_000_000


class StoreMirror:
    """One store's rows, kept up to date by :meth:`sync`.

    A full read (the first view after the master started, or after points were deleted or
    replaced) costs as much as the "all" view read from the store; with ``background=True``
    :meth:`sync` answers None instead, the page reads that view from the store itself (as
    without a mirror) and then calls :meth:`startLoading`, which runs the full read in a
    thread of its own: no request waits for the whole store.
    """

    def __init__(self, max_points=MAX_POINTS):
        self.max_points = max_points
        self.lock = threading.Lock()
        self.identity = None  # (path, device, inode, schema version)
        self.count = 0  # points in the store when last synced
        self.max_id = None  # the highest row id seen
        self.last_row = None  # (series, time_us) of that row
        self.rows = None
        self.names = {}  # the one object of each string held
        self.snapshot = None
        self.loading = False  # a full read is due or runs in the background
        self.due = None  # the path to read in full, until startLoading
        self.idle = threading.Event()  # set while no full read runs
        self.idle.set()
        self.full_reads = self.updates = 0  # what sync did (for tests and the benchmark)

    @staticmethod
    def _fingerprint(reader, row_id):
        return None if row_id is None else reader.rowKey(row_id)

    @staticmethod
    def _state(reader):
        st = os.stat(reader.path)
        identity = (os.path.abspath(reader.path), st.st_dev, st.st_ino, reader.version)
        count = reader.countPoints()
        max_id = reader.maxId()
        return (identity, count, max_id, tuple(reader.builderNames()),
                StoreMirror._fingerprint(reader, max_id))

    def sync(self, reader, background=True):
        """A :class:`Snapshot` of the store of ``reader`` (a :class:`StoreReader`) now; None
        while a full read is due or runs in the background (``background``; without it the
        full read runs here). A due read is started by :meth:`startLoading`, which the page
        calls once it has answered the view from the store itself."""
        with self.lock:
            if self.loading:
                return None
            # one read transaction: the counts, the ids and the rows of one state of the file
            with reader.readTransaction():
                state = self._state(reader)
                if state[1] > self.max_points:
                    # too large to hold: the page reads every view from the store
                    self.rows = self.snapshot = None
                    return None
                snapshot = self._update(reader, state)
                if snapshot is not None:
                    return snapshot
                if not background:
                    self._install(state, self._read(reader))
                    return self.snapshot
            self.loading = True
            self.idle.clear()
            self.due = reader.path
        return None

    def startLoading(self):
        """Start the full read that :meth:`sync` found due, in a thread of its own."""
        with self.lock:
            path, self.due = self.due, None
        if path is not None:
            threading.Thread(target=self._load, args=(path,), daemon=True,
                             name='buildbot_stats page mirror').start()

    def _load(self, path):
        try:
            with openStore(path) as reader, reader.readTransaction():
                state = self._state(reader)
                rows = self._read(reader)
            with self.lock:
                self._install(state, rows)
        except StoreError as e:
            # the file went or is damaged: the page reads from the store and says it
            log.msg(f"buildbot_stats: the Statistics page's mirror of {path} not loaded: {e}")
        except Exception:
            log.err(None, f"buildbot_stats: reading {path} for the Statistics page")
        finally:
            with self.lock:
                self.loading = False
                self.idle.set()

    def _read(self, reader):
        self.names = {}
        return {kind: _compact(reader.rows(kind), self.names) for kind in KINDS}

    def _install(self, state, rows):
        identity, count, max_id, builders, last_row = state
        self.identity, self.count, self.max_id, self.last_row = identity, count, max_id, last_row
        self.rows = rows
        self.snapshot = Snapshot(rows, builders)
        self.full_reads += 1

    def _update(self, reader, state):
        """The snapshot of ``state`` from what is held and the points written since; None
        when everything must be read again."""
        identity, count, max_id, builders, last_row = state
        if self.rows is None or identity != self.identity:
            return None
        if (max_id, count, builders, last_row) == (self.max_id, self.count,
                                                   self.snapshot._builders, self.last_row):
            return self.snapshot
        if self.max_id is None:  # it was empty
            return None
        if (max_id is None or max_id < self.max_id
                or self._fingerprint(reader, self.max_id) != self.last_row):
            return None
        written = reader.countAfter(self.max_id)
        if self.count + written != count:
            return None  # points were deleted or replaced
        rows, times = {}, {}
        for kind in KINDS:
            new = _compact(reader.rows(kind, after_id=self.max_id), self.names)
            old, old_times = self.rows[kind], self.snapshot._times[kind]
            if not new:
                rows[kind], times[kind] = old, old_times
            elif not old or new[0][:2] >= old[-1][:2]:
                rows[kind] = old + new
                times[kind] = old_times + [r[0] for r in new]
            else:  # a point older than the newest held (a spool replayed late)
                rows[kind] = sorted(old + new, key=lambda r: r[:2])
                times[kind] = [r[0] for r in rows[kind]]
        self.count, self.max_id, self.last_row = count, max_id, last_row
        self.rows = rows
        self.snapshot = Snapshot(rows, builders, times)
        self.updates += 1
        return self.snapshot
