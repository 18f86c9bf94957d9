"""PrometheusStorageService without a server: configuration, names, what each point becomes,
the present and health families, the exposition formats."""

from __future__ import annotations

import datetime
import gzip
import os

from prometheus_client.parser import text_string_to_metric_families

from twisted.internet import defer
from twisted.internet import utils
from twisted.python import log
from twisted.trial import unittest

from buildbot.config.errors import capture_config_errors

from buildbot_stats import stats
from buildbot_stats.storage.prometheus.metrics import OTHER
from buildbot_stats.storage.prometheus.metrics import metricName
from buildbot_stats.storage.prometheus.snapshot import buildersOfMaster
from buildbot_stats.storage.prometheus.snapshot import exposition
from buildbot_stats.storage.prometheus.snapshot import healthFamilies
from buildbot_stats.storage.prometheus.snapshot import presentFamilies
from buildbot_stats.storage.prometheus.snapshot import slicedExposition
from buildbot_stats.tagging import TagPolicy
from tests.test_checkconfig import MASTER_CFG_HEAD
from tests.test_checkconfig import runCheckconfig

UTC = datetime.timezone.utc


def samples(registry_or_families):
    """``{(sample name, ((label, value), ...)): value}`` of the text exposition."""
    registry = registry_or_families
    if isinstance(registry_or_families, list):
        class Registry:
            def collect(self):
                return registry_or_families
        registry = Registry()
    body, _ = exposition(registry, None, None)
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            if s.name.endswith('_created'):
                continue
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


class FakeParent:
    """What the backend reads of its StatsService: the tag policy and metrics()."""

    def __init__(self, max_tag_values=1000):
        self.tag_policy = TagPolicy(max_tag_values=max_tag_values)


class CheckConfig(unittest.TestCase):
    def configErrors(self, *args, **kwargs):
        with capture_config_errors() as errors:
            stats.PrometheusStorageService(*args, **kwargs)
        return errors.errors

    def assertConfigError(self, fragment, *args, **kwargs):
        errors = self.configErrors(*args, **kwargs)
        self.assertTrue(any(fragment in e for e in errors), errors)

    def test_defaults_are_good(self):
        self.assertEqual(self.configErrors(), [])
        backend = stats.PrometheusStorageService()
        self.assertEqual([type(c).__name__ for c in backend.captures],
                         ['CaptureBuildResults', 'CaptureQueueTimes', 'CaptureStepTimes',
                          'CaptureTestResults'])
        self.assertEqual(self.configErrors(port=None, buckets=[0.1, 1, float('inf')],
                                           labels=['worker', 'branch']), [])

    def test_bad_values_are_named(self):
        self.assertConfigError("port must be a TCP port number (1-65535) or None (no server of "
                               "its own), got 70000", port=70000)
        # a string in a port's place may be a shifted secret: its type only, as everywhere
        self.assertConfigError("port must be a TCP port number (1-65535) or None (no server of "
                               "its own), got a str", port='9101')
        # one rule for every port (buildbot_stats.checks): 0, "any free port", is refused
        self.assertConfigError("port must be a TCP port number (1-65535)", port=0)
        self.assertConfigError("interface must be an address string", interface=None)
        self.assertConfigError("buckets must be a non-empty list of increasing positive "
                               "numbers of seconds, got an empty list", buckets=[])
        self.assertConfigError("seconds; the bound 3 is not (after 5)", buckets=[1, 5, 3])
        self.assertConfigError("the bound -1 is not (after 0)", buckets=[-1, 5])
        self.assertConfigError("the bound nan is not (after 1)", buckets=[1, float('nan')])
        self.assertConfigError("the bound '5' is not", buckets=[1, '5'])
        self.assertConfigError("got '1,5'", buckets='1,5')
        self.assertConfigError("step_buckets must be a non-empty list", step_buckets=[0])
        self.assertConfigError("labels: unknown label 'buildnumber'; known: worker, branch, "
                               "repository, project", labels=['buildnumber'])
        self.assertConfigError("labels must be a list of tag names, got 'worker'",
                               labels='worker')
        self.assertConfigError("labels: a label is named twice", labels=['worker', 'worker'])
        self.assertConfigError("unknown label a list", labels=[['worker']])
        self.assertConfigError("captures[0] is a str, not a Capture instance", captures=['nope'])
        # a value in the wrong place may be a secret: containers are named by their type
        errors = self.configErrors(buckets={'password': 's3cret'})
        self.assertFalse([e for e in errors if 's3cret' in e], errors)

    def test_one_unit_per_duration_gauge(self):
        self.assertConfigError(
            "CaptureBuildDuration(builder_name='a', report_in='minutes') and "
            "CaptureBuildDurationAllBuilders(builder_name=None, report_in='seconds') write "
            "the same series in different units",
            captures=[stats.CaptureBuildDuration('a', report_in='minutes'),
                      stats.CaptureBuildDurationAllBuilders()])
        self.assertEqual(self.configErrors(captures=[
            stats.CaptureBuildDuration('a', report_in='minutes'),
            stats.CaptureBuildDuration('b', report_in='hours')]), [])


