"""How one build's test results become InfluxDB points (``CaptureTestHistory``).

Two measurements, neither making a series per test or per build (the test name and the
build number are fields, never tags: 100,000 test names must not become 100,000 series):

``test_cases``
    one point per test per build. Tags: ``builder_name``, ``outcome`` (``passed``,
    ``failed``, ``skipped``, ``flaky``) and the extra tags. Fields: ``test`` (the name),
    ``build_number``, ``duration`` (seconds; left out when unknown). Time: the build's time
    (below) plus the test's rank (by name) in nanoseconds, so that the points of one build
    are distinct, and the same each time the build is written again (a backfill replaces
    them).

``test_runs``
    one point per build with test results. Tags: ``builder_name`` and the extra tags.
    Fields: ``build_number``, ``buildid``, ``buildset``, ``revision``, ``branch``
    (those known), ``passed``, ``failed``, ``skipped``, ``flaky``, ``tests``. Time: the
    build's time. Written after the build's ``test_cases``: a reader that sees a run sees
    its results.

The build's time is its end moved by the build-number spread of
:mod:`buildbot_stats.timestamps` ((number mod 1000) ms): Buildbot's times are whole
seconds, and two builds of one builder ending in the same second would otherwise write
the same series at the same times, the second build's points replacing the first's.
:func:`buildEnd` takes the spread off again when reading.

Read back by :class:`~buildbot_stats.reading.influxdb.InfluxReader`.
"""

from __future__ import annotations

from buildbot_stats.outcomes import TEST_CASES
from buildbot_stats.outcomes import TEST_RUNS
from buildbot_stats.outcomes import OUTCOMES
from buildbot_stats.outcomes import countOutcomes
from buildbot_stats.point import to_epoch_ns
from buildbot_stats.timestamps import buildSpread

#: The points of one build span at most this many nanoseconds after its end (a build of
#: more tests than this would run into the next microsecond: still distinct points).
SPAN_NS = 1_000_000


def spreadMs(build_number):
    """The milliseconds a build's points are moved by (:func:`buildSpread`)."""
    return round(buildSpread(build_number) * 1000)


def buildEnd(time_ms, build_number):
    """The build's end (epoch milliseconds) from the time of its ``test_runs`` point: the
    spread taken off when the point has it (points written before the spread have the
    whole second of Buildbot's time, and keep it)."""
    spread = spreadMs(build_number)
    if spread and round(time_ms) % 1000 == spread:
        return time_ms - spread
    return time_ms


def testPoints(run, cases, tags):
    """``(series, fields, tags, timestamp_ns)`` of every point of one build, in the order
    they are written: the ``test_cases`` then the ``test_runs`` point. ``tags``: the extra
    tags (with ``builder_name`` and ``outcome`` added)."""
    base = to_epoch_ns(run.time) + spreadMs(run.build_number) * 1_000_000
    by_outcome = [dict(tags, builder_name=run.builder, outcome=name) for name in OUTCOMES]
    for rank, (name, outcome, duration) in enumerate(cases):
        fields = {'test': name, 'build_number': run.build_number}
        if duration is not None:
            fields['duration'] = float(duration)
        yield TEST_CASES, fields, by_outcome[outcome], base + rank
    passed, failed, skipped, flaky = countOutcomes(cases)
    fields = {'build_number': run.build_number, 'buildid': run.buildid,
              'buildset': run.buildset, 'revision': run.revision, 'branch': run.branch,
              'passed': passed, 'failed': failed, 'skipped': skipped, 'flaky': flaky,
              'tests': len(cases)}
    fields = {k: v for k, v in fields.items() if v is not None}
    yield TEST_RUNS, fields, dict(tags, builder_name=run.builder), base
