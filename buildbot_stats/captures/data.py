"""Captures of data posted by build steps through ``yieldMetricsValue``."""

from __future__ import annotations

from buildbot import config

from buildbot_stats.messages import YIELD_DATA
from buildbot_stats.captures.base import BuilderMatchMixin
from buildbot_stats.captures.base import Capture
from buildbot_stats.captures.base import CaptureError
from buildbot_stats.captures.base import checkBuilderName
from buildbot_stats.captures.base import checkCallback
from buildbot_stats.checks import shown
from buildbot_stats.lookups import then


def identity(x):
    return x


class CaptureDataBase(BuilderMatchMixin, Capture):
    """Base of the data captures. Not used directly."""

    # the builds: for yieldMetricsValue, which sends the build with the data
    uses = ('builder_names', 'builds')

    def __init__(self, data_name, callback=None):
        owner = type(self).__name__
        checkCallback(owner, callback)
        if not isinstance(data_name, str) or not data_name:
            config.error(f"{owner}: data_name must be a non-empty string, got {shown(data_name)}")
        self._data_name = data_name
        super().__init__(YIELD_DATA, callback or identity)

    def describe(self):
        return (
            f"{type(self).__name__}(data_name={self._data_name!r}, "
            f"builder_name={self._builder_name!r})"
        )

    def consumer(self, routingKey, msg):
        if msg['data_name'] != self._data_name:
            return None
        return then(self.lookups.builder_names.lookup(msg['build_data']['builderid']),
                    self._consumeOf, msg)

    def _consumeOf(self, builder_name, msg):
        build_data = msg['build_data']
        if not self.builderMatches(builder_name):
            return
        try:
            fields = self._callback(msg['post_data'])
        except Exception as e:
            raise CaptureError(
                f"{self.describe()}: callback raised {type(e).__name__}: {e} "
                f"for build #{build_data.get('number')} of builder {builder_name!r}"
            ) from e
        if not isinstance(fields, dict):
            raise CaptureError(
                f"{self.describe()}: the data must be a dict of field names to values, got "
                f"{type(fields).__name__} for build #{build_data.get('number')} of "
                f"builder {builder_name!r}"
            )
        # the times of yieldMetricsValue calls are apart already (DataClock): no spread
        self.writeBuildPoint(f"{builder_name}-{self._data_name}", build_data, builder_name,
                             fields, msg.get('timestamp'), spread=False)

    def writesSeries(self, series, builder_name=None):
        if builder_name is None:
            return series.endswith(f"-{self._data_name}") and self._builder_name in (
                None, series[:-len(self._data_name) - 1])
        return (series == f"{builder_name}-{self._data_name}"
                and self.writesBuilder(builder_name))


class CaptureData(CaptureDataBase):
    """Data a build step of one builder posts with ``yieldMetricsValue(data_name, ...)``."""

    def __init__(self, data_name, builder_name, callback=None):
        checkBuilderName(type(self).__name__, builder_name)
        self._builder_name = builder_name
        super().__init__(data_name, callback)


class CaptureDataAllBuilders(CaptureDataBase):
    """:class:`CaptureData` for every builder."""