class Names(unittest.TestCase):
    def test_metric_names(self):
        self.assertEqual(metricName('buildbot_data', 'code-coverage', 'percent'),
                         'buildbot_data_code_coverage_percent')
        self.assertEqual(metricName('buildbot_data', 'binarySize', 'MB (stripped)'),
                         'buildbot_data_binary_size_mb_stripped')
        self.assertEqual(metricName('9lives'), '_9lives')
        self.assertEqual(metricName('', '--'), 'unnamed')
        self.assertEqual(metricName('buildbot_data', 'ünï', 'x'), 'buildbot_data_n_x')


class Points(unittest.TestCase):
    def backend(self, **kwargs):
        backend = stats.PrometheusStorageService(port=None, **kwargs)
        backend.reconfigService(port=None, **kwargs)
        return backend

    def test_build_statistics_become_counters_and_histograms(self):
        backend = self.backend(buckets=[10, 60], step_buckets=[1])
        tags = {'builder_name': 'linux', 'result': 'success', 'worker': 'w1',
                'branch': 'main'}
        backend.postStatsValue({'result_code': 0, 'build_number': 7, 'duration': 42.0},
                               'builds', tags)
        backend.postStatsValue({'result_code': 2, 'build_number': 8, 'duration': 5.0},
                               'builds', dict(tags, result='failure'))
        backend.postStatsValue({'queue_time': 3.0, 'turnaround_time': 70.0,
                                'build_number': 7}, 'build_requests', tags)
        backend.postStatsValue({'duration': 0.5, 'step_number': 1, 'build_number': 7},
                               'steps', dict(tags, step_name='compile'))
        # a step that never started has no duration: counted written, nothing observed
        backend.postStatsValue({'step_number': 2, 'build_number': 7}, 'steps',
                               dict(tags, step_name='upload'))
        backend.postStatsValue({'passed': 3, 'failed': 1, 'skipped': 2, 'total': 6,
                                'build_number': 7}, 'tests', tags)
        got = samples(backend.registry)
        b = ('builder', 'linux')

        def get(name, *labels):
            return got[(name, tuple(sorted((b,) + labels)))]

        self.assertEqual(get('buildbot_builds_total', ('result', 'success')), 1)
        self.assertEqual(get('buildbot_builds_total', ('result', 'failure')), 1)
        self.assertEqual(get('buildbot_build_duration_seconds_bucket', ('result', 'success'),
                             ('le', '10.0')), 0)
        self.assertEqual(get('buildbot_build_duration_seconds_bucket', ('result', 'success'),
                             ('le', '60.0')), 1)
        self.assertEqual(get('buildbot_build_duration_seconds_sum', ('result', 'failure')), 5)
        self.assertEqual(get('buildbot_build_queue_seconds_sum'), 3)
        self.assertEqual(get('buildbot_build_turnaround_seconds_bucket', ('le', '60.0')), 0)
        self.assertEqual(get('buildbot_build_turnaround_seconds_bucket', ('le', '+Inf')), 1)
        self.assertEqual(get('buildbot_step_duration_seconds_bucket', ('step', 'compile'),
                             ('le', '1.0')), 1)
        self.assertNotIn(('buildbot_step_duration_seconds_count',
                          (b, ('step', 'upload'))), got)
        self.assertEqual({o: get('buildbot_tests_total', ('outcome', o))
                          for o in ('passed', 'failed', 'skipped')},
                         {'passed': 3, 'failed': 1, 'skipped': 2})
        # labels are names: no build number, no worker unless asked for
        self.assertFalse([k for k in got if any(n in ('build_number', 'worker')
                                                for n, _ in k[1])])
        self.assertEqual(backend.metrics()['written'], 6)
        self.assertEqual(backend.metrics()['rejected'], 0)

    def test_extra_labels_and_the_cardinality_guard(self):
        backend = self.backend(labels=['worker'])
        parent = FakeParent(max_tag_values=2)
        backend.parent = parent
        for worker in ['w1', 'w2', 'w3', 'w4']:
            # what a capture does: the service's policy, then the backend
            tags, fields = parent.tag_policy.apply(
                'builds', {'builder_name': 'linux', 'result': 'success', 'worker': worker},
                {'duration': 1.0})
            backend.postStatsValue(fields, 'builds', tags)
        got = samples(backend.registry)
        counts = {dict(k[1])['worker']: v for k, v in got.items()
                  if k[0] == 'buildbot_builds_total'}
        self.assertEqual(counts, {'w1': 1, 'w2': 1, OTHER: 2})

    def test_seed_captures_become_last_value_gauges(self):
        backend = self.backend(captures=[stats.CaptureBuildDuration('a', report_in='minutes'),
                                         stats.CaptureBuildStartTime('a'),
                                         stats.CaptureDataAllBuilders('coverage'),
                                         stats.CapturePropertyAllBuilders('.*', regex=True)])
        backend.parent = FakeParent()
        ctx = {'builder_name': 'a', 'build_number': '3'}
        start = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
        backend.postStatsValue({'duration': 1.5}, 'a-build-times', ctx)
        backend.postStatsValue({'start-time': start.isoformat()}, 'a-build-times', ctx)
        backend.postStatsValue({'percent': 87.5, 'lines': 1200, 'tool': 'gcov'},
                               'a-coverage', ctx)
        backend.postStatsValue({'name': 'warnings', 'value': '12'}, 'a-warnings', ctx)
        backend.postStatsValue({'name': 'got_revision', 'value': 'abc123'}, 'a-got_revision',
                               ctx)
        backend.postStatsValue({'name': 'warnings', 'value': 4}, 'a-warnings',
                               dict(ctx, build_number='4'))
        got = samples(backend.registry)
        a = (('builder', 'a'),)
        self.assertEqual(got[('buildbot_last_build_duration_seconds', a)], 90.0)
        self.assertEqual(got[('buildbot_last_build_start_timestamp_seconds', a)],
                         start.timestamp())
        self.assertEqual(got[('buildbot_data_coverage_percent', a)], 87.5)
        self.assertEqual(got[('buildbot_data_coverage_lines', a)], 1200)
        self.assertEqual(got[('buildbot_build_property',
                              (('builder', 'a'), ('property', 'warnings')))], 4)
        self.assertFalse([k for k in got if 'got_revision' in str(k) or 'tool' in str(k)])
        # the non-numeric property: rejected; the partly numeric data: written
        self.assertEqual(backend.metrics()['rejected'], 1)
        self.assertEqual(backend.metrics()['written'], 5)

    def test_bad_points_logged_once_and_counted(self):
        backend = self.backend()
        lines = []
        log.addObserver(lines.append)
        self.addCleanup(log.removeObserver, lines.append)
        for _ in range(3):
            backend.postStatsValue({'name': 'p', 'value': 'x'}, 'a-p',
                                   {'builder_name': 'a', 'build_number': '1'})
        backend.postStatsValue({'v': 1}, 'orphan-series', {})
        backend.postStatsValue({'build_number': 1}, 'build_requests', {'builder_name': 'a'})
        backend.postStatsValue({'x': 1}, 'a-data', {'builder_name': 'a'})
        text = [log.textFromEventDict(e) for e in lines]
        text = [t for t in text if 'not exposed' in t]
        self.assertEqual(len(text), 3, text)
        self.assertIn("point of 'a-p' (builder 'a', build #1) not exposed: property 'p' = "
                      "'x' is not a number", text[0])
        self.assertIn("point of 'orphan-series' not exposed: series 'orphan-series' is not "
                      "one of builder None", text[1])
        self.assertIn("point of 'build_requests' (builder 'a', build #1) not exposed: no field "
                      "these metrics use in ['build_number']", text[2])
        self.assertEqual(backend.metrics()['rejected'], 5)
        self.assertEqual(backend.metrics()['written'], 1)

    def test_points_older_than_the_start_are_history(self):
        backend = self.backend()
        backend._startedAt = 1000.0
        backend.postStatsValue({'duration': 1.0}, 'builds',
                               {'builder_name': 'a', 'result': 'success'}, timestamp=900.0)
        backend.postStatsValue({'duration': 1.0}, 'builds',
                               {'builder_name': 'a', 'result': 'success'}, timestamp=999.0)
        got = samples(backend.registry)
        self.assertEqual(got[('buildbot_builds_total',
                              (('builder', 'a'), ('result', 'success')))], 1)
        self.assertEqual(backend.metrics()['history_ignored'], 1)
        self.assertEqual(backend.metrics()['rejected'], 1)

    def test_new_buckets_at_reconfig_start_from_zero(self):
        backend = self.backend(buckets=[1, 2])
        backend.postStatsValue({'duration': 1.0}, 'builds',
                               {'builder_name': 'a', 'result': 'success'})
        backend.reconfigService(port=None, buckets=[1, 2])
        self.assertEqual(samples(backend.registry)[
            ('buildbot_builds_total', (('builder', 'a'), ('result', 'success')))], 1)
        backend.reconfigService(port=None, buckets=[1, 3])
        self.assertNotIn(('buildbot_builds_total', (('builder', 'a'), ('result', 'success'))),
                         samples(backend.registry))


