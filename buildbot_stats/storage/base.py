"""StatsStorageBase: what every storage backend is and promises."""

from __future__ import annotations

import inspect

from twisted.internet import defer
from twisted.python import log

from buildbot import config
from buildbot.util import service

from buildbot_stats.captures.base import Capture
from buildbot_stats.checks import CheckedArguments
from buildbot_stats.checks import aTypeName
from buildbot_stats.counters import DeliveryCounters


#: the stop bound of a backend without a ``stop_timeout`` option (seconds)
DEFAULT_STOP_TIMEOUT = 10.0


def describeBuildOf(tags):
    """`` (builder 'x', build #n)`` from a point's tags, for log lines; '' when unknown."""
    if not isinstance(tags, dict):
        return ''
    builder, number = tags.get('builder_name'), tags.get('build_number')
    if builder is None and number is None:
        return ''
    return f" (builder {builder!r}, build #{number})"


class StatsStorageBase(CheckedArguments, service.BuildbotService):
    """Base class of every storage backend.

    A backend is a Buildbot service, child of the :class:`StatsService` that owns it, so it
    is started, reconfigured (secrets rendered) and stopped like any Buildbot service. It
    also works alone: construct it, ``startService()``, ``postStatsValue()``,
    ``stopService()``.

    Subclasses take a ``captures`` argument (the captures whose points they store) and
    implement :meth:`postStatsValue`, which must return at once: no network or disk I/O on
    the reactor thread.
    """

    def __init__(self, *args, **kwargs):
        if kwargs.get('name') is None:
            # Buildbot's own backend defaults to its class name; so do we. Two unnamed
            # backends of one class are reported by StatsService.checkConfig.
            kwargs['name'] = type(self).__name__
        # an unknown keyword is a configuration error and left out (CheckedArguments)
        super().__init__(*args, **kwargs)
        # ``captures`` is read by StatsService before the backend is configured, to know
        # which consumers to run; it is the only argument taken here rather than in
        # reconfigService. It is checked here too, once for every backend (custom ones
        # included), and only Capture instances are kept.
        self.captures = self.checkCaptures(self.capturesArgument(), self.describeForConfig())
        self.counters = DeliveryCounters()

    def capturesArgument(self):
        """The ``captures`` argument the backend was constructed with (None when it was
        not given: a backend may then choose default captures)."""
        bound = inspect.signature(self.checkConfig).bind(*self._config_args,
                                                         **self._config_kwargs)
        return bound.arguments.get('captures')

    @staticmethod
    def checkCaptures(captures, backend_name):
        """``config.error`` once for each problem of a ``captures`` argument; the Capture
        instances of it (a list). Messages name types, never values: a value in the wrong
        place may be a secret."""
        if captures is None:
            return []
        if not isinstance(captures, (list, tuple)):
            if isinstance(captures, Capture):
                kind = type(captures).__name__
                config.error(f"{backend_name}: captures must be a list of Capture instances, "
                             f"got a single {kind}: write captures=[stats.{kind}(...)]")
            else:
                config.error(f"{backend_name}: captures must be a list or tuple of Capture "
                             f"instances, got {aTypeName(captures)}")
            return []
        kept = []
        for number, cap in enumerate(captures):
            if isinstance(cap, Capture):
                kept.append(cap)
            elif isinstance(cap, type) and issubclass(cap, Capture):
                config.error(f"{backend_name}: captures[{number}] is the class {cap.__name__}, "
                             f"not an instance: write stats.{cap.__name__}(...)")
            else:
                config.error(f"{backend_name}: captures[{number}] is {aTypeName(cap)}, not a "
                             "Capture instance (use the stats.Capture* classes)")
        return kept

    #: True when the backend keeps the points it is given (a store): change detection
    #: writes the change points it finds to such backends (docs/regressions.rst)
    keepsPoints = True

    def postStatsValue(self, post_data, series_name, context=None, timestamp=None):
        """Store one point; return at once.

        :param post_data: the fields, ``{name: value}``
        :param series_name: the series (InfluxDB measurement)
        :param context: the tags, ``{name: value}``
        :param timestamp: seconds since the epoch (float); ``None`` means now
        """
        raise NotImplementedError

    def postTestResults(self, run, cases):
        """Keep the test results of one build (:class:`CaptureTestHistory`); return at once.

        :param run: a :class:`~buildbot_stats.outcomes.TestRun` (builder, build number,
            end time, revision, buildset...)
        :param cases: ``[(test name, outcome code, duration seconds or None), ...]``, one
            per test, sorted by name (codes of :mod:`buildbot_stats.outcomes`)

        A backend that keeps no per-test history (this default) logs it once and ignores
        them."""
        if not getattr(self, '_warned_no_tests', False):
            self._warned_no_tests = True
            log.msg(f"buildbot_stats: {self!r} keeps no per-test history: the test results "
                    "CaptureTestHistory hands it are ignored")

    def flush(self, timeout=None):
        """Write what is pending: a Deferred firing True once every point handed over so
        far was written (or ended rejected or dropped, as counted), False if ``timeout``
        seconds passed first. It never fails.

        ``timeout=None`` means the backend's own bound (:meth:`stopTimeout`), so that a
        database that hangs never holds the caller for ever."""
        return defer.succeed(True)

    # -- stopping within one bound (docs/service.rst, "Stopping") ------------------------

    #: the reactor time by which :meth:`stopService` must have ended; set by the
    #: :class:`StatsService` for the length of its stop, ``None`` otherwise
    stop_deadline = None

    def stopTimeout(self):
        """The most seconds this backend's ``stopService`` waits for pending points: its
        ``stop_timeout`` option. A backend without one (it holds nothing) answers
        :data:`DEFAULT_STOP_TIMEOUT`, which then only bounds how long the
        :class:`StatsService` waits for the captures still running."""
        return DEFAULT_STOP_TIMEOUT

    def stopBudget(self):
        """The seconds ``stopService`` may still wait for pending points: the backend's
        own :meth:`stopTimeout`, and never past :attr:`stop_deadline` when the service
        that owns it is stopping."""
        budget = self.stopTimeout()
        if self.stop_deadline is not None:
            budget = min(budget, max(0.0, self.stop_deadline - self._clock().seconds()))
        return budget

    def _clock(self):
        reactor = getattr(self, 'reactor', None)
        if reactor is None and self.master is not None:
            reactor = self.master.reactor
        if reactor is None:
            from twisted.internet import reactor
        return reactor

    def metrics(self):
        """This backend's counters as one flat dict of numbers.

        The delivery counters (``added``, ``written``, ``rejected``, ``dropped``,
        ``retries``, ``pending``); a backend may add its own (for example the spool's).
        :meth:`StatsService.metrics` gathers them under ``backends``."""
        return self.counters.asDict()

    def __repr__(self):
        # never the arguments: they may hold secrets
        return f"<{type(self).__name__} {self.name!r}>"
