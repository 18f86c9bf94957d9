"""What a custom BuildStep uses to post metrics.

In Buildbot 4 the services of ``c['services']`` are children of the master's service
manager, not of the master, so the spec's ``self.master.namedServices[name]`` does not find
them. :func:`findStatsService` looks in both places.
"""

from __future__ import annotations

from buildbot_stats.service import StatsService


class StatsServiceNotFound(LookupError):
    pass


def findStatsService(master, name=None):
    """The running :class:`StatsService` of ``master`` (the one named ``name``, if given)."""
    found = []
    for parent in (getattr(master, 'service_manager', None), master):
        if parent is None:
            continue
        for svc_name, svc in parent.namedServices.items():
            if isinstance(svc, StatsService) and (name is None or svc_name == name):
                if svc not in found:
                    found.append(svc)
    if not found:
        wanted = f" named {name!r}" if name else ""
        raise StatsServiceNotFound(
            f"no StatsService{wanted} is configured: add stats.StatsService(...) to "
            "c['services'] in master.cfg"
        )
    if len(found) > 1:
        names = ", ".join(repr(s.name) for s in found)
        raise StatsServiceNotFound(
            f"several StatsServices are configured ({names}): say which one by name"
        )
    return found[0]


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