class Families(unittest.TestCase):
    def test_present(self):
        now = 10_000.0
        builders = [{'builderid': 1, 'name': 'a', 'masterids': [1]},
                    {'builderid': 2, 'name': 'b', 'masterids': [1]},
                    {'builderid': 3, 'name': 'elsewhere', 'masterids': [2]}]
        running = [{'builderid': 1, 'masterid': 1, 'workerid': 5},
                   {'builderid': 1, 'masterid': 1, 'workerid': 6},
                   {'builderid': 2, 'masterid': 1, 'workerid': 5},
                   {'builderid': 3, 'masterid': 2, 'workerid': 7}]
        pending = [{'builderid': 2, 'submitted_at': datetime.datetime.fromtimestamp(
                        now - 30, UTC)},
                   {'builderid': 2, 'submitted_at': datetime.datetime.fromtimestamp(
                       now - 300, UTC)},
                   {'builderid': 3, 'submitted_at': datetime.datetime.fromtimestamp(
                       now - 5, UTC)}]
        workers = [{'connected_to': [{'masterid': 1}]}, {'connected_to': [{'masterid': 2}]},
                   {'connected_to': []}, {'connected_to': [{'masterid': 1}]}]
        got = samples(presentFamilies(*buildersOfMaster(builders, 1), running, pending,
                                      workers, 1, now))
        self.assertEqual(got, {
            ('buildbot_builds_running', (('builder', 'a'),)): 2,
            ('buildbot_builds_running', (('builder', 'b'),)): 1,
            ('buildbot_build_requests_pending', (('builder', 'a'),)): 0,
            ('buildbot_build_requests_pending', (('builder', 'b'),)): 2,
            ('buildbot_build_requests_oldest_age_seconds', (('builder', 'a'),)): 0,
            ('buildbot_build_requests_oldest_age_seconds', (('builder', 'b'),)): 300,
            ('buildbot_workers_connected', ()): 2,
            ('buildbot_workers_busy', ()): 2,
        })

    def test_health(self):
        metrics = {
            'capture_errors': 2, 'foreign_messages': 0, 'cache_misses': 5, 'demoted_tags': 1,
            'backends': {
                'influx': {'added': 10, 'written': 6, 'rejected': 1, 'dropped': 1,
                           'retries': 3, 'pending': 2, 'spool_bytes': 4096},
                'prom': {'added': 4, 'written': 4, 'rejected': 0, 'dropped': 0,
                         'retries': 0, 'pending': 0},
            },
        }
        got = samples(healthFamilies(metrics))
        self.assertEqual(got[('buildbot_stats_points_written_total',
                              (('backend', 'influx'),))], 6)
        self.assertEqual(got[('buildbot_stats_points_dropped_total',
                              (('backend', 'influx'),))], 1)
        self.assertEqual(got[('buildbot_stats_write_retries_total',
                              (('backend', 'influx'),))], 3)
        self.assertEqual(got[('buildbot_stats_points_pending', (('backend', 'influx'),))], 2)
        self.assertEqual(got[('buildbot_stats_points_added_total', (('backend', 'prom'),))], 4)
        self.assertEqual(got[('buildbot_stats_backend_spool_bytes',
                              (('backend', 'influx'),))], 4096)
        self.assertEqual(got[('buildbot_stats_capture_errors_total', ())], 2)
        self.assertEqual(got[('buildbot_stats_demoted_tags', ())], 1)


