"""InfluxDB (1.x, 2.x, 3.x): ``InfluxStorageService`` encodes and hands the points to the
shared delivery (:mod:`buildbot_stats.delivery`). Read by :mod:`buildbot_stats.reading.influxdb`.
"""

from buildbot_stats.storage.influxdb.backend import InfluxStorageService

__all__ = ['InfluxStorageService']
