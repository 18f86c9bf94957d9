"""How results become outcomes (buildbot_stats.outcomes) and what the analyses find in one
test's history (buildbot_stats.analysis.tests), on generated histories with known answers."""

from __future__ import annotations

import random
import subprocess
import sys

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial import unittest

from buildbot_stats.analysis import tests as analysis
from buildbot_stats.outcomes import FAILED
from buildbot_stats.outcomes import FLAKY
from buildbot_stats.outcomes import PASSED
from buildbot_stats.outcomes import SKIPPED
from buildbot_stats.outcomes import TestRun
from buildbot_stats.outcomes import countOutcomes
from buildbot_stats.outcomes import mergeResults
from buildbot_stats.outcomes import resultOutcome
from buildbot_stats.outcomes import summaryText


def runs(n, revision=lambda i: f"r{i}", buildset=lambda i: i):
    return [TestRun('b', i, i, 1000.0 + i, revision(i), buildset(i)) for i in range(n)]


def history(outcomes, **kwargs):
    return [(run, o, None) for run, o in zip(runs(len(outcomes), **kwargs), outcomes)]


class Outcomes(unittest.TestCase):

    def test_categories(self):
        self.assertEqual([resultOutcome('pass_fail', v) for v in ('1', '0', '2', '0.0', 'x')],
                         [PASSED, FAILED, PASSED, FAILED, None])
        self.assertEqual(resultOutcome('pass_only', 'x'), PASSED)
        self.assertEqual(resultOutcome('fail_only', 'x'), FAILED)
        self.assertEqual(resultOutcome('skip_only', '1'), SKIPPED)
        self.assertEqual(resultOutcome('rerun_fail', '0'), 'rerun')
        for other in ('code_issue', 'performance', 'binary_size', 'memory_use'):
            self.assertIsNone(resultOutcome(other, '12'))

    def test_merge(self):
        cases = mergeResults([
            ('pass_fail', 'ok', '1', 1_500_000_000),
            ('pass_fail', 'rerun', '0', 1_000_000),  # failed, then passed again
            ('pass_fail', 'rerun', '1', 2_000_000),
            ('pass_fail', 'two-fails', '0', None),
            ('pass_fail', 'two-fails', '0', 3_000_000),
            ('pass_fail', 'pass-then-fail', '1', None),
            ('pass_fail', 'pass-then-fail', '0', None),
            ('skip_only', 'skipped', '1', 0),
            ('skip_only', 'ran-elsewhere', '1', None),
            ('pass_only', 'ran-elsewhere', '1', 5_000_000),
            ('pass_fail', 'surefire', '1', 7_000_000),
            ('rerun_fail', 'surefire', '0', None),
            ('rerun_fail', 'attempts-only', '0', None),
            ('performance', 'perf', '12.5', None),
            ('pass_fail', None, '1', None),
            ('fail_only', 'lint-like', 'x', -5),
        ])
        self.assertEqual(cases, [
            ('lint-like', FAILED, None),
            ('ok', PASSED, 1.5),
            ('pass-then-fail', FAILED, None),
            ('ran-elsewhere', PASSED, 0.005),
            ('rerun', FLAKY, 0.002),
            ('skipped', SKIPPED, 0.0),
            ('surefire', FLAKY, 0.007),
            ('two-fails', FAILED, 0.003),
        ])
        self.assertEqual(countOutcomes(cases), [2, 3, 1, 2])

    def test_summary(self):
        self.assertEqual(summaryText(512, 3, 2, 1), "512 passed, 3 failed, 2 skipped (1 flaky)")
        self.assertEqual(summaryText(3, 0, 0, 0), "3 passed")
        self.assertEqual(summaryText(0, 0, 0, 0), "no tests")


