"""InfluxDB (1.x, 2.x, 3.x): ``InfluxStorageService`` encodes and hands the points to the
shared delivery (:mod:`buildbot_stats.delivery`). Read by :mod:`buildbot_stats.reading.influxdb`.

``InfluxStorageService`` is imported when first used (PEP 562), so that
``buildbot-stats influxdb-rollups`` (:mod:`~.rollups`, which needs no Buildbot) and the
readers start without Buildbot's service machinery.
"""

__all__ = ['InfluxStorageService']


def __getattr__(name):
    if name != 'InfluxStorageService':
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from buildbot_stats.storage.influxdb.backend import InfluxStorageService

    return InfluxStorageService
