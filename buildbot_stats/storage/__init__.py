"""Storage backends: where points are kept. One module per backend."""

from buildbot_stats.storage.base import StatsStorageBase
from buildbot_stats.storage.memory import InMemoryStorageService

__all__ = ['InMemoryStorageService', 'StatsStorageBase']