class Exposition(unittest.TestCase):
    def test_formats(self):
        backend = stats.PrometheusStorageService(port=None)
        backend.reconfigService(port=None)
        backend.postStatsValue({'duration': 1.0}, 'builds',
                               {'builder_name': 'a', 'result': 'success'})
        body, headers = exposition(backend.registry, '*/*', None)
        self.assertEqual(headers, {'Content-Type': 'text/plain; version=0.0.4; charset=utf-8'})
        self.assertIn(b'buildbot_builds_total{builder="a",result="success"} 1.0\n', body)
        body, headers = exposition(
            backend.registry,
            'application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5',
            'gzip, deflate')
        self.assertTrue(headers['Content-Type'].startswith('application/openmetrics-text'))
        self.assertEqual(headers['Content-Encoding'], 'gzip')
        text = gzip.decompress(body).decode()
        self.assertTrue(text.endswith('# EOF\n'))
        self.assertIn('buildbot_builds_total{builder="a",result="success"} 1.0\n', text)


class BuildbotCheckconfig(unittest.TestCase):
    timeout = 120

    @defer.inlineCallbacks
    def test_bad_buckets_and_unknown_label_fail_checkconfig(self):
        code, output = yield runCheckconfig(self, MASTER_CFG_HEAD + """
c['services'] = [stats.StatsService(storage_backends=[
    stats.PrometheusStorageService(buckets=[60, 10], labels=['builder_id'])])]
""")
        self.assertEqual(code, 1, output)
        self.assertIn("PrometheusStorageService: buckets must be a non-empty list of "
                      "increasing positive numbers of seconds; the bound 10 is not (after 60)",
                      output)
        self.assertIn("PrometheusStorageService: labels: unknown label 'builder_id'", output)


