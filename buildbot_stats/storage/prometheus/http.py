"""/metrics over HTTP: the twisted.web resource that answers a scrape, and the backend's own
site (the same resource under Buildbot's web server: :mod:`.plugin`)."""

from __future__ import annotations

from twisted.python import log
from twisted.web import resource
from twisted.web import server

#: Files Buildbot's web UI asks every configured www plugin for; answered empty.
UI_FILES = {b'scripts.js': b'application/javascript', b'styles.css': b'text/css'}


class ClientGone(Exception):
    """The scraper closed the connection before the answer ended."""


class MetricsResource(resource.Resource):
    """Answers a scrape with ``backend.scrape(...)``, written a slice at a time.

    :param findBackend: a callable returning the :class:`PrometheusStorageService` (or
        None when there is none, answered 404)
    """

    isLeaf = True

    def __init__(self, findBackend):
        super().__init__()
        self.findBackend = findBackend

    def render_GET(self, request):
        path = [p for p in request.postpath if p]
        if path:
            if len(path) == 1 and path[0] in UI_FILES:
                request.setHeader(b'Content-Type', UI_FILES[path[0]])
                return b''
            request.setResponseCode(404)
            return b'not found: the metrics are at the root of this resource\n'
        try:
            backend = self.findBackend()
        except Exception as e:
            backend, why = None, str(e)
        else:
            why = 'no PrometheusStorageService is configured'
        if backend is None:
            request.setResponseCode(404)
            request.setHeader(b'Content-Type', b'text/plain; charset=utf-8')
            return f"{why}\n".encode()
        gone = []
        started = []
        request.notifyFinish().addBoth(gone.append)

        def start(headers):
            started.append(True)
            for key, value in headers.items():
                request.setHeader(key.encode(), value.encode())

        def write(piece):
            if gone:
                raise ClientGone()
            request.write(piece)

        def done(_):
            if not gone:
                request.finish()

        def failed(failure):
            if gone or failure.check(ClientGone):
                return
            log.err(failure, f"buildbot_stats: {backend.name}: a scrape failed")
            if started:
                # the answer has begun: cut it, Prometheus counts the scrape as failed
                request.channel.loseConnection()
                return
            request.setResponseCode(500)
            request.setHeader(b'Content-Type', b'text/plain; charset=utf-8')
            request.write(f"scrape failed: {failure.getErrorMessage()}\n".encode())
            request.finish()

        d = backend.scrape(request.getHeader('accept'), request.getHeader('accept-encoding'),
                           start, write)
        d.addCallbacks(done, failed)
        return server.NOT_DONE_YET


class _Root(resource.Resource):
    def __init__(self, metrics):
        super().__init__()
        self.putChild(b'metrics', metrics)

    def render_GET(self, request):
        request.setHeader(b'Content-Type', b'text/html; charset=utf-8')
        return b'<a href="/metrics">/metrics</a>\n'


def metricsSite(findBackend):
    """The backend's own site: ``/metrics`` (and a link to it at ``/``); no access log."""
    site = server.Site(_Root(MetricsResource(findBackend)))
    site.noisy = False
    site.log = lambda request: None
    return site
