"""The per-test answers (flaky, failing, newly failing, slowest and slower tests, one test's
history), the same for every reader.

:class:`TestQueries` is mixed into both readers (:class:`~buildbot_stats.reading.sqlite.
StoreReader`, :class:`~buildbot_stats.reading.influxdb.InfluxReader`): each reader
implements five small reads (the primitives below) and gets the same answer methods, with
the same names and shapes, computed by :mod:`buildbot_stats.analysis.tests`.

What is read, so that a store of 10,000 tests x 1,000 builds answers in well under a
second: the builds with test results in the range (:meth:`testRuns`), the failures
(an index of the failed results only), the outcomes of the tests that failed over the
builds that matter to them (the latest :data:`~buildbot_stats.analysis.tests.FLIP_WINDOW`
of their builder, the other builds of the revisions and buildsets they failed on, all of
them for a test failing now), and the durations of every test over the latest
:data:`SLOW_WINDOW` builds of each builder (the slowest and slower tests).

Primitives (``run keys`` and ``test keys`` are the reader's own: row ids, names):

- ``testRuns(builder, start, end)``: the :class:`Run` of every build with test results
- ``_failuresOf(runs)``: ``[(run key, test key, outcome)]`` of the failed and flaky results
- ``_outcomesAt(wanted)``: ``{test key: {run key: (outcome, duration)}}`` of ``wanted``,
  ``{test key: [runs]}``
- ``_durationsOf(runs)``: ``{test key: [duration, ...]}`` of every test, one per run of
  ``runs`` in their order (None where the test has no duration in that run)
- ``_testNames(test_keys)``: ``{test key: name}``; ``_testKeys(names)``: the reverse
"""

from __future__ import annotations

import collections
from typing import NamedTuple

from buildbot_stats.analysis.tests import FLIP_WINDOW
from buildbot_stats.analysis.tests import durationSummary
from buildbot_stats.analysis.tests import failingStreak
from buildbot_stats.analysis.tests import flakiness
from buildbot_stats.analysis.tests import slowdownDetection
from buildbot_stats.analysis.tests import slowingTests
from buildbot_stats.outcomes import FAILED
from buildbot_stats.outcomes import FLAKY
from buildbot_stats.outcomes import OUTCOMES
from buildbot_stats.outcomes import PASSED

#: Rows of each table.
TABLE_ROWS = 20
#: The latest builds of each builder whose durations make the slowest and slower tests.
SLOW_WINDOW = 20
#: The answers of :meth:`TestQueries.testAnswers`, each a list of rows.
TABLES = ('flaky', 'failing', 'new_failures', 'slowest', 'slowing')


class Run(NamedTuple):
    """One build with test results, as the readers give it."""

    key: object  # the reader's own key (a row id, a (builder, number) pair)
    builder: str
    number: int
    buildid: int | None
    time: float  # the build's end, seconds since the epoch
    revision: str | None
    buildset: int | None
    counts: tuple  # (passed, failed, skipped, flaky)


def _build(run):
    return {'number': run.number, 'buildid': run.buildid, 'time': run.time,
            'revision': run.revision}


def byBuilder(runs):
    """``{builder: [Run in time order]}``."""
    out = collections.defaultdict(list)
    for run in runs:
        out[run.builder].append(run)
    return dict(out)


def sameRevisionOrBuildset(runs):
    """``{run key: [the other runs of its revision or buildset]}``, for the runs that share
    one with another run."""
    out = collections.defaultdict(dict)
    for key in ('revision', 'buildset'):
        groups = collections.defaultdict(list)
        for run in runs:
            value = getattr(run, key)
            if value is not None and value != '':
                groups[value].append(run)
        for group in groups.values():
            if len(group) > 1:
                for run in group:
                    for other in group:
                        if other is not run:
                            out[run.key][other.key] = other
    return {k: list(v.values()) for k, v in out.items()}


