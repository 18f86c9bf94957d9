"""``buildbot-stats influxdb-rollups --influxdb URL --db NAME``: the retention policies and
continuous queries that keep hourly, daily and weekly rollups inside InfluxDB 1.x, so that the
Statistics page and ``report`` read a few rows per day instead of every point
(:mod:`buildbot_stats.storage.influxdb.rollups`, docs/storage-influxdb.rst)."""

from __future__ import annotations

import time

from buildbot_stats.cli.common import TIME_HELP
from buildbot_stats.cli.common import TimeOption
from buildbot_stats.cli.common import CliError
from buildbot_stats.cli.common import addInfluxArguments
from buildbot_stats.cli.common import influxSettings
from buildbot_stats.cli.common import isoTime
from buildbot_stats.cli.common import parseTime
from buildbot_stats.cli.common import plural
from buildbot_stats.storage.influxdb import rollups
from buildbot_stats.storage.sqlite.schema import StoreError


def addParser(sub):
    p = sub.add_parser(
        'influxdb-rollups', help="create InfluxDB continuous queries keeping hourly, daily and "
        "weekly rollups",
        description="Create (or update) the retention policies rollups_1h, rollups_1d and "
        "rollups_1w and the continuous queries that fill them, in an InfluxDB 1.x database "
        "written by "
        "InfluxStorageService; with --backfill, also compute the rollups of the points "
        "already stored. The Statistics page and 'report' then read them. --print shows the "
        "InfluxQL instead of running it.")
    addInfluxArguments(p, required=True)
    p.add_argument('--backfill', action='store_true',
                   help="compute the rollups of the points already stored (a chunk of a week "
                   "at a time)")
    p.add_argument('--since', '--start', metavar='TIME', action=TimeOption,
                   help=f"with --backfill, from TIME on: {TIME_HELP} (default: the first "
                   "point; --start is the same option)")
    p.add_argument('--reshard', action='store_true',
                   help="move rollups made by an earlier release (shards of 7 days) into the "
                   "longer shards the page reads faster: each policy's rows copied out and "
                   "back (about a minute for a year of 3,000 builds a day)")
    p.add_argument('--print', action='store_true', dest='print_only',
                   help="print the statements, run nothing")
    p.set_defaults(func=run)
    return p


def run(args, out, now=None):
    from buildbot_stats.reading.influxdb import InfluxReader

    settings = influxSettings(args)
    option = getattr(args, 'since_option', None) or '--since'
    if args.since is not None and not args.backfill:
        raise CliError(f"{option} goes with --backfill")
    now = time.time() if now is None else now
    db = args.db
    statements = rollups.statements(db)
    reader = InfluxReader(**dict(settings, timeout=600))
    start = None
    if args.backfill:
        start = parseTime(args.since, option, now) if args.since is not None else None
        if start is None and not args.print_only:
            start = reader.firstTime()
        if start is not None:
            statements += rollups.backfill(db, start, now)
    if args.reshard:
        if args.print_only:
            if args.since is None:
                raise CliError("--reshard --print needs --since (the first rollup's time)")
            first = parseTime(args.since, option, now)
        else:
            first = _firstRollup(reader)
        if first is not None:
            statements += rollups.reshard(db, first, now)
    if args.print_only:
        out.write(";\n".join(statements) + ";\n")
        return 0
    for q in statements:
        try:
            reader.query(q)
        except StoreError as e:
            text = str(e)
            if q.startswith('DROP CONTINUOUS QUERY') and 'not found' in text:
                continue  # not created yet
            policy = _createdPolicy(q)
            if policy is not None and 'already exists' in text:
                # kept (the user may have changed its duration), but with our shard duration
                # for the shards created from now on
                try:
                    reader.query(rollups.alterShards(db, policy))
                except StoreError as e:
                    raise CliError(str(e)) from None
                continue
            raise CliError(text) from None
    cqs = len(rollups.QUERIES) * len(rollups.LEVELS)
    line = (f"{db}: retention policies {rollups.HOURLY}, {rollups.DAILY} and {rollups.WEEKLY}, "
            f"{plural(cqs, 'continuous query', 'continuous queries')}")
    if args.backfill:
        line += ("; rollups computed from " + isoTime(start) if start is not None
                 else "; no point to roll up")
    if args.reshard:
        line += "; rollups moved into shards of " + ", ".join(
            rollups.SHARDS[policy] for policy, _, _, _ in rollups.LEVELS)
    out.write(line + "\n")
    return 0


def _createdPolicy(statement):
    """The rollup policy a ``CREATE RETENTION POLICY`` of :func:`rollups.statements`
    creates, or None."""
    for policy, _, _, _ in rollups.LEVELS:
        if statement.startswith(f"CREATE RETENTION POLICY {rollups.quoteIdent(policy)} "):
            return policy
    return None


def _firstRollup(reader):
    """The time (seconds) of the first hourly rollup row, or None."""
    from buildbot_stats.reading.influxdb import quoteIdent

    names = [m for s in reader.query(f"SHOW MEASUREMENTS ON {quoteIdent(reader.db)}")
             for m, in s['values']]
    return reader.firstOf(f"SELECT * FROM {quoteIdent(rollups.HOURLY)}.{quoteIdent(m)}"
                           " LIMIT 1" for m in names)
