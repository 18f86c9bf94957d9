"""Who may read /plugins/metrics and the backend's own /metrics: ``c['www']['authz']`` as the
Statistics page, or a token from a Buildbot secret, which a real Prometheus presents
(bearer token, basic auth); the token comparisons and the wording on their own."""

from __future__ import annotations

import base64
import os

from twisted.internet import defer
from twisted.internet import reactor
from twisted.internet import task
from twisted.internet import threads
from twisted.python import log
from twisted.trial import unittest

from buildbot.plugins import schedulers
from buildbot.plugins import secrets
from buildbot.plugins import steps
from buildbot.plugins import util
from buildbot.test.util.integration import RunMasterBase

from buildbot_stats import access
from buildbot_stats import stats
from buildbot_stats.storage.prometheus.http import MetricsResource
from buildbot_stats.storage.prometheus.http import tokenAccess
from tests.servers import PROMETHEUS
from tests.servers import PrometheusServer
from tests.servers import free_port
from tests.test_prometheus_integration import DEADLINE
from tests.www_master import ADMIN
from tests.www_master import PageMasterMixin

TOKEN = 'prom-Tq83-scrape'
WWW_TOKEN = 'www-Zr51-scrape'
GUEST = ('guest', 'guest-pw')  # signed in, but no role: authz refuses it the builds


def basic(user, password):
    return 'Basic ' + base64.b64encode(f"{user}:{password}".encode()).decode()


def metricsConfig(basedir, backends, plugin):
    """One builder; c['www'] with restricted authz (an admin sees everything, anonymous
    and guest nothing) and the metrics plugin; the secrets in files under basedir."""
    secrets_dir = os.path.join(basedir, 'secrets')
    os.makedirs(secrets_dir, exist_ok=True)
    for name, value in (('prom_token', TOKEN), ('www_token', WWW_TOKEN)):
        path = os.path.join(secrets_dir, name)
        with open(path, 'w') as f:
            f.write(value)
        os.chmod(path, 0o600)
    c = {}
    c['secretsProviders'] = [secrets.SecretInAFile(dirname=secrets_dir)]
    c['schedulers'] = [schedulers.ForceScheduler(name="force", builderNames=["alpha"])]
    factory = util.BuildFactory([steps.ShellCommand(command=['true'])])
    c['builders'] = [util.BuilderConfig(name="alpha", workernames=["local1"],
                                        factory=factory)]
    c['services'] = [stats.StatsService(storage_backends=backends, name="StatsService")]
    c['www'] = {
        'port': 'tcp:0:interface=127.0.0.1',
        'plugins': {'metrics': plugin},
        'auth': util.UserPasswordAuth([ADMIN, GUEST]),
        'authz': util.Authz(
            allowRules=[util.AnyEndpointMatcher(role="admins")],
            roleMatchers=[util.RolesFromUsername(roles=['admins'], usernames=[ADMIN[0]])]),
    }
    return c