class TestQueries:
    """The per-test answers of a reader (mixed in; see the module doc)."""

    __test__ = False  # not a test case, whatever pytest thinks of the name

    def testAnswers(self, builder=None, start=None, end=None, limit=TABLE_ROWS):
        """Every table of the page's test panel, read once: ``{'builds': number of builds
        with test results, 'builders': their builders, 'tests': tests in the latest build,
        'flaky', 'failing', 'new_failures', 'slowest', 'slowing'}`` (each a list of dicts,
        see the methods of the same names) and ``'slowing_method'``: how the tests getting
        slower were found (``'changepoints'``, or ``'median'`` without Apache Otava)."""
        runs = self.testRuns(builder, start, end)
        answers = {'builds': len(runs), 'builders': sorted({r.builder for r in runs})}
        answers.update(self._failureTables(runs, limit))
        answers.update(self._durationTables(runs, limit))
        answers['tests'] = max((sum(r.counts) for r in runs[-1:]), default=0)
        return answers

    def flakyTests(self, builder=None, start=None, end=None, limit=TABLE_ROWS):
        """``[{'builder', 'test', 'builds', 'failures', 'hidden', 'same_revision',
        'same_buildset', 'flips', 'flip_rate', 'reasons', 'last_failure'}]``: the flaky
        tests (see :mod:`buildbot_stats.analysis.tests`), the highest flip rate first."""
        return self._failureTables(self.testRuns(builder, start, end), limit)['flaky']

    def failingTests(self, builder=None, start=None, end=None, limit=TABLE_ROWS):
        """``[{'builder', 'test', 'failures', 'builds', 'rate', 'last_failure',
        'first_failure'}]``: the tests that failed in the most builds (flaky runs count)."""
        return self._failureTables(self.testRuns(builder, start, end), limit)['failing']

    def newFailures(self, builder=None, start=None, end=None, limit=TABLE_ROWS):
        """``[{'builder', 'test', 'since', 'builds', 'passed_before'}]``: the tests failing
        in their builder's latest build, with the first build of the failing streak
        (``since``), the newest streaks first."""
        return self._failureTables(self.testRuns(builder, start, end), limit)['new_failures']

    def slowestTests(self, builder=None, start=None, end=None, limit=TABLE_ROWS):
        """``[{'builder', 'test', 'median', 'max', 'last', 'runs'}]``: the highest median
        duration over each builder's latest :data:`SLOW_WINDOW` builds (seconds)."""
        return self._durationTables(self.testRuns(builder, start, end), limit)['slowest']

    def slowingTests(self, builder=None, start=None, end=None, limit=TABLE_ROWS):
        """``[{'builder', 'test', 'before', 'after', 'ratio', 'runs', 'since',
        'confidence'}]``: the tests whose duration rose over those builds, the largest rise
        in seconds first: found by change detection
        (:func:`~buildbot_stats.analysis.tests.changeShift`: ``since`` is the first slower
        build, ``confidence`` the change's), or without Apache Otava by the median
        comparison (:func:`~buildbot_stats.analysis.tests.medianShift`: both None)."""
        return self._durationTables(self.testRuns(builder, start, end), limit)['slowing']

    def testHistory(self, builder, test, start=None, end=None):
        """``[{'number', 'buildid', 'time', 'revision', 'outcome', 'duration'}]``: one
        test's result in every build of ``builder`` with test results in the range, in time
        order (``outcome`` None where the test did not run)."""
        runs = self.testRuns(builder, start, end)
        keys = self._testKeys([test])
        if not runs or test not in keys:
            return []
        key = keys[test]
        outcomes = self._outcomesAt({key: runs}).get(key, {})
        if not outcomes:
            return []
        out = []
        for run in runs:
            outcome, duration = outcomes.get(run.key, (None, None))
            out.append(dict(_build(run), outcome=None if outcome is None else OUTCOMES[outcome],
                            duration=duration))
        return out

    # -- the tables --------------------------------------------------------------------------

    def _failureTables(self, runs, limit):
        """The flaky, failing and newly failing tests of ``runs``."""
        builders = byBuilder(runs)
        run_of = {r.key: r for r in runs}
        failed = collections.defaultdict(list)  # (builder, test key) -> [(run, outcome)]
        for run_key, test, outcome in self._failuresOf(runs):
            run = run_of.get(run_key)
            if run is not None:
                failed[(run.builder, test)].append((run, outcome))
        # which builds each failing test's outcomes are read over: its builder's latest
        # ones (the flips), the other builds of the revisions and buildsets it failed on
        # (the disagreements), every one for a test failing now (its streak)
        recent, siblings, failing_now = {}, {}, set()
        for name, rs in builders.items():
            recent[name] = rs[-FLIP_WINDOW:]
            siblings[name] = sameRevisionOrBuildset(rs)
        latest = {name: rs[-1].key for name, rs in builders.items()}
        wanted = {}
        for (b, test), fails in failed.items():
            if any(run.key == latest[b] and outcome == FAILED for run, outcome in fails):
                failing_now.add((b, test))
                wanted[(b, test)] = builders[b]
                continue
            over = {r.key: r for r in recent[b]}
            for run, _ in fails:
                for other in siblings[b].get(run.key, ()):
                    over[other.key] = other
            wanted[(b, test)] = list(over.values())
        histories = {}
        for b in builders:
            keys = {t: rs for (bb, t), rs in wanted.items() if bb == b}
            if not keys:
                continue
            read = self._outcomesAt(keys)
            for t in keys:
                got = dict(read.get(t, {}))
                for run, outcome in failed[(b, t)]:
                    got.setdefault(run.key, (outcome, None))
                histories[(b, t)] = sorted(
                    ((run_of[k], o, d) for k, (o, d) in got.items() if k in run_of),
                    key=lambda h: (h[0].time, h[0].number))
        flaky, failing, new = [], [], []
        for (b, test), history in histories.items():
            count = len(builders[b])
            fails = failed[(b, test)]
            found = flakiness(history, recent=set(recent[b]))
            first = min((run for run, _ in fails), key=lambda r: (r.time, r.number))
            if found.flaky:
                flaky.append({
                    'builder': b, 'test': test, 'builds': count, 'failures': len(fails),
                    'hidden': found.hidden, 'same_revision': found.same_revision,
                    'same_buildset': found.same_buildset, 'flips': found.flips,
                    'flip_rate': found.flip_rate, 'reasons': found.reasons(),
                    'last_failure': _build(found.last_failure)})
            failing.append({
                'builder': b, 'test': test, 'failures': len(fails), 'builds': count,
                'rate': len(fails) / count if count else 0.0,
                'last_failure': _build(found.last_failure), 'first_failure': _build(first)})
            streak = failingStreak(history) if (b, test) in failing_now else None
            if streak is not None:
                since, length = streak
                passed_before = any(run.time < since.time and o in (PASSED, FLAKY)
                                    for run, o, _ in history)
                new.append({'builder': b, 'test': test, 'since': _build(since),
                            'builds': length, 'passed_before': passed_before})
        # the failing tests are few: named before they are ordered (ties by name, as in
        # every reader)
        self._named({'flaky': flaky, 'failing': failing, 'new': new})
        flaky.sort(key=lambda r: (-(r['hidden'] + r['same_revision'] + r['same_buildset']
                                    > 0), -r['flip_rate'], -r['failures'], r['builder'],
                                  r['test']))
        failing.sort(key=lambda r: (-r['failures'], -r['last_failure']['time'], r['builder'],
                                    r['test']))
        new.sort(key=lambda r: (-r['since']['time'], r['builder'], r['test']))
        return {'flaky': flaky[:limit], 'failing': failing[:limit], 'new_failures': new[:limit]}

    def _durationTables(self, runs, limit):
        """The slowest and slower tests over each builder's latest builds, and how the
        slower ones were found."""
        detect, method = slowdownDetection()
        slowest, slowing = [], []
        for b, rs in byBuilder(runs).items():
            window = rs[-SLOW_WINDOW:]
            durations = self._durationsOf(window)
            for test, values in durations.items():
                st = durationSummary(values)
                if st is not None:
                    slowest.append(dict(st, builder=b, test=test))
            for test, shift in slowingTests(durations, detect).items():
                slowing.append({'builder': b, 'test': test, 'before': shift.before,
                                'after': shift.after, 'ratio': shift.ratio,
                                'runs': shift.runs, 'confidence': shift.confidence,
                                'since': None if shift.at is None else _build(window[shift.at])})
        return {'slowest': self._top(slowest, limit, lambda r: r['median']),
                'slowing': self._top(slowing, limit, lambda r: r['after'] - r['before']),
                'slowing_method': method}

    def _top(self, rows, limit, value):
        """The ``limit`` rows of highest ``value``, ties ordered by builder and test name:
        only the rows at least as high as the last one kept are named."""
        if len(rows) > limit:
            bound = sorted((value(r) for r in rows), reverse=True)[limit - 1]
            rows = [r for r in rows if value(r) >= bound]
        self._named({'rows': rows})
        rows.sort(key=lambda r: (-value(r), r['builder'], r['test']))
        return rows[:limit]

    def _named(self, tables):
        """The tables with each test key replaced by its name."""
        keys = {row['test'] for rows in tables.values() for row in rows}
        names = self._testNames(keys) if keys else {}
        for rows in tables.values():
            for row in rows:
                row['test'] = names.get(row['test'], str(row['test']))
        return tables
