"""What the configuration checks and the commands share: the wording that names a value by its
type, never its content, and the one spelling of a duration (``90d``).

A master.cfg value in the wrong place may be a password (arguments shifted by one), so a
check that rejects a value says what kind of value it got, not what it holds.
"""

from __future__ import annotations

import difflib
import functools
import inspect
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


# -- the arguments of a constructor ------------------------------------------------------------

def checkArguments(owner, func, args, kwargs, also=()):
    """``(args, kwargs)`` that ``func`` (a constructor, or the ``checkConfig`` it calls) can
    be called with, each mistake a one-line ``config.error`` naming ``owner``.

    In ``master.cfg``, an unknown keyword (``reportin=``) or a missing argument would be
    Python's ``TypeError``, whose traceback quotes the line, and a password written on
    it, on the screen and in ``twistd.log``. Here an unknown keyword is named (with the
    nearest known one) and left out, so the other mistakes of the file are still reported;
    arguments that cannot be bound at all (a required one missing, too many) end the
    loading with one message. ``also``: keywords a base class takes before ``func`` sees
    them (a BuildbotService's ``name``). Messages name arguments, never their values.
    """
    from buildbot import config

    sig = inspect.signature(func)
    names = argumentNames(func) + list(also)
    unknown = []
    if not any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        unknown = [k for k in kwargs if k not in names]
    if unknown:
        for keyword in unknown:
            config.error(unknownArgument(owner, keyword, names))
        kwargs = {k: v for k, v in kwargs.items() if k not in unknown}
    try:
        sig.bind(*args, **{k: v for k, v in kwargs.items() if k not in also})
    except TypeError as e:
        # "missing a required argument: 'builder_name'", "too many positional arguments",
        # "multiple values for argument 'x'": names only, never a value
        config.error(f"{owner}: {e}", always_raise=True)
    return args, kwargs


def checkedArguments(func):
    """``func`` (a function master.cfg calls, such as ``statsDashboard``) with its
    argument mistakes as configuration errors (:func:`checkArguments`)."""
    @functools.wraps(func)
    def checked(*args, **kwargs):
        args, kwargs = checkArguments(func.__name__, func, args, kwargs)
        return func(*args, **kwargs)
    return checked


def unknownArgument(owner, keyword, names):
    """The message of an unknown keyword ``keyword`` of ``owner``, which takes ``names``:
    the nearest of them, and all of them."""
    close = difflib.get_close_matches(keyword, names, n=1, cutoff=0.6)
    nearest = f" (did you mean {close[0]}=?)" if close else ""
    return (f"{owner}: unknown argument {keyword}={nearest}; it takes "
            f"{', '.join(names) or 'no argument'}")


def argumentNames(func):
    """The names of the arguments ``func`` takes by name, in order (not ``self``, not
    ``*args``/``**kwargs``)."""
    return [name for name, p in inspect.signature(func).parameters.items()
            if name != 'self' and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


class CheckedArguments:
    """The first base of a Buildbot service of this package (StatsService, every storage
    backend): its constructor's arguments are those of its ``checkConfig`` plus ``name``,
    and a mistake in them is a configuration error (:func:`checkArguments`), never a
    ``TypeError``."""

    def __init__(self, *args, **kwargs):
        args, kwargs = checkArguments(self.describeForConfig(kwargs.get('name')),
                                      self.checkConfig, args, kwargs, also=('name',))
        super().__init__(*args, **kwargs)

    def describeForConfig(self, name=None):
        """How configuration messages name this service: its class, and its name when it
        has one of its own."""
        kind = type(self).__name__
        name = getattr(self, 'name', None) if name is None else name
        return kind if name in (None, kind) else f"{kind} {name!r}"