class MetricsAccessOnARealMaster(PageMasterMixin, RunMasterBase):
    timeout = 180

    @defer.inlineCallbacks
    def startWith(self, plugin, token=None):
        self.own = free_port()
        backend = stats.PrometheusStorageService(port=self.own, name='prom', token=token)
        basedir = os.path.abspath(self.mktemp())
        os.makedirs(basedir)
        yield self.setup_master(metricsConfig(basedir, [backend], plugin), basedir=basedir)
        self.master = self.tested_master.master
        self.base = f"http://127.0.0.1:{self.master.www.getPortnum()}/"
        yield self.doForceBuild(forceParams={'builderNames': ['alpha']})
        return backend

    @defer.inlineCallbacks
    def metrics(self, authorization=None, cookie=None):
        """``(status, body, headers)`` of /plugins/metrics."""
        headers = {'Authorization': authorization} if authorization else {}
        result = yield self.getWith('plugins/metrics', headers, cookie)
        return result

    def getWith(self, path, headers, cookie=None, base=None):
        import urllib.error
        import urllib.request

        def fetch():
            req = urllib.request.Request((base or self.base) + path)
            for k, v in headers.items():
                req.add_header(k, v)
            if cookie:
                req.add_header('Cookie', cookie)
            try:
                with urllib.request.urlopen(req, timeout=30) as r:
                    return r.status, r.read().decode(), r.headers
            except urllib.error.HTTPError as e:
                return e.code, e.read().decode(), e.headers
        return threads.deferToThread(fetch)

    @defer.inlineCallbacks
    def sessionOf(self, user):
        _, _, headers = yield self.get('auth/login', auth=user)
        return headers.get_all('Set-Cookie')[-1].split(';')[0]

    @defer.inlineCallbacks
    def test_authz_and_the_backends_token_from_a_secret(self):
        lines = []
        observer = lambda event: lines.append(log.textFromEventDict(event) or '')  # noqa: E731
        log.addObserver(observer)
        self.addCleanup(log.removeObserver, observer)
        backend = yield self.startWith({}, token=util.Secret('prom_token'))
        self.assertEqual(backend.token, TOKEN)  # the secret, rendered by Buildbot

        # the API and the metrics alike: nothing for anonymous users (it was all of it)
        status, _, _ = yield self.get('api/v2/builds')
        self.assertEqual(status, 403)
        status, body, headers = yield self.metrics()
        self.assertEqual(status, 401, body)
        self.assertNotIn('alpha', body)
        self.assertIn('Bearer realm=', headers['WWW-Authenticate'])
        for wrong in ('Bearer nope', basic('prometheus', 'nope'), 'Bearer ' + TOKEN[:-1],
                      'Basic !!!', 'Digest x', 'Bearer '):
            status, body, _ = yield self.metrics(wrong)
            self.assertEqual(status, 401, (wrong, body))
            self.assertNotIn('alpha', body)
        # the token, as a bearer token or as basic auth's password
        for right in ('Bearer ' + TOKEN, basic('prometheus', TOKEN), basic('any', TOKEN)):
            status, body, _ = yield self.metrics(right)
            self.assertEqual(status, 200, (right, body))
            self.assertIn('buildbot_builds_total{builder="alpha",result="success"}', body)
        # a session: the admin sees them (as the page), a guest does not
        status, body, _ = yield self.metrics(cookie=(yield self.sessionOf(ADMIN)))
        self.assertEqual(status, 200, body)
        status, body, _ = yield self.metrics(cookie=(yield self.sessionOf(GUEST)))
        self.assertEqual(status, 403, body)
        self.assertNotIn('alpha', body)
        # the files Buildbot's UI asks every plugin for are empty for anyone
        status, body, _ = yield self.getWith('plugins/metrics/scripts.js', {})
        self.assertEqual((status, body), (200, ''))

        # the backend's own port takes the same token, and nothing else
        own = f'http://127.0.0.1:{self.own}/'
        status, body, _ = yield self.getWith('metrics', {}, base=own)
        self.assertEqual(status, 401, body)
        status, body, _ = yield self.getWith('metrics', {'Authorization': 'Bearer ' + TOKEN},
                                             base=own)
        self.assertEqual(status, 200, body)
        self.assertIn('buildbot_builds_total{builder="alpha",result="success"}', body)

        # a real Prometheus: with the token from a file it scrapes both; without, refused
        if not os.access(PROMETHEUS, os.X_OK):
            raise unittest.SkipTest(f"{PROMETHEUS} not found (scripts/install-servers.sh)")
        token_file = os.path.join(self.master.basedir, 'secrets', 'prom_token')
        www = f"127.0.0.1:{self.master.www.getPortnum()}"
        prometheus = PrometheusServer.start_new(jobs=[
            {'job_name': 'www-bearer', 'metrics_path': '/plugins/metrics',
             'static_configs': [{'targets': [www]}],
             'authorization': {'type': 'Bearer', 'credentials_file': token_file}},
            {'job_name': 'own-basic', 'metrics_path': '/metrics',
             'static_configs': [{'targets': [f"127.0.0.1:{self.own}"]}],
             'basic_auth': {'username': 'prometheus', 'password_file': token_file}},
            {'job_name': 'www-none', 'metrics_path': '/plugins/metrics',
             'static_configs': [{'targets': [www]}]},
        ])
        self.addCleanup(prometheus.cleanup)
        deadline = reactor.seconds() + DEADLINE
        while True:
            health = yield threads.deferToThread(prometheus.jobs_health)
            if all(h != 'unknown' for h, _ in health.values()) and len(health) == 3 \
                    or reactor.seconds() > deadline:
                break
            yield task.deferLater(reactor, 0.25, lambda: None)
        self.assertEqual(health['www-bearer'], ('up', ''))
        self.assertEqual(health['own-basic'], ('up', ''))
        self.assertEqual(health['www-none'][0], 'down')
        self.assertIn('401', health['www-none'][1])
        answer = yield threads.deferToThread(
            prometheus.values, 'buildbot_builds_total', 'job', 'builder', 'result')
        self.assertEqual(answer, {('www-bearer', 'alpha', 'success'): 1.0,
                                  ('own-basic', 'alpha', 'success'): 1.0})
        # the token is in no log line of the whole run
        self.assertEqual([line for line in lines if TOKEN in line], [])
        yield self.tested_master.shutdown()

    @defer.inlineCallbacks
    def test_the_plugins_own_token_and_a_misspelt_key(self):
        yield self.startWith({'token': util.Secret('www_token')})
        status, body, _ = yield self.metrics('Bearer ' + WWW_TOKEN)
        self.assertEqual(status, 200, body)
        status, body, _ = yield self.metrics('Bearer ' + TOKEN)
        self.assertEqual(status, 401, body)
        # a token configured: an anonymous request is refused however open authz is; an
        # allowed session still reads them
        status, body, _ = yield self.metrics()
        self.assertEqual(status, 401, body)
        status, body, _ = yield self.metrics(cookie=(yield self.sessionOf(ADMIN)))
        self.assertEqual(status, 200, body)
        # the backend's own port has no token here: open, as before (loopback only)
        status, body, _ = yield self.getWith('metrics', {},
                                             base=f'http://127.0.0.1:{self.own}/')
        self.assertEqual(status, 200, body)

        # a misspelt key would leave the metrics unprotected: refused, and logged
        lines = []
        observer = lambda event: lines.append(log.textFromEventDict(event) or '')  # noqa: E731
        log.addObserver(observer)
        self.addCleanup(log.removeObserver, observer)
        from buildbot_stats.storage.prometheus.plugin import ep
        ep.setConfiguration({'tokn': 'x'})
        self.assertEqual([line for line in lines if "unknown key(s) 'tokn'" in line
                          and 'refuses every request' in line], [lines[-1]])
        status, body, _ = yield self.metrics('Bearer ' + WWW_TOKEN)
        self.assertEqual(status, 403, body)
        status, body, _ = yield self.metrics(cookie=(yield self.sessionOf(ADMIN)))
        self.assertEqual(status, 403, body)
        yield self.tested_master.shutdown()


