"""The capture lists the benchmarks and the tests share, so that a figure and a test speak of
the same work (``tests/historymaster.py``'s master.cfg imports it too)."""

from __future__ import annotations


def seedCaptures(property_name, data_name):
    """The specification's captures, for every builder: start time, end time, duration, one
    property and one ``yieldMetricsValue`` data name (5 points per build)."""
    from buildbot_stats import stats

    return [
        stats.CaptureBuildStartTimeAllBuilders(),
        stats.CaptureBuildEndTimeAllBuilders(),
        stats.CaptureBuildDurationAllBuilders(),
        stats.CapturePropertyAllBuilders(property_name),
        stats.CaptureDataAllBuilders(data_name),
    ]


def everyFamily(property_name='warnings', data_name='coverage'):
    """:func:`seedCaptures` and the four build statistics captures: one capture of every
    family a replay (backfill, catch-up) feeds."""
    from buildbot_stats import stats

    return seedCaptures(property_name, data_name) + [
        stats.CaptureBuildResults(),
        stats.CaptureQueueTimes(),
        stats.CaptureStepTimes(),
        stats.CaptureTestResults(),
    ]
