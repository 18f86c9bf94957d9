"""Finds the StatsService of a master or of a loaded configuration, for the code that must
not import :mod:`buildbot_stats.service` (it stands below it or beside it: the build steps,
the page, ``/metrics``, the backfill).

:mod:`buildbot_stats.service` registers its class here when it is imported; an instance
exists only once that happened, so a look-up never misses one.
"""

from __future__ import annotations

_service_classes = []


def registerServiceClass(cls):
    """Make instances of ``cls`` (the StatsService) found by the look-ups below."""
    if cls not in _service_classes:
        _service_classes.append(cls)
    return cls


def isStatsService(obj):
    return bool(_service_classes) and isinstance(obj, tuple(_service_classes))


class StatsServiceNotFound(LookupError):
    """No StatsService, or several and no name to choose one; the message says which."""


def statsServices(holder):
    """``[(name, service), ...]``: the StatsServices of ``holder``, in order, each once.

    ``holder`` is a running master (the services of ``c['services']`` are children of its
    service manager in Buildbot 4, of the master itself before) or a loaded
    ``MasterConfig`` (its ``services``)."""
    found = []
    if hasattr(holder, 'services') and isinstance(holder.services, dict):
        parents = [holder.services]
    else:
        parents = [getattr(getattr(p, 'namedServices', None), 'items', lambda: ())()
                   for p in (getattr(holder, 'service_manager', None), holder)
                   if p is not None]
        parents = [dict(items) for items in parents]
    for services in parents:
        for name, svc in services.items():
            if isStatsService(svc) and all(svc is not s for _, s in found):
                found.append((name, svc))
    return found


def findStatsService(holder, name=None):
    """The StatsService of ``holder`` (see :func:`statsServices`) named ``name``, or the
    only one when ``name`` is None; raises :class:`StatsServiceNotFound` otherwise."""
    found = [svc for svc_name, svc in statsServices(holder)
             if name is None or svc_name == name]
    if not found:
        wanted = f" named {name!r}" if name else ""
        raise StatsServiceNotFound(
            f"no StatsService{wanted} is configured: add stats.StatsService(...) to "
            "c['services'] in master.cfg")
    if len(found) > 1:
        names = ", ".join(repr(s.name) for s in found)
        raise StatsServiceNotFound(
            f"several StatsServices are configured ({names}): say which one by name")
    return found[0]


def preferredStatsService(holder, name):
    """The StatsService named ``name``, else the first of ``holder``; None without one (the
    page shows what it can of whatever service there is)."""
    found = statsServices(holder) if holder is not None else []
    for svc_name, svc in found:
        if svc_name == name:
            return svc
    return found[0][1] if found else None