class Flaky(unittest.TestCase):

    def test_flips(self):
        self.assertEqual(analysis.flips([PASSED, FAILED, SKIPPED, PASSED, FLAKY, FAILED]),
                         (3, 4))
        self.assertEqual(analysis.flips([SKIPPED]), (0, 0))

    def test_alternating_is_flaky(self):
        found = analysis.flakiness(history([FAILED, PASSED] * 3))
        self.assertTrue(found.flaky)
        self.assertEqual((found.flips, found.flip_rate, found.failures), (5, 1.0, 3))
        self.assertEqual(found.reasons(), ["5 flips"])

    def test_broken_then_fixed_is_not(self):
        found = analysis.flakiness(history([PASSED] * 10 + [FAILED] * 5 + [PASSED] * 10))
        self.assertFalse(found.flaky)
        self.assertEqual(found.flips, 2)
        self.assertEqual(found.last_failure.build_number, 14)

    def test_same_revision_and_buildset(self):
        # builds 2 and 3 tested revision r1; 4 and 5 were one buildset
        found = analysis.flakiness(history(
            [PASSED, PASSED, FAILED, PASSED, FAILED, PASSED],
            revision=lambda i: 'r1' if i in (2, 3) else f"r{i}",
            buildset=lambda i: 45 if i in (4, 5) else i))
        self.assertEqual((found.same_revision, found.same_buildset), (1, 1))
        self.assertTrue(found.flaky)
        self.assertEqual(found.reasons(), ["failed and passed on 1 revision",
                                           "failed and passed in 1 buildset", "4 flips"])

    def test_unknown_revision_is_no_conflict(self):
        found = analysis.flakiness(history([FAILED, PASSED], revision=lambda i: None,
                                           buildset=lambda i: None))
        self.assertEqual((found.same_revision, found.same_buildset, found.flaky),
                         (0, 0, False))

    def test_hidden_by_a_rerun(self):
        found = analysis.flakiness(history([PASSED, FLAKY, PASSED]))
        self.assertEqual((found.hidden, found.failures, found.flaky), (1, 1, True))
        self.assertEqual(found.reasons()[0], "1 hidden by a rerun")

    def test_flips_only_over_the_recent_runs(self):
        h = history([FAILED, PASSED] * 5 + [PASSED] * 40)
        self.assertFalse(analysis.flakiness(h).flaky)  # the last 30: no flip
        recent = {run for run, _, _ in h[:10]}
        self.assertTrue(analysis.flakiness(h, recent=recent).flaky)

    @given(st.lists(st.sampled_from([PASSED, FAILED, SKIPPED, FLAKY]), max_size=60))
    def test_flips_never_exceed_transitions(self, outcomes):
        found = analysis.flakiness(history(outcomes, revision=lambda i: None,
                                           buildset=lambda i: None))
        self.assertLessEqual(found.flips, max(len(outcomes) - 1, 0))
        self.assertTrue(0.0 <= found.flip_rate <= 1.0)
        self.assertEqual(found.failures, sum(1 for o in outcomes if o in (FAILED, FLAKY)))

    def test_failing_streak(self):
        h = history([PASSED, FAILED, PASSED, FAILED, SKIPPED, FAILED])
        first, length = analysis.failingStreak(h)
        self.assertEqual((first.build_number, length), (3, 2))
        self.assertIsNone(analysis.failingStreak(history([FAILED, PASSED])))


class Slower(unittest.TestCase):

    def test_step_up_found(self):
        rng = random.Random(4)
        values = [1.0 * rng.lognormvariate(0, 0.05) for _ in range(10)] + \
                 [1.5 * rng.lognormvariate(0, 0.05) for _ in range(10)]
        shift = analysis.medianShift(values)
        self.assertLess(abs(shift.before - 1.0), 0.08)
        self.assertLess(abs(shift.after - 1.5), 0.12)
        self.assertLess(abs(shift.ratio - 0.5), 0.15)

    def test_noise_and_tiny_tests_not_reported(self):
        rng = random.Random(5)
        steady = [rng.lognormvariate(0, 0.08) for _ in range(40)]
        self.assertIsNone(analysis.medianShift(steady))
        # +100 % of 1 ms is noise to a user
        self.assertIsNone(analysis.medianShift([0.001] * 5 + [0.002] * 5))
        self.assertIsNone(analysis.medianShift([1.0, 5.0, None]))
        self.assertIsNone(analysis.medianShift([2.0, 2.0, 1.0, 1.0]))  # faster

    def test_growing_sleep_of_the_real_master_test(self):
        shift = analysis.medianShift([0.15 * n for n in range(1, 6)])
        self.assertEqual((shift.before, shift.after), (0.3, 0.675))

    def test_slowing_tests_takes_any_detector(self):
        found = analysis.slowingTests({'a': [1, 1, 2, 2], 'b': [1, 1, 1, 1]},
                                      detect=analysis.medianShift)
        self.assertEqual(list(found), ['a'])
        # by default change detection, which needs 5 durations each side of a change
        self.assertEqual(analysis.slowingTests({'a': [1, 1, 2, 2]}), {})
        self.assertEqual(list(analysis.slowingTests({'a': [1] * 5 + [2] * 5})), ['a'])
        always = analysis.slowingTests({'a': [1], 'b': [2]},
                                       detect=lambda values: analysis.Shift(0.0, 1.0, 1))
        self.assertEqual(sorted(always), ['a', 'b'])
        self.assertEqual(always['a'].ratio, float('inf'))

    def test_duration_summary(self):
        self.assertEqual(analysis.durationSummary([None, 3.0, 1.0, 2.0]),
                         {'runs': 3, 'median': 2.0, 'max': 3.0, 'last': 2.0})
        self.assertIsNone(analysis.durationSummary([None]))


def noisy(rng, level, n, sigma=0.05):
    return [level * rng.lognormvariate(0, sigma) for _ in range(n)]


