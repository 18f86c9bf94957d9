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

        # the line troubleshooting looks for first: the service is there, with its backends
        self.assertIn("buildbot_stats: StatsService started; backends: InMemoryStorageService "
                      "'mem' (4 captures), InfluxStorageService 'influx' (1 capture)", lines)
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


# -- an unknown keyword, a missing or extra argument ------------------------------------------

def requiredArguments(check):
    params = [p for p in inspect.signature(check).parameters.values()
              if p.name != 'self' and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    return {p.name: GOOD_ARGUMENTS.get(p.name, 'x') for p in params
            if p.default is inspect.Parameter.empty or p.name in GOOD_ARGUMENTS}


def constructors():
    """Every class and function of the master.cfg namespace a user calls, with the
    arguments that make a good call."""
    for name, cls in configurables():
        yield name, cls, requiredArguments(
            cls.checkConfig if hasattr(cls, 'checkConfig') else cls.__init__)
    yield 'statsDashboard', stats.statsDashboard, {}


class UnknownArguments(unittest.TestCase):
    def errorsOf(self, func, *args, **kwargs):
        """The configuration errors of one call, as ``buildbot checkconfig`` collects them;
        any other exception fails the test."""
        with config_errors.capture_config_errors() as errors:
            try:
                func(*args, **kwargs)
            except config_errors.ConfigErrors:
                raise  # one that ends the loading: collected as checkconfig does
            except Exception as e:  # noqa: BLE001 - what the test is about
                self.fail(f"{func.__name__}: raised {e!r}")
        return errors.errors

    def test_an_unknown_keyword_is_one_error_naming_it_on_every_constructor(self):
        names = []
        for name, func, good in constructors():
            self.assertEqual(self.errorsOf(func, **good), [], name)
            errors = self.errorsOf(func, **good, reportin=PASSWORD, zzz=['x'])
            self.assertEqual(len(errors), 2, (name, errors))
            self.assertTrue(errors[0].startswith(f"{name}: unknown argument reportin="),
                            errors)
            self.assertTrue(errors[1].startswith(f"{name}: unknown argument zzz=; it takes "),
                            errors)
            for message in errors:
                self.assertNotIn(PASSWORD, message)
                self.assertEqual(len(message.splitlines()), 1)
            names.append(name)
        # every capture, every backend, the service and the page
        self.assertGreaterEqual(len(names), 20, names)
        self.assertTrue({'CaptureBuildDuration', 'CaptureTestResults', 'SQLiteStorageService',
                         'InfluxStorageService', 'PrometheusStorageService', 'StatsService',
                         'InMemoryStorageService', 'statsDashboard'} <= set(names), names)

    def test_the_message_lists_the_arguments_and_the_nearest_one(self):
        self.assertEqual(
            self.errorsOf(stats.CaptureBuildDuration, 'linux', reportin='minutes'),
            ["CaptureBuildDuration: unknown argument reportin= (did you mean report_in=?); "
             "it takes builder_name, report_in, callback"])
        self.assertEqual(
            self.errorsOf(stats.SQLiteStorageService, 'stats.sqlite', batchsize=10),
            ["SQLiteStorageService: unknown argument batchsize= (did you mean batch_size=?); "
             "it takes path, captures, batch_size, flush_interval, max_pending, "
             "stop_timeout, busy_timeout, keep, keep_rollups, name"])
        # retention's keywords are declared as the others (keep= misspelt is named)
        self.assertEqual(
            self.errorsOf(stats.SQLiteStorageService, 'stats.sqlite', keep_rollup='1y'),
            ["SQLiteStorageService: unknown argument keep_rollup= (did you mean "
             "keep_rollups=?); it takes path, captures, batch_size, flush_interval, "
             "max_pending, stop_timeout, busy_timeout, keep, keep_rollups, name"])
        self.assertEqual(
            self.errorsOf(stats.StatsService, storage_backend=[], name='s'),
            ["StatsService 's': unknown argument storage_backend= (did you mean "
             "storage_backends=?); it takes storage_backends, extra_tags, max_tag_values, "
             "catch_up, record_data, build_number, regressions, name"])

    def test_a_missing_or_extra_argument_is_an_error_too(self):
        self.assertEqual(self.errorsOf(stats.CaptureBuildDuration),
                         ["CaptureBuildDuration: missing a required argument: 'builder_name'"])
        self.assertEqual(
            self.errorsOf(stats.CaptureProperty, 'linux', 'p', None, False, PASSWORD),
            ["CaptureProperty: too many positional arguments"])
        self.assertEqual(
            self.errorsOf(stats.InfluxStorageService, 'h', 8086, 'u', PASSWORD, 'db', [],
                          url='h'),
            ["InfluxStorageService: multiple values for argument 'url'"])

    def test_a_capture_of_ones_own_is_checked_the_same_way(self):
        class CaptureMine(stats.CaptureBuildDuration):
            def __init__(self, builder_name, threshold=10):
                super().__init__(builder_name)
                self.threshold = threshold

        self.assertEqual(self.errorsOf(CaptureMine, 'linux', treshold=3),
                         ["CaptureMine: unknown argument treshold= (did you mean threshold=?); "
                          "it takes builder_name, threshold"])
        self.assertEqual(CaptureMine('linux', threshold=3).threshold, 3)


class UnknownArgumentsInCheckconfig(unittest.TestCase):
    timeout = 120

    @defer.inlineCallbacks
    def test_the_issues_line_no_traceback_no_password(self):
        # the case as reported: a misspelt keyword on the line that holds the password
        captures = "[stats.CaptureBuildDuration('alpha', reportin='minutes')]"
        services = ("c['services'] = [stats.StatsService(storage_backends=["
                    f"{influx('influx', captures)}], extra_tag={{'a': 'b'}})]\n")
        code, output = yield runCheckconfig(self, MASTER_CFG_HEAD + services)
        self.assertEqual(code, 1, output)
        self.assertNotIn('Traceback', output)
        self.assertNotIn('error while parsing config file', output)
        self.assertNotIn(PASSWORD, output)
        self.assertEqual(configErrors(output), [
            "CaptureBuildDuration: unknown argument reportin= (did you mean report_in=?); it "
            "takes builder_name, report_in, callback",
            "StatsService: unknown argument extra_tag= (did you mean extra_tags=?); it takes "
            "storage_backends, extra_tags, max_tag_values, catch_up, record_data, "
            "build_number, regressions, name",
        ])
