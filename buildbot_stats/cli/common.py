"""What the subcommands share: one-line errors, time parsing, opening a store, wording."""

from __future__ import annotations

import argparse
import datetime
import math
import re
import signal
import time

from buildbot_stats.checks import parseDuration
from buildbot_stats.cli import interrupt
from buildbot_stats.reading.sqlite import StoreError
from buildbot_stats.reading.sqlite import openStore


class CliError(Exception):
    """A user error: printed as one line, exit status 2."""


TIME_HELP = ("ISO 8601 (2024-05-01 or 2024-05-01T12:00, UTC unless an offset is given), "
             "seconds since the epoch, or an age such as 30m, 12h, 7d, 2w")

# the times a store can hold: Python's datetime's years 1 to 9999 (also SQLite's
# microseconds, far inside a 64-bit integer)
EARLIEST = datetime.datetime(1, 1, 2, tzinfo=datetime.timezone.utc).timestamp()
LATEST = datetime.datetime(9999, 12, 31, tzinfo=datetime.timezone.utc).timestamp()


def parseTime(text, option, now=None):
    """Seconds since the epoch for one of the forms of TIME_HELP."""
    text = text.strip()
    now = time.time() if now is None else now
    if re.fullmatch(r'(\d+(?:\.\d+)?)([smhdw])', text):
        age = parseDuration(text)
        # an age too large for a float ('9...9d') is before year 1 too
        seconds = -math.inf if age is None else now - age
    else:
        seconds = _absoluteTime(text, option)
    if not EARLIEST <= seconds <= LATEST:
        raise CliError(f"bad time for {option}: {text!r} is out of range (years 1 to 9999)")
    return seconds


def _absoluteTime(text, option):
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


class TimeOption(argparse.Action):
    """``--since``/``--until`` (and their other spelling ``--start``/``--end``): the value,
    and the spelling used, so that a message names the option as the user wrote it."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        setattr(namespace, f"{self.dest}_option", option_string)


def addTimeRange(parser, since_help, until_help):
    """``--since TIME`` and ``--until TIME`` (``--start`` and ``--end`` are the same
    options), the one spelling of a time range of every command: ``since <= time <
    until``. :func:`timeRange` reads them."""
    parser.add_argument('--since', '--start', metavar='TIME', action=TimeOption,
                        help=f"{since_help}; {TIME_HELP} (--start is the same option)")
    parser.add_argument('--until', '--end', metavar='TIME', action=TimeOption,
                        help=f"{until_help} (same forms; --end is the same option)")


def timeRange(args, now=None):
    """``(since, until)`` in seconds (each None when not given) of the options of
    :func:`addTimeRange`; a :class:`CliError` names the option as it was written."""
    names = [getattr(args, f"{dest}_option", None) or f"--{dest}" for dest in ('since', 'until')]
    lo = parseTime(args.since, names[0], now) if args.since is not None else None
    hi = parseTime(args.until, names[1], now) if args.until is not None else None
    if lo is not None and hi is not None and lo >= hi:
        raise CliError(
            f"bad time range: {names[0]} {args.since} ({isoTime(lo)}) is not before "
            f"{names[1]} {args.until} ({isoTime(hi)})")
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

    Never creates a file. The file is checked read-only first, so that another program's
    database (Buildbot's ``state.sqlite``), a damaged or a newer store is refused as it is,
    never switched to WAL; a store this user may not write, or one another program keeps
    locked for more than ``busy_timeout`` seconds, is one line saying so, nothing changed."""
    import os
    import sqlite3

    from buildbot_stats.storage.sqlite.schema import checkReadable
    from buildbot_stats.storage.sqlite.schema import connectReadOnly
    from buildbot_stats.storage.sqlite.schema import describeReadError
    from buildbot_stats.storage.sqlite.schema import isLocked
    from buildbot_stats.storage.sqlite.schema import storeFileProblem
    from buildbot_stats.storage.sqlite.writer import StoreWriter

    problem = storeFileProblem(path)
    if problem is not None:
        raise CliError(problem)
    try:
        conn = connectReadOnly(path, timeout=min(busy_timeout, 1.0))
        try:
            checkReadable(conn)
            conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        finally:
            conn.close()
    except StoreError as e:
        raise CliError(f"{path}: {e}") from None
    except sqlite3.Error as e:
        if not isLocked(e):
            raise CliError(f"{path}: {describeReadError(e)}") from None
    directory = os.path.dirname(os.path.abspath(os.path.realpath(path)))
    effective = os.access in os.supports_effective_ids
    if not (os.access(path, os.R_OK | os.W_OK, effective_ids=effective)
            and os.access(directory, os.W_OK | os.X_OK, effective_ids=effective)):
        # a backup, a read-only mount, the master's store seen by another user: SQLite
        # needs to write the store and its -wal and -shm files beside it
        raise CliError(f"{path}: cannot change it: permission denied (the store and its "
                       "directory must be writable: run it as the user that runs the master)")
    writer = StoreWriter(busy_timeout)
    try:
        writer._retrying(writer.open, path)
    except StoreError as e:
        writer.close()
        raise CliError(f"{path}: {e}") from None
    except sqlite3.Error as e:
        writer.close()
        if isLocked(e):
            raise CliError(f"{path}: locked by another program's write for more than "
                           f"{busy_timeout:g} s; nothing was changed, try again") from None
        raise CliError(f"{path}: {describeReadError(e)}") from None
    return writer


