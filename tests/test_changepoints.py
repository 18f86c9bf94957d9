"""Change points (buildbot_stats.analysis.changepoints): generated series with known answers,
the noise of benchmarks/regressions.py (log-normal, outliers, whole seconds)."""

from __future__ import annotations

import numpy as np

from twisted.trial import unittest
from twisted.trial.unittest import SkipTest

from benchmarks.regressions import noisy
from buildbot_stats.analysis import changepoints
from buildbot_stats.analysis.changepoints import Change
from buildbot_stats.analysis.changepoints import ChangeDetector
from buildbot_stats.analysis.changepoints import findChanges
from buildbot_stats.analysis.changepoints import reconcile


def series(seed, *levels):
    return noisy(list(levels), np.random.default_rng(seed))


class Otava(unittest.TestCase):
    def setUp(self):
        if not changepoints.available():
            raise SkipTest("needs apache-otava (pip install 'buildbot_stats[regressions]')")


class FindChanges(Otava):

    def test_a_step_is_one_change_where_it_began_with_its_size(self):
        for seed in range(5):
            values = series(seed, (100, 300.0), (100, 450.0))
            [change] = findChanges(values)
            self.assertLessEqual(abs(change.index - 100), 2, seed)
            self.assertEqual(change.direction, 'up')
            self.assertLessEqual(abs(change.ratio - 0.5), 0.08)
            self.assertLessEqual(abs(change.before - 300.0), 15)
            self.assertLessEqual(abs(change.after - 450.0), 25)
            self.assertGreater(change.confidence, 0.9999)

    def test_a_slowdown_and_its_fix_are_two_changes(self):
        values = series(1, (100, 60.0), (50, 90.0), (100, 60.0))
        changes = findChanges(values)
        self.assertEqual([c.direction for c in changes], ['up', 'down'])
        self.assertLessEqual(abs(changes[0].index - 100), 2)
        self.assertLessEqual(abs(changes[1].index - 150), 2)

    def test_noise_with_outliers_is_no_change(self):
        for seed in range(3):
            for level in (5.0, 30.0, 900.0):
                self.assertEqual(findChanges(series(seed, (1000, level))), [], (seed, level))

    def test_a_spike_is_not_a_change(self):
        values = list(series(2, (200, 100.0)))
        values[120:123] = [300.0, 290.0, 310.0]
        self.assertEqual(findChanges(values), [])

    def test_whole_seconds(self):
        # a build sleeping 1 s then 3 s, as Buildbot stores it: one change, +200 %
        rng = np.random.default_rng(4)
        values = [1.0 + (rng.random() < 0.25) for _ in range(15)] + \
                 [3.0 + (rng.random() < 0.25) for _ in range(15)]
        [change] = findChanges(values)
        self.assertEqual(change.index, 15)
        self.assertEqual((change.before, change.after, change.ratio), (1.0, 3.0, 2.0))
        # sub-second builds: 0 or 1 s, stable
        stable = [float(rng.random() < 0.7) for _ in range(60)]
        self.assertEqual(findChanges(stable), [])

    def test_the_newest_change_waits_for_min_run_builds(self):
        before = list(series(5, (60, 20.0)))
        after = [30.0, 31.0, 30.0, 29.0, 30.0]
        self.assertEqual(findChanges(before + after[:4]), [])
        [change] = findChanges(before + after)
        self.assertEqual(change.index, 60)
        [change] = ChangeDetector(min_run=3).find(before + after[:3])
        self.assertEqual(change.index, 60)

    def test_the_first_slow_build_slower_than_the_next_begins_the_change(self):
        # recorded on a loaded machine (test_regressions_master in a fresh-clone run): 1 s
        # builds, then 3 s ones, the first of them 4 s. The change begins at that build,
        # from the 5th build after it (when the master announces it) on
        values = [float(c) for c in '211211111121111433333333333334']
        for n in range(20, len(values) + 1):
            [change] = findChanges(values[:n])
            self.assertEqual((change.index, change.before, change.after), (15, 1.0, 3.0), n)
        # the same shape, generated: found, and never after the first slow build (a value
        # of 2 just before it may begin the change)
        for seed in range(20):
            rng = np.random.default_rng(seed)
            values = [1.0 + (rng.random() < 0.25) for _ in range(15)] + [4.0] + \
                     [3.0 + (rng.random() < 0.1) for _ in range(14)]
            for n in range(20, len(values) + 1):
                [change] = findChanges(values[:n])
                self.assertIn(change.index, (13, 14, 15), (seed, n))

    def test_the_last_fast_build_recorded_slower_does_not_begin_the_change(self):
        # test_regressions_master in CI: 1 s builds, the last of them recorded as 2 s, then
        # 5 s ones. With four 5 s builds, the change could only be placed (min_run) before
        # the 2 s build, and was announced there, a build early; it waits for the fifth
        for fast in ([1.0] * 9 + [2.0], [1.0] * 8 + [2.0, 2.0]):
            values = fast + [5.0] * 10
            self.assertEqual(findChanges(values[:14]), [])
            for n in range(15, len(values) + 1):
                [change] = findChanges(values[:n])
                self.assertEqual((change.index, change.before, change.after), (10, 1.0, 5.0))
        # generated: whole seconds, a build 1 s longer at times; from the first build on
        # that a change can be placed where it began, that is where it is
        for seed in range(30):
            rng = np.random.default_rng(seed)
            values = [1.0 + (rng.random() < 0.2) for _ in range(9)] + [2.0] + \
                     [5.0 + (rng.random() < 0.2) for _ in range(10)]
            for n in range(11, len(values) + 1):
                found = [c.index for c in findChanges(values[:n]) if c.direction == 'up'
                         and c.after >= 4]
                self.assertEqual(found, [10] if n >= 15 else [], (seed, n, values[:n]))

    def test_min_magnitude(self):
        rng = np.random.default_rng(6)
        values = list(100 + rng.normal(0, 0.5, 100)) + list(105 + rng.normal(0, 0.5, 100))
        self.assertEqual(findChanges(values), [])  # +5 %: significant, but below 10 %
        [change] = ChangeDetector(min_magnitude=0.02).find(values)
        self.assertEqual(change.index, 100)

    def test_the_scale_does_not_matter(self):
        values = series(7, (80, 1000.0), (80, 1300.0), (80, 1000.0))
        self.assertEqual([c.index for c in findChanges(values)],
                         [c.index for c in findChanges(values * 1000)])

    def test_the_significance_test_is_swappable(self):
        from otava.analysis import TTestSignificanceTester

        calls = []

        class Never(TTestSignificanceTester):
            def compare(self, left, right):
                calls.append((len(left), len(right)))
                stats = super().compare(left, right)
                stats.pvalue = 1.0
                return stats

        values = series(8, (100, 50.0), (100, 80.0))
        self.assertEqual(len(findChanges(values)), 1)
        self.assertEqual(ChangeDetector(tester=Never).find(values), [])
        self.assertTrue(calls)

    def test_a_count_is_no_measurement(self):
        # a build number, a time: rising at every build, no level to change
        self.assertEqual(findChanges([float(n) for n in range(1, 300)]), [])
        self.assertEqual(findChanges([1e9 - 60.0 * n for n in range(300)]), [])
        # steps of a count that often stays put (tests added now and then) are changes
        values = [500.0] * 100 + [650.0] * 100
        self.assertEqual([c.index for c in findChanges(values)], [100])

    def test_short_and_bad_sequences(self):
        self.assertEqual(findChanges([1.0] * 9), [])
        self.assertEqual(findChanges([]), [])
        with self.assertRaises(ValueError):
            findChanges([1.0, float('nan')] * 10)
        with self.assertRaises(ValueError):
            ChangeDetector(max_pvalue=2)


class Reconcile(unittest.TestCase):

    def change(self, index, direction='up'):
        before, after = (1.0, 2.0) if direction == 'up' else (2.0, 1.0)
        return Change(index=index, before=before, after=after, pvalue=1e-6)

    def test_matched_new_and_gone(self):
        found = [self.change(10), self.change(52, 'down'), self.change(90)]
        kept = [(12, 'up'), (50, 'up'), (None, 'up'), (88, 'up'), (95, 'down')]
        result = reconcile(found, kept)
        # 10 matches 12; 52 (down) matches none (50 is up); 90 matches 88 (nearest)
        self.assertEqual([c.index for c in result.new], [52])
        self.assertEqual([(c.index, k) for c, k in result.matched], [(10, 0), (90, 3)])
        # 50 and 95 are found no more; None (outside the values) is not judged
        self.assertEqual(result.gone, [1, 4])
        self.assertEqual(reconcile(found, kept, settled_from=60).gone, [4])
        self.assertEqual(reconcile(found, kept, tolerance=1).matched, [])
