"""Storage backends: where points are kept. One module per backend.

The names below are imported when first used (PEP 562): a program that only reads a store
(``buildbot-stats report``, the layout of :mod:`~buildbot_stats.storage.sqlite.schema`) does
not import Buildbot's service machinery.
"""

__all__ = ['InMemoryStorageService', 'StatsStorageBase']


def __getattr__(name):
    if name == 'StatsStorageBase':
        from buildbot_stats.storage.base import StatsStorageBase

        return StatsStorageBase
    if name == 'InMemoryStorageService':
        from buildbot_stats.storage.memory import InMemoryStorageService

        return InMemoryStorageService
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
