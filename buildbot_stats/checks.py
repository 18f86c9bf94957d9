"""What the configuration checks and the commands share: the wording that names a value by its
type, never its content, and the one spelling of a duration (``90d``).

A master.cfg value in the wrong place may be a password (arguments shifted by one), so a
check that rejects a value says what kind of value it got, not what it holds.
"""

from __future__ import annotations

import math
import re

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
