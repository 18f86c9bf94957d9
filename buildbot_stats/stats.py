"""The names a master.cfg uses::

    from buildbot_stats import stats

    # appended: the services already in c['services'] (reporters...) stay
    c.setdefault('services', []).append(
        stats.StatsService(storage_backends=[stats.SQLiteStorageService()],
                           name='StatsService'))
"""

from buildbot_stats.captures import Capture
from buildbot_stats.captures import CaptureBuildDuration
from buildbot_stats.captures import CaptureBuildDurationAllBuilders
from buildbot_stats.captures import CaptureBuildEndTime
from buildbot_stats.captures import CaptureBuildEndTimeAllBuilders
from buildbot_stats.captures import CaptureBuildStartTime
from buildbot_stats.captures import CaptureBuildStartTimeAllBuilders
from buildbot_stats.captures import CaptureBuildTimes
from buildbot_stats.captures import CaptureData
from buildbot_stats.captures import CaptureDataAllBuilders
from buildbot_stats.captures import CaptureProperty
from buildbot_stats.captures import CapturePropertyAllBuilders
from buildbot_stats.captures import CaptureBuildResults
from buildbot_stats.captures import CaptureQueueTimes
from buildbot_stats.captures import CaptureStepTimes
from buildbot_stats.captures import CaptureTestHistory
from buildbot_stats.captures import CaptureTestResults
from buildbot_stats.regressions import Regressions
from buildbot_stats.service import StatsService
from buildbot_stats.steps import JUnitResults
from buildbot_stats.steps import StatsStepMixin
from buildbot_stats.steps import findStatsService
from buildbot_stats.steps import yieldMetricsValue
from buildbot_stats.storage import InMemoryStorageService
from buildbot_stats.storage.sqlite import SQLiteStorageService
from buildbot_stats.storage import StatsStorageBase
from buildbot_stats.storage.influxdb import InfluxStorageService
from buildbot_stats.storage.prometheus import PrometheusStorageService
from buildbot_stats.www import statsDashboard

__all__ = [
    'Capture',
    'CaptureBuildDuration',
    'CaptureBuildDurationAllBuilders',
    'CaptureBuildEndTime',
    'CaptureBuildEndTimeAllBuilders',
    'CaptureBuildStartTime',
    'CaptureBuildStartTimeAllBuilders',
    'CaptureBuildTimes',
    'CaptureData',
    'CaptureDataAllBuilders',
    'CaptureProperty',
    'CapturePropertyAllBuilders',
    'InMemoryStorageService',
    'JUnitResults',
    'InfluxStorageService',
    'PrometheusStorageService',
    'Regressions',
    'SQLiteStorageService',
    'StatsService',
    'StatsStepMixin',
    'StatsStorageBase',
    'findStatsService',
    'yieldMetricsValue',
    'CaptureBuildResults',
    'CaptureQueueTimes',
    'CaptureStepTimes',
    'CaptureTestHistory',
    'CaptureTestResults',
    'statsDashboard',
]
