"""Which reader a page or a command opens: a store path or an InfluxDB given outright, or
the backends of a master's StatsService (a reconfig may change them: decided per request).

Blocking like the readers: called from the web server's WSGI thread pool or a command,
never on the reactor thread.
"""

from __future__ import annotations

import os

from buildbot_stats.reading.influxdb import InfluxReader
from buildbot_stats.reading.sqlite import openStore
from buildbot_stats.storage.influxdb import InfluxStorageService
from buildbot_stats.storage.sqlite import SQLiteStorageService
from buildbot_stats.storage.sqlite.schema import StoreError


class Source:
    """What the page reads, decided per request (a reconfig may change the backends).

    :param store: an SQLite path (relative to ``basedir``) or None
    :param influxdb: :class:`InfluxReader` keyword arguments or None
    :param service: the StatsService (or None): its backends when neither is given, and
        the captures they run (to tell a panel whose capture is not configured)
    """

    def __init__(self, store=None, influxdb=None, service=None, basedir=None):
        self.store, self.influxdb, self.service = store, influxdb, service
        self.basedir = basedir

    def captureNames(self):
        """The class names of every capture of the service's backends, None without a
        service (then the page cannot tell "not configured" from "no data")."""
        if self.service is None:
            return None
        names = set()
        for backend in self.service.backends:
            for cap in getattr(backend, 'captures', None) or []:
                for klass in type(cap).__mro__:
                    names.add(klass.__name__)
        return names

    def describe(self):
        if self.store is not None:
            return f"SQLite store {self.store}"
        if self.influxdb is not None:
            return f"InfluxDB {self.influxdb['url']} db {self.influxdb['db']}"
        backend = self.backend()
        if backend is None:
            return "no store"
        return f"{type(backend).__name__} {backend.name!r}"

    def backend(self):
        """The service's backend the page and change detection read: its first SQLite
        backend, else its first InfluxDB 1.x one; None."""
        if self.service is None:
            return None
        backends = list(self.service.backends)
        for b in backends:
            if isinstance(b, SQLiteStorageService) and b.path:
                return b
        for b in backends:
            if isinstance(b, InfluxStorageService) and b.readerSettings() is not None:
                return b
        return None

    def open(self):
        """A reader (a context manager); raises StoreError when there is nothing to read."""
        if self.store is not None:
            path = self.store
            if self.basedir and not os.path.isabs(path):
                path = os.path.join(self.basedir, path)
            return openStore(path)
        if self.influxdb is not None:
            return InfluxReader(**self.influxdb)
        backend = self.backend()
        if backend is None:
            raise StoreError("the StatsService has no SQLite or InfluxDB 1.x backend to read "
                             "(give statsDashboard(store=...) or influxdb=...)")
        if hasattr(backend, 'readerSettings'):
            return InfluxReader(**backend.readerSettings())
        return openStore(backend.path)
