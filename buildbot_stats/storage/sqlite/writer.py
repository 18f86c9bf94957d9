"""What runs in the embedded store's writer thread: one connection, its transactions.

Only :class:`~buildbot_stats.storage.sqlite.backend.SQLiteStorageService`'s one-thread pool
calls it; nothing here runs on the reactor thread.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time

from buildbot_stats import __version__
from buildbot_stats.outcomes import countOutcomes
from buildbot_stats.slices import cyclicGCPaused
from buildbot_stats.storage.sqlite.schema import NAME_BITS
from buildbot_stats.storage.sqlite.schema import NAME_MASK
from buildbot_stats.storage.sqlite.schema import migrate

# A point with the series, tags and time of one already stored replaces it (schema v2's
# unique index): writing the same points twice (backfill, catch-up) adds no row.
INSERT = (
    "INSERT OR REPLACE INTO points (series, time_us, builder, build_number, tags, fields)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)

# one build's test results (CaptureTestHistory): a build written again replaces its run
RUN_OF = "SELECT id FROM test_runs WHERE builder = ? AND build_number = ?"
INSERT_RUN = (
    "INSERT INTO test_runs (builder, build_number, buildid, time_us, revision, buildset,"
    " branch, passed, failed, skipped, flaky) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
INSERT_RESULT = "INSERT INTO test_results (id, outcome, duration_us) VALUES (?, ?, ?)"
# test names kept in the writer's memory (name -> id), to spare a look-up per result
MAX_CACHED_NAMES = 300_000
# names looked up per statement
NAME_CHUNK = 500

# A write waits for another program's lock in slices this long, so that a stop can give up
# at once (:attr:`StoreWriter.abort`) instead of after the whole ``busy_timeout``.
BUSY_SLICE = 0.05


class StoreFull(sqlite3.OperationalError):
    """The store holds as many test names as a result's row id can tell apart."""


def _isBusy(e):
    return getattr(e, 'sqlite_errorcode', None) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) \
        or 'locked' in str(e)


class StoreWriter:
    """The writer thread's connection to the store, opened on first use."""

    def __init__(self, busy_timeout):
        self.busy_timeout = busy_timeout
        self.path = None
        self.conn = None
        self.name_ids = {}  # test name -> test_names.id, of this connection's file
        # set by the reactor thread when stopping: a write waiting for a lock gives up
        self.abort = threading.Event()

    def open(self, path):
        if self.conn is not None and self.path == path:
            return self.conn
        self.close()
        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        # autocommit mode: transactions are explicit (BEGIN IMMEDIATE ... COMMIT)
        conn = sqlite3.connect(path, timeout=min(self.busy_timeout, BUSY_SLICE),
                               isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            # with WAL, NORMAL survives a crash of the master; a power cut may lose the
            # last transactions, never corrupt the file
            conn.execute("PRAGMA synchronous=NORMAL")
            migrate(conn, created_by=f"buildbot_stats {__version__}")
        except BaseException:
            conn.close()
            raise
        self.conn, self.path = conn, path
        self.name_ids = {}
        return conn

    def write(self, path, rows, tests=()):
        """Write ``rows`` (points) and ``tests`` (``(TestRun, cases)`` of whole builds) in
        one transaction, waiting up to ``busy_timeout`` for a lock held by another program
        (less if :attr:`abort` is set meanwhile). Returns the points and results written."""
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                return self._writeOnce(path, rows, tests)
            except sqlite3.OperationalError as e:
                if not _isBusy(e) or self.abort.is_set() or time.monotonic() >= deadline:
                    raise

    def _writeOnce(self, path, rows, tests):
        conn = self.open(path)
        conn.execute("BEGIN IMMEDIATE")
        try:
            if rows:
                conn.executemany(INSERT, rows)
            results = 0
            for run, cases in tests:
                # 10,000 rows made and dropped: no collection of the master's heap meanwhile
                with cyclicGCPaused():
                    results += self._writeRun(conn, run, cases)
            conn.execute("COMMIT")
        except BaseException:
            # a failed transaction is rolled back whole: the batch is retried as one (and
            # names this transaction added are not in the file: forget them)
            self.name_ids = {}
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            raise
        return len(rows) + results

    # -- the per-test history (schema v3) ---------------------------------------------------

    def _writeRun(self, conn, run, cases):
        """One build's test results; a build written before (a backfill, a catch-up) has
        its results replaced. Returns the number of results."""
        found = conn.execute(RUN_OF, (run.builder, run.build_number)).fetchone()
        if found is not None:
            # written again under a new id: its results go to the end of the table (full
            # pages), and readers see the runs change (StoreReader.testsStateKey)
            first = found[0] << NAME_BITS
            conn.execute("DELETE FROM test_results WHERE id BETWEEN ? AND ?",
                         (first, first | NAME_MASK))
            conn.execute("DELETE FROM test_runs WHERE id = ?", (found[0],))
        passed, failed, skipped, flaky = countOutcomes(cases)
        run_id = conn.execute(INSERT_RUN, (
            run.builder, run.build_number, run.buildid, round(run.time * 1_000_000),
            run.revision, run.buildset, run.branch, passed, failed, skipped,
            flaky)).lastrowid
        ids = self._nameIds(conn, [name for name, _, _ in cases])
        base = run_id << NAME_BITS
        rows = sorted(
            (base | ids[name], outcome,
             None if duration is None else round(duration * 1_000_000))
            for name, outcome, duration in cases)
        conn.executemany(INSERT_RESULT, rows)
        return len(rows)

    def _nameIds(self, conn, names):
        """``{name: test_names.id}`` of ``names``, adding the new ones."""
        cache = self.name_ids
        missing = [n for n in set(names) if n not in cache]
        if len(cache) + len(missing) > MAX_CACHED_NAMES:
            cache.clear()
            missing = list(set(names))
        for i in range(0, len(missing), NAME_CHUNK):
            chunk = missing[i:i + NAME_CHUNK]
            marks = ','.join('?' * len(chunk))
            for name_id, name in conn.execute(
                    f"SELECT id, name FROM test_names WHERE name IN ({marks})", chunk):
                cache[name] = name_id
        for name in missing:
            if name not in cache:
                name_id = conn.execute("INSERT INTO test_names (name) VALUES (?)",
                                       (name,)).lastrowid
                if name_id > NAME_MASK:
                    raise StoreFull(f"more than {NAME_MASK} test names")
                cache[name] = name_id
        return cache

    def close(self):
        if self.conn is not None:
            conn, self.conn, self.path = self.conn, None, None
            conn.close()


