"""``buildbot-stats compact STORE``: give the free pages of a store back to the disk (SQLite's
``VACUUM``), safely while the master runs."""

from __future__ import annotations

import os
import shutil
import sqlite3
import time

from buildbot_stats.cli.common import CliError
from buildbot_stats.cli.common import addBusyTimeout
from buildbot_stats.cli.common import openStoreForWriting
from buildbot_stats.storage.sqlite.schema import isLocked


def addParser(sub):
    p = sub.add_parser(
        'compact', help="give a store's free space back to the disk (VACUUM)",
        description="Rewrite STORE without its free pages (after 'prune', or after the "
        "retention of keep= deleted points). Safe while the master runs: the copy is one "
        "transaction, so a crash leaves the store as it was, and the master's points wait in "
        "its queue meanwhile (a few seconds per 100 MB). Needs free disk space about the "
        "size of the store.")
    p.add_argument('store', metavar='STORE', help="the SQLite store")
    addBusyTimeout(p, 30.0)
    p.set_defaults(func=run)
    return p


def fileSize(path):
    return sum(os.path.getsize(p) for p in (path, path + '-wal') if os.path.exists(p))


def mb(n):
    return f"{n / 1e6:.1f} MB"


def run(args, out):
    path = args.store
    writer = openStoreForWriting(path, busy_timeout=args.busy_timeout)
    try:
        conn = writer.conn
        free_pages, page_size = (conn.execute("PRAGMA freelist_count").fetchone()[0],
                                 conn.execute("PRAGMA page_size").fetchone()[0])
        before = fileSize(path)
        # VACUUM writes a copy (in the temporary directory) and then the whole file again
        # through the write-ahead log: twice the live data at most
        need = 2 * (before - free_pages * page_size)
        free = min(shutil.disk_usage(os.path.dirname(os.path.abspath(path))).free,
                   shutil.disk_usage(os.environ.get('SQLITE_TMPDIR') or '/tmp').free)
        if free < need:
            raise CliError(f"{path}: not enough free disk space to compact it ({mb(free)} "
                           f"free, {mb(need)} needed); nothing was changed")
        conn.execute(f"PRAGMA busy_timeout = {int(args.busy_timeout * 1000)}")
        t0 = time.monotonic()
        try:
            conn.execute("VACUUM")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.OperationalError as e:
            if isLocked(e):
                raise CliError(f"{path}: busy for more than {args.busy_timeout:g} s (another "
                               "program holds a long write); nothing was changed, try again "
                               "later") from None
            raise
        after = fileSize(path)
        out.write(f"compacted {path}: {mb(before)} -> {mb(after)} in "
                  f"{time.monotonic() - t0:.1f} s\n")
        return 0
    finally:
        writer.close()
