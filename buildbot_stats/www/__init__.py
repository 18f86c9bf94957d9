"""The Statistics page in Buildbot's web UI (a ``buildbot-wsgi-dashboards`` dashboard).

One entry in master.cfg enables it, beside the plugins and dashboards ``c['www']`` has::

    from buildbot_stats import stats

    c['www'].setdefault('plugins', {}).setdefault('wsgi_dashboards', []).append(
        stats.statsDashboard())

Flask and the dashboards plugin come with ``pip install buildbot_stats[www]``; they are
imported when :func:`statsDashboard` is called, never by ``import buildbot_stats``.
"""

from __future__ import annotations

from buildbot_stats.checks import checkedArguments
from buildbot_stats.www.ranges import RANGES

__all__ = ['RANGES', 'statsDashboard']


@checkedArguments
def statsDashboard(name='stats', caption='Statistics', order=5, icon='FaChartLine',
                   store=None, influxdb=None, stats_service='StatsService',
                   default_range='7d'):
    """The entry of ``c['www']['plugins']['wsgi_dashboards']`` for the Statistics page.

    :param name: the page's route (``#/stats``) and the plugin's URL path (default
        ``'stats'``)
    :param caption: the menu entry's text (default ``'Statistics'``)
    :param order: the menu entry's position (default 5)
    :param icon: a react-icons Font Awesome name (default ``'FaChartLine'``)
    :param store: path of an SQLite store to show, relative to the master's basedir
        (default: None, the StatsService's own store or InfluxDB, see ``stats_service``)
    :param influxdb: ``dict(url=..., db=..., user=..., password=..., ...)`` of an
        InfluxDB 1.x to read (default None); the keys are those of
        :class:`~buildbot_stats.reading.influxdb.InfluxReader`
    :param stats_service: the name of the StatsService whose backends the page reads when
        neither ``store`` nor ``influxdb`` is given: its first SQLite backend, else its first
        InfluxDB 1.x backend, with that backend's credentials (default ``'StatsService'``)
    :param default_range: the range shown first: ``'24h'``, ``'7d'``, ``'30d'`` or
        ``'all'`` (default ``'7d'``)
    """
    from buildbot import config

    if not isinstance(name, str) or not name or '/' in name:
        config.error(f"statsDashboard: name must be a path segment, got {name!r}")
    if default_range not in RANGES:
        config.error(f"statsDashboard: default_range must be one of {', '.join(RANGES)}, "
                     f"got {default_range!r}")
    if store is not None and influxdb is not None:
        config.error("statsDashboard: give store or influxdb, not both")
    if store is not None and (not isinstance(store, str) or not store):
        config.error(f"statsDashboard: store must be a path, got {store!r}")
    if influxdb is not None:
        from buildbot_stats.reading.influxdb import checkSettings
        for problem in checkSettings(influxdb):
            config.error(f"statsDashboard: influxdb: {problem}")
    try:
        from buildbot_stats.www.app import makeApp
    except ImportError as e:
        config.error(f"statsDashboard: {e}; install it with pip install 'buildbot_stats[www]'")
        return None
    app = makeApp(name=name, store=store, influxdb=influxdb, stats_service=stats_service,
                  default_range=default_range)
    return {'name': name, 'caption': caption, 'app': app, 'order': order, 'icon': icon}
