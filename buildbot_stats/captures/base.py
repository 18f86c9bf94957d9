"""Capture: the base of every capture class.

A capture listens to one MQ routing key. For each message it decides whether the message is
for it (builder, data name...), computes a value with its callback and hands one point per
value to every backend that owns it.
"""

from __future__ import annotations

import functools
import re

from twisted.python import log

from buildbot import config

from buildbot_stats.checks import checkedInit
from buildbot_stats.checks import shown
from buildbot_stats.lookups import Lookups
from buildbot_stats.messages import BUILD_FINISHED  # noqa: F401 (the captures' key)
from buildbot_stats.tagging import TagPolicy
from buildbot_stats.timestamps import buildPointTime
from buildbot_stats.timestamps import pointTime


class CaptureError(Exception):
    """A capture could not make a point of a message (its callback raised, a value was
    missing). Logged once by the StatsService, with the capture, builder and build."""


def checkCallback(owner, callback):
    if callback is not None and not callable(callback):
        config.error(f"{owner}: callback must be callable, got {shown(callback)}")


def checkBuilderName(owner, builder_name):
    if not isinstance(builder_name, str) or not builder_name:
        config.error(
            f"{owner}: builder_name must be a non-empty string, got {shown(builder_name)}")


def compilePattern(owner, what, pattern):
    try:
        return re.compile(pattern)
    except (re.error, TypeError) as e:
        config.error(f"{owner}: invalid regular expression {pattern!r} for {what}: {e}")
        return None


def _takingBuilderInfo(builderMatches):
    """Our ``builderMatches(name)``, called the way Buildbot calls
    ``_builder_name_matches(builder_info)``: with the builder's dict."""
    @functools.wraps(builderMatches)
    def wrapper(self, builder_info):
        name = builder_info.get('name') if isinstance(builder_info, dict) else builder_info
        return builderMatches(self, name)
    return wrapper


def _takingBuilderName(builder_name_matches):
    """Buildbot's ``_builder_name_matches(builder_info)``, called the way we call
    ``builderMatches(name)``: it gets ``{'name': name}``."""
    @functools.wraps(builder_name_matches)
    def wrapper(self, builder_name):
        info = builder_name if isinstance(builder_name, dict) else {'name': builder_name}
        return builder_name_matches(self, info)
    return wrapper


# The hooks a subclass may override, each with its two spellings: ours (the seed's) and
# Buildbot's own ``buildbot.statistics``, so that custom captures written for it keep working;
# and how one is called as the other when their arguments differ.
HOOK_SPELLINGS = (
    ('consumer', 'consume', None, None),
    ('retValParams', '_retValParams', None, None),
    ('defaultContext', '_defaultContext', None, None),
    ('builderMatches', '_builder_name_matches', _takingBuilderInfo, _takingBuilderName),
)


def _aliasHookSpellings(cls):
    """In ``cls``, a hook defined under one spelling only is given the other spelling too:
    whichever one the class overrides is the one that runs, however it is called, and
    ``super()`` reaches the parent's hook under either name."""
    mine = vars(cls)
    for ours, theirs, asTheirs, asOurs in HOOK_SPELLINGS:
        if ours in mine and theirs not in mine:
            setattr(cls, theirs, asTheirs(mine[ours]) if asTheirs else mine[ours])
        elif theirs in mine and ours not in mine:
            setattr(cls, ours, asOurs(mine[theirs]) if asOurs else mine[theirs])


