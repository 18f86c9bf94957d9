"""What the subcommands share: one-line errors, time parsing, opening a store, wording."""

from __future__ import annotations

import datetime
import math
import re
import time

from buildbot_stats.checks import parseDuration
from buildbot_stats.reading.sqlite import StoreError
from buildbot_stats.reading.sqlite import openStore


class CliError(Exception):
    """A user error: printed as one line, exit status 2."""


TIME_HELP = ("ISO 8601 (2024-05-01 or 2024-05-01T12:00, UTC unless an offset is given), "
             "seconds since the epoch, or an age such as 30m, 12h, 7d, 2w")


def parseTime(text, option, now=None):
    """Seconds since the epoch for one of the forms of TIME_HELP."""
    text = text.strip()
    now = time.time() if now is None else now
    if re.fullmatch(r'(\d+(?:\.\d+)?)([smhdw])', text):
        return now - parseDuration(text)
    try:
        seconds = float(text)
        if math.isfinite(seconds):
            return seconds
    except ValueError:
        pass
    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise CliError(f"bad time for {option}: {text!r} (use {TIME_HELP})") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return when.timestamp()


def parseTimeRange(start, end, now=None):
    lo = parseTime(start, '--start', now) if start is not None else None
    hi = parseTime(end, '--end', now) if end is not None else None
    if lo is not None and hi is not None and lo >= hi:
        raise CliError(
            f"bad time range: --start {start} ({isoTime(lo)}) is not before --end {end} "
            f"({isoTime(hi)})")
    return lo, hi


def isoTime(seconds, timespec='auto'):
    """ISO 8601 in UTC; ``timespec='microseconds'`` gives every time the same form."""
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).isoformat(
        timespec=timespec)


def plural(n, word, words=None):
    """``'1 point'``, ``'2 points'``."""
    return f"{n} {word if n == 1 else (words or word + 's')}"


def printable(text):
    """``text`` with control characters (newlines, escape sequences) shown as Python
    escapes, so that a name from a store cannot break or restyle a terminal line."""
    text = str(text)
    if text.isprintable():
        return text
    return ''.join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def oneLine(message):
    """A message as one printable line (a name in it may hold a newline)."""
    return printable(message)


#: The environment variable holding the InfluxDB password (never on the command line).
PASSWORD_ENV = 'BUILDBOT_STATS_INFLUXDB_PASSWORD'


def addInfluxArguments(p, required=False):
    """``--influxdb URL --db NAME --user NAME``: an InfluxDB 1.x to read."""
    p.add_argument('--influxdb', metavar='URL', required=required,
                   help="an InfluxDB 1.x at URL (http://host:8086); the password, if any, from "
                   f"the environment variable {PASSWORD_ENV}")
    p.add_argument('--db', metavar='NAME', required=required, help="the InfluxDB database")
    p.add_argument('--user', metavar='NAME', help="the InfluxDB user (default: none)")


def influxSettings(args):
    """The :class:`InfluxReader` arguments of ``--influxdb``, ``--db``, ``--user`` and the
    password's environment variable; a :class:`CliError` names a mistake."""
    import os

    from buildbot_stats.reading.influxdb import checkSettings

    if not args.db:
        raise CliError("--influxdb needs --db NAME")
    settings = {'url': args.influxdb, 'db': args.db, 'user': args.user,
                'password': os.environ.get(PASSWORD_ENV)}
    problems = checkSettings({k: v for k, v in settings.items() if v is not None})
    if problems:
        raise CliError(f"--influxdb: {problems[0]}")
    return settings


def openStoreForWriting(path, busy_timeout=10.0):
    """A :class:`~buildbot_stats.storage.sqlite.writer.StoreWriter` with ``path`` open (an
    older store is upgraded, as the master does): for the commands that change a store.
    Never creates a file; a foreign database is refused."""
    import os

    from buildbot_stats.storage.sqlite.schema import looksLikeSQLite
    from buildbot_stats.storage.sqlite.writer import StoreWriter

    if not os.path.exists(path):
        raise CliError(f"{path}: no such file")
    if os.path.isdir(path) or not looksLikeSQLite(path):
        raise CliError(f"{path}: not an SQLite file")
    import sqlite3

    from buildbot_stats.storage.sqlite.schema import isLocked

    writer = StoreWriter(busy_timeout)
    try:
        writer._retrying(writer.open, path)
    except StoreError as e:
        writer.close()
        raise CliError(f"{path}: {e}") from None
    except sqlite3.OperationalError as e:
        writer.close()
        if isLocked(e):
            raise CliError(f"{path}: locked by another program's write for more than "
                           f"{busy_timeout:g} s; nothing was changed, try again") from None
        raise
    return writer


def openStoreOrFail(path):
    try:
        return openStore(path)
    except StoreError as e:
        raise CliError(str(e)) from None
