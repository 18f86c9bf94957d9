"""What runs inside a build: the helpers a custom BuildStep posts its metrics with, and the
step that reads JUnit/xUnit reports into Buildbot's test result API."""

from buildbot_stats.registry import StatsServiceNotFound
from buildbot_stats.registry import findStatsService
from buildbot_stats.steps.junit import JUnitResults
from buildbot_stats.steps.metrics import StatsStepMixin
from buildbot_stats.steps.metrics import yieldMetricsValue

__all__ = ['JUnitResults', 'StatsServiceNotFound', 'StatsStepMixin', 'findStatsService', 'yieldMetricsValue']