class Capture:
    """Base class of all captures; subclasses implement :meth:`consumer`.

    Every hook a subclass may override has two spellings, the seed's and Buildbot's:
    ``consumer``/``consume``, ``retValParams``/``_retValParams``,
    ``defaultContext``/``_defaultContext`` and ``builderMatches(name)``/
    ``_builder_name_matches(builder_info)``. Whichever one a subclass defines runs.

    :param routingKey: the MQ routing key (a tuple, ``None`` as a wildcard) to consume
    :param callback: the function that turns what the capture gathered into a value
    """

    #: The caches of :class:`~buildbot_stats.lookups.Lookups` this capture reads: the
    #: service keeps them current from the MQ while a capture uses them
    uses = ('builder_names',)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _aliasHookSpellings(cls)
        init = vars(cls).get('__init__')
        if init is not None and not getattr(init, 'checksArguments', False):
            cls.__init__ = checkedInit(init)

    def __init__(self, routingKey, callback):
        self.routingKey = tuple(routingKey)
        self._callback = callback
        # Set by :meth:`attach`: the backends that own this capture (Buildbot's name), the
        # master, and the service (shared lookups, tag policy, error accounting).
        self.parent_svcs = []
        self.master = None
        self.stats_service = None
        # Added to every time of this capture, in seconds (a few microseconds): see
        # buildbot_stats.timestamps
        self._time_offset = 0.0
        # used when the capture runs without a StatsService (a custom set-up, a test)
        self._own_lookups = None
        self._own_tag_policy = None

    def attach(self, service, backends, time_offset=0.0):
        """Wire this capture to ``service`` (a StatsService, or None to run alone on
        :attr:`master`): its points go to ``backends``, moved ``time_offset`` seconds."""
        self.stats_service = service
        if service is not None:
            self.master = service.master
        self.parent_svcs = list(backends)
        self._time_offset = time_offset

    # -- what subclasses implement -------------------------------------------------------

    def consumer(self, routingKey, msg):
        raise NotImplementedError(
            f"{type(self).__name__} must implement consumer() (or consume(), Buildbot's name)")

    # Buildbot's own module calls it ``consume``
    consume = consumer

    # -- helpers -----------------------------------------------------------------------

    def defaultContext(self, msg, builder_name=None):
        """The tags every build point carries: ``builder_name`` and ``build_number``."""
        if builder_name is None:
            builder_name = msg.get('builder_name')
        return {"builder_name": builder_name, "build_number": str(msg['number'])}

    # Buildbot's name for the same thing (a subclass may override either)
    _defaultContext = defaultContext

    def describe(self):
        """A short, human name of this capture for log messages."""
        return type(self).__name__

    def writesSeries(self, series, builder_name=None):
        """True when this capture writes points of ``series`` for the builder
        ``builder_name`` (None: any), for messages that name a series, such as a refused
        one. A capture class that does not know says False."""
        return False

    def namedBuilders(self):
        """The builder names this capture is limited to; empty when it takes every builder.
        (StatsService warns about a name the master has no builder for.)"""
        return []

    def __repr__(self):
        return f"<{self.describe()}>"

    # -- what the service shares ---------------------------------------------------------

    @property
    def lookups(self):
        """The service's :class:`~buildbot_stats.lookups.Lookups`, or this capture's own
        (data API only) when it runs without a service."""
        if self.stats_service is not None:
            return self.stats_service.lookups
        if self._own_lookups is None:
            self._own_lookups = Lookups(self)
        return self._own_lookups

    @property
    def tag_policy(self):
        """The service's :class:`~buildbot_stats.tagging.TagPolicy` (extra tags, cardinality
        guard), or a default one when the capture runs without a service."""
        if self.stats_service is not None:
            return self.stats_service.tag_policy
        if self._own_tag_policy is None:
            self._own_tag_policy = TagPolicy()
        return self._own_tag_policy

    def getBuilderName(self, builderid):
        return self.lookups.getBuilderName(builderid)

    def getBuildProperties(self, buildid):
        return self.lookups.getBuildProperties(buildid)

    def pointTime(self, value):
        """A datetime (or epoch seconds) as the time of a point of this capture."""
        return pointTime(value, self._time_offset)

    def writeBuildPoint(self, series, build, builder_name, fields, value, spread=True):
        """Write a point of the seed's layout for ``build`` (a build dict) of
        ``builder_name``: the tags of :meth:`defaultContext`, at the time ``value`` (a
        datetime or epoch seconds) with this capture's offset.

        Under ``StatsService(build_number='field')`` the build number is a field
        (:meth:`TagPolicy.seedPoint <buildbot_stats.tagging.TagPolicy.seedPoint>`), so it no
        longer keeps two builds of a builder apart in InfluxDB: with ``spread`` (times
        of whole seconds: the build's start or end) the time also moves by the build number
        (:func:`~buildbot_stats.timestamps.buildPointTime`); without (``yieldMetricsValue``
        times, already apart) it does not."""
        tags = self.defaultContext(build, builder_name)
        time = self.pointTime(value)
        if self.tag_policy.buildNumberIsField:
            tags, fields = self.tag_policy.seedPoint(series, tags, fields)
            if spread and value is not None:
                time = buildPointTime(build, value, self._time_offset)
        self.writePoint(series, tags, fields, time)

    # -- writing -----------------------------------------------------------------------

    def writePoint(self, series, tags, fields, time=None):
        """Hand one point to every backend that owns this capture, with the extra tags.

        A backend's ``postStatsValue`` returns at once; one that raises is logged and the
        others still get the point.
        """
        tags = self.tag_policy.addExtraTags(tags)
        for backend in self.parent_svcs:
            try:
                backend.postStatsValue(fields, series, tags, timestamp=time)
            except Exception as e:
                log.err(e, f"buildbot_stats: backend {backend.name!r} refused a point of "
                           f"{self!r}")

    def _store(self, post_data, series_name, context, timestamp=None):
        """Buildbot's name and arguments of :meth:`writePoint`, for captures written for
        ``buildbot.statistics``."""
        self.writePoint(series_name, context, post_data, timestamp)


Capture.__init__ = checkedInit(Capture.__init__)


class BuilderMatchMixin:
    """``builder_name=None`` matches every builder; a string matches that builder."""

    _builder_name = None

    def builderMatches(self, builder_name):
        return self._builder_name is None or self._builder_name == builder_name

    # Buildbot's name and argument (the builder's dict): a subclass may override either
    _builder_name_matches = _takingBuilderInfo(builderMatches)

    def namedBuilders(self):
        return [self._builder_name] if isinstance(self._builder_name, str) else []

    def writesBuilder(self, builder_name):
        """For :meth:`writesSeries`: this capture may write points of ``builder_name``
        (None: unknown)."""
        return builder_name is None or self.builderMatches(builder_name)

    def describe(self):
        return f"{type(self).__name__}(builder_name={self._builder_name!r})"
