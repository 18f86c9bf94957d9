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
        age = parseDuration(text)
        if age is None:  # too large to be a number of seconds
            raise CliError(f"bad time for {option}: {text!r} (use {TIME_HELP})")
        return now - age
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


def openStoreOrFail(path):
    try:
        return openStore(path)
    except StoreError as e:
        raise CliError(str(e)) from None
