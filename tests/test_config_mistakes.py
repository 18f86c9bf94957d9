"""A new user's likely master.cfg mistakes: `buildbot checkconfig` names each once, without a
traceback and without the password written on the same line; no constructor argument of a
wrong type raises anything but a configuration error; a capture naming a builder the master
does not have is one warning at reconfig on a real master."""

from __future__ import annotations

import inspect
import textwrap

from twisted.internet import defer
from twisted.python import log
from twisted.trial import unittest

from buildbot.config import errors as config_errors
from buildbot.process.results import SUCCESS
from buildbot.test.util.integration import RunMasterBase

from buildbot_stats import stats
from buildbot_stats.cli.demo_master_cfg import MASTER_CFG as DEMO_MASTER_CFG
from tests.test_checkconfig import MASTER_CFG_HEAD
from tests.test_checkconfig import runCheckconfig
from tests.test_integration_core import masterConfig

PASSWORD = 'hunter2-Qx7v'

def influx(name, captures, password=repr(PASSWORD)):
    """An InfluxStorageService on one line, the password beside the captures."""
    return (f"stats.InfluxStorageService('influx.example.org', 8086, 'buildbot', {password}, "
            f"'buildbot', captures={captures}, name={name!r})")


def configErrors(output):
    """The lines under 'Configuration Errors:'."""
    if 'Configuration Errors:' not in output:
        return []
    block = output.split('Configuration Errors:', 1)[1]
    return [line.strip() for line in block.splitlines() if line.startswith('  ')]


class CheckConfigMistakes(unittest.TestCase):
    timeout = 120

    def assertNoTracebackNorSecret(self, output):
        self.assertNotIn('Traceback', output)
        self.assertNotIn('error while parsing config file', output)
        self.assertNotIn(PASSWORD, output)

    @defer.inlineCallbacks
    def test_captures_of_the_wrong_type_each_named_once(self):
        services = textwrap.dedent(f"""\
            c['services'] = [stats.StatsService(storage_backends=[
                {influx('lone', 'stats.CaptureBuildDurationAllBuilders()')},
                {influx('text', repr('abc'))},
                {influx('mixed', "[stats.CaptureBuildDuration('alpha'), 'oops', 42, "
                                 "stats.CaptureBuildEndTimeAllBuilders]")},
                {influx('pw', repr(PASSWORD))},
                {influx('intpw', '[]', password='12345')},
            ])]
            """)
        code, output = yield runCheckconfig(self, MASTER_CFG_HEAD + services)
        self.assertEqual(code, 1, output)
        self.assertNoTracebackNorSecret(output)
        self.assertEqual(configErrors(output), [
            "InfluxStorageService 'lone': captures must be a list of Capture instances, got a "
            "single CaptureBuildDurationAllBuilders: write "
            "captures=[stats.CaptureBuildDurationAllBuilders(...)]",
            "InfluxStorageService 'text': captures must be a list or tuple of Capture "
            "instances, got a str",
            "InfluxStorageService 'mixed': captures[1] is a str, not a Capture instance (use "
            "the stats.Capture* classes)",
            "InfluxStorageService 'mixed': captures[2] is an int, not a Capture instance (use "
            "the stats.Capture* classes)",
            "InfluxStorageService 'mixed': captures[3] is the class "
            "CaptureBuildEndTimeAllBuilders, not an instance: write "
            "stats.CaptureBuildEndTimeAllBuilders(...)",
            # the password itself given as captures: its type, never its value
            "InfluxStorageService 'pw': captures must be a list or tuple of Capture "
            "instances, got a str",
            "InfluxStorageService 'intpw': password must be a string or a secret "
            "(util.Secret, util.Interpolate), got an int",
        ])

    @defer.inlineCallbacks
    def test_backends_of_the_wrong_type(self):
        services = (f"c['services'] = [stats.StatsService(storage_backends="
                    f"{influx('one', '[]')})]\n"
                    f"c['services'].append(stats.StatsService(name='s2', storage_backends="
                    f"[{PASSWORD!r}, stats.CaptureBuildDuration('alpha')]))\n")
        code, output = yield runCheckconfig(self, MASTER_CFG_HEAD + services)
        self.assertEqual(code, 1, output)
        self.assertNoTracebackNorSecret(output)
        self.assertEqual(configErrors(output), [
            "StatsService: storage_backends must be a list of storage backends, got a single "
            "InfluxStorageService: write storage_backends=[stats.InfluxStorageService(...)]",
            "StatsService: storage_backends[0] is a str, not a storage backend (use "
            "stats.InfluxStorageService, stats.SQLiteStorageService or a subclass of "
            "stats.StatsStorageBase)",
            "StatsService: storage_backends[1] is a CaptureBuildDuration, not a storage "
            "backend (use stats.InfluxStorageService, stats.SQLiteStorageService or a "
            "subclass of stats.StatsStorageBase)",
        ])

    @defer.inlineCallbacks
    def test_credentials_in_the_url_are_not_shown(self):
        services = ("c['services'] = [stats.StatsService(storage_backends=["
                    f"stats.InfluxStorageService('admin:{PASSWORD}@influx.example.org', 8086, "
                    "None, None, 'db', []), "
                    f"stats.InfluxStorageService('http://influx.example.org/?p={PASSWORD}', "
                    "None, None, None, 'db', [], name='q'), "
                    f"stats.InfluxStorageService('h', 'admin', {PASSWORD!r}, None, 'db', [], "
                    "name='shifted')])]\n")
        code, output = yield runCheckconfig(self, MASTER_CFG_HEAD + services)
        self.assertEqual(code, 1, output)
        self.assertNoTracebackNorSecret(output)
        self.assertEqual(configErrors(output), [
            "InfluxStorageService: url must not hold credentials; use user/password or token",
            "InfluxStorageService 'q': url must not have a query or fragment (?... or #...)",
            "InfluxStorageService 'shifted': port must be a TCP port number (1-65535) or None "
            "(the URL's, else 8086), got a str",
        ])

    @defer.inlineCallbacks
    def test_the_demo_master_cfg_is_clean(self):
        # meant to be copied: not even a warning (it once had a title too long to show)
        text = DEMO_MASTER_CFG.replace('@PORT@', '0')
        code, output = yield runCheckconfig(self, text)
        self.assertEqual(code, 0, output)
        self.assertIn('Config file is good', output)
        self.assertNotIn('Warning', output)
        self.assertNotIn('too long', output)


