"""Every capture class; see the modules for what each one captures."""

from buildbot_stats.captures.base import BUILD_FINISHED
from buildbot_stats.messages import YIELD_DATA
from buildbot_stats.captures.base import Capture
from buildbot_stats.captures.base import CaptureError
from buildbot_stats.captures.builds import CaptureBuildDuration
from buildbot_stats.captures.builds import CaptureBuildDurationAllBuilders
from buildbot_stats.captures.builds import CaptureBuildEndTime
from buildbot_stats.captures.builds import CaptureBuildEndTimeAllBuilders
from buildbot_stats.captures.builds import CaptureBuildStartTime
from buildbot_stats.captures.builds import CaptureBuildStartTimeAllBuilders
from buildbot_stats.captures.builds import CaptureBuildTimes
from buildbot_stats.captures.data import CaptureData
from buildbot_stats.captures.data import CaptureDataAllBuilders
from buildbot_stats.captures.properties import CaptureProperty
from buildbot_stats.captures.properties import CapturePropertyAllBuilders
from buildbot_stats.captures.buildsteps import CaptureStepTimes
from buildbot_stats.captures.buildstats import BuildStatsCapture
from buildbot_stats.captures.queue import CaptureQueueTimes
from buildbot_stats.captures.results import CaptureBuildResults
from buildbot_stats.captures.testhistory import CaptureTestHistory
from buildbot_stats.captures.testresults import CaptureTestResults

__all__ = [
    'BUILD_FINISHED',
    'YIELD_DATA',
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
    'CaptureError',
    'CaptureProperty',
    'CapturePropertyAllBuilders',
    'BuildStatsCapture',
    'CaptureBuildResults',
    'CaptureQueueTimes',
    'CaptureStepTimes',
    'CaptureTestHistory',
    'CaptureTestResults',
]
