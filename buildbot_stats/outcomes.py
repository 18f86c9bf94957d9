"""Test outcomes: the four outcomes of one test in one build, how Buildbot's test result
sets read as outcomes, and how several results of one test in one build become one.

Buildbot keeps test results as result sets (a category, a value unit) holding results (a
test name and/or code path, a value string, a duration in nanoseconds). Whoever submitted
them (:class:`~buildbot_stats.steps.junit.JUnitResults`, a custom step, a reporter), this
module reads them the same way:

=====================  ==================================================================
category               each result is
=====================  ==================================================================
``pass_fail``          passed when ``int(value)`` is non-zero, failed when it is 0
``pass_only``          passed
``fail_only``          failed
``skip_only``          skipped (buildbot_stats' convention, also read by
                       :class:`~buildbot_stats.captures.CaptureTestResults`)
``rerun_fail``         one failed attempt of a test that was run again (buildbot_stats'
                       convention): the test's final result is in another set; a final pass
                       with failed attempts is *flaky*
anything else          not a test outcome (``code_issue`` lint findings, ``performance``,
                       ``binary_size``, ``memory_use`` values): left out
=====================  ==================================================================

One test (one name) has one outcome per build (:func:`mergeResults`): a test that failed
and then passed in the same build (a rerun: pytest-rerunfailures writes it as a repeated
``<testcase>``, Maven Surefire as ``<flakyFailure>``) is :data:`FLAKY`; one whose last
result failed is :data:`FAILED`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: The InfluxDB measurements CaptureTestHistory's results become (written by
#: :mod:`buildbot_stats.storage.influxdb.testlines`): one point per test per build, and one
#: per build. Here, below every room that names them (the readers, kinds.py: never a custom
#: series), without bringing Buildbot along.
TEST_CASES = 'test_cases'
TEST_RUNS = 'test_runs'
TEST_MEASUREMENTS = (TEST_CASES, TEST_RUNS)

PASSED = 0
FAILED = 1
SKIPPED = 2
FLAKY = 3
#: The name of each outcome code (``OUTCOMES[FAILED] == 'failed'``).
OUTCOMES = ('passed', 'failed', 'skipped', 'flaky')
#: The outcomes that hold a failure: a failed test, and a flaky one (a failure hidden by a
#: rerun that passed).
FAILURES = (FAILED, FLAKY)

SKIP_CATEGORY = 'skip_only'
RERUN_CATEGORY = 'rerun_fail'
#: Categories whose counts are not tests (lint findings): left out of the test counts.
NOT_TESTS = frozenset({'code_issue'})
_FINAL = {'pass_only': PASSED, 'fail_only': FAILED, SKIP_CATEGORY: SKIPPED}


@dataclass(frozen=True)
class TestRun:
    """The build a set of test outcomes belongs to: what the history keeps of it.

    ``time``: the build's end, seconds since the epoch; ``revision``: its ``got_revision``
    property (or the first sourcestamp's revision), None when unknown; ``buildset``: the
    buildset id (the builds one change or one force started together)."""

    __test__ = False  # not a test case, whatever pytest thinks of the name

    builder: str
    build_number: int
    buildid: int | None
    time: float
    revision: str | None = None
    buildset: int | None = None
    branch: str | None = None


def resultOutcome(category, value):
    """The outcome of one result of a set of ``category``: a code, ``'rerun'`` for a failed
    attempt (:data:`RERUN_CATEGORY`), or None when the set holds no test outcomes."""
    if category == 'pass_fail':
        try:
            return PASSED if int(value) else FAILED
        except (TypeError, ValueError):
            try:
                return PASSED if float(value) else FAILED
            except (TypeError, ValueError):
                return None
    if category == RERUN_CATEGORY:
        return 'rerun'
    return _FINAL.get(category)


def durationSeconds(duration_ns):
    """Seconds (float) of a result's ``duration_ns``; None when unknown or absurd."""
    if duration_ns is None or isinstance(duration_ns, bool):
        return None
    try:
        seconds = duration_ns / 1e9
    except TypeError:
        return None
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


def mergeResults(results):
    """One ``(name, outcome, duration seconds or None)`` per test, sorted by name, of the
    results of one build.

    ``results``: ``(category, name, value, duration_ns)`` in the order they were recorded
    (sets by id, results by id); ``name`` is the test name, else its code path (a result
    with neither is left out). The outcome of a test with several results: the last final
    one, except that a final pass after a failure, or with failed attempts in a
    ``rerun_fail`` set, is :data:`FLAKY`; skips count only when nothing else ran. The
    duration is that of the result that decided.
    """
    # per name, in flat dicts of plain values (no container per test: 10,000 small lists
    # would be promoted by the garbage collector and bring on a full collection of the
    # master's heap): the outcome of the last run (None: only skipped so far), its duration,
    # whether it failed before, whether it had a final result at all
    last, durations, failed_before, final = {}, {}, set(), set()
    for category, name, value, duration_ns in results:
        if not name:
            continue
        outcome = resultOutcome(category, value)
        if outcome is None:
            continue
        if outcome == 'rerun':
            failed_before.add(name)
            continue
        final.add(name)
        previous = last.get(name)
        if outcome == SKIPPED:
            if previous is None:
                last[name] = None
                durations[name] = durationSeconds(duration_ns)
            continue
        if previous == FAILED:
            failed_before.add(name)
        last[name] = outcome
        durations[name] = durationSeconds(duration_ns)
    out = []
    for name in sorted(final):
        outcome = last[name]
        if outcome is None:
            outcome = SKIPPED
        elif outcome == PASSED and name in failed_before:
            outcome = FLAKY
        out.append((name, outcome, durations[name]))
    return out


def countOutcomes(cases):
    """``[passed, failed, skipped, flaky]`` of ``(name, outcome, duration)`` cases."""
    counts = [0, 0, 0, 0]
    for _, outcome, _ in cases:
        counts[outcome] += 1
    return counts


def summaryText(passed, failed, skipped, flaky):
    """``'512 passed, 3 failed, 2 skipped (1 flaky)'``: flaky tests are counted among the
    passed; parts that are 0 are left out (``'no tests'`` when all are)."""
    parts = [f"{n} {word}" for n, word in ((passed, 'passed'), (failed, 'failed'),
                                          (skipped, 'skipped')) if n]
    text = ", ".join(parts) or "no tests"
    if flaky:
        text += f" ({flaky} flaky)"
    return text