def runReactor(main):
    """Run ``main(reactor)`` (a coroutine function) to completion on the global reactor;
    return or raise its result.

    SIGINT or SIGTERM stops the reactor: its ``before shutdown`` triggers stop what the
    command started (a master, a worker), then :class:`~buildbot_stats.cli.interrupt.
    Interrupted` is raised here. Whatever does not stop within the grace period is ended
    with the process (:mod:`buildbot_stats.cli.interrupt`)."""
    from twisted.internet import defer
    from twisted.internet import error
    from twisted.internet import reactor
    from twisted.python.failure import Failure

    guard = interrupt.current
    outcome = {}

    def stopReactor():
        try:
            reactor.stop()
        except error.ReactorNotRunning:
            pass  # stopping already

    def go():
        if guard is not None:
            # Twisted took SIGTERM (and SIGINT when it found Python's default handler), and
            # the wakeup fd: both back, the fd's bytes passed on to the reactor's
            guard.reinstall()
            guard.onSignal = lambda signum: reactor.callFromThread(stopReactor)
            guard.watchWakeups()
            # given back before the reactor, stopping, sets none and closes its own
            reactor.addSystemEventTrigger('after', 'shutdown', guard.unwatchWakeups)
        d = defer.ensureDeferred(main(reactor))
        d.addBoth(lambda r: outcome.setdefault('result', r))
        d.addBoth(lambda _: stopReactor())

    if guard is not None:
        guard.unwatchWakeups()  # the reactor installs its own when it starts
    reactor.callWhenRunning(go)
    try:
        reactor.run()
    finally:
        if guard is not None:
            guard.onSignal = None
    if 'result' not in outcome:
        raise interrupt.Interrupted(guard.signum if guard is not None else signal.SIGINT)
    result = outcome['result']
    if isinstance(result, Failure):
        result.raiseException()
    return result


def addBusyTimeout(parser, default):
    """``--busy-timeout SECONDS``: how long a command that changes a store waits for
    another program's write (the master's is a fraction of a second)."""
    parser.add_argument('--busy-timeout', metavar='SECONDS', type=positiveSeconds,
                        default=default, help="how long to wait for another program's write "
                        f"in progress, such as the master's (default {default:g})")


def positiveSeconds(text):
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (math.isfinite(seconds) and seconds > 0):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number of seconds")
    return seconds


def openStoreOrFail(path):
    try:
        return openStore(path)
    except StoreError as e:
        raise CliError(str(e)) from None
