"""Captures of build times: start time, end time and duration."""

from __future__ import annotations

import datetime

from buildbot import config

from buildbot_stats.captures.base import BUILD_FINISHED
from buildbot_stats.captures.base import BuilderMatchMixin
from buildbot_stats.captures.base import Capture
from buildbot_stats.captures.base import CaptureError
from buildbot_stats.captures.base import checkBuilderName
from buildbot_stats.captures.base import checkCallback
from buildbot_stats.checks import aTypeName
from buildbot_stats.lookups import then

REPORT_IN_DIVISORS = {'seconds': 1, 'minutes': 60, 'hours': 3600}


class CaptureBuildTimes(BuilderMatchMixin, Capture):
    """Base of the build time captures. Not used directly.

    Subclasses set ``_time_type`` (the field name) and implement :meth:`retValParams`,
    which returns the arguments of the callback, and :meth:`timestampOf`, which returns
    the build time the point is stamped with.
    """

    _time_type: str = None

    def __init__(self, builder_name, callback, time_type=None):
        if time_type is not None:
            self._time_type = time_type
        self._builder_name = builder_name
        checkCallback(type(self).__name__, callback)
        super().__init__(BUILD_FINISHED, callback or self.default_callback)

    def consumer(self, routingKey, msg):
        return then(self.lookups.builder_names.lookup(msg['builderid']), self._consumeOf, msg)

    def _consumeOf(self, builder_name, msg):
        if not self.builderMatches(builder_name):
            return
        try:
            value = self._callback(*self.retValParams(msg))
        except Exception as e:
            raise CaptureError(
                f"{self.describe()}: callback raised {type(e).__name__}: {e} "
                f"for build #{msg.get('number')} of builder {builder_name!r}"
            ) from e
        self.writeBuildPoint(f"{builder_name}-build-times", msg, builder_name,
                             {self._time_type: value}, self.timestampOf(msg))

    def writesSeries(self, series, builder_name=None):
        if builder_name is None:
            return series.endswith('-build-times') and self._builder_name in (
                None, series[:-len('-build-times')])
        return series == f"{builder_name}-build-times" and self.writesBuilder(builder_name)

    def retValParams(self, msg):
        raise NotImplementedError

    # Buildbot's name (a subclass may override either)
    _retValParams = retValParams

    def timestampOf(self, msg):
        return msg['complete_at']


class CaptureBuildStartTime(CaptureBuildTimes):
    """The start time of each build of one builder, as an ISO 8601 string by default."""

    _time_type = "start-time"

    def __init__(self, builder_name, callback=None):
        checkBuilderName(type(self).__name__, builder_name)
        super().__init__(builder_name, callback)

    @staticmethod
    def default_callback(start_time):
        return start_time.isoformat()

    def retValParams(self, msg):
        return [msg['started_at']]

    def timestampOf(self, msg):
        return msg['started_at']


class CaptureBuildStartTimeAllBuilders(CaptureBuildStartTime):
    """:class:`CaptureBuildStartTime` for every builder."""

    def __init__(self, callback=None):
        CaptureBuildTimes.__init__(self, None, callback)


class CaptureBuildEndTime(CaptureBuildTimes):
    """The end time of each build of one builder, as an ISO 8601 string by default."""

    _time_type = "end-time"

    def __init__(self, builder_name, callback=None):
        checkBuilderName(type(self).__name__, builder_name)
        super().__init__(builder_name, callback)

    @staticmethod
    def default_callback(end_time):
        return end_time.isoformat()

    def retValParams(self, msg):
        return [msg['complete_at']]


class CaptureBuildEndTimeAllBuilders(CaptureBuildEndTime):
    """:class:`CaptureBuildEndTime` for every builder."""

    def __init__(self, callback=None):
        CaptureBuildTimes.__init__(self, None, callback)


class CaptureBuildDuration(CaptureBuildTimes):
    """The duration of each build of one builder, in ``report_in`` units (a float)."""

    _time_type = "duration"

    def __init__(self, builder_name, report_in='seconds', callback=None):
        checkBuilderName(type(self).__name__, builder_name)
        self._init_duration(builder_name, report_in, callback)

    def _init_duration(self, builder_name, report_in, callback):
        if not isinstance(report_in, str) or report_in not in REPORT_IN_DIVISORS:
            got = repr(report_in) if isinstance(report_in, str) else aTypeName(report_in)
            config.error(
                f"{type(self).__name__}: report_in must be one of 'seconds', 'minutes' or "
                f"'hours', got {got}"
            )
        self._report_in = report_in
        CaptureBuildTimes.__init__(self, builder_name, callback)

    def describe(self):
        return (
            f"{type(self).__name__}(builder_name={self._builder_name!r}, "
            f"report_in={self._report_in!r})"
        )

    def default_callback(self, start_time, end_time):
        divisor = REPORT_IN_DIVISORS.get(self._report_in, 1)
        # a clock that went backwards gives 0, as Buildbot's own module does
        duration = max(end_time - start_time, datetime.timedelta(0))
        return duration.total_seconds() / divisor

    def retValParams(self, msg):
        return [msg['started_at'], msg['complete_at']]


class CaptureBuildDurationAllBuilders(CaptureBuildDuration):
    """:class:`CaptureBuildDuration` for every builder."""

    def __init__(self, report_in='seconds', callback=None):
        self._init_duration(None, report_in, callback)
