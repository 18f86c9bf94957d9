"""The one set of option checks (buildbot_stats.checks): each rule alone, and the same rule
applied by every backend and the service."""

from __future__ import annotations

from twisted.trial import unittest

from buildbot.config.errors import capture_config_errors
from buildbot.test.util.config import ConfigErrorsMixin

from buildbot_stats import stats
from buildbot_stats.checks import booleanProblem
from buildbot_stats.checks import countProblem
from buildbot_stats.checks import durationProblem
from buildbot_stats.checks import numberProblem
from buildbot_stats.checks import portProblem
from buildbot_stats.checks import seconds
from buildbot_stats.delivery.retry import WriteOptions

DURATIONS = "(a number of seconds or a duration such as 30m, 12h, 90d, 2w)"


def configErrors(make):
    with capture_config_errors() as errors:
        make()
    return errors.errors


class Rules(unittest.TestCase):
    def test_port(self):
        for good in (1, 8086, 65535):
            self.assertIsNone(portProblem('port', good))
        for bad, got in ((0, '0'), (65536, '65536'), (-1, '-1'), (True, 'True'),
                         (8086.0, '8086.0'), ('8086', 'a str'), ([1], 'a list')):
            self.assertEqual(portProblem('port', bad),
                             f"port must be a TCP port number (1-65535), got {got}")
        self.assertIsNone(portProblem('port', None, none_means="no server"))
        self.assertEqual(portProblem('port', None),
                         "port must be a TCP port number (1-65535), got None")

    def test_count(self):
        self.assertIsNone(countProblem('batch_size', 1))
        for bad in (0, -3, 1.5, True, '10', None):
            self.assertIn("batch_size must be a positive integer, got",
                          countProblem('batch_size', bad))
        self.assertIsNone(countProblem('max_retries', 0, minimum=0, none_means="for ever"))
        self.assertIsNone(countProblem('max_retries', None, minimum=0, none_means="for ever"))
        self.assertEqual(countProblem('max_retries', -1, minimum=0, none_means="for ever"),
                         "max_retries must be an integer >= 0 or None (for ever), got -1")

    def test_duration(self):
        for good, value in ((2, 2.0), (0.5, 0.5), ('30s', 30.0), ('2m', 120.0),
                            ('1.5h', 5400.0), ('90d', 90 * 86400.0)):
            self.assertIsNone(durationProblem('flush_interval', good))
            self.assertEqual(seconds(good), value)
        for bad, got in ((0, '0'), ('0s', "'0s'"), (-1, '-1'), ('soon', "'soon'"),
                         (float('nan'), 'nan'), (float('inf'), 'inf'), (True, 'True'),
                         (None, 'None'), ({'s': 1}, 'a dict')):
            self.assertEqual(durationProblem('flush_interval', bad),
                             f"flush_interval must be a positive duration {DURATIONS}, got {got}")
        self.assertIsNone(durationProblem('stop_timeout', 0, zero=True))
        self.assertEqual(durationProblem('stop_timeout', -1, zero=True),
                         f"stop_timeout must be a duration of 0 or more {DURATIONS}, got -1")

    def test_number(self):
        for good in (1e-4, 0.5, 2, 10.0):
            self.assertIsNone(numberProblem('min_size', good))
        for bad, got in ((0, '0'), (-0.1, '-0.1'), (float('nan'), 'nan'),
                         (float('inf'), 'inf'), (True, 'True'), ('0.1', "'0.1'"),
                         (None, 'None')):
            self.assertEqual(numberProblem('min_size', bad),
                             f"min_size must be a positive number, got {got}")
        self.assertIsNone(numberProblem('max_pvalue', 0.01, below=1))
        self.assertEqual(numberProblem('max_pvalue', 1, below=1),
                         "max_pvalue must be a positive number below 1, got 1")

    def test_boolean(self):
        self.assertIsNone(booleanProblem('ssl', False))
        for bad in (0, 1, 'yes', None):
            self.assertIn("ssl must be True or False, got", booleanProblem('ssl', bad))


class EveryBackendAppliesThem(ConfigErrorsMixin, unittest.TestCase):
    def assertOneError(self, make, expected):
        self.assertEqual(configErrors(make), [expected])

    def test_durations_in_every_spelling_everywhere(self):
        sqlite = stats.SQLiteStorageService(flush_interval='2s',
                                            stop_timeout=0, busy_timeout='1m')
        sqlite.reconfigService(flush_interval='2s', stop_timeout=0, busy_timeout='1m')
        self.assertEqual((sqlite.flush_interval, sqlite.stop_timeout, sqlite.busy_timeout),
                         (2.0, 0.0, 60.0))
        options = WriteOptions(flush_interval='2s', timeout='1m', max_retry_delay='1h',
                               stop_timeout=0)
        self.assertEqual(options.problems(), [])
        self.assertEqual((options.flush_interval, options.timeout, options.max_retry_delay,
                          options.stop_timeout), (2.0, 60.0, 3600.0, 0.0))
        self.assertEqual(configErrors(lambda: stats.InfluxStorageService(
            'h', None, None, None, 'db', [], flush_interval='2s', stop_timeout='10s')), [])

    def test_one_message_per_rule_whichever_backend(self):
        self.assertOneError(
            lambda: stats.SQLiteStorageService(flush_interval='soon'),
            f"SQLiteStorageService: flush_interval must be a positive duration {DURATIONS}, "
            "got 'soon'")
        self.assertOneError(
            lambda: stats.InfluxStorageService('h', None, None, None, 'db', [],
                                               flush_interval='soon'),
            f"InfluxStorageService: flush_interval must be a positive duration {DURATIONS}, "
            "got 'soon'")
        self.assertOneError(
            lambda: stats.SQLiteStorageService(stop_timeout=-1),
            f"SQLiteStorageService: stop_timeout must be a duration of 0 or more {DURATIONS}, "
            "got -1")
        self.assertOneError(
            lambda: stats.InfluxStorageService('h', None, None, None, 'db', [], stop_timeout=-1),
            f"InfluxStorageService: stop_timeout must be a duration of 0 or more {DURATIONS}, "
            "got -1")
        self.assertOneError(
            lambda: stats.SQLiteStorageService(batch_size=True),
            "SQLiteStorageService: batch_size must be a positive integer, got True")
        self.assertOneError(
            lambda: stats.InfluxStorageService('h', None, None, None, 'db', [], batch_size=True),
            "InfluxStorageService: batch_size must be a positive integer, got True")
        self.assertOneError(
            lambda: stats.StatsService(catch_up=1),
            "StatsService: catch_up must be True or False, got 1")
        self.assertOneError(
            lambda: stats.InfluxStorageService('h', None, None, None, 'db', [], ssl=1),
            "InfluxStorageService: ssl must be True or False, got 1")
        self.assertOneError(
            lambda: stats.StatsService(max_tag_values=0),
            "StatsService: max_tag_values must be a positive integer or None (no limit), "
            "got 0")
