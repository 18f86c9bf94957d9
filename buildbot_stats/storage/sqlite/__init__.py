"""The embedded store: an SQLite file beside the master (the default backend).

* :mod:`~.backend`: ``SQLiteStorageService``, the queue on the reactor thread and its batches
* :mod:`~.writer`: what runs in the writer thread: the connection and its transactions
* :mod:`~.schema`: the file's layout, its version and its migrations
* :mod:`~.values`: which field values a point may hold, and how they are encoded
* :mod:`~.layout`: how a point is laid out (interned names)
* :mod:`~.rollups`: the rollups per hour and day, and their maintenance
* :mod:`~.aggregates`: what a rollup holds (its sketch) and how rollups combine
* :mod:`~.retention`: raw points and rollups deleted by age, in small batches

The store is read by :mod:`buildbot_stats.reading.sqlite`, which needs only the schema:
``SQLiteStorageService`` is imported when first used (PEP 562).
"""

__all__ = ['SQLiteStorageService']


def __getattr__(name):
    if name != 'SQLiteStorageService':
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from buildbot_stats.storage.sqlite.backend import SQLiteStorageService

    return SQLiteStorageService
