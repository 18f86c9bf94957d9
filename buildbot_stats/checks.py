"""The one set of option checks: one rule each for a port, a positive (or non-negative)
integer, a positive number, a duration and a boolean, used by every backend and the service; the wording that
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
* a **number** (a p-value, a relative size) is an int or a float, finite and more than 0, and
  below its bound when it has one (a p-value: below 1); ``True`` is not a number;
* a **duration** is a number of seconds or a string such as ``'30s'``, ``'2m'``, ``'12h'``,
  ``'90d'`` (:func:`parseDuration`), more than 0 unless 0 has a meaning for that option (a
  ``stop_timeout`` of 0: the stop does not wait); :func:`seconds` gives its value;
* a **boolean** is ``True`` or ``False`` (not ``1``, not ``'yes'``).

The arguments themselves are checked before any rule: an unknown keyword, a missing or an
extra argument of a constructor is a one-line ``config.error`` naming it
(:func:`checkArguments`, through :class:`CheckedArguments`, the first base of every service
of the package, :func:`checkedArguments` for a plain function and :func:`checkedInit` for
the constructor of a configuration object that is not a service: a capture, ``Regressions``).
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


# -- the rule of each kind of option ----------------------------------------------------------

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


def numberProblem(name, value, below=None):
    """The problem of a real-valued option more than 0 (and less than ``below``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value <= 0 or (below is not None and value >= below):
        bound = f" below {below}" if below is not None else ""
        return f"{name} must be a positive number{bound}, got {shown(value)}"
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
    from buildbot import config  # not at import: the commands use this module, not Buildbot

    for problem in problems:
        if problem is not None:
            config.error(f"{owner}: {problem}")


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


def checkedInit(init):
    """``init`` (a class's ``__init__``: a capture's, ``Regressions``') whose argument
    mistakes are configuration errors naming the class (:func:`checkArguments`), never a
    ``TypeError`` whose traceback quotes the master.cfg line."""
    @functools.wraps(init)
    def checked(self, *args, **kwargs):
        args, kwargs = checkArguments(type(self).__name__, init, (self,) + args, kwargs)
        return init(*args, **kwargs)
    checked.checksArguments = True
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