class FakeData:
    def __init__(self, answers, fail=None):
        self.answers = answers
        self.fail = fail

    def get(self, path, filters=None):
        if path == self.fail:
            return defer.fail(RuntimeError('database is locked'))
        return defer.succeed(self.answers[path])


class FakeMaster:
    masterid = 1

    def __init__(self, data):
        from twisted.internet import task
        self.data = data
        self.reactor = task.Clock()
        self.reactor.advance(10_000)


class Snapshot(unittest.TestCase):
    ANSWERS = {
        ('builders',): [{'builderid': 1, 'name': 'a', 'masterids': [1]}],
        ('builds',): [{'builderid': 1, 'masterid': 1, 'workerid': 3}],
        ('buildrequests',): [{'builderid': 1, 'submitted_at': datetime.datetime.fromtimestamp(
            9_990, UTC)}],
        ('workers',): [{'connected_to': [{'masterid': 1}]}],
    }

    def backend(self, data):
        backend = stats.PrometheusStorageService(port=None, name='prom')
        backend.parent = FakeParent()
        backend.parent.master = FakeMaster(data)
        backend.reconfigService(port=None)
        return backend

    @defer.inlineCallbacks
    def test_snapshot_reads_the_present_and_the_health(self):
        backend = self.backend(FakeData(self.ANSWERS))
        yield backend.snapshot()
        got = samples(backend.registry)
        self.assertEqual(got[('buildbot_builds_running', (('builder', 'a'),))], 1)
        self.assertEqual(got[('buildbot_build_requests_oldest_age_seconds',
                              (('builder', 'a'),))], 10)
        self.assertEqual(got[('buildbot_workers_busy', ())], 1)
        self.assertEqual(got[('buildbot_stats_points_added_total', (('backend', 'prom'),))], 0)

    @defer.inlineCallbacks
    def test_open_slowdowns_and_the_last_build_with_their_labels_guarded(self):
        backend = self.backend(FakeData(self.ANSWERS))

        class Regressions:
            def openSlowdowns(self):
                return {('a', 'duration'): 1, ('a', 'step:compile'): 2,
                        ('a', 'step:link'): 1, ('b', 'duration'): 1}
        backend.parent.regressions = Regressions()
        backend.parent.tag_policy = TagPolicy(max_tag_values=2)
        backend.postStatsValue({'duration': 1.0}, 'builds',
                               {'builder_name': 'a', 'result': 'success'}, timestamp=1000.0)
        backend.postStatsValue({'duration': 1.0}, 'builds',
                               {'builder_name': 'a', 'result': 'failure'}, timestamp=900.0)
        yield backend.snapshot()
        got = samples(backend.registry)
        open_ = {tuple(v for _, v in k[1]): n for k, n in got.items()
                 if k[0] == 'buildbot_stats_open_slowdowns'}
        # two series values kept; past them the label is demoted, as every guarded label:
        # the counts under _other_
        self.assertEqual(open_, {('a', 'duration'): 1, ('a', 'step:compile'): 2,
                                 ('a', OTHER): 1, ('b', OTHER): 1})
        # the latest end time, whatever the order of the points
        self.assertEqual(got[('buildbot_build_last_finished_timestamp_seconds',
                              (('builder', 'a'),))], 1000.0)

    @defer.inlineCallbacks
    def test_a_failing_read_leaves_the_present_out_logged_once(self):
        backend = self.backend(FakeData(self.ANSWERS, fail=('workers',)))
        backend.postStatsValue({'duration': 1.0}, 'builds',
                               {'builder_name': 'a', 'result': 'success'})
        yield backend.snapshot()
        yield backend.snapshot()
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        got = samples(backend.registry)
        self.assertFalse([k for k in got if k[0].startswith('buildbot_builds_running')])
        self.assertEqual(got[('buildbot_builds_total',
                              (('builder', 'a'), ('result', 'success')))], 1)
        self.assertEqual(got[('buildbot_stats_backend_snapshot_errors',
                              (('backend', 'prom'),))], 2)


