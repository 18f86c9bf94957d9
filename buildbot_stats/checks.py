"""The one set of option checks: one rule each for a port, a positive (or non-negative)
integer, a duration and a boolean, used by every backend and the service; the wording that
names a value by its type, never its content; the one spelling of a duration (``90d``).

Each rule is a function ``<kind>Problem(name, value, ...)`` that returns the problem as one
line (``"port must be ..., got 70000"``), or None when the value is fine; :func:`report`
turns a checkConfig's problems into ``config.error`` calls naming the owner. A master.cfg
value in the wrong place may be a password (arguments shifted by one), so a check that
rejects a value says what kind of value it got, not what it holds.

The rules (docs/architecture.rst):

* a **port** is an integer from 1 to 65535. 0 ("any free port") is refused everywhere: every
  port of ours is one another program must find (the InfluxDB we connect to, the port
  Prometheus scrapes, written in its configuration), which a port the system picks at each
  start cannot be;
* a **count** (batch sizes, limits) is an integer, at least 1 unless said otherwise; ``True``
  is not a count;
* a **duration** is a number of seconds or a string such as ``'30s'``, ``'2m'``, ``'12h'``,
  ``'90d'`` (:func:`parseDuration`), more than 0 unless 0 has a meaning for that option (a
  ``stop_timeout`` of 0: the stop does not wait); :func:`seconds` gives its value;
* a **boolean** is ``True`` or ``False`` (not ``1``, not ``'yes'``).
"""

from __future__ import annotations

import math
import re

from buildbot import config

#: The units of a duration such as ``30m``, ``12h``, ``7d``, ``2w``: seconds each.
DURATION_UNITS = {'s': 1, 'm': 60, 'h': 3600, 'd': 86400, 'w': 7 * 86400}
DURATION_HELP = "a number of seconds or a duration such as 30m, 12h, 90d, 2w"


def parseDuration(value):
    """Seconds (a float) of ``value``: a number of seconds, or a string ``<number><unit>``
    with a unit of :data:`DURATION_UNITS`; None when it is neither (or not finite, or
    negative)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        m = re.fullmatch(r'\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*', value)
        if m is None:
            return None
        seconds = float(m.group(1)) * DURATION_UNITS[m.group(2)]
    else:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def aTypeName(value):
    """``'an int'``, ``'a str'``, ``'a CaptureBuildDuration'``: the type of ``value`` with
    its article."""
    name = type(value).__name__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def shown(value):
    """``value`` as a configuration message shows it: a plain string, number, bool or None
    as written (``'days'``, ``0``), anything else by its type only (``a dict``): the repr of
    an object or a container may hold anything, a secret included."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return repr(value)
    return aTypeName(value)


def _orNone(none_means):
    return f" or None ({none_means})" if none_means else ""


def portProblem(name, value, none_means=None):
    """The problem of a TCP port option (see the module's rules); ``none_means``: what
    ``None`` means, when the option allows it."""
    if value is None and none_means:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
        # a string here may be a shifted user or password: its type only
        got = aTypeName(value) if isinstance(value, str) else shown(value)
        return f"{name} must be a TCP port number (1-65535){_orNone(none_means)}, got {got}"
    return None


def countProblem(name, value, minimum=1, none_means=None):
    """The problem of an integer option of at least ``minimum`` (a count, a size)."""
    if value is None and none_means:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        return f"{name} must be {what}{_orNone(none_means)}, got {shown(value)}"
    return None


def durationProblem(name, value, zero=False, none_means=None):
    """The problem of a duration option (seconds, or ``'30s'``, ``'12h'``...); ``zero``:
    0 is allowed."""
    if value is None and none_means:
        return None
    parsed = parseDuration(value)
    if parsed is None or (parsed == 0 and not zero):
        what = "a duration of 0 or more" if zero else "a positive duration"
        return (f"{name} must be {what} ({DURATION_HELP}){_orNone(none_means)}, "
                f"got {shown(value)}")
    return None


def seconds(value):
    """The seconds (a float) of a duration option that passed :func:`durationProblem`
    (None stays None)."""
    return None if value is None else parseDuration(value)


def booleanProblem(name, value):
    """The problem of a True/False option."""
    if not isinstance(value, bool):
        return f"{name} must be True or False, got {shown(value)}"
    return None


def report(owner, *problems):
    """``config.error(f"{owner}: {problem}")`` for each problem that is not None (in a
    checkConfig: Buildbot gathers them, ``buildbot checkconfig`` prints each on a line)."""
    for problem in problems:
        if problem is not None:
            config.error(f"{owner}: {problem}")
