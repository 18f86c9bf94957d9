"""``buildbot-stats prune STORE --older-than 90d``: delete old raw points, keep their rollups,
and the test results of the builds older than that (the per-test history is raw history too,
never rolled up) (what ``SQLiteStorageService(keep=...)`` does in the master, by hand;
docs/storage-sqlite.rst).

Safe with the master running (each batch is a short transaction the master's writer waits
for) and safe to interrupt (Ctrl-C, a kill, a crash): run it again and it goes on.
"""

from __future__ import annotations

import time

from buildbot_stats.checks import DURATION_HELP
from buildbot_stats.checks import parseDuration
from buildbot_stats.cli.common import CliError
from buildbot_stats.cli.common import addBusyTimeout
from buildbot_stats.cli.common import isoTime
from buildbot_stats.cli.common import openStoreForWriting
from buildbot_stats.cli.common import openStoreOrFail
from buildbot_stats.cli.common import plural
from buildbot_stats.storage.sqlite import retention
from buildbot_stats.storage.sqlite import testruns


def addParser(sub):
    p = sub.add_parser(
        'prune', help="delete raw points older than an age, keeping their rollups",
        description="Delete the raw points of STORE older than --older-than, in small "
        "batches; their hourly and daily rollups stay, so the page and the report still show "
        "those days (without each build). The per-test results of the builds older than "
        "--older-than go too (they have no rollups). The rollups are brought up to date first. Safe "
        "while the master runs, and to interrupt: run it again to finish. The file keeps its "
        "size (its free pages are reused); 'buildbot-stats compact' gives them back.")
    p.add_argument('store', metavar='STORE', help="the SQLite store")
    p.add_argument('--older-than', metavar='AGE', required=True,
                   help=f"delete raw points older than AGE ({DURATION_HELP})")
    p.add_argument('--rollups-older-than', metavar='AGE',
                   help="also delete the rollups older than AGE (at least --older-than)")
    p.add_argument('--dry-run', action='store_true',
                   help="count what would be deleted and change nothing (reads the store "
                   "only: it may be read-only)")
    addBusyTimeout(p, 10.0)
    p.set_defaults(func=run)
    return p


def age(text, option):
    seconds = parseDuration(text)
    if seconds is None or seconds <= 0:
        raise CliError(f"bad age for {option}: {text!r} (use {DURATION_HELP})")
    return seconds


def run(args, out, now=None, progress=None):
    raw_age = age(args.older_than, '--older-than')
    rolled_age = None
    if args.rollups_older_than is not None:
        rolled_age = age(args.rollups_older_than, '--rollups-older-than')
        if rolled_age < raw_age:
            raise CliError("--rollups-older-than must be at least --older-than: the rollups "
                           "are what is left of the points deleted")
    now = time.time() if now is None else now
    if args.dry_run:
        return dryRun(args.store, raw_age, rolled_age, now, out)
    writer = openStoreForWriting(args.store, busy_timeout=args.busy_timeout)
    try:
        conn = writer.conn
        # every hour about to lose its points is rolled up first
        while writer._retrying(writer.rollups.maintain, conn, now):
            pass
        cutoff = retention.rawCutoff(conn, raw_age, now)
        writer._retrying(retention.moveRawSince, conn, cutoff)
        deleted = 0
        while True:
            n = writer._retrying(retention.deleteRawBatch, conn, cutoff)
            deleted += n
            if progress is not None:
                progress(deleted)
            if n < retention.BATCH:
                break
        line = f"deleted {plural(deleted, 'raw point')} older than {isoTime(cutoff)}"
        results = pruneTests(writer, conn, now - raw_age)
        if results:
            line += f", {plural(results, 'test result')} (with their builds' runs)"
        if rolled_age is not None:
            rolled_cutoff = retention.rollupCutoff(now, rolled_age)
            gone = 0
            while True:
                n = writer._retrying(retention.deleteRollupsBatch, conn, rolled_cutoff)
                gone += n
                if n < retention.BATCH:
                    break
            line += f" and {plural(gone, 'rollup row')} older than {isoTime(rolled_cutoff)}"
        out.write(line + "; their space is reused by new points ('buildbot-stats compact' "
                  "gives it back to the disk)\n")
        return 0
    finally:
        writer.close()


def pruneTests(writer, conn, cutoff):
    """Delete the test results of the builds that ended before ``cutoff`` (seconds), a
    batch a transaction; how many results went."""
    cutoff_us = round(cutoff * 1_000_000)
    before = writer._retrying(testruns.count, conn, cutoff_us)[1]
    while writer._retrying(testruns.deleteBatch, conn, cutoff_us) == testruns.BATCH:
        pass
    return before - writer._retrying(testruns.count, conn, cutoff_us)[1]


def dryRun(path, raw_age, rolled_age, now, out):
    """What :func:`run` would delete, counted on a read-only connection: the store and the
    directory are left as they are (no -wal, no -shm), a read-only copy can be asked."""
    with openStoreOrFail(path) as reader:
        cutoff = retention.plannedCutoff(reader.conn, raw_age, now)
        raw = reader.guarded(retention.countRaw, reader.conn, cutoff)
        line = f"would delete {plural(raw, 'raw point')} older than {isoTime(cutoff)}"
        runs, results = reader.guarded(testruns.count, reader.conn,
                                       round((now - raw_age) * 1_000_000))
        if runs:
            line += (f", {plural(results, 'test result')} of {plural(runs, 'build')} older "
                     f"than {isoTime(now - raw_age, 'seconds')}")
        if rolled_age is not None:
            rolled = reader.guarded(retention.countRollups, reader.conn,
                                    retention.rollupCutoff(now, rolled_age))
            line += f" and {plural(rolled, 'rollup row')}"
    out.write(line + " (dry run: nothing deleted)\n")
    return 0
