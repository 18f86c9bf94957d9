"""The Flask application behind the Statistics page.

Routes (under ``/plugins/wsgi_dashboards/<name>/``):

- ``index.html``: what Buildbot's UI fetches and inserts into its own page. Buildbot
  inserts it as HTML, where a script would not run; it holds an ``<iframe>`` of ``view``,
  so the filters (links, a GET form) work inside Buildbot's page.
- ``view?builder=<name>&range=24h|7d|30d|all``: the page itself (a whole HTML document).
- ``test?builder=<name>&test=<test name>&range=...``: one test's history (pass/fail strip,
  duration per build), linked from the page's test tables.

Both run in the web server's WSGI thread pool, never on the reactor thread: the reads
block there, the calls into the master (authz, builder ids) hop to the reactor with
``blockingCallFromThread``.
"""

from __future__ import annotations

import html
import time

import flask

from buildbot_stats.reading.source import Source
from buildbot_stats.registry import preferredStatsService
from buildbot_stats.storage.sqlite.schema import StoreError
from buildbot_stats import access
from buildbot_stats.www import page
from buildbot_stats.www.cache import ViewCache
from buildbot_stats.www.notices import seriesFacts
from buildbot_stats.www.notices import seriesNotices
from buildbot_stats.www.ranges import RANGES
from buildbot_stats.www.ranges import timeWindow
from buildbot_stats.www.testpage import testPage

HTML = 'text/html; charset=utf-8'
# the page only links to Buildbot's UI; no script, no frame of it elsewhere
HEADERS = {'Content-Security-Policy': "default-src 'none'; style-src 'unsafe-inline'; "
           "img-src 'self'; form-action 'self'; frame-ancestors 'self'",
           'X-Content-Type-Options': 'nosniff', 'Cache-Control': 'no-store'}


def detectionOff(source):
    """Why the change detection of the store the page shows is off; None when it runs or
    when the page shows a store of its own (``store=``, ``influxdb=``)."""
    service = source.service
    if service is None or source.store is not None or source.influxdb is not None:
        return None
    regressions = getattr(service, 'regressions', None)
    if regressions is None:
        return "the StatsService is configured with regressions=False"
    return regressions.whyOff()


def makeApp(name='stats', store=None, influxdb=None, stats_service='StatsService',
            default_range='7d', clock=time.time):
    app = flask.Flask(__name__)
    app.buildbot_api = None  # set by buildbot_wsgi_dashboards when the web server starts
    # SQLite stores only: the rendered views while the store is unchanged
    app.view_cache = ViewCache()
    # the per-test tables of an SQLite store while its test results are unchanged
    app.tests_cache = ViewCache()

    def master():
        api = app.buildbot_api
        return getattr(api, 'master', None)

    def refused():
        return flask.Response(
            page.messagePage("Statistics", "You may not see the builds: log in to Buildbot "
                             "with an account allowed to see them."),
            status=403, content_type=HTML, headers=HEADERS)

    def builderIds(m):
        from twisted.internet.threads import blockingCallFromThread

        builders = blockingCallFromThread(m.reactor, m.data.get, ('builders',))
        return {b['name']: b['builderid'] for b in builders or []}

    def notices(m, service):
        """The page's warnings and facts about the service's backends (their counters are
        read on the reactor, where they change)."""
        if service is None or m is None:
            return [], []
        from twisted.internet.threads import blockingCallFromThread

        metrics = blockingCallFromThread(m.reactor, service.metrics)
        form = getattr(getattr(service, 'tag_policy', None), 'build_number', 'tag')
        return seriesNotices(metrics, form), seriesFacts(metrics)

    @app.route('/index.html')
    def index():
        m = master()
        if not access.isAllowed(m, flask.request.headers.get('Cookie')):
            # Buildbot's UI shows a spinner forever on an error status: say it in words
            return flask.Response(
                '<p class="bb-stats-refused">You may not see the statistics: log in to '
                'Buildbot with an account allowed to see the builds.</p>',
                content_type=HTML, headers=HEADERS)
        src = f"plugins/wsgi_dashboards/{html.escape(name)}/view"
        return flask.Response(
            f'<iframe class="bb-stats" title="Build statistics" src="{src}" '
            'style="width:100%;height:calc(100vh - 110px);min-height:600px;border:0">'
            '</iframe>', content_type=HTML, headers=HEADERS)

    def opened(m, range_name):
        """What both pages read: ``(service, source, start, end, now, builder ids)``."""
        service = preferredStatsService(m, stats_service)
        source = Source(store=store, influxdb=influxdb, service=service,
                        basedir=getattr(m, 'basedir', None))
        now = clock()
        start, end = timeWindow(range_name, now)
        return service, source, start, end, now, builderIds(m)

    def rangeOf(args):
        range_name = args.get('range') or default_range
        return range_name if range_name in RANGES else default_range

    def unreadable(title, e):
        # a store not written yet, a server down: one sentence, the page stays up
        return flask.Response(
            page.messagePage(title, f"The statistics cannot be read: {e}"),
            content_type=HTML, headers=HEADERS)

    @app.route('/view')
    def view():
        m = master()
        if not access.isAllowed(m, flask.request.headers.get('Cookie')):
            return refused()
        range_name = rangeOf(flask.request.args)
        builder = flask.request.args.get('builder') or None
        service, source, start, end, now, ids = opened(m, range_name)
        warnings, facts = notices(m, service)
        try:
            with source.open() as reader:
                text = page.view(reader, builder, range_name, start, end, ids, '../../../',
                                 source.captureNames(), source.describe(), now,
                                 cache=app.view_cache, tests_cache=app.tests_cache,
                                 notices=warnings, facts=facts,
                                 detection=detectionOff(source))
        except StoreError as e:
            return unreadable("Statistics", e)
        return flask.Response(text, content_type=HTML, headers=HEADERS)

    @app.route('/test')
    def test():
        m = master()
        if not access.isAllowed(m, flask.request.headers.get('Cookie')):
            return refused()
        range_name = rangeOf(flask.request.args)
        builder, name = flask.request.args.get('builder'), flask.request.args.get('test')
        if not builder or not name:
            return flask.Response(
                page.messagePage("Test history", "Which test? The page's test tables link "
                                 "to the history of each test."),
                status=400, content_type=HTML, headers=HEADERS)
        _, source, start, end, _, ids = opened(m, range_name)
        try:
            with source.open() as reader:
                history = reader.testHistory(builder, name, start, end)
        except StoreError as e:
            return unreadable("Test history", e)
        return flask.Response(testPage(history, builder, name, range_name, ids, '../../../'),
                              content_type=HTML, headers=HEADERS)

    return app
