"""Which level of the embedded store answers which part of a time range: raw points, hourly
rollups or daily rollups.

A range ``[start, end)`` is cut into:

* **weeks** and **days** rolled up (whole weeks, then whole days, inside the range, every
  hour rolled up, none dirty), when the answer is per week (per day) or coarser or for the
  whole range;
* **hours** rolled up (the other whole hours before the rollup watermark, not dirty);
* **raw** ranges: the part before the first whole hour and from the watermark (or the end's
  hour) on, the dirty hours (written into after their rollup), and the hours of the
  **raw-only days** (quiet days rolled up to day rows only, no hourly rows) not in a whole
  day or week of the answer.

So every point of the range is counted once, and the answer is exact where it comes from
raw points. An edge before ``raw_since`` (the raw points deleted by retention) is taken
from its hour's rollup whole: the range then starts (or ends) with that hour; so is a
raw-only day before ``raw_since`` (retention deletes its raw points whole), from its day
rollup: an answer per hour gets the day's in its first hour.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field

HOUR = 3600
DAY = 86400
WEEK = 7 * DAY


@dataclass
class Plan:
    raw: list = field(default_factory=list)  # [(lo, hi)] seconds, hi None: no end
    hours: list = field(default_factory=list)  # [(lo, hi)] hour starts lo <= h < hi
    days: list = field(default_factory=list)  # [(lo, hi)] day starts
    weeks: list = field(default_factory=list)  # [(lo, hi)] week starts (epoch multiples)

    def levels(self):
        """``[(level seconds, ranges)]`` of the rollups."""
        return [(HOUR, self.hours), (DAY, self.days), (WEEK, self.weeks)]


def _floor(t, unit):
    return int(t // unit * unit)


def _ceil(t, unit):
    return -int(-t // unit * unit)


def _ranges(starts, unit):
    """Adjacent starts (sorted) as ``[(lo, hi)]``."""
    out = []
    for s in starts:
        if out and out[-1][1] == s:
            out[-1] = (out[-1][0], s + unit)
        else:
            out.append((s, s + unit))
    return out


def _minus(ranges, holes, unit):
    """``ranges`` without the slots ``[h, h + unit)`` of ``holes`` (sorted)."""
    out = []
    for lo, hi in ranges:
        for h in holes:
            if h + unit <= lo or h >= hi:
                continue
            if h > lo:
                out.append((lo, h))
            lo = max(lo, h + unit)
        if lo < hi:
            out.append((lo, hi))
    return out


def _rawOnly(ranges, raw_days, raw_since):
    """``(hour ranges, raw ranges, whole days)``: ``ranges`` (hour ranges) without the raw-only
    days ``raw_days`` (sorted), which are read raw, or taken whole before ``raw_since``."""
    hours, raw, whole = [], [], []
    for lo, hi in ranges:
        for d in raw_days:
            if d + DAY <= lo or d >= hi:
                continue
            if lo < d:
                hours.append((lo, d))
            if d < raw_since:
                if not whole or whole[-1] != d:
                    whole.append(d)
            elif raw and raw[-1][1] == max(lo, d):
                raw[-1] = (raw[-1][0], min(hi, d + DAY))
            else:
                raw.append((max(lo, d), min(hi, d + DAY)))
            lo = min(hi, d + DAY)
        if lo < hi:
            hours.append((lo, hi))
    return hours, raw, whole


def plan(start, end, watermark, raw_since, dirty, period=None, raw_days=()):
    """The :class:`Plan` of ``[start, end)`` (seconds; None: unbounded) for a store rolled
    up before ``watermark`` (an hour start) but the ``dirty`` hours (sorted), its raw
    points deleted before ``raw_since`` (seconds). ``period``: the answer is per period of
    this many seconds (hourly rollups only below a day). ``raw_days``: the raw-only days
    (sorted day starts)."""
    lo = 0 if start is None else start
    h0 = _ceil(lo, HOUR)
    if h0 != lo and lo < raw_since:
        h0 = _floor(lo, HOUR)  # the edge's raw points are gone: its hour's rollup
    h1 = watermark if end is None else min(_floor(end, HOUR), watermark)
    if end is not None and end < raw_since and end % HOUR:
        h1 = min(_ceil(end, HOUR), watermark)  # the same at the end
    out = Plan()
    if h1 <= h0:
        out.raw.append((start, end))
        return out
    if start is not None and lo < h0:
        out.raw.append((start, h0))
    dirty = [d for d in dirty if h0 <= d < h1]
    out.raw.extend(_ranges(dirty, HOUR))
    if end is None or h1 < end:
        out.raw.append((h1, end))
    # the whole hours rolled up and clean, then the whole weeks and days carved out of them
    clean = _minus([(h0, h1)], dirty, HOUR)
    for unit, name in ((WEEK, 'weeks'), (DAY, 'days')):
        if period is not None and (period < unit or period % unit):
            continue
        whole, rest = [], []
        for lo, hi in clean:
            a, b = _ceil(lo, unit), _floor(hi, unit)
            if a < b:
                whole.append((a, b))
                rest += [r for r in ((lo, a), (b, hi)) if r[0] < r[1]]
            else:
                rest.append((lo, hi))
        setattr(out, name, whole)
        clean = rest
    out.hours = sorted(clean)
    if raw_days:
        out.hours, raw, whole = _rawOnly(out.hours, raw_days, raw_since)
        out.raw.extend(raw)
        out.days = sorted(out.days + _ranges(whole, DAY))
    return out
