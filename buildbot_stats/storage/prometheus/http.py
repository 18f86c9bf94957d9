"""/metrics over HTTP: the twisted.web resource that answers a scrape, and the backend's own
site (the same resource under Buildbot's web server: :mod:`.plugin`).

Who may scrape is asked of an ``authorize(request)`` callable before anything is read: a
Deferred firing None (go on) or a :class:`Refusal` (401 or 403, answered as it says).
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.internet import defer
from twisted.python import log
from twisted.web import resource
from twisted.web import server

from buildbot_stats import access

#: The ``WWW-Authenticate`` challenge of a 401: Prometheus and browsers know both schemes.
CHALLENGE = b'Bearer realm="buildbot_stats metrics", Basic realm="buildbot_stats metrics"'

#: Files Buildbot's web UI asks every configured www plugin for; answered empty.
UI_FILES = {b'scripts.js': b'application/javascript', b'styles.css': b'text/css'}


class ClientGone(Exception):
    """The scraper closed the connection before the answer ended."""


@dataclass(frozen=True)
class Refusal:
    """Why a request may not read the metrics: ``status`` 401 (no or a wrong credential:
    a challenge is sent) or 403 (a user who may not see the builds)."""

    status: int
    reason: str


def tokenAccess(expectedToken):
    """``authorize`` of the backend's own port: with a token (``expectedToken()``, the
    backend's ``token`` option), only a request carrying it; without one, every request
    (the port is on the loopback by default)."""
    def authorize(request):
        token = expectedToken()
        if not token:
            return defer.succeed(None)
        given = access.tokenOf(request.getHeader('authorization'))
        if access.sameToken(given, token):
            return defer.succeed(None)
        return defer.succeed(Refusal(401, "a wrong token" if given is not None
                                     else "no token (Authorization: Bearer <token>)"))
    return authorize


def openAccess(request):
    return defer.succeed(None)


class MetricsResource(resource.Resource):
    """Answers a scrape with ``backend.scrape(...)``, written a slice at a time.

    :param findBackend: a callable returning the :class:`PrometheusStorageService` (or
        None when there is none, answered 404)
    :param authorize: ``authorize(request)``, a Deferred firing None when the request may
        read the metrics, else a :class:`Refusal` (default: every request may)
    """

    isLeaf = True

    def __init__(self, findBackend, authorize=None):
        super().__init__()
        self.findBackend = findBackend
        self.authorize = authorize or openAccess

    def render_GET(self, request):
        path = [p for p in request.postpath if p]
        if path:
            if len(path) == 1 and path[0] in UI_FILES:
                # what Buildbot's UI asks every plugin for: empty, for anyone
                request.setHeader(b'Content-Type', UI_FILES[path[0]])
                return b''
            request.setResponseCode(404)
            return b'not found: the metrics are at the root of this resource\n'
        gone = []
        request.notifyFinish().addBoth(gone.append)
        d = defer.maybeDeferred(self.authorize, request)

        def decided(refusal):
            if gone:
                return
            if refusal is not None:
                self._refuse(request, refusal)
                return
            self._scrape(request, gone)

        def failed(failure):
            log.err(failure, "buildbot_stats: /metrics: checking access failed")
            if not gone:
                self._refuse(request, Refusal(403, "access could not be checked"))

        d.addCallbacks(decided, failed)
        return server.NOT_DONE_YET

    @staticmethod
    def _refuse(request, refusal):
        request.setResponseCode(refusal.status)
        request.setHeader(b'Content-Type', b'text/plain; charset=utf-8')
        if refusal.status == 401:
            request.setHeader(b'WWW-Authenticate', CHALLENGE)
        request.write(f"{refusal.reason}: the metrics are not shown (see "
                      "docs/storage-prometheus.rst, 'Access')\n".encode())
        request.finish()

    def _scrape(self, request, gone):
        try:
            backend = self.findBackend()
        except Exception as e:
            backend, why = None, str(e)
        else:
            why = 'no PrometheusStorageService is configured'
        if backend is None:
            request.setResponseCode(404)
            request.setHeader(b'Content-Type', b'text/plain; charset=utf-8')
            request.write(f"{why}\n".encode())
            request.finish()
            return
        started = []

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


class _Root(resource.Resource):
    def __init__(self, metrics):
        super().__init__()
        self.putChild(b'metrics', metrics)

    def render_GET(self, request):
        request.setHeader(b'Content-Type', b'text/html; charset=utf-8')
        return b'<a href="/metrics">/metrics</a>\n'


def metricsSite(findBackend, authorize=None):
    """The backend's own site: ``/metrics`` (and a link to it at ``/``); no access log."""
    site = server.Site(_Root(MetricsResource(findBackend, authorize)))
    site.noisy = False
    site.log = lambda request: None
    return site
