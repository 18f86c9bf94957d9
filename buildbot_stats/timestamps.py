"""The time of a point, and the rules that keep points of one build apart.

InfluxDB keeps one point per (series, tags, time): a second point with the same three
overwrites the first. Buildbot's times are whole seconds and one build makes several points,
so the times are spread:

* **capture offset**: each capture of a StatsService gets a number; its points move
  ``number * CAPTURE_TIME_STEP`` (microseconds), so two captures writing one series for one
  build never share a time;
* **build-number spread**: the build statistics captures (results, queue, steps, tests)
  write one series for every builder, with the build number as a field, so two builds of
  one builder ending in the same second would collide: their points move by (build number
  mod ``BUILD_TIME_SLOTS``) * ``BUILD_TIME_SPREAD`` (milliseconds). The seed's build time
  and property captures do the same under ``StatsService(build_number='field')`` (in
  Buildbot's layout the build number is a tag: each build has series of its own, and the
  times stay the build's own). Two builds of a builder that end in the same second thus
  never collide, unless their numbers differ by a multiple of ``BUILD_TIME_SLOTS``: a
  thousand builds of that builder would have to end while one of them runs, and the two in
  one second;
* **data step**: two ``yieldMetricsValue`` calls at one reactor time get times at least
  ``DATA_TIME_STEP`` apart (:class:`DataClock`).
"""

from __future__ import annotations

from buildbot_stats.point import to_epoch_seconds

CAPTURE_TIME_STEP = 1e-6
BUILD_TIME_SPREAD = 1e-3
BUILD_TIME_SLOTS = 1000
DATA_TIME_STEP = 1e-3


def captureOffset(number):
    """The time offset (seconds) of the capture numbered ``number`` in a service."""
    return number * CAPTURE_TIME_STEP


def pointTime(value, offset=0.0):
    """A datetime (naive is UTC) or epoch seconds, plus ``offset``; None stays None."""
    seconds = to_epoch_seconds(value)
    if seconds is None:
        return None
    return seconds + offset


def buildSpread(number):
    """The build-number spread (seconds) of the points of build ``number`` (None: 0)."""
    return (number or 0) % BUILD_TIME_SLOTS * BUILD_TIME_SPREAD


def buildPointTime(build, value, offset=0.0):
    """The time of a point of ``build`` (a build dict) that happened at ``value``, spread
    by the build number."""
    return to_epoch_seconds(value) + buildSpread(build.get('number')) + offset


class DataClock:
    """The times of ``yieldMetricsValue`` points: now, but never closer than
    ``DATA_TIME_STEP`` to the previous one."""

    def __init__(self):
        self._last = None

    def next(self, now):
        if self._last is not None and now < self._last + DATA_TIME_STEP:
            now = self._last + DATA_TIME_STEP
        self._last = now
        return now
