"""What StatsService uses when master.cfg does not say."""

from __future__ import annotations


def defaultCaptures():
    """Start time, end time and duration (seconds) of every build of every builder."""
    from buildbot_stats import captures

    return [
        captures.CaptureBuildStartTimeAllBuilders(),
        captures.CaptureBuildEndTimeAllBuilders(),
        captures.CaptureBuildDurationAllBuilders(),
    ]


def defaultStorageBackends():
    """The embedded store: ``stats.sqlite`` in the master's basedir, default captures."""
    try:
        from buildbot_stats.storage.sqlite import SQLiteStorageService
    except ImportError:  # pragma: no cover - the SQLite backend is part of the package
        return []
    return [SQLiteStorageService()]