class SlowerByChangeDetection(unittest.TestCase):
    """analysis.tests.changeShift: issue 20's change detection on a test's durations."""

    def test_a_step_is_found_at_its_build(self):
        # 1.0 s for 12 builds, then 1.5 s from the 13th (position 12) on
        for seed in range(20):
            rng = random.Random(seed)
            values = noisy(rng, 1.0, 12) + noisy(rng, 1.5, 8)
            shift = analysis.changeShift(values)
            self.assertEqual(shift.at, 12, seed)
            self.assertLess(abs(shift.before - 1.0), 0.05)
            self.assertLess(abs(shift.after - 1.5), 0.075)
            self.assertLess(abs(shift.ratio - 0.5), 0.15)
            self.assertEqual(shift.runs, 20)
            self.assertGreater(shift.confidence, 0.9999)

    def test_positions_count_the_runs_without_a_duration(self):
        values = [1.0] * 6 + [None] * 3 + [1.0] * 3 + [1.5] * 6
        shift = analysis.changeShift(values)
        self.assertEqual((shift.at, shift.before, shift.after, shift.runs), (12, 1.0, 1.5, 15))

    def test_noisy_steady_tests_are_not_slowing(self):
        # 8 % noise (more than the step test's) and an outlier up to 3x now and then: 500
        # tests of 20 builds, none slowing (about 1 in 25 passes the cheap screen and goes
        # to change detection, which finds nothing)
        rng = random.Random(7)
        found = 0
        for _ in range(500):
            values = noisy(rng, 0.5 + rng.random() * 5, 20, sigma=0.08)
            if rng.random() < 0.2:
                values[rng.randrange(20)] *= rng.uniform(1, 3)
            found += analysis.changeShift(values) is not None
        self.assertEqual(found, 0)

    def test_what_is_not_getting_slower(self):
        rng = random.Random(3)
        # faster; slower then fixed (the latest change is a fall)
        self.assertIsNone(analysis.changeShift(noisy(rng, 1.5, 10) + noisy(rng, 1.0, 10)))
        self.assertIsNone(analysis.changeShift(
            noisy(rng, 1.0, 6) + noisy(rng, 1.5, 7) + noisy(rng, 1.0, 7)))
        # too few durations after the change (5 needed), or in all
        self.assertIsNone(analysis.changeShift([1.0] * 16 + [1.5] * 4))
        self.assertIsNone(analysis.changeShift([1.0] * 4 + [1.5] * 5))
        # +100 % of 10 ms, +10 % of 1 s: under 50 ms, under 20 %
        self.assertIsNone(analysis.changeShift([0.01] * 10 + [0.02] * 10))
        self.assertIsNone(analysis.changeShift([1.0] * 10 + [1.1] * 10))
        self.assertIsNotNone(analysis.changeShift([1.0] * 10 + [1.25] * 10))

    def test_steady_tests_never_import_scipy(self):
        # Otava brings SciPy (about 1 s of CPU): a page or report whose tests pass no screen
        # must not pay it; a test that moved does
        script = (
            "import sys\n"
            "from buildbot_stats.analysis import tests as t\n"
            "assert t.slowdownDetection()[1] == t.CHANGE_POINTS\n"
            "assert t.slowingTests({'a': [1.0] * 20, 'b': [0.5, 0.6] * 9 + [0.5, 0.5]}) == {}\n"
            "print('scipy' in sys.modules)\n"
            "found = t.slowingTests({'a': [1.0] * 10 + [1.5] * 10})\n"
            "print('scipy' in sys.modules, found['a'].at)\n")
        out = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                             check=True).stdout.split('\n')
        self.assertEqual(out[:2], ['False', 'True 10'])

    def test_without_otava_the_median_comparison_says_so(self):
        from buildbot_stats.analysis import changepoints

        self.assertEqual(analysis.slowdownDetection(),
                         (analysis.changeShift, analysis.CHANGE_POINTS))
        sentence, install = analysis.slowdownWords(analysis.CHANGE_POINTS)
        self.assertIsNone(install)
        self.assertIn("change detection (Apache Otava)", sentence)
        self.patch(changepoints, 'TTestSignificanceTester', None)
        self.assertEqual(analysis.slowdownDetection(), (analysis.medianShift, analysis.MEDIAN))
        found = analysis.slowingTests({'t': [1.0] * 5 + [1.5] * 5})
        self.assertEqual((found['t'].before, found['t'].after, found['t'].at), (1.0, 1.5, None))
        sentence, install = analysis.slowdownWords(analysis.MEDIAN)
        self.assertEqual(install, "pip install 'buildbot_stats[regressions]'")
        self.assertIn("comparing medians", sentence)
        self.assertIn("apache-otava", sentence)
