"""BuildStatsCapture: the base of the build statistics captures (results, queue times,
steps, tests).

Unlike the spec captures, these write one measurement per kind of statistic (``builds``,
``build_requests``, ``steps``, ``tests``) and put the builder, worker, result, branch,
repository and project in tags; numbers, build numbers included, are fields. Every tag goes
through the StatsService's :class:`~buildbot_stats.tagging.TagPolicy` (cardinality guard).
"""

from __future__ import annotations

from twisted.internet import defer

from buildbot.process.results import Results

from buildbot_stats.captures.base import BUILD_FINISHED
from buildbot_stats.captures.base import BuilderMatchMixin
from buildbot_stats.captures.base import Capture
from buildbot_stats.captures.base import CaptureError
from buildbot_stats.captures.base import checkBuilderName
from buildbot_stats.captures.base import checkCallback
from buildbot_stats.point import to_epoch_seconds
from buildbot_stats.timestamps import buildPointTime


def resultName(code):
    """Buildbot's name of a result code (``'success'``...), or the code as a string."""
    if isinstance(code, int) and 0 <= code < len(Results):
        return Results[code]
    return str(code)


def keepFields(fields, info):
    """The default callback: the fields as the capture computed them."""
    return fields


class BuildStatsCapture(BuilderMatchMixin, Capture):
    """Base of the build statistics captures. Not used directly.

    Subclasses set :attr:`measurement` and implement :meth:`capture`, which calls
    :meth:`post` for each point.

    :param builder_name: the builder to capture, ``None`` for every builder
    :param callback: ``callback(fields, info)`` returns the fields to write (a dict), or
        ``None`` to write no point; ``info`` holds what the capture gathered (see the docs)
    """

    measurement: str = None
    uses = ('builder_names', 'workers', 'build_requests', 'buildsets')

    def __init__(self, builder_name=None, callback=None):
        owner = type(self).__name__
        if builder_name is not None:
            checkBuilderName(owner, builder_name)
        checkCallback(owner, callback)
        self._builder_name = builder_name
        super().__init__(BUILD_FINISHED, callback or keepFields)

    # -- the flow --------------------------------------------------------------------------

    @defer.inlineCallbacks
    def consumer(self, routingKey, msg):
        builder_name = yield self.getBuilderName(msg['builderid'])
        if not self.builderMatches(builder_name):
            return
        tags = yield self.lookups.getBuildTags(msg)
        tags = dict(tags)
        tags['builder_name'] = builder_name
        yield self.capture(msg, builder_name, tags)

    def capture(self, build, builder_name, tags):
        raise NotImplementedError

    def writesSeries(self, series, builder_name=None):
        return series == self.measurement and self.writesBuilder(builder_name)

    def buildTime(self, build, value):
        """The time of a point of ``build`` that happened at ``value`` (a datetime)."""
        return buildPointTime(build, value, self._time_offset)

    def post(self, build, builder_name, tags, fields, info, time):
        """Run the callback on ``fields`` and write the point; CaptureError if it fails."""
        where = f"build #{build.get('number')} of builder {builder_name!r}"
        try:
            fields = self._callback(fields, info)
        except Exception as e:
            raise CaptureError(
                f"{self.describe()}: callback raised {type(e).__name__}: {e} for {where}"
            ) from e
        if fields is None:
            return
        if isinstance(fields, dict):
            # InfluxDB has no null: a field without a value is left out
            fields = {k: v for k, v in fields.items() if v is not None}
        if not isinstance(fields, dict) or not fields:
            raise CaptureError(
                f"{self.describe()}: the callback must return a non-empty dict of fields or "
                f"None, got {fields!r} for {where}"
            )
        tags, fields = self.tag_policy.apply(self.measurement, tags, fields)
        self.writePoint(self.measurement, tags, fields, time)

    def durationBetween(self, start, end):
        """Seconds from ``start`` to ``end`` (float, never negative), or None."""
        start, end = to_epoch_seconds(start), to_epoch_seconds(end)
        if start is None or end is None:
            return None
        # a clock that went backwards gives 0, as for the build durations
        return float(max(end - start, 0.0))
