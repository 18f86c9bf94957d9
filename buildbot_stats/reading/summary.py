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

TREND_STEADY = 0.10  # a fitted change within +-10 % of its start is "steady"
TREND_WINDOW = 200  # the trend is of the latest builds (pairs grow as the square: the page
# computes it per builder on every view, 200 builds are 19,900 slopes, a few milliseconds)

#: Results that count as passed in the success rate (Buildbot's SUCCESS and WARNINGS).
PASSED_RESULTS = frozenset({'success', 'warnings'})
#: Results left out of the success rate: the build did not run to a verdict.
NOT_COUNTED_RESULTS = frozenset({'skipped', 'retry', 'cancelled'})


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


def fmtTrend(st):
    if st['trend_ratio'] is None:
        return st['trend']
    return f"{st['trend_ratio'] * 100:+.0f}% {st['trend']}"


def periodLength(span):
    """The period of the per-period median and p90 for a time span (seconds): an hour up
    to two days, a day up to ~two months, then a week."""
    if span <= 2 * 86400:
        return 3600
    if span <= 62 * 86400:
        return 86400
    return 7 * 86400


def perPeriod(points, period):
    """``points``: ``[(time, value), ...]``. ``[(time, median, p90, count), ...]`` of the
    periods that hold points, by time; periods start on multiples of ``period`` since the
    epoch (UTC midnight for days); ``time`` is the mean time of the period's points, so a
    period's mark sits among its builds."""
    buckets = {}
    for t, v in points:
        buckets.setdefault(int(t // period), []).append((t, v))
    out = []
    for _, tvs in sorted(buckets.items()):
        vs = [v for _, v in tvs]
        out.append((sum(t for t, _ in tvs) / len(tvs), statistics.median(vs),
                    percentile(vs, 0.9), len(vs)))
    return out


def resultCounts(results):
    """``results``: ``[(time, number, result name), ...]``. ``{'builds', 'passed',
    'failed', 'other', 'rate'}``; ``rate`` is passed / (passed + failed), None without a
    verdict. Failed counts failure and exception."""
    passed = sum(1 for r in results if r[2] in PASSED_RESULTS)
    other = sum(1 for r in results if r[2] in NOT_COUNTED_RESULTS)
    failed = len(results) - passed - other
    rate = passed / (passed + failed) if passed + failed else None
    return {'builds': len(results), 'passed': passed, 'failed': failed, 'other': other,
            'rate': rate}
