"""What runs in the embedded store's writer thread: one connection, its transactions.

Only :class:`~buildbot_stats.storage.sqlite.backend.SQLiteStorageService`'s one-thread pool
calls it; nothing here runs on the reactor thread. It writes the points
(:mod:`~buildbot_stats.storage.sqlite.layout`), hands them to the rollups
(:mod:`~buildbot_stats.storage.sqlite.rollups`) and runs the maintenance: rollups, then
retention (:mod:`~buildbot_stats.storage.sqlite.retention`, and the test results'
:mod:`~buildbot_stats.storage.sqlite.testruns`). Builds' test results are written by
:mod:`~buildbot_stats.storage.sqlite.testruns` in the points' transaction; they are never
rolled up.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time

from buildbot_stats import __version__
from buildbot_stats.slices import cyclicGCPaused
from buildbot_stats.storage.sqlite import retention
from buildbot_stats.storage.sqlite import testruns
from buildbot_stats.storage.sqlite.layout import INSERT_POINT
from buildbot_stats.storage.sqlite.layout import Names
from buildbot_stats.storage.sqlite.rollups import Rollups
from buildbot_stats.storage.sqlite.schema import migrate

# A point with the series, tags and time of one already stored replaces it (the unique
# index): writing the same points twice (backfill, catch-up) adds no row. Inserted first
# without replacing: when every point is new (nearly always) the rollups know that no point
# was counted twice.
INSERT_NEW = INSERT_POINT.format('IGNORE')
INSERT_REPLACING = INSERT_POINT.format('REPLACE')
BUMP_GENERATION = ("INSERT INTO meta (key, value) VALUES ('generation', 1)"
                   " ON CONFLICT (key) DO UPDATE SET value = value + 1")

# A write waits for another program's lock in slices this long, so that a stop can give up
# at once (:attr:`StoreWriter.abort`) instead of after the whole ``busy_timeout``.
BUSY_SLICE = 0.05


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
        self.names = Names()
        self.rollups = Rollups(self.names)
        self.left_work = False  # the last maintenance left work for the next round

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
            self.names = Names()
            self.rollups = Rollups(self.names)
            self.rollups.opened(conn)
            self.left_work = False
        except BaseException:
            conn.close()
            raise
        self.conn, self.path = conn, path
        self.name_ids = {}
        return conn

    def _retrying(self, f, *args):
        """``f(*args)``, again while another program holds a lock, up to ``busy_timeout``
        (less if :attr:`abort` is set meanwhile)."""
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                return f(*args)
            except sqlite3.OperationalError as e:
                if not _isBusy(e) or self.abort.is_set() or time.monotonic() >= deadline:
                    raise

    def write(self, path, rows, tests=()):
        """Write ``rows`` (:func:`~buildbot_stats.storage.sqlite.values.encodeRow`'s) and
        ``tests`` (``(TestRun, cases)`` of whole builds) in one transaction. Returns the
        points and results written."""
        return self._retrying(self._writeOnce, path, rows, tests)

    def _writeOnce(self, path, rows, tests):
        conn = self.open(path)
        conn.execute("BEGIN IMMEDIATE")
        try:
            names = self.names
            prepared = [names.row(conn, *row) for row in rows]
            replaced = conn.executemany(INSERT_NEW, prepared).rowcount != len(prepared)
            if replaced:
                conn.executemany(INSERT_REPLACING, prepared)
            kept = self.rollups.writing(conn, prepared, rows, replaced)
            results = 0
            for run, cases in tests:
                # 10,000 rows made and dropped: no collection of the master's heap meanwhile
                with cyclicGCPaused():
                    results += testruns.writeRun(conn, run, cases, self.name_ids)
            conn.execute(BUMP_GENERATION)
            conn.execute("COMMIT")
        except BaseException:
            # a failed transaction is rolled back whole: the batch is retried as one (and
            # test names this transaction added are not in the file: forget them)
            self.name_ids = {}
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            self.names.forget()
            self.rollups.forget()
            raise
        self.names.committed()
        self.rollups.written(kept)
        return len(rows) + results

    def maintain(self, path, now, keep=None, keep_rollups=None, eager=True):
        """One round of maintenance at ``now`` (seconds): a step of rollups, then (once the
        rollups are done) a few batches of retention (``keep``, ``keep_rollups``: seconds
        or None). True when more remains: the caller runs another round soon.
        ``eager=False`` (the master's timer, when an hour closes): nothing is done, at no cost,
        unless the rollups are :meth:`~buildbot_stats.storage.sqlite.rollups.Rollups.due`
        or the last round left work; retention then runs with the rollups' rounds."""
        conn = self.open(path)
        if not eager and not self.left_work and not self.rollups.due(now):
            return False
        self.left_work = True  # until the round is through
        more = self._retrying(self.rollups.maintain, conn, now)
        if not more and (keep is not None or keep_rollups is not None):
            more = self._retrying(retention.pruneSteps, conn, now, keep, keep_rollups)
        if not more and keep is not None:
            # the test results are raw history too: gone at the same age, in batches
            more = self._retrying(testruns.deleteBatch, conn,
                                  int((now - keep) * 1_000_000)) \
                == testruns.BATCH
        self.left_work = more
        return more

    def close(self):
        if self.conn is not None:
            conn, self.conn, self.path = self.conn, None, None
            conn.close()


