"""Capture: the base of every capture class.

A capture listens to one MQ routing key. For each message it decides whether the message is
for it (builder, data name...), computes a value with its callback and hands one point per
value to every backend that owns it.
"""

from __future__ import annotations

import re

from twisted.python import log

from buildbot import config

from buildbot_stats.checks import shown
from buildbot_stats.point import to_epoch_seconds

BUILD_FINISHED = ("builders", None, "builds", None, "finished")
YIELD_DATA = ("stats-yieldMetricsValue", "stats-yield-data")


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


class Capture:
    """Base class of all captures; subclasses implement :meth:`consumer`.

    :param routingKey: the MQ routing key (a tuple, ``None`` as a wildcard) to consume
    :param callback: the function that turns what the capture gathered into a value
    """

    def __init__(self, routingKey, callback):
        self.routingKey = tuple(routingKey)
        self._callback = callback
        # Set by StatsService when it (re)configures: the backends that own this capture,
        # the master, and the service itself (shared caches, error accounting).
        self.parent_svcs = []
        self.master = None
        self.stats_service = None
        # Added to every timestamp of this capture by the StatsService, in seconds (a few
        # microseconds): points of one build that share a series and a time would
        # otherwise overwrite each other in InfluxDB.
        self._time_offset = 0.0

    # -- what subclasses implement -------------------------------------------------------

    def consumer(self, routingKey, msg):
        raise NotImplementedError(f"{type(self).__name__} must implement consumer()")

    # Buildbot's own module calls it ``consume``; custom code written for it keeps working.
    def consume(self, routingKey, msg):
        return self.consumer(routingKey, msg)

    # -- helpers -----------------------------------------------------------------------

    def defaultContext(self, msg, builder_name=None):
        """The tags every build point carries: ``builder_name`` and ``build_number``."""
        if builder_name is None:
            builder_name = msg.get('builder_name')
        return {"builder_name": builder_name, "build_number": str(msg['number'])}

    # Buildbot's name for the same thing
    _defaultContext = defaultContext

    def describe(self):
        """A short, human name of this capture for log messages."""
        return type(self).__name__

    def namedBuilders(self):
        """The builder names this capture is limited to; empty when it takes every builder.
        (StatsService warns about a name the master has no builder for.)"""
        name = getattr(self, '_builder_name', None)
        return [name] if isinstance(name, str) and name else []

    def __repr__(self):
        return f"<{self.describe()}>"

    def getBuilderName(self, builderid):
        """The builder's name, from the service's cache when there is one."""
        if self.stats_service is not None:
            return self.stats_service.getBuilderName(builderid)
        d = self.master.data.get(("builders", builderid))
        d.addCallback(lambda b: b['name'] if b else None)
        return d

    def getBuildProperties(self, buildid):
        if self.stats_service is not None:
            return self.stats_service.getBuildProperties(buildid)
        return self.master.data.get(("builds", buildid, "properties"))

    def pointTime(self, value):
        """A datetime (or epoch seconds) as this capture's point timestamp."""
        seconds = to_epoch_seconds(value)
        if seconds is None:
            return None
        return seconds + self._time_offset

    def _store(self, post_data, series_name, context, timestamp=None):
        """Hand one point to every backend that owns this capture.

        A backend's ``postStatsValue`` returns at once; one that raises is logged and the
        others still get the point.
        """
        # the StatsService's extra_tags (master name, environment...) on every point
        policy = getattr(self.stats_service, 'tag_policy', None)
        if policy is not None:
            context = policy.addExtraTags(context)
        for svc in list(self.parent_svcs):
            try:
                svc.postStatsValue(post_data, series_name, context, timestamp=timestamp)
            except Exception as e:
                log.err(e, f"buildbot_stats: backend {svc.name!r} refused a point of {self!r}")
