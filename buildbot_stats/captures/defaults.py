"""The captures a backend uses when master.cfg does not say."""

from __future__ import annotations

from buildbot_stats.captures.builds import CaptureBuildDurationAllBuilders
from buildbot_stats.captures.builds import CaptureBuildEndTimeAllBuilders
from buildbot_stats.captures.builds import CaptureBuildStartTimeAllBuilders


def defaultCaptures():
    """Start time, end time and duration (seconds) of every build of every builder."""
    return [
        CaptureBuildStartTimeAllBuilders(),
        CaptureBuildEndTimeAllBuilders(),
        CaptureBuildDurationAllBuilders(),
    ]
