"""Storage backends: where points are kept. One module per backend.

The names below are imported when first used (PEP 562), so that what only reads a store
(``buildbot-stats report``, ``export``: :mod:`buildbot_stats.reading`, which needs
:mod:`~buildbot_stats.storage.sqlite.schema`) starts without Buildbot's service machinery.
"""

__all__ = ['InMemoryStorageService', 'StatsStorageBase']

_WHERE = {'StatsStorageBase': 'buildbot_stats.storage.base',
          'InMemoryStorageService': 'buildbot_stats.storage.memory'}


def __getattr__(name):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_WHERE[name]), name)
