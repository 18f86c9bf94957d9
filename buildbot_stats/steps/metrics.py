"""What a custom BuildStep uses to post metrics: ``yieldMetricsValue`` and the mixin.

In Buildbot 4 the services of ``c['services']`` are children of the master's service
manager, not of the master, so the spec's ``self.master.namedServices[name]`` does not find
them. :func:`~buildbot_stats.registry.findStatsService` looks in both places.
"""

from __future__ import annotations

from buildbot_stats.registry import findStatsService


def yieldMetricsValue(step, data_name, post_data, service_name=None):
    """Post ``post_data`` (a dict) as ``data_name`` for the build ``step`` belongs to.

    Returns a Deferred; call it from a step's ``run()``::

        yield yieldMetricsValue(self, 'coverage', {'percent': 87.5})
    """
    svc = findStatsService(step.master, service_name)
    return svc.yieldMetricsValue(data_name, post_data, step.build.buildid)


class StatsStepMixin:
    """Mix into a BuildStep to get ``self.yieldMetricsValue(data_name, post_data)``.

    Set ``stats_service_name`` when the master runs more than one StatsService.
    """

    stats_service_name = None

    def yieldMetricsValue(self, data_name, post_data):
        return yieldMetricsValue(self, data_name, post_data, self.stats_service_name)