class Tokens(unittest.TestCase):
    def test_token_of_an_authorization_header(self):
        self.assertEqual(access.tokenOf('Bearer abc'), 'abc')
        self.assertEqual(access.tokenOf(b'bearer   abc '), 'abc')
        self.assertEqual(access.tokenOf(basic('u', 'p:w')), 'p:w')
        self.assertEqual(access.tokenOf(basic('', 'pw')), 'pw')
        for none in (None, '', 'Bearer', 'Bearer ', basic('u', ''), 'Basic !!', 'Token x',
                     'Basic ' + base64.b64encode(b'no-colon').decode()):
            self.assertIsNone(access.tokenOf(none), none)
        self.assertTrue(access.sameToken('abc', 'abc'))
        for given, expected in (('abc', 'abd'), ('ab', 'abc'), (None, 'abc'), ('', ''),
                                ('abc', None), ('é', 'e')):
            self.assertFalse(access.sameToken(given, expected), (given, expected))

    def test_own_port_without_and_with_a_token(self):
        from twisted.web.test.requesthelper import DummyRequest

        def answer(token, header=None):
            request = DummyRequest([])
            if header:
                request.requestHeaders.setRawHeaders('authorization', [header])
            resource = MetricsResource(lambda: None, tokenAccess(lambda: token))
            resource.render(request)
            return request.responseCode, request.responseHeaders.getRawHeaders(
                b'www-authenticate')

        # no backend behind: a 404 once let in, a 401 with the challenge when not
        self.assertEqual(answer(None), (404, None))
        self.assertEqual(answer('t0k'), (401, [b'Bearer realm="buildbot_stats metrics", '
                                               b'Basic realm="buildbot_stats metrics"']))
        self.assertEqual(answer('t0k', 'Bearer t0k'), (404, None))
        self.assertEqual(answer('t0k', basic('prometheus', 't0k')), (404, None))
        self.assertEqual(answer('t0k', 'Bearer t0')[0], 401)

    def test_a_token_of_the_wrong_type_is_a_config_error_not_shown(self):
        from buildbot.config import errors as config_errors

        with config_errors.capture_config_errors() as errors:
            stats.PrometheusStorageService(token=12345)
            stats.PrometheusStorageService(token=' ', name='p2')
        self.assertEqual(errors.errors, [
            "PrometheusStorageService: token must be a non-empty string or a secret "
            "(util.Secret), got an int",
            "PrometheusStorageService 'p2': token must be a non-empty string or a secret "
            "(util.Secret), got a str"])
