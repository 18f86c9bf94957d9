"""History from Buildbot's own database: the backfill command and the catch-up at start.

* :mod:`~buildbot_stats.history.reader`: finished builds read in batches, as data API dicts;
* :mod:`~buildbot_stats.history.replay`: those builds through a StatsService's captures;
* :mod:`~buildbot_stats.history.recorder`: ``yieldMetricsValue`` kept as build data;
* :mod:`~buildbot_stats.history.catchup`: per-backend marks and the replay at start;
* :mod:`~buildbot_stats.history.backfill`: ``buildbot-stats backfill`` outside a master.

User documentation: docs/history.rst.
"""