# -- every constructor, every argument, a value of every wrong type ---------------------------

class Opaque:
    def __repr__(self):
        return f"<Opaque {PASSWORD}>"


# a plain string is shown as written where it is wrong ("report_in ... got 'days'"); an
# object or a container by its type only: its repr (Opaque's here) may hold anything
WRONG_VALUES = [1, -1, 1.5, float('nan'), True, '', 'abc', b'x', None, [], ['x'], [1], (1,),
                {}, {'a': Opaque()}, [Opaque()], {1, 2}, Opaque(), object,
                stats.CaptureBuildDurationAllBuilders(), stats.CaptureBuildDuration]
GOOD_ARGUMENTS = {'builder_name': 'alpha', 'property_name': 'p', 'data_name': 'd',
                  'url': 'influx.example.org', 'port': 8086, 'db': 'db', 'captures': [],
                  'user': 'u', 'password': PASSWORD}
SKIPPED = {'Capture', 'CaptureBuildTimes', 'StatsStepMixin', 'StatsStorageBase'}


def configurables():
    for name in stats.__all__:
        cls = getattr(stats, name)
        if inspect.isclass(cls) and name not in SKIPPED:
            yield name, cls


class WrongTypes(unittest.TestCase):
    def test_no_exception_but_configuration_errors(self):
        """The mistake is reported by config.error: never a TypeError (whose traceback
        quotes the master.cfg line), and no message holds the password."""
        tried = 0
        for name, cls in configurables():
            check = cls.checkConfig if hasattr(cls, 'checkConfig') else cls.__init__
            params = [p for p in inspect.signature(check).parameters.values()
                      if p.name != 'self' and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
            required = {p.name: GOOD_ARGUMENTS.get(p.name, 'x') for p in params
                        if p.default is inspect.Parameter.empty or p.name == 'password'}
            for param in params:
                if param.name in ('reactor', 'http_client'):
                    continue  # for tests: any object is taken
                for value in WRONG_VALUES:
                    kwargs = dict(required, **{param.name: value})
                    with config_errors.capture_config_errors() as errors:
                        try:
                            cls(**kwargs)
                        except Exception as e:  # noqa: BLE001 - what the test is about
                            self.fail(f"{name}({param.name}={value!r}) raised {e!r}")
                    for message in errors.errors:
                        self.assertNotIn(PASSWORD, message,
                                         f"{name}({param.name}=...) echoed a secret")
                    tried += 1
        self.assertGreater(tried, 1000)


# -- on a real master ------------------------------------------------------------------------

class UnknownBuilderOnARealMaster(RunMasterBase):
    proto = 'pb'

    @defer.inlineCallbacks
    def test_one_warning_per_capture_naming_an_unknown_builder(self):
        lines = []
        observer = lambda event: lines.append(log.textFromEventDict(event) or '')  # noqa: E731
        log.addObserver(observer)
        self.addCleanup(log.removeObserver, observer)
        backend = stats.InMemoryStorageService([
            stats.CaptureBuildDuration('linux'),         # the README's example builder
            stats.CaptureProperty('linux', 'warnings'),
            stats.CaptureBuildDuration('alpha'),         # exists
            stats.CaptureBuildDurationAllBuilders(),
        ], name='mem')
        secret = stats.InfluxStorageService(
            '127.0.0.1', 9, 'buildbot', PASSWORD, 'buildbot',
            captures=[stats.CaptureBuildEndTime('nightly')], name='influx')
        cfg = masterConfig(backend)
        cfg['services'][0] = stats.StatsService(storage_backends=[backend, secret],
                                                name='StatsService')
        yield self.setup_master(cfg)
        build = yield self.doForceBuild(forceParams={'builderNames': ['alpha']})
        self.assertEqual(build['results'], SUCCESS)
        yield self.tested_master.shutdown()

        warnings = [line for line in lines if 'which this master does not have' in line]
        self.assertEqual(warnings, [
            "buildbot_stats: warning: CaptureBuildDuration(builder_name='linux', "
            "report_in='seconds') names the builder 'linux', which this master does not "
            "have; it records nothing until a builder of that name exists",
            "buildbot_stats: warning: CaptureProperty(builder_name='linux', "
            "property_name='warnings') names the builder 'linux', which this master does "
            "not have; it records nothing until a builder of that name exists",
            "buildbot_stats: warning: CaptureBuildEndTime(builder_name='nightly') names the "
            "builder 'nightly', which this master does not have; it records nothing until a "
            "builder of that name exists",
        ])
        # a warning, not an error: the builds that exist are recorded
        self.assertEqual(sorted({p.series for p in backend.points}), ['alpha-build-times'])
        self.assertEqual(len(backend.points), 2)
        # the password is in no log line of the whole run, nor in a repr
        self.assertEqual([line for line in lines if PASSWORD in line], [])
        self.assertNotIn(PASSWORD, repr(secret))
