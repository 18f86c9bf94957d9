"""Which tests flake, fail and slow down: pure functions over one test's history.

A history is a list of ``(run, outcome, duration)`` in time order, where ``run`` has
``revision`` and ``buildset`` attributes (:class:`~buildbot_stats.outcomes.TestRun`-like),
``outcome`` is a code of :mod:`buildbot_stats.outcomes` and ``duration`` seconds or None.
No I/O and no clock: the readers (:mod:`buildbot_stats.reading.tests`) fetch the histories
and the page, the CLI and ``/metrics`` show what these functions find.

Flaky
    A test is flaky when, within the runs looked at, any of these holds:

    * a failure was hidden by a rerun: it failed and then passed in one build (outcome
      :data:`~buildbot_stats.outcomes.FLAKY`);
    * it failed and passed on the same revision, or within the same buildset (two builds
      of the same code disagree);
    * its outcome flipped between failed and passed at least :data:`MIN_FLIPS` times over
      its last :data:`FLIP_WINDOW` runs (a test that broke once and was fixed flips twice).

    The flip rate (flips over the transitions between those runs) orders the table.

Slower
    :func:`changeShift` looks for the change points of a test's durations with the change
    detection of :mod:`buildbot_stats.analysis.changepoints` (Apache Otava): a test is
    slower when the latest persistent, significant change of its durations is a rise of at
    least :data:`MIN_SLOWDOWN_RATIO` and :data:`MIN_SLOWDOWN_SECONDS`, and it names the run
    where the rise began. Without Apache Otava, :func:`medianShift` compares the median of
    the older half of the durations with that of the newer half (it cannot say where the
    rise began). :func:`slowdownDetection` says which one runs; :func:`slowingTests` takes
    either (or any ``detect(durations)``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from buildbot_stats.analysis import changeDetectionInstalled
from buildbot_stats.outcomes import FAILED
from buildbot_stats.outcomes import FLAKY
from buildbot_stats.outcomes import PASSED
from buildbot_stats.outcomes import SKIPPED

#: The runs of a test the flip rate is computed over (its latest ones).
FLIP_WINDOW = 30
#: Flips between failed and passed over :data:`FLIP_WINDOW` runs that make a test flaky.
MIN_FLIPS = 3
#: A test is slower when its recent median is at least this much higher (+20 %) ...
MIN_SLOWDOWN_RATIO = 0.2
#: ... and at least this many seconds higher (a 1 ms test taking 2 ms is noise).
MIN_SLOWDOWN_SECONDS = 0.05
#: Durations needed to compare two medians (half of them on each side).
MIN_DURATIONS = 4
#: Runs that must follow (and precede) a change of a test's duration (as
#: :class:`~buildbot_stats.analysis.changepoints.ChangeDetector`'s default).
MIN_RUN = 5
#: The cheap screen before a test's durations go to change detection: the median of its
#: last ``min_run`` durations must exceed that of its first ``min_run`` by this share of
#: the smallest change reported (relative and in seconds). A persistent rise with
#: ``min_run`` runs each side has its first runs before it and its last runs after it; a
#: steady test rarely passes, so 10,000 tests cost one detection each only when they moved.
SCREEN = 0.5
#: How the tests getting slower were found (:func:`slowdownDetection`).
CHANGE_POINTS = 'changepoints'
MEDIAN = 'median'


def _changepoints():
    """:mod:`buildbot_stats.analysis.changepoints`, imported when first needed: it brings
    NumPy and Otava, which the command line must not load to start (only to analyse)."""
    from buildbot_stats.analysis import changepoints as module
    return module


@functools.lru_cache(maxsize=1)
def detector():
    """The change detection of the tests' durations: Otava's, with the tests' own smallest
    change (the significance, p < 0.0001, is
    :class:`~buildbot_stats.analysis.changepoints.ChangeDetector`'s default)."""
    return _changepoints().ChangeDetector(min_magnitude=MIN_SLOWDOWN_RATIO, min_run=MIN_RUN)


def _passedOrFailed(outcome):
    """PASSED or FAILED for the flip count (a flaky run failed and ended passing: it counts
    as passed, its failure counts as hidden), None for a skip."""
    if outcome == SKIPPED:
        return None
    return FAILED if outcome == FAILED else PASSED


def flips(outcomes):
    """``(flips, transitions)``: how often consecutive runs (skips left out) went from
    failed to passed or back, and how many pairs of consecutive runs there were."""
    previous = None
    count = transitions = 0
    for outcome in outcomes:
        current = _passedOrFailed(outcome)
        if current is None:
            continue
        if previous is not None:
            transitions += 1
            if current != previous:
                count += 1
        previous = current
    return count, transitions


def conflicts(history, key):
    """The groups of runs sharing ``key`` (``'revision'`` or ``'buildset'``; runs without
    one are left out) in which the test both failed and passed."""
    seen = {}
    for run, outcome, _ in history:
        value = getattr(run, key, None)
        if value is None or value == '' or outcome == SKIPPED:
            continue
        failed, passed = seen.get(value, (False, False))
        if outcome == FAILED:
            failed = True
        else:
            # a flaky run passed in the end (its failure counts as hidden by a rerun)
            passed = True
        seen[value] = (failed, passed)
    return sum(1 for failed, passed in seen.values() if failed and passed)


@dataclass(frozen=True)
class Flakiness:
    """What :func:`flakiness` found in one test's history."""

    runs: int  # runs of the history (skips included)
    failures: int  # runs that failed (flaky runs included)
    hidden: int  # failures hidden by a rerun that passed (outcome FLAKY)
    same_revision: int  # revisions on which it both failed and passed
    same_buildset: int  # buildsets within which it both failed and passed
    flips: int  # flips over the last FLIP_WINDOW runs
    flip_rate: float  # flips / transitions over those runs (0.0 without any)
    last_failure: object  # the run of the latest failure (None without one)

    @property
    def flaky(self):
        return bool(self.hidden or self.same_revision or self.same_buildset
                    or self.flips >= MIN_FLIPS)

    def reasons(self):
        """Why the test is flaky, as short phrases."""
        out = []
        if self.hidden:
            out.append(f"{self.hidden} hidden by a rerun")
        if self.same_revision:
            out.append(f"failed and passed on {self.same_revision} revision"
                       + ("s" if self.same_revision > 1 else ""))
        if self.same_buildset:
            out.append(f"failed and passed in {self.same_buildset} buildset"
                       + ("s" if self.same_buildset > 1 else ""))
        if self.flips >= MIN_FLIPS:
            out.append(f"{self.flips} flips")
        return out


def flakiness(history, window=FLIP_WINDOW, recent=None):
    """The :class:`Flakiness` of one test's ``history`` (in time order).

    The flips are counted over the runs in ``recent`` (a set of runs: its builder's latest
    ones, when the history also holds older runs), else over the last ``window`` runs."""
    outcomes = [outcome for _, outcome, _ in history]
    if recent is not None:
        count, transitions = flips([o for run, o, _ in history if run in recent])
    else:
        count, transitions = flips(outcomes[-window:])
    last_failure = None
    for run, outcome, _ in reversed(history):
        if outcome in (FAILED, FLAKY):
            last_failure = run
            break
    return Flakiness(
        runs=len(outcomes),
        failures=sum(1 for o in outcomes if o in (FAILED, FLAKY)),
        hidden=sum(1 for o in outcomes if o == FLAKY),
        same_revision=conflicts(history, 'revision'),
        same_buildset=conflicts(history, 'buildset'),
        flips=count,
        flip_rate=count / transitions if transitions else 0.0,
        last_failure=last_failure,
    )


def failingStreak(history):
    """``(first run of the current failing streak, its length)`` when the latest run that
    was not skipped failed, else None. ``history`` is in time order."""
    first, length = None, 0
    for run, outcome, _ in reversed(history):
        if outcome == SKIPPED:
            continue
        if outcome != FAILED:
            break
        first, length = run, length + 1
    return (first, length) if length else None


@dataclass(frozen=True)
class Shift:
    """A change in a test's duration: the medians before and after, in seconds.

    ``at``: the position, in the durations given (None included), of the first slower run
    (None: not located, as by :func:`medianShift`); ``confidence``: ``1 - p-value`` of the
    change found (None for the median comparison).
    """

    before: float
    after: float
    runs: int  # durations compared
    at: int | None = None
    confidence: float | None = None

    @property
    def ratio(self):
        """``after / before - 1`` (``+0.5``: 50 % slower); infinite from 0."""
        return self.after / self.before - 1.0 if self.before > 0 else float('inf')


def median(values):
    """The median of a non-empty sequence (the mean of the two middle values for an even
    count), as :func:`statistics.median` says it, for many short lists at once."""
    ordered = sorted(values)
    n = len(ordered)
    mid = n // 2
    return ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def medianShift(durations, min_ratio=MIN_SLOWDOWN_RATIO, min_seconds=MIN_SLOWDOWN_SECONDS):
    """A :class:`Shift` when the median of the newer half of ``durations`` (seconds, in time
    order) is higher than that of the older half by ``min_ratio`` and ``min_seconds``, else
    None (also with fewer than :data:`MIN_DURATIONS` values)."""
    values = [d for d in durations if d is not None]
    if len(values) < MIN_DURATIONS:
        return None
    half = len(values) // 2
    before = median(values[:len(values) - half])
    after = median(values[len(values) - half:])
    if after - before < min_seconds or after < before * (1.0 + min_ratio):
        return None
    return Shift(float(before), float(after), len(values))


def changeShift(durations, min_ratio=MIN_SLOWDOWN_RATIO, min_seconds=MIN_SLOWDOWN_SECONDS):
    """A :class:`Shift` when the latest change point of ``durations`` (seconds in time
    order, None where the test has none), found by :func:`detector`, is a rise of at least
    ``min_ratio`` and ``min_seconds``: ``at`` is the position of the first slower run,
    ``before`` and ``after`` the medians each side, ``confidence`` the change's. Else None
    (also with fewer than ``2 x MIN_RUN`` durations, or when the latest change is a fall: a
    test made fast again is not getting slower). Needs Apache Otava
    (:func:`~buildbot_stats.analysis.changepoints.available`)."""
    positions = [i for i, d in enumerate(durations) if d is not None]
    values = [float(durations[i]) for i in positions]
    if len(values) < 2 * MIN_RUN:
        return None
    head, tail = median(values[:MIN_RUN]), median(values[-MIN_RUN:])
    if tail - head < min_seconds * SCREEN or tail < head * (1.0 + min_ratio * SCREEN):
        return None
    changepoints = _changepoints()
    if not changepoints.available():
        # found on the path but not importable (a broken install): the median comparison
        return medianShift(durations, min_ratio, min_seconds)
    found = changepoints.findChanges(values, detector())
    if not found:
        return None
    last = found[-1]
    if (last.direction != 'up' or last.after - last.before < min_seconds
            or last.after < last.before * (1.0 + min_ratio)):
        return None
    return Shift(float(last.before), float(last.after), len(values), positions[last.index],
                 float(last.confidence))


def slowdownDetection():
    """``(detect, method)``: :func:`changeShift` and :data:`CHANGE_POINTS` when Apache
    Otava is installed, else :func:`medianShift` and :data:`MEDIAN`."""
    if changeDetectionInstalled():
        return changeShift, CHANGE_POINTS
    return medianShift, MEDIAN


def slowdownWords(method):
    """``(sentence, command)``: how the page and the command say how the tests getting
    slower were found (``method``: :data:`CHANGE_POINTS` or :data:`MEDIAN`); ``command``
    is what to install for change detection, None when it ran."""
    if method == CHANGE_POINTS:
        return (f"Found by change detection (Apache Otava) over each builder's latest builds: "
                f"a persistent, significant rise of at least {MIN_SLOWDOWN_RATIO:.0%} and "
                f"{MIN_SLOWDOWN_SECONDS * 1000:.0f} ms, since the first slower build.", None)
    return (f"Found by comparing medians (the newer half of each builder's latest builds "
            f"{MIN_SLOWDOWN_RATIO:.0%} and {MIN_SLOWDOWN_SECONDS * 1000:.0f} ms slower than "
            f"the older half), which cannot say since which build: change detection needs "
            f"the {_changepoints().PACKAGE} package:", _changepoints().INSTALL)


def slowingTests(durations_by_test, detect=None):
    """``{test: Shift}`` of the tests whose durations (seconds in time order, None where a
    run has none, by test key) got slower according to ``detect(durations)`` (a
    :class:`Shift` or None; default: :func:`slowdownDetection`'s)."""
    if detect is None:
        detect = slowdownDetection()[0]
    out = {}
    for test, durations in durations_by_test.items():
        shift = detect(durations)
        if shift is not None:
            out[test] = shift
    return out


def durationSummary(durations):
    """``{'runs', 'median', 'max', 'last'}`` of a test's durations (seconds, in time
    order; None left out), or None without any."""
    values = [d for d in durations if d is not None]
    if not values:
        return None
    return {'runs': len(values), 'median': float(median(values)),
            'max': float(max(values)), 'last': float(values[-1])}