class Resource(unittest.TestCase):
    """The /metrics resource without a server (twisted.web's DummyRequest)."""

    def render(self, resource, postpath=(), headers=None):
        from twisted.web import server
        from twisted.web.test.requesthelper import DummyRequest

        request = DummyRequest(list(postpath))
        for name, value in (headers or {}).items():
            request.requestHeaders.setRawHeaders(name, [value])
        body = resource.render(request)
        if body is server.NOT_DONE_YET:
            self.assertEqual(request.finished, 1)  # answered at once (no backend to read)
            body = b''.join(request.written)
        return request, body

    def test_no_backend_is_a_404_saying_why(self):
        from buildbot_stats.storage.prometheus.http import MetricsResource

        request, body = self.render(MetricsResource(lambda: None))
        self.assertEqual((request.responseCode, body),
                         (404, b'no PrometheusStorageService is configured\n'))

        def several():
            raise LookupError('several PrometheusStorageService backends are configured')

        request, body = self.render(MetricsResource(several))
        self.assertEqual((request.responseCode, body),
                         (404, b'several PrometheusStorageService backends are configured\n'))

    def test_the_files_buildbot_ui_asks_a_plugin_for_are_empty(self):
        from buildbot_stats.storage.prometheus.http import MetricsResource

        request, body = self.render(MetricsResource(lambda: None), [b'scripts.js'])
        self.assertEqual(body, b'')
        self.assertEqual(request.responseHeaders.getRawHeaders(b'content-type'),
                         [b'application/javascript'])
        request, body = self.render(MetricsResource(lambda: None), [b'other'])
        self.assertEqual(request.responseCode, 404)


