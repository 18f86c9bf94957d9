"""``/metrics`` under Buildbot's web server: the ``buildbot.www`` plugin ``metrics``
(``c['www']['plugins']['metrics'] = {}``), served at ``/plugins/metrics``.

Buildbot asks for no login on a plugin's pages, so this one checks each request itself
(:mod:`buildbot_stats.access`): a token (the plugin's ``token``, else the backend's), or
a session whose user ``c['www']['authz']`` lets see the builds, as the Statistics page.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.python import log

from buildbot_stats import __version__
from buildbot_stats import access
from buildbot_stats.registry import statsServices
from buildbot_stats.storage.prometheus.backend import PrometheusStorageService
from buildbot_stats.storage.prometheus.http import MetricsResource
from buildbot_stats.storage.prometheus.http import Refusal

#: The keys of ``c['www']['plugins']['metrics']``.
KEYS = ('backend', 'token')


def findPrometheusBackend(master, name=None):
    """The running PrometheusStorageService of ``master`` (the one named ``name``)."""
    found = []
    for _, svc in statsServices(master):
        for backend in svc.backends:
            if isinstance(backend, PrometheusStorageService) and backend not in found \
                    and (name is None or backend.name == name):
                found.append(backend)
    if len(found) > 1:
        raise LookupError("several PrometheusStorageService backends are configured: name "
                          "one in c['www']['plugins']['metrics'] = {'backend': name}")
    return found[0] if found else None


class MetricsPlugin:
    """The ``buildbot.www`` plugin ``metrics``: ``c['www']['plugins']['metrics'] = {}``
    serves the backend's metrics at ``/plugins/metrics`` of Buildbot's web server
    (``{'backend': name}`` picks one of several backends; ``{'token': ...}``, a string or
    ``util.Secret(...)``, is the token a scraper presents)."""

    description = 'buildbot_stats: Prometheus /metrics'
    ui = False

    def __init__(self):
        self.master = None
        self.config = {}
        self._token = None  # the plugin's token, rendered (a Deferred while it is)
        self.resource = MetricsResource(self._backend, self.authorize)

    @property
    def version(self):
        return __version__

    def setMaster(self, master):
        self.master = master

    def setConfiguration(self, config):
        self.config = config if isinstance(config, dict) else {}
        self._token = None
        unknown = sorted(set(self.config) - set(KEYS))
        if unknown:
            # Buildbot checks no plugin's keys; a misspelt token would leave it open
            log.msg(f"buildbot_stats: error: c['www']['plugins']['metrics']: unknown key(s) "
                    f"{', '.join(map(repr, unknown))} (it takes {', '.join(KEYS)}); "
                    "/plugins/metrics refuses every request until it is fixed")

    def _backend(self):
        if self.master is None:
            return None
        return findPrometheusBackend(self.master, self.config.get('backend'))

    @defer.inlineCallbacks
    def expectedToken(self):
        """The token a request may present: the plugin's (its secret rendered once per
        configuration), else the backend's ``token``; None when neither is set."""
        token = self.config.get('token')
        if token is None:
            try:
                backend = self._backend()
            except LookupError:
                backend = None
            return getattr(backend, 'token', None)
        if self._token is None:
            from buildbot.process.properties import Properties

            props = Properties()
            props.master = self.master
            self._token = yield props.render(token)
        return self._token

    @defer.inlineCallbacks
    def authorize(self, request):
        """None when ``request`` may read the metrics, else a :class:`Refusal`: a right
        token; else, with a token configured, a signed-in user whom ``c['www']['authz']``
        lets see the builds; without one, whoever authz lets see them (anonymous users
        too, as Buildbot's default authz does)."""
        if set(self.config) - set(KEYS):
            return Refusal(403, "c['www']['plugins']['metrics'] has an unknown key")
        token = yield self.expectedToken()
        if token is not None and not isinstance(token, str):
            return Refusal(403, "the metrics token is not a string")
        given = access.tokenOf(request.getHeader('authorization'))
        if given is not None:
            if access.sameToken(given, token):
                return None
            return Refusal(401, "a wrong token")
        ok, user = yield access.allowed(self.master, request.getHeader('cookie'))
        if access.isAnonymous(user):
            if token:
                return Refusal(401, "no token (Authorization: Bearer <token>)")
            if not ok:
                return Refusal(401, "anonymous users may not see the builds "
                                    "(c['www']['authz'])")
        elif not ok:
            return Refusal(403, "this user may not see the builds (c['www']['authz'])")
        return None


ep = MetricsPlugin()
