"""The classes are Buildbot plugins: buildbot.plugins.util.<Name> (setup.py entry points)."""

from __future__ import annotations

from twisted.trial import unittest

from buildbot.plugins import util

from buildbot_stats import stats


class Plugins(unittest.TestCase):
    def test_reachable_through_buildbot_plugins(self):
        for name in ('StatsService', 'CaptureBuildDuration', 'CapturePropertyAllBuilders',
                     'CaptureData', 'InMemoryStorageService', 'StatsStepMixin'):
            self.assertIs(getattr(util, name), getattr(stats, name))
