"""InfluxStorageService configuration: checkConfig names the bad value; secrets are rendered
and never shown."""

from __future__ import annotations

from twisted.internet import defer
from twisted.python import log
from twisted.trial import unittest

from buildbot.config.errors import capture_config_errors
from buildbot.process.properties import Secret
from buildbot.test.fake import fakemaster
from buildbot.test.fake.secrets import FakeSecretStorage
from buildbot.test.reactor import TestReactorMixin
from buildbot.secrets.manager import SecretManager

from buildbot_stats import stats
from buildbot_stats.storage.influxdb.backend import _baseUrl
from tests.faultserver import FaultServer


class CheckConfig(unittest.TestCase):

    def configErrors(self, *args, **kwargs):
        with capture_config_errors() as errors:
            stats.InfluxStorageService(*args, **kwargs)
        return errors.errors

    def assertConfigError(self, fragment, *args, **kwargs):
        errors = self.configErrors(*args, **kwargs)
        self.assertTrue(any(fragment in e for e in errors), errors)

    def test_bad_values_are_named(self):
        self.assertConfigError("url must be a host name", '', 8086, None, None, 'db', [])
        self.assertConfigError("port must be a TCP port number (1-65535) or None (the URL's, "
                               "else 8086), got 99999", 'h', 99999, None, None, 'db', [])
        # one rule for every port (buildbot_stats.checks): 0, "any free port", is refused
        self.assertConfigError("port must be a TCP port number (1-65535)", 'h', 0, None, None,
                               'db', [])
        self.assertConfigError("says port 1 but port is 2", 'http://h:1', 2, None, None, 'db',
                               [])
        self.assertConfigError("db is required", 'h', None, None, None, None, [])
        self.assertConfigError("batch_size must be a positive integer, got 0",
                               'h', None, None, None, 'db', [], batch_size=0)
        self.assertConfigError("unknown argument batchsize= (did you mean batch_size=?)",
                               'h', None, None, None, 'db', [], batchsize=10)
        self.assertConfigError("extra_tags", 'h', None, None, None, 'db', [],
                               extra_tags='master=1')
        # an extra tag that cannot be written would be left out of every point
        for extra in [{'t': ''}, {'time': 'x'}, {'': 'x'}, {'t': 'ends\\'}, {'t': None},
                      {1: 'a', '1': 'b'}]:
            self.assertConfigError("extra_tags: extra tag", 'h', None, None, None, 'db', [],
                                   extra_tags=extra)
        self.assertConfigError("must not hold credentials",
                               'http://u:p@h', None, None, None, 'db', [])
        self.assertConfigError("captures[0] is a str, not a Capture instance",
                               'h', None, None, None, 'db', ['nope'])
        self.assertConfigError("spool_fsync must be True or False, got 'yes'",
                               'h', None, None, None, 'db', [], spool_fsync='yes')

    def test_password_value_never_in_errors(self):
        errors = self.configErrors('h', None, 'u', 12345678, 'db', [])
        self.assertEqual(len(errors), 1)
        self.assertNotIn('12345678', errors[0])

    def test_url_forms(self):
        self.assertEqual(_baseUrl('influx', None, False), 'http://influx:8086')
        self.assertEqual(_baseUrl('influx', 9999, True), 'https://influx:9999')
        self.assertEqual(_baseUrl('https://h/p/', None, False), 'https://h:8086/p')
        self.assertEqual(_baseUrl('http://[::1]:8087', 8087, False), 'http://[::1]:8087')


class Secrets(TestReactorMixin, unittest.TestCase):

    def setUp(self):
        self.setup_test_reactor()

    @defer.inlineCallbacks
    def test_secrets_rendered_and_never_logged(self):
        master = yield fakemaster.make_master(self, wantData=True)
        secrets = SecretManager()
        secrets.services = [FakeSecretStorage(secretdict={'pw': 'hunter2-xyz'})]
        yield secrets.setServiceParent(master)
        server = FaultServer()
        self.addCleanup(server.stop)
        messages = []
        log.addObserver(messages.append)
        self.addCleanup(log.removeObserver, messages.append)
        from twisted.internet import reactor as real_reactor
        backend = stats.InfluxStorageService(
            server.url, None, 'bob', Secret('pw'), 'db', [], reactor=real_reactor,
            flush_interval=0.05)
        yield backend.setServiceParent(master)
        yield backend.startService()
        self.assertNotIn('hunter2', repr(backend))
        self.assertIn(b'Basic ', backend._headers[b'Authorization'][0])
        import base64
        self.assertEqual(base64.b64decode(backend._headers[b'Authorization'][0][6:]),
                         b'bob:hunter2-xyz')
        yield backend.stopService()
        self.assertFalse(any('hunter2' in str(m) for m in messages))
