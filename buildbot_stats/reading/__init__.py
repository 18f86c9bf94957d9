"""The read side: answers come up from the stores, never from the write path's objects.

* :mod:`~.sqlite`: ``StoreReader``, the embedded store opened read-only, and its queries
* :mod:`~.plan`: which level of the store (raw points, hourly or daily rollups) answers what
* :mod:`~.kinds`: what each of the page's questions reads, for every reader
* :mod:`~.influxdb`: ``InfluxReader``, the same queries asked of InfluxDB (InfluxQL)
* :mod:`~.source`: which reader a page or a command opens for a master's StatsService
* :mod:`~.summary`: the numbers the page and the report derive from a reader's answers

Every reader answers the same queries (:class:`~.sqlite.StoreReader` documents them) and
raises :class:`~buildbot_stats.storage.sqlite.schema.StoreError` with a one-line reason.
"""
