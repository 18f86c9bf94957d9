"""buildbot_stats: build statistics from Buildbot into time-series stores.

Use it from master.cfg with ``from buildbot_stats import stats``.
"""

__version__ = "0.1.0"
