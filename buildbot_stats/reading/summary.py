"""The numbers the report and the web page derive from a reader's answers.

Pure functions over the lists the readers return (:mod:`buildbot_stats.reading.sqlite`,
:mod:`buildbot_stats.reading.influxdb`), so ``buildbot-stats report`` and the Statistics page print the same
median, 90th percentile and trend for the same builds.
"""

from __future__ import annotations

import itertools
import math
import operator
import statistics
from dataclasses import dataclass

TREND_STEADY = 0.10  # a fitted change within +-10 % of its start is "steady"
TREND_WINDOW = 200  # the trend is of the latest builds (pairs grow as the square: the page
# computes it per builder on every view, 200 builds are 19,900 slopes, a few milliseconds)

#: Results that count as passed in the success rate (Buildbot's SUCCESS and WARNINGS).
PASSED_RESULTS = frozenset({'success', 'warnings'})
#: Results left out of the success rate: the build did not run to a verdict.
NOT_COUNTED_RESULTS = frozenset({'skipped', 'retry', 'cancelled'})


@dataclass(frozen=True)
class Stats:
    """What a reader says of the numbers of one group (a builder, a step...) over a range or
    a period: every reader answers its aggregate queries with these.

    ``median`` and ``p90`` are exact (``exact``: the middle value, or the mean of the two
    middle ones, and the nearest-rank 90th percentile) when computed from the values, else
    estimates (from rollups' sketches, or from InfluxDB); None without values (a count
    only)."""

    count: int
    sum: float | None = None
    min: float | None = None
    max: float | None = None
    nonzero: int | None = None
    median: float | None = None
    p90: float | None = None
    exact: bool = True

    @property
    def mean(self):
        return None if self.sum is None or not self.count else self.sum / self.count


def percentile(values, q):
    """Nearest-rank percentile (a value that occurred)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def trend(durations):
    """``(ratio, word)``: the change over the latest builds, relative to where it started.

    The line is Theil-Sen's (the slope is the median of the slopes between every two
    builds, the level the median of what is left), so one slow first build (a cold cache)
    does not make a trend, as it would with first-against-last or a least-squares line;
    ``ratio`` is the change of that line from the first build shown to the last, relative
    to its start (so "faster" is never -100 % or beyond). A change no larger than the
    durations' resolution is "steady" with no ratio: Buildbot stamps builds in whole
    seconds, so a build of 1.5 s reads 1 or 2, and 2, 2, 2, 1, 2, 1, 1 is noise, not a
    build twice as fast.
    """
    durations = list(durations)[-TREND_WINDOW:]
    n = len(durations)
    if n < 4:
        return None, "too few builds"
    # every (d[i + k] - d[i]) / k, gap by gap, in C loops (map): the page computes it per
    # builder on every view
    slopes = []
    for k in range(1, n):
        slopes.extend(map(operator.truediv, map(operator.sub, durations[k:], durations[:-k]),
                          itertools.repeat(k, n - k)))
    slope = statistics.median(slopes)
    start = statistics.median(d - slope * i for i, d in enumerate(durations))
    if start <= 0:
        return None, "n/a"
    change = slope * (n - 1)
    if abs(change) <= resolution(durations):
        return None, "steady"
    ratio = change / start
    if abs(ratio) < TREND_STEADY:
        return ratio, "steady"
    return ratio, "slower" if ratio > 0 else "faster"


def resolution(durations):
    """The smallest change ``durations`` can show: 1 when every one is a whole number
    (Buildbot's build times are whole seconds), else 0."""
    return 1.0 if all(float(d).is_integer() for d in durations) else 0.0


def builderStats(builds):
    """``builds``: ``[(time, number, duration), ...]`` by time (a reader's
    ``buildDurations()`` entry). The row of the report's table."""
    durations = [d for _, _, d in builds]
    ratio, word = trend(durations)
    return {
        'builds': len(builds),
        'median': statistics.median(durations),
        'p90': percentile(durations, 0.9),
        'last': durations[-1],
        'trend_ratio': ratio,
        'trend': word,
    }


def fmtSeconds(s):
    if s >= 3600:
        return f"{s / 3600:.1f}h"
    if s >= 60:
        return f"{s / 60:.1f}m"
    return f"{s:.2f}s"


def fmtShortSeconds(s):
    """Seconds as :func:`fmtSeconds` says them, milliseconds below one second (tests)."""
    if s < 0.01:
        return f"{s * 1000:.1f}ms"
    if s < 1:
        return f"{s * 1000:.0f}ms"
    return fmtSeconds(s)


def fmtTrend(ratio, word):
    """``'+12% slower'``, or the word alone without a ratio."""
    return word if ratio is None else f"{ratio * 100:+.0f}% {word}"
