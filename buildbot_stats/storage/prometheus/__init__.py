"""Prometheus: ``PrometheusStorageService`` keeps metric families and serves ``/metrics``.

* :mod:`~.backend`: the backend: points in, families kept, its own port
* :mod:`~.metrics`: the counters, histograms and last-value gauges of the points
* :mod:`~.snapshot`: the gauges of the present and the exposition, a slice at a time
* :mod:`~.http`: the twisted.web resource that answers a scrape
* :mod:`~.plugin`: the same resource under Buildbot's web server (``/plugins/metrics``)
"""

from buildbot_stats.storage.prometheus.backend import PrometheusStorageService

__all__ = ['PrometheusStorageService']
