"""``buildbot-stats rebuild-rollups STORE``: roll up a store's hours and days again from its
raw points (after points were changed by hand, or to check the rollups); also upgrades a
store of an older schema version at once, as the master would."""

from __future__ import annotations

import time

from buildbot_stats.cli.common import TIME_HELP
from buildbot_stats.cli.common import TimeOption
from buildbot_stats.cli.common import addBusyTimeout
from buildbot_stats.cli.common import isoTime
from buildbot_stats.cli.common import openStoreForWriting
from buildbot_stats.cli.common import parseTime
from buildbot_stats.cli.common import plural


def addParser(sub):
    p = sub.add_parser(
        'rebuild-rollups', help="roll up a store again from its raw points",
        description="Roll up every hour and day of STORE again from its raw points (the "
        "rollups of times whose raw points were deleted by retention are kept as they are). "
        "Upgrades an older store first. Safe while the master runs; the page reads the raw "
        "points of the hours not rolled up yet meanwhile.")
    p.add_argument('store', metavar='STORE', help="the SQLite store")
    p.add_argument('--since', '--start', metavar='TIME', action=TimeOption,
                   help=f"only the hours from TIME on: {TIME_HELP} (default: all; --start is "
                   "the same option)")
    addBusyTimeout(p, 10.0)
    p.set_defaults(func=run)
    return p


def run(args, out, now=None):
    now = time.time() if now is None else now
    since = parseTime(args.since, getattr(args, 'since_option', None) or '--since', now) \
        if args.since is not None else None
    writer = openStoreForWriting(args.store, busy_timeout=args.busy_timeout)
    try:
        conn = writer.conn

        def mark():
            conn.execute("BEGIN IMMEDIATE")
            try:
                n = writer.rollups.markForRebuild(conn, since)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return n

        writer._retrying(mark)
        while writer._retrying(writer.rollups.maintain, conn, now):
            pass
        watermark = writer.rollups.watermark
        out.write(f"rolled up {plural(writer.rollups.hours_rolled, 'hour')}"
                  f"{'' if since is None else ' from ' + isoTime(since)}; the rollups cover "
                  f"everything before {isoTime(watermark)} (the hours after are read raw)\n")
        return 0
    finally:
        writer.close()
