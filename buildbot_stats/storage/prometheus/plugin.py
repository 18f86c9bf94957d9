"""``/metrics`` under Buildbot's web server: the ``buildbot.www`` plugin ``metrics``
(``c['www']['plugins']['metrics'] = {}``), served at ``/plugins/metrics``."""

from __future__ import annotations

from buildbot_stats import __version__
from buildbot_stats.registry import statsServices
from buildbot_stats.storage.prometheus.backend import PrometheusStorageService
from buildbot_stats.storage.prometheus.http import MetricsResource


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
    (``{'backend': name}`` picks one of several backends)."""

    description = 'buildbot_stats: Prometheus /metrics'
    ui = False

    def __init__(self):
        self.master = None
        self.config = {}
        self.resource = MetricsResource(self._backend)

    @property
    def version(self):
        return __version__

    def setMaster(self, master):
        self.master = master

    def setConfiguration(self, config):
        self.config = config if isinstance(config, dict) else {}

    def _backend(self):
        if self.master is None:
            return None
        return findPrometheusBackend(self.master, self.config.get('backend'))


ep = MetricsPlugin()