DOC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'docs',
                   'storage-prometheus.rst')


def docBlock(section):
    """The first code block of a section of docs/storage-prometheus.rst, dedented."""
    with open(DOC, encoding='utf-8') as f:
        lines = f.read().split('\n')
    start = lines.index(section) + 2
    first = next(i for i in range(start, len(lines)) if lines[i].startswith('.. code-block::'))
    block = []
    for line in lines[first + 1:]:
        if line and not line.startswith('    '):
            break
        block.append(line[4:])
    return '\n'.join(block).strip('\n') + '\n'


def docQueries():
    """The PromQL expressions of the docs' Queries section (a line at the margin starts
    one, indented lines continue it, comments are left out)."""
    queries = []
    for line in docBlock('Queries').split('\n'):
        if not line.strip() or line.startswith('#'):
            continue
        if line.startswith(' ') and queries:
            queries[-1] += ' ' + line.strip()
        else:
            queries.append(line)
    return queries


PROMTOOL = '/usr/bin/promtool'


class DocumentedConfig(unittest.TestCase):
    """The docs' prometheus.yml and alert rules pass Prometheus' own checker."""

    timeout = 60

    def setUp(self):
        if not os.access(PROMTOOL, os.X_OK):
            raise unittest.SkipTest(f"{PROMTOOL} not found: install Debian's 'prometheus' "
                                    "package (scripts/install-servers.sh does)")

    @defer.inlineCallbacks
    def promtool(self, what, text, beside=()):
        """``promtool check what`` of ``text``; ``beside``: files the configuration names,
        made next to it (promtool checks that they exist)."""
        path = self.mktemp() + '.yml'
        os.makedirs(os.path.dirname(path), exist_ok=True)
        for name in beside:
            with open(os.path.join(os.path.dirname(path), name), 'w') as f:
                f.write('a-token\n')
        with open(path, 'w', encoding='utf-8') as f:
            f.write(text)
        out, err, code = yield utils.getProcessOutputAndValue(PROMTOOL, ['check', what, path])
        return code, (out + err).decode()

    @defer.inlineCallbacks
    def test_alert_rules(self):
        code, output = yield self.promtool('rules', docBlock('Alert rules'))
        self.assertEqual(code, 0, output)
        self.assertIn('SUCCESS: 6 rules found', output)

    @defer.inlineCallbacks
    def test_scrape_config(self):
        text = docBlock('Scraping it')
        self.assertIn('job_name: buildbot', text)
        self.assertIn('credentials_file: buildbot-metrics.token', text)
        self.assertIn('password_file: buildbot-metrics.token', text)
        code, output = yield self.promtool('config', text, beside=['buildbot-metrics.token'])
        self.assertEqual(code, 0, output)

    def test_queries_are_found(self):
        queries = docQueries()
        self.assertEqual(len(queries), 8, queries)
        self.assertEqual(queries[0], 'sum by (builder, result) (buildbot_builds_total)')


