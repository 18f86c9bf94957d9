"""Change points: the persistent, significant shifts in a sequence of numbers (build
durations, step durations, queue times, a benchmark's timings), found with Apache Otava's
E-divisive means and a swappable significance test.

A pure function of the values: no I/O, no clock. :func:`findChanges` is the one entry
point ("the changes in this sequence"); :class:`ChangeDetector` holds its settings.

How (docs/regressions.rst says why each step is there):

0. A sequence that rises (or falls) from nearly every value to the next is a count (a build
   number), not a measurement around a level: it has no change point (:func:`isCounter`).
1. **Clean**: each value is clipped to a band around the median of its neighbours
   (:data:`NEIGHBOURS` each side), the band ``clip`` times the sequence's noise (estimated
   from the differences of consecutive values, robust to outliers) but never narrower than
   one unit of a whole-number sequence (Buildbot stores build times in whole seconds). An
   outlier (a slow worker, a cold cache) becomes a high value, not a 3x one.
2. **Screen**: the mean of the ``window / 2`` values after each position is compared with
   the mean of as many before it, in units of the noise; only where the difference exceeds
   ``screen`` (and always at the end of the sequence) does the expensive search run. Any
   change of at least ``min_magnitude`` exceeds it by far; a stretch of noise rarely does.
3. **Split** (Otava): in sliding windows of ``window`` values over those stretches, Otava's
   ``ChangePointDetector`` (E-divisive means, ``PairDistanceCalculator``) proposes candidate
   change points, each kept when the significance test finds it at ``10 * max_pvalue``
   (Otava's "weak" change points).
4. **Merge** (as Otava's ``merge``): every candidate is tested between its neighbours on the
   cleaned values; the weakest failing one is dropped and its neighbours tested again,
   until every one left passes: significant at ``max_pvalue``, a change of the medians of at
   least ``min_magnitude`` (and of at least one unit of a whole-number sequence), and at
   least ``min_run`` values on each side (a change must persist: a spike is not one; the
   newest change is reported once ``min_run`` values follow it). Of the points with too few
   values on a side, those next to the sequence's start or end go first (not persisted
   yet), then of the two ends of a short run between points the smaller step (the p-value
   of one value against a few says little), so that the run joins the side it resembles.
5. **Settle**: each change kept is moved to where the values at its edges agree with its
   sides (:func:`settle`), and the merge runs again on the moved ones: a change is placed
   where it began, or waits for the values that place it there.

The significance test is an object with Otava's ``SignificanceTester`` interface, made by
``tester(max_pvalue)``: Otava's ``TTestSignificanceTester`` (Student's t-test) by default.

Requires the ``apache-otava`` package (``pip install 'buildbot_stats[regressions]'``); of it,
only ``otava.analysis`` is imported. :func:`available` tells whether it is installed.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import statistics

try:
    import numpy as np
    from numpy.lib.stride_tricks import sliding_window_view
    from otava.analysis import CandidateChangePoint
    from otava.analysis import ChangePointDetector
    from otava.analysis import PairDistanceCalculator
    from otava.analysis import TTestSignificanceTester
except ImportError:  # pragma: no cover - available() says it
    TTestSignificanceTester = None

#: What to install for change detection (the page and the commands say it).
PACKAGE = "apache-otava"
INSTALL = "pip install 'buildbot_stats[regressions]'"

#: At most this many times are the changes kept moved where they began and merged again
#: (once is nearly always enough: a move to the end of a sequence drops the change).
SETTLE_ROUNDS = 3
#: Values each side of a value whose median its cleaning compares it with.
NEIGHBOURS = 4
#: At most this many values each side of a change make its medians (the local picture).
SIDE = 50


def available():
    """True when Apache Otava is installed (``otava.analysis`` can be imported)."""
    return TTestSignificanceTester is not None


@dataclasses.dataclass(frozen=True)
class Change:
    """A change point of a sequence.

    ``index``: the position of the first value after the change; ``before`` and ``after``:
    the medians of the values each side (from the neighbouring change, :data:`SIDE` values
    at most); ``pvalue``: the significance test's, between the neighbouring changes.
    """

    index: int
    before: float
    after: float
    pvalue: float

    @property
    def ratio(self):
        """The relative size, ``after / before - 1`` (``0.23`` is +23 %); None when
        ``before`` is 0."""
        if self.before == 0:
            return None
        return self.after / self.before - 1.0

    @property
    def direction(self):
        return 'up' if self.after > self.before else 'down'

    @property
    def confidence(self):
        """``1 - pvalue``."""
        return 1.0 - self.pvalue


@dataclasses.dataclass(frozen=True)
class ChangeDetector:
    """The settings of :func:`findChanges`; :meth:`find` applies them.

    :param max_pvalue: a change is significant below this p-value (default 0.0001)
    :param min_magnitude: the smallest relative change of the medians reported (default
        0.1, 10 %)
    :param min_run: values that must follow (and precede) a change (default 5)
    :param window: values in each of Otava's sliding windows (default 50)
    :param clip: the cleaning band, in units of the noise (default 3.0)
    :param screen: the screening threshold, in units of the noise (default 3.5)
    :param tester: ``tester(max_pvalue)`` makes the significance test: an Otava
        ``SignificanceTester`` (default ``otava.analysis.TTestSignificanceTester``)
    """

    max_pvalue: float = 1e-4
    min_magnitude: float = 0.1
    min_run: int = 5
    window: int = 50
    clip: float = 3.0
    screen: float = 3.5
    tester: object = None

    def __post_init__(self):
        if not 0 < self.max_pvalue < 1:
            raise ValueError(f"max_pvalue must be between 0 and 1, got {self.max_pvalue!r}")
        if self.min_magnitude < 0:
            raise ValueError(f"min_magnitude must be 0 or more, got {self.min_magnitude!r}")
        if self.min_run < 1 or self.window < 4:
            raise ValueError("min_run must be 1 or more and window 4 or more")

    def find(self, values):
        """The :class:`Change` list of ``values`` (numbers, in order), by position."""
        if not available():
            raise ImportError(f"change detection needs the {PACKAGE} package ({INSTALL})")
        raw = np.asarray(values, dtype=np.float64)
        if raw.ndim != 1 or not np.all(np.isfinite(raw)):
            raise ValueError("values must be a sequence of finite numbers")
        n = len(raw)
        if n < 2 * self.min_run or isCounter(raw):
            return []
        cleaned, noise, unit = clean(raw, self.clip)
        series = cleaned.tolist()  # a list: Otava slices lists by window (not arrays)
        first = self._tester(min(0.5, self.max_pvalue * 10))
        candidates = {}
        for start, end in stretches(cleaned, noise, self.window, self.screen):
            for cp in split(series, start, end, self.window, first):
                candidates.setdefault(cp.index, cp)
        kept = self._merge(cleaned, raw, unit, sorted(candidates.values(),
                                                      key=lambda c: c.index))
        # the changes kept, each where it began (settle), merged again if one moved
        for _ in range(SETTLE_ROUNDS):
            placed = settle(raw, kept)
            if [c.index for c in placed] == [c.index for c in kept]:
                break
            kept = self._merge(cleaned, raw, unit, placed)
        return [self._change(raw, kept, i) for i in range(len(kept))]

    def _tester(self, pvalue):
        make = self.tester or TTestSignificanceTester
        return make(pvalue)

    # -- merge: Otava's merge step, with our acceptance rules -----------------------------

    def _merge(self, cleaned, raw, unit, candidates):
        tester = self._tester(self.max_pvalue)
        n = len(cleaned)
        points = retest(tester, cleaned, candidates)

        def failing(i):
            """None when point ``i`` is accepted, else how badly it fails (larger: worse)."""
            cp = points[i]
            lo = points[i - 1].index if i > 0 else 0
            hi = points[i + 1].index if i + 1 < len(points) else n
            short_before, short_after = cp.index - lo < self.min_run, hi - cp.index < self.min_run
            if (short_before and lo == 0) or (short_after and hi == n):
                # too few values between it and the sequence's start or end: not persisted
                # (yet); these go first
                return (3, cp.stats.pvalue)
            if short_before or short_after:
                # a run too short between two points: of its two ends, the smaller step
                # goes first, so that the run joins the side it resembles (the first slow
                # build slower than the next ones belongs to the slowdown). Not the
                # p-value: with a value or two on a side it says little, and a side
                # without spread gives 0, the "strongest" of all.
                before, after = sides(raw, lo, cp.index, hi)
                return (2, -abs(after - before) / max(abs(before), abs(after), 1e-12))
            if cp.stats.pvalue > self.max_pvalue:
                return (1, cp.stats.pvalue)
            before, after = sides(raw, lo, cp.index, hi)
            change = abs(after - before)
            magnitude = change / abs(before) if before else math.inf
            if magnitude < self.min_magnitude or change < unit:
                return (0, -magnitude)
            return None

        failures = [failing(i) for i in range(len(points))]
        while True:
            worst = max(((f, i) for i, f in enumerate(failures) if f is not None),
                        default=None)
            if worst is None:
                return points
            k = worst[1]
            del points[k], failures[k]
            # the neighbours' intervals grew: test them again, and their neighbours' rules
            intervals = tester.get_intervals(points)
            for j in (k - 1, k):
                if 0 <= j < len(points):
                    points[j] = tester.change_point(
                        CandidateChangePoint(points[j].index, points[j].qhat), cleaned,
                        intervals)
            for j in range(max(0, k - 2), min(len(points), k + 2)):
                failures[j] = failing(j)

    def _change(self, raw, points, i):
        lo = points[i - 1].index if i > 0 else 0
        hi = points[i + 1].index if i + 1 < len(points) else len(raw)
        before, after = sides(raw, lo, points[i].index, hi)
        return Change(index=int(points[i].index), before=before, after=after,
                      pvalue=float(points[i].stats.pvalue))


#: The detector of :func:`findChanges` when none is given.
DEFAULT = ChangeDetector()


def findChanges(values, detector=None):
    """The persistent, significant changes of ``values`` (a sequence of numbers in order,
    one per build), as :class:`Change` objects by position; ``detector``: a
    :class:`ChangeDetector` (default :data:`DEFAULT`)."""
    return (detector or DEFAULT).find(values)


# -- the steps -----------------------------------------------------------------------------

#: A sequence rising (or falling) from nearly every value to the next is a count (a build
#: number, a time), not a measurement around a level: it has no change point.
COUNTER = 0.9


def isCounter(raw):
    """True when at least :data:`COUNTER` of the steps from a value to the next go up (or
    down); noise goes either way about half of the time, a level stays (steps of 0)."""
    steps = np.diff(raw)
    return bool(len(steps)) and max(np.mean(steps > 0), np.mean(steps < 0)) >= COUNTER


def clean(raw, clip):
    """``(cleaned values, noise, unit)``: each value clipped to ``clip`` times the noise
    around the median of its neighbours; the noise is relative (a fraction of the level),
    from the differences of consecutive values (the largest 5 % left out: outliers);
    ``unit`` is 1 for a sequence of whole numbers, else 0."""
    n = len(raw)
    unit = 1.0 if np.all(raw == np.round(raw)) else 0.0
    width = 2 * NEIGHBOURS + 1
    if n >= width:
        local = np.empty(n)
        local[NEIGHBOURS:n - NEIGHBOURS] = np.median(sliding_window_view(raw, width), axis=1)
        for i in (*range(NEIGHBOURS), *range(n - NEIGHBOURS, n)):
            # a few values: Python's median is 20 times faster than NumPy's call
            local[i] = statistics.median(raw[max(0, i - NEIGHBOURS):i + NEIGHBOURS + 1].tolist())
    else:
        local = np.full(n, np.median(raw))
    level = np.maximum(np.abs(local), max(unit, 1e-12))
    noise = 0.0
    if n > 2:
        steps = np.sort(np.abs(np.diff(raw)) / level[1:])
        steps = steps[:max(1, int(len(steps) * 0.95))]
        # the RMS of a normal difference without its largest 5 % is 0.88 of the whole
        noise = float(np.sqrt(np.mean(steps * steps) / 2) / 0.88)
    band = np.maximum(clip * noise * np.abs(local), unit)
    return np.clip(raw, local - band, local + band), noise, unit


def stretches(cleaned, noise, window, threshold):
    """The ``(start, end)`` stretches worth splitting: a window around each position where
    the means of the ``window / 2`` values each side differ by more than ``threshold``
    noise units, and the last window (the newest values) always."""
    n = len(cleaned)
    half = max(2, window // 2)
    sums = np.concatenate(([0.0], np.cumsum(cleaned)))
    at = np.arange(1, n)
    lo, hi = np.maximum(0, at - half), np.minimum(n, at + half)
    left = (sums[at] - sums[lo]) / (at - lo)
    right = (sums[hi] - sums[at]) / (hi - at)
    level = np.maximum(np.abs(left + right) / 2, 1e-12)
    scale = max(noise, 1e-9) * level * np.sqrt(1.0 / (at - lo) + 1.0 / (hi - at))
    flagged = at[np.abs(right - left) > threshold * scale].tolist() + [n - 1]
    out = []
    for f in flagged:
        start, end = max(0, f - window), min(n, f + window)
        if out and start <= out[-1][1]:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end])
    return [tuple(s) for s in out]


def split(series, start, end, window, tester):
    """Otava's split step over ``series[start:end]``: the change points its detector finds
    in sliding windows of ``window`` values, each window starting half a window (or at the
    last point found) after the previous one, the last ones shorter."""
    found = []
    step = max(1, window // 2)
    while start < end:
        stop = min(start + window, end)
        detector = ChangePointDetector(significance_tester=tester,
                                       calculator=PairDistanceCalculator)
        points = detector.get_change_points(series, start, stop)
        found.extend(points)
        start = max(points[-1].index if points else 0, start + step)
    return found


def settle(raw, candidates):
    """The ``candidates`` (change points by position), each moved to where the values at
    its edges agree with its sides: the first value from it nearer the level after it than
    the level before, the last value before it nearer the level before. Otava's split may
    put a change a value early, and the newest change's place is bounded by ``min_run``:
    1 s builds, one recorded as 2 s, then 5 s ones were split before the 2 s build while
    only four 5 s builds followed it. Moved, such a change waits (too few values after it)
    until it can be placed where it began."""
    n = len(raw)
    placed = []
    for i, c in enumerate(candidates):
        lo = placed[-1].index if placed else 0
        hi = candidates[i + 1].index if i + 1 < len(candidates) else n
        at = c.index
        before, after = sides(raw, lo, at, hi)
        while at + 1 < hi and abs(raw[at] - before) < abs(raw[at] - after):
            at += 1
        while at - 1 > lo and abs(raw[at - 1] - after) < abs(raw[at - 1] - before):
            at -= 1
        if placed and at == placed[-1].index:
            continue
        placed.append(c if at == c.index else CandidateChangePoint(at, c.qhat))
    return placed


def retest(tester, cleaned, candidates):
    """The ``candidates`` (by position) with the test's statistics between their
    neighbours."""
    intervals = tester.get_intervals(candidates)
    return [tester.change_point(CandidateChangePoint(c.index, c.qhat), cleaned, intervals)
            for c in candidates]


def sides(raw, lo, at, hi):
    """The medians of the raw values before ``at`` (from ``lo``) and from ``at`` (before
    ``hi``), :data:`SIDE` values each at most."""
    return (float(np.median(raw[max(lo, at - SIDE):at])),
            float(np.median(raw[at:min(hi, at + SIDE)])))


# -- the changes found against those found before -------------------------------------------

#: Changes of one direction this many positions apart are the same change (more values
#: move a change point a little).
TOLERANCE = 5


Reconciled = collections.namedtuple('Reconciled', 'new gone matched')


def reconcile(found, kept, tolerance=TOLERANCE, settled_from=0):
    """What a new analysis says about the changes kept from earlier ones.

    ``found``: the :class:`Change` list of an analysis of some values; ``kept``: the changes
    kept before, as ``(position, direction)`` in the same values (``position`` None: not
    among them). A found change matches the nearest kept one of the same direction at most
    ``tolerance`` positions away. Returns ``Reconciled(new, gone, matched)``: the found
    changes that match none; the indexes in ``kept`` of the kept changes at a position of
    at least ``settled_from`` that none matches (an earlier analysis saw them, this one
    does not); and ``(found change, index in kept)`` of the others."""
    unmatched = set(range(len(kept)))
    new, matched = [], []
    for change in found:
        near = [(abs(kept[k][0] - change.index), k) for k in unmatched
                if kept[k][0] is not None and kept[k][1] == change.direction
                and abs(kept[k][0] - change.index) <= tolerance]
        if near:
            k = min(near)[1]
            unmatched.discard(k)
            matched.append((change, k))
        else:
            new.append(change)
    gone = sorted(k for k in unmatched
                  if kept[k][0] is not None and kept[k][0] >= settled_from)
    return Reconciled(new, gone, matched)
