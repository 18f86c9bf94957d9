"""What runs inside a build: the helpers a custom BuildStep posts its metrics with."""

from buildbot_stats.registry import StatsServiceNotFound
from buildbot_stats.registry import findStatsService
from buildbot_stats.steps.metrics import StatsStepMixin
from buildbot_stats.steps.metrics import yieldMetricsValue

__all__ = ['StatsServiceNotFound', 'StatsStepMixin', 'findStatsService', 'yieldMetricsValue']