class SlicedExposition(unittest.TestCase):
    """A scrape written a slice at a time says what the whole exposition says."""

    def backend(self):
        backend = stats.PrometheusStorageService(port=None, labels=['worker'])
        backend.reconfigService(port=None, labels=['worker'])
        for b in range(40):
            for s in range(7):
                backend.postStatsValue({'duration': float(b * s % 400)}, 'steps',
                                       {'builder_name': f'b{b}', 'step_name': f's{s}',
                                        'worker': 'w'})
            backend.postStatsValue({'duration': float(b)}, 'builds',
                                   {'builder_name': f'b{b}', 'result': 'success',
                                    'worker': 'w'})
        backend.postStatsValue({'percent': 87.5}, 'b1-coverage', {'builder_name': 'b1'})
        return backend

    def pieces(self, backend, accept):
        headers, pieces = slicedExposition(backend.sources(), accept)
        return headers, list(pieces)

    def test_text_format(self):
        backend = self.backend()
        headers, pieces = self.pieces(backend, None)
        # 280 step histograms of 16 samples: 256 samples a slice is 16 children
        self.assertGreater(len(pieces), 280 // 16)
        self.assertEqual(headers, {'Content-Type': 'text/plain; version=0.0.4; charset=utf-8'})
        body = b''.join(pieces).decode()
        self.assertEqual(body.count('# TYPE buildbot_step_duration_seconds histogram\n'), 1)
        whole, _ = exposition(backend.registry, None, None)
        self.assertEqual(sorted(body.splitlines()), sorted(whole.decode().splitlines()))

    def test_openmetrics_parses_strictly(self):
        from prometheus_client.openmetrics.parser import text_string_to_metric_families as om

        backend = self.backend()
        accept = 'application/openmetrics-text; version=1.0.0'
        headers, pieces = self.pieces(backend, accept)
        self.assertTrue(headers['Content-Type'].startswith('application/openmetrics-text'))
        body = b''.join(pieces).decode()
        self.assertTrue(body.endswith('# EOF\n'))
        self.assertEqual(body.count('# EOF'), 1)
        # the OpenMetrics parser refuses a family split in two or a second TYPE line
        families = {f.name: f for f in om(body)}
        steps = families['buildbot_step_duration_seconds']
        self.assertEqual(len([s for s in steps.samples if s.name.endswith('_count')]), 280)
        self.assertEqual(families['buildbot_builds'].samples[0].value, 1)

    @defer.inlineCallbacks
    def test_scrape_on_the_reactor_with_gzip(self):
        from twisted.internet import reactor

        backend = self.backend()
        backend.parent = FakeParent()
        backend.parent.master = type('M', (), {'reactor': reactor, 'masterid': None,
                                               'data': None})()
        body, headers = yield backend.scrape(None, 'gzip')
        self.assertEqual(headers['Content-Encoding'], 'gzip')
        whole, _ = exposition(backend.registry, None, None)
        lines = set(gzip.decompress(body).decode().splitlines())
        # the same samples (the health counters moved on: one scrape more)
        self.assertEqual({ln for ln in lines if 'step_duration' in ln},
                         {ln for ln in whole.decode().splitlines() if 'step_duration' in ln})
        self.assertEqual(backend.metrics()['scrapes'], 1)


class StreamedScrape(unittest.TestCase):
    """The resource streams a scrape a piece at a time (on a fake clock here)."""

    def setUp(self):
        from twisted.internet import task

        self.clock = task.Clock()
        self.backend = SlicedExposition.backend(self)
        self.backend.parent = FakeParent()
        self.backend.parent.master = type('M', (), {'reactor': self.clock, 'masterid': None,
                                                    'data': None})()

    def render(self, request=None):
        from twisted.web import server
        from twisted.web.test.requesthelper import DummyRequest

        from buildbot_stats.storage.prometheus.http import MetricsResource

        request = request or DummyRequest([])
        self.assertEqual(MetricsResource(lambda: self.backend).render(request),
                         server.NOT_DONE_YET)
        # the Cooperator's turns (a fake clock runs them all in one advance)
        self.clock.advance(0)
        return request

    def test_streamed_in_pieces(self):
        request = self.render()
        self.assertEqual(request.finished, 1)
        # 280 step histograms of 16 samples, 16 a piece, and the rest
        self.assertGreater(len(request.written), 280 // 16)
        body = b''.join(request.written).decode()
        whole, _ = exposition(self.backend.registry, None, None)
        self.assertEqual({ln for ln in body.splitlines() if 'step_duration' in ln},
                         {ln for ln in whole.decode().splitlines() if 'step_duration' in ln})

    def test_a_scraper_that_goes_away_stops_the_scrape(self):
        from twisted.internet.error import ConnectionDone
        from twisted.python.failure import Failure
        from twisted.web.test.requesthelper import DummyRequest

        class LeavesAfterTwoPieces(DummyRequest):
            def write(self, data):
                super().write(data)
                if len(self.written) == 2:
                    self.processingFailed(Failure(ConnectionDone()))

        request = self.render(LeavesAfterTwoPieces([]))
        self.assertEqual(len(request.written), 2)
        self.assertEqual(request.finished, 0)
        self.assertEqual(self.flushLoggedErrors(), [])
        # the next scrape is not held by the one that ended
        request = self.render()
        self.assertEqual(request.finished, 1)
