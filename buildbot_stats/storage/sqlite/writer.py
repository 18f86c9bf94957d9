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
from buildbot_stats.storage.sqlite.schema import migrate

# A point with the series, tags and time of one already stored replaces it (schema v2's
# unique index): writing the same points twice (backfill, catch-up) adds no row.
INSERT = (
    "INSERT OR REPLACE INTO points (series, time_us, builder, build_number, tags, fields)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)

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
        return conn

    def write(self, path, rows):
        """Write ``rows`` in one transaction, waiting up to ``busy_timeout`` for a lock held
        by another program (less if :attr:`abort` is set meanwhile)."""
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                return self._writeOnce(path, rows)
            except sqlite3.OperationalError as e:
                if not _isBusy(e) or self.abort.is_set() or time.monotonic() >= deadline:
                    raise

    def _writeOnce(self, path, rows):
        conn = self.open(path)
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(INSERT, rows)
            conn.execute("COMMIT")
        except BaseException:
            # a failed transaction is rolled back whole: the batch is retried as one
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            raise
        return len(rows)

    def close(self):
        if self.conn is not None:
            conn, self.conn, self.path = self.conn, None, None
            conn.close()


