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


def openStoreOrFail(path):
    try:
        return openStore(path)
    except StoreError as e:
        raise CliError(str(e)) from None
