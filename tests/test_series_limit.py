"""InfluxDB's series limit, without a real InfluxDB: the answers that name a limit, the
writer's count of them, the hourly explanation, the series checks against a local web server
(real treq, real twisted.web), what /metrics and the page make of them, and where the seed's
captures put the build number. The real InfluxDB and the real master: test_series_influxdb."""

from __future__ import annotations

import datetime
import json
import os
import urllib.parse

import treq.client
from twisted.internet import defer
from twisted.internet import reactor
from twisted.internet import task
from twisted.python import log
from twisted.trial import unittest
from twisted.web.client import Agent

from buildbot.test.util.config import ConfigErrorsMixin

from buildbot_stats import stats
from buildbot_stats.counters import DeliveryCounters
from buildbot_stats.delivery import sender as S
from buildbot_stats.delivery.buffer import Chunk
from buildbot_stats.delivery.retry import WriteOptions
from buildbot_stats.delivery.writer import BatchWriter
from buildbot_stats.reading.forms import oneFormPerBuild
from buildbot_stats.storage.influxdb import series as SW
from buildbot_stats.storage.prometheus.snapshot import healthFamilies
from buildbot_stats.storage.sqlite.values import encodeRow
from buildbot_stats.tagging import TagPolicy
from buildbot_stats.www.notices import seriesFacts
from buildbot_stats.www.notices import seriesNotices
from tests.faultserver import FaultServer
from tests.test_delivery import OK
from tests.test_delivery import FakeSender
from tests.waiting import waitUntil

MAX_SERIES_1X = (b'{"error":"partial write: max-series-per-database limit exceeded: (25) '
                 b'dropped=13"}\n')
MAX_VALUES_1X = (b'{"error":"partial write: max-values-per-tag limit exceeded (4/4): '
                 b'measurement=\\"alpha-build-times\\" tag=\\"build_number\\" value=\\"4\\" '
                 b'dropped=1"}\n')


class Logged:
    """The log lines emitted while it is installed (a test's cleanup removes it)."""

    def __init__(self, test):
        self.events = []
        log.addObserver(self.events.append)
        test.addCleanup(log.removeObserver, self.events.append)

    def lines(self, *words):
        out = []
        for e in self.events:
            text = ' '.join(map(str, e.get('message', ())))
            if all(w in text for w in words):
                out.append(text)
        return out


class RecognizeLimits(unittest.TestCase):
    """Every server's words for a cardinality limit, and what the writer does with them."""

    def test_influxdb_1x_partial_writes_name_the_limit(self):
        o = S.classify(400, MAX_SERIES_1X, None, 0)
        self.assertEqual((o.kind, o.rejected, o.limit),
                         (S.PARTIAL, 13, S.Limit('max-series-per-database', 25)))
        o = S.classify(400, MAX_VALUES_1X, None, 0)
        self.assertEqual((o.kind, o.rejected), (S.PARTIAL, 1))
        self.assertEqual(o.limit, S.Limit('max-values-per-tag', 4, 'alpha-build-times',
                                          'build_number', '4'))
        self.assertEqual(o.limit.describe(), "max-values-per-tag (4) for tag 'build_number' "
                         "of measurement 'alpha-build-times'")

    def test_whole_refusals_are_isolated_not_retried(self):
        # InfluxDB 1.0 refused the whole batch with a 500
        o = S.classify(500, b'{"error":"max series per database exceeded: cpu,host=a"}',
                       None, 0)
        self.assertEqual((o.kind, o.limit), (S.BAD_REQUEST, S.Limit('max-series-per-database')))
        # InfluxDB Cloud 2 (TSM): both wordings of its docs
        for status, body in ((503, b"Series cardinality exceeds your plan's limit"),
                             (429, b'{"code":"too many requests","message":"Series '
                                   b'cardinality exceeds your plan\'s service quota"}')):
            o = S.classify(status, body, b'30', 0)
            self.assertEqual((o.kind, o.limit), (S.BAD_REQUEST, S.Limit('series cardinality')))
        # InfluxDB 3: columns and tables
        o = S.classify(400, b'{"code":"invalid","message":"dml handler error: service limit '
                       b'reached: couldn\'t create columns in table t; table contains 199 '
                       b'existing columns, applying this write would result in 267 columns, '
                       b'limit is 200"}', None, 0)
        self.assertEqual((o.kind, o.limit), (S.BAD_REQUEST, S.Limit('columns per table', 200)))

    def test_other_answers_name_no_limit(self):
        for status, body in ((400, b'{"error":"partial write: field type conflict dropped=1"}'),
                             (400, b'{"error":"unable to parse"}'),
                             (429, b'Too Many Requests'), (503, b'busy'),
                             (500, b'timeout'), (404, b'database not found')):
            self.assertIsNone(S.classify(status, body, None, 0).limit, body)
        self.assertEqual(S.classify(429, b'Too Many Requests', None, 0).kind, S.RETRY)


class WriterCountsLimitRefusals(unittest.TestCase):

    def setUp(self):
        self.clock = task.Clock()
        self.sender = FakeSender()
        self.counters = DeliveryCounters()
        self.told = []

    def makeWriter(self, on_limit=True, **options):
        options.setdefault('jitter', 0.0)
        w = BatchWriter(self.sender, WriteOptions(**options), self.counters, self.clock,
                        'test', on_limit=self.onLimit if on_limit else None)
        w.start()
        return w

    def onLimit(self, outcome, chunk, count):
        self.told.append((outcome.limit.name, len(chunk), count))

    def add(self, w, n, start=0):
        for i in range(start, start + n):
            w.add(b'm,build_number=%d v=%di %d' % (i, i, i))

    def partialPastTheLimit(self, body):
        """As InfluxDB 1.6 past max-series-per-database: the lines of odd build numbers
        would create series and are refused; and it drops the FIRST points of the batch,
        as many as it refused, not the refused ones (what it really does: measured in
        test_series_influxdb)."""
        lines = body.split(b'\n')
        new = [ln for ln in lines if int(ln.split(b'=')[1].split(b' ')[0]) % 2]
        if not new:
            self.landed.extend(lines)
            return OK
        self.landed.extend(ln for ln in lines[len(new):] if ln not in new)
        return S.classify(400, MAX_SERIES_1X.replace(b'13', b'%d' % len(new)), None, 0)

    def test_partial_write_isolated_counted_apart_and_told_not_logged_per_batch(self):
        self.landed = []
        self.sender.script = [self.partialPastTheLimit] * 100
        logged = Logged(self)
        w = self.makeWriter(batch_size=8)
        self.add(w, 16)
        self.assertEqual(self.counters.asDict(), {
            'added': 16, 'written': 8, 'rejected': 8, 'dropped': 0, 'retries': 0,
            'pending': 0})
        self.assertEqual(self.counters.limit_rejected, 8)
        # every point of an existing series landed, though the server dropped wrong ones
        self.assertEqual(sorted(set(self.landed)),
                         sorted(b'm,build_number=%d v=%di %d' % (i, i, i)
                                for i in range(0, 16, 2)))
        self.assertEqual(sum(n for _, _, n in self.told), 8)
        self.assertEqual({name for name, _, _ in self.told}, {'max-series-per-database'})
        self.assertEqual(logged.lines('rejected by the server'), [])
        # the periodic report leaves out what on_limit tells
        self.clock.advance(60)
        self.assertEqual(logged.lines('DeliveryCounters'), [])

    def test_a_partial_write_of_refused_lines_only_ends_at_once(self):
        self.sender.script = [S.classify(400, MAX_SERIES_1X.replace(b'13', b'3'), None, 0)]
        w = self.makeWriter(batch_size=3)
        self.add(w, 3)
        self.assertEqual(len(self.sender.bodies), 1)
        self.assertEqual((self.counters.rejected, self.counters.limit_rejected), (3, 3))
        self.assertEqual(self.told, [('max-series-per-database', 3, 3)])

    def test_other_rejections_still_logged_and_reported(self):
        self.sender.script = [S.Outcome(S.PARTIAL, 400, 'HTTP 400: conflict', rejected=1)]
        logged = Logged(self)
        w = self.makeWriter(batch_size=2)
        self.add(w, 2)
        self.assertEqual((self.counters.rejected, self.counters.limit_rejected), (1, 0))
        self.assertEqual(len(logged.lines('1 of 2 points rejected by the server')), 1)
        self.clock.advance(60)
        self.assertEqual(len(logged.lines('DeliveryCounters', 'rejected=1')), 1)

    def test_a_whole_refusal_is_split_down_to_the_new_series(self):
        refused = S.classify(503, b"Series cardinality exceeds your plan's limit", None, 0)

        def answer(body):
            # lines 5 and 6 would create series; the others exist
            return refused if (b'v=5i' in body or b'v=6i' in body) else OK
        self.sender.script = [answer] * 30
        self.add(self.makeWriter(batch_size=8), 8)
        self.assertEqual((self.counters.written, self.counters.rejected,
                          self.counters.limit_rejected, self.counters.pending), (6, 2, 2, 0))
        self.assertEqual(self.told, [('series cardinality', 1, 1)] * 2)

    def test_without_on_limit_the_writer_says_it_itself(self):
        self.sender.script = [S.classify(400, MAX_SERIES_1X.replace(b'13', b'1'), None, 0)]
        logged = Logged(self)
        w = self.makeWriter(on_limit=False, batch_size=1)
        self.add(w, 1)
        self.assertEqual(len(logged.lines('error', "max-series-per-database (25) limit")), 1)


class LimitReportTest(unittest.TestCase):

    def test_one_error_then_at_most_hourly_with_the_count_since(self):
        clock = task.Clock()
        logged = Logged(self)
        report = SW.LimitReport('InfluxStorageService x', clock,
                                describe=lambda lines: f" {len(lines)} lines.",
                                fix=lambda limit: "Fix: this.")
        outcome = S.classify(400, MAX_SERIES_1X, None, 0)
        chunk = Chunk([b'a,build_number=1 v=1 1'] * 20)
        for _ in range(5):
            report(outcome, chunk, 13)
            clock.advance(600)
        self.assertEqual(report.refused, 65)
        errors = logged.lines('InfluxDB refused')
        self.assertEqual(len(errors), 1, errors)
        self.assertIn("InfluxDB refused 13 points: its limit max-series-per-database (25) is "
                      "reached", errors[0])
        self.assertIn(" 20 lines. Fix: this.", errors[0])
        self.assertIn("repeats at most every 1 h", errors[0])
        clock.advance(600)  # an hour after the first
        report(outcome, chunk, 13)
        errors = logged.lines('InfluxDB refused')
        self.assertEqual(len(errors), 2)
        self.assertIn("(65 points refused for it since the last message)", errors[1])

    def test_the_series_and_captures_that_hit_it(self):
        lines = [b'builds,builder_name=alpha,result=success duration=1 1',
                 b'alpha-build-times,builder_name=alpha,build_number=12 duration=3 1',
                 b'alpha-build-times,builder_name=alpha,build_number=12 end-time="x" 2',
                 b'alpha-warn\\ ings,builder_name=alpha,build_number=12 name="w",value=3 1']
        self.assertEqual(SW.perBuildSeries(lines), {
            'alpha-build-times': ('alpha',
                                  'alpha-build-times,builder_name=alpha,build_number=12'),
            'alpha-warn ings': ('alpha', 'alpha-warn\\ ings,builder_name=alpha,build_number=12')})
        backend = stats.InfluxStorageService(
            'localhost', None, None, None, 'db',
            [stats.CaptureBuildDurationAllBuilders(), stats.CaptureBuildEndTime('alpha'),
             stats.CaptureBuildEndTime('beta'), stats.CapturePropertyAllBuilders('warn ings'),
             stats.CaptureBuildResults()], name='influx')
        text = backend._describeRefused(lines)
        self.assertIn("Each build adds a new series to alpha-build-times (written by "
                      "CaptureBuildDurationAllBuilders(builder_name=None, report_in='seconds'), "
                      "CaptureBuildEndTime(builder_name='alpha'); for example the series "
                      "alpha-build-times,builder_name=alpha,build_number=12)", text)
        self.assertIn("alpha-warn ings (written by CapturePropertyAllBuilders(builder_name=None, "
                      "property_name='warn ings')", text)
        self.assertIn("because build_number is a tag", text)
        self.assertIn("StatsService(build_number='field')",
                      backend._limitFix(S.Limit('max-series-per-database', 25)))
        # a batch without per-build series: its measurements
        self.assertIn("The refused batch wrote to builds (written by CaptureBuildResults",
                      backend._describeRefused(lines[:1]))


class ScriptedInflux:
    """A local web server answering /query as InfluxDB 1.x would (or as told)."""

    def __init__(self, test, cardinality=20, tag_values=(('alpha-build-times', 7),),
                 diagnostics=(25, 100), status=200):
        self.server = FaultServer()
        test.addCleanup(self.server.stop)
        self.cardinality, self.tag_values = cardinality, tag_values
        self.diagnostics, self.status = diagnostics, status
        self.queries = []

    def answer(self, request, body):
        form = urllib.parse.parse_qs(body.decode())
        self.queries.append((request.path, form, request.getHeader('authorization')))
        if self.status != 200:
            return self.status, b'{"error":"authorization failed"}'
        results = [{'statement_id': 0, 'series': [{'columns': ['cardinality estimation'],
                                                   'values': [[self.cardinality]]}]},
                   {'statement_id': 1, 'series': [
                       {'name': m, 'columns': ['count'], 'values': [[n]]}
                       for m, n in self.tag_values]}]
        if self.diagnostics is None:
            results.append({'statement_id': 2, 'error': 'error authorizing query: bb not '
                            'authorized to execute statement \'SHOW DIAGNOSTICS\', requires '
                            'admin privilege'})
        else:
            series, values = self.diagnostics
            results.append({'statement_id': 2, 'series': [
                {'name': 'build', 'columns': ['Version'], 'values': [['1.6.7']]},
                {'name': 'config-data', 'columns': [
                    'dir', 'max-series-per-database', 'max-values-per-tag'],
                 'values': [['/x', series, values]]}]})
        return 200, json.dumps({'results': results}).encode()

    def script(self, n=10):
        self.server.query_script = [('fn', self.answer)] * n


class SeriesWatchTest(unittest.TestCase):

    @defer.inlineCallbacks
    def startBackend(self, influx, **kwargs):
        influx.script()
        backend = stats.InfluxStorageService(influx.server.url, None, 'bb', 'pw', 'stats db',
                                             [], name='influx', **kwargs)
        yield backend.startService()
        self.addCleanup(backend.stopService)
        yield backend.series_watch._checking
        return backend

    @defer.inlineCallbacks
    def test_checked_at_start_with_the_servers_limit_and_warned_once(self):
        influx = ScriptedInflux(self, cardinality=21, diagnostics=(25, 100))
        logged = Logged(self)
        backend = yield self.startBackend(influx)
        path, form, auth = influx.queries[0]
        self.assertEqual(path, b'/query')
        self.assertEqual(form['db'], ['stats db'])
        self.assertEqual(form['q'], [';'.join(SW.STATEMENTS)])
        self.assertTrue(auth.startswith('Basic '))  # the backend's own client and headers
        m = backend.metrics()
        self.assertEqual({k: m[k] for k in ('series', 'series_limit', 'build_number_values',
                                            'values_per_tag_limit', 'series_limit_warning',
                                            'limit_rejected')},
                         {'series': 21, 'series_limit': 25, 'build_number_values': 7,
                          'values_per_tag_limit': 100, 'series_limit_warning': 1,
                          'limit_rejected': 0})
        warnings = logged.lines('warning', 'series')
        self.assertEqual(len(warnings), 1, warnings)
        self.assertIn("the database holds 21 series, 84% of its limit (25, reported by the "
                      "server", warnings[0])
        self.assertIn("StatsService(build_number='field')", warnings[0])
        # checked again: still past 80 %, not warned again
        yield backend.series_watch.check()
        self.assertEqual(len(logged.lines('warning', 'series')), 1)

    @defer.inlineCallbacks
    def test_hourly_on_the_reactor_clock(self):
        influx = ScriptedInflux(self, cardinality=3)
        influx.script()
        clock = task.Clock()
        # timers on the fake clock; the HTTP client on the real reactor
        backend = stats.InfluxStorageService(influx.server.url, None, None, None, 'db', [],
                                             reactor=clock, http_client=treq.client.HTTPClient(
                                                 Agent(reactor)))
        yield backend.startService()
        self.addCleanup(backend.stopService)
        yield backend.series_watch._checking
        self.assertEqual(len(influx.queries), 1)
        clock.advance(3599)
        self.assertEqual(len(influx.queries), 1)
        clock.advance(1)
        yield backend.series_watch._checking
        self.assertEqual(len(influx.queries), 2)
        self.assertEqual(backend.metrics()['series'], 3)

    @defer.inlineCallbacks
    def test_limit_learned_from_a_refusal_when_the_server_will_not_say(self):
        influx = ScriptedInflux(self, cardinality=20, diagnostics=None)
        logged = Logged(self)
        backend = yield self.startBackend(influx)
        self.assertEqual(len(logged.lines("SHOW DIAGNOSTICS needs an admin user")), 1)
        self.assertNotIn('series_limit', backend.metrics())
        self.assertEqual(backend.metrics()['series_limit_warning'], 0)
        watch = backend.series_watch
        watch.learn(S.Limit('max-series-per-database', 22))
        self.assertEqual(watch.limit(), (22, 'learned from a refusal'))
        yield watch.check()
        self.assertEqual(backend.metrics()['series_limit'], 22)
        self.assertEqual(backend.metrics()['series_limit_warning'], 1)
        self.assertIn("learned from a refusal", logged.lines('warning', 'series')[0])

    @defer.inlineCallbacks
    def test_configured_limit_is_the_fallback(self):
        influx = ScriptedInflux(self, cardinality=10, diagnostics=None)
        backend = yield self.startBackend(influx, max_series=12)
        self.assertEqual(backend.series_watch.limit(), (12, 'from max_series'))
        self.assertEqual(backend.metrics()['series_limit_warning'], 1)
        # the server's own word wins over the option
        influx.diagnostics = (0, 0)
        yield backend.series_watch.check()
        self.assertEqual(backend.series_watch.limit(), (0, 'reported by the server'))
        self.assertEqual(backend.metrics()['series_limit_warning'], 0)

    @defer.inlineCallbacks
    def test_a_check_under_way_is_given_up_at_stop(self):
        influx = ScriptedInflux(self)
        influx.server.query_script = [('hang',)]
        backend = stats.InfluxStorageService(influx.server.url, None, None, None, 'db', [],
                                             timeout=60.0)
        yield backend.startService()
        watch = backend.series_watch
        yield waitUntil(lambda: influx.server.hanging)
        self.assertIsNotNone(watch._checking)
        # a refusal asks for a check now: the stop cancels it too
        watch.learn(S.Limit('max-series-per-database', 5))
        soon = watch._soon
        self.assertTrue(soon.active())
        yield backend.stopService()  # does not wait for the server's answer
        self.assertIsNone(watch._checking)
        self.assertFalse(soon.active())
        self.assertEqual(len(influx.server.queries), 1)

    @defer.inlineCallbacks
    def test_an_error_is_said_once_and_never_raised(self):
        influx = ScriptedInflux(self, status=401)
        logged = Logged(self)
        backend = yield self.startBackend(influx)
        yield backend.series_watch.check()
        self.assertEqual(len(logged.lines('cannot check the series: HTTP 401')), 1)
        self.assertNotIn('series', backend.metrics())

    @defer.inlineCallbacks
    def test_a_bucket_is_asked_in_flux_and_influxdb3_says_it_has_none(self):
        server = FaultServer()
        self.addCleanup(server.stop)
        asked = []

        def flux(request, body):
            asked.append((request.path, request.args, json.loads(body)))
            return 200, b',result,table,_value\r\n,_result,0,4321\r\n\r\n'
        server.query_script = [('fn', flux), ('status', 404, b'not found', {})]
        logged = Logged(self)
        backend = stats.InfluxStorageService(server.url, None, None, None, None, [],
                                             bucket='b"1', org='ci', token='t', name='v2')
        yield backend.startService()
        self.addCleanup(backend.stopService)
        yield backend.series_watch._checking
        path, args, doc = asked[0]
        self.assertEqual((path, args), (b'/api/v2/query', {b'org': [b'ci']}))
        self.assertIn('influxdb.cardinality(bucket: "b\\"1"', doc['query'])
        self.assertEqual(backend.metrics()['series'], 4321)
        yield backend.series_watch.check()
        self.assertEqual(len(logged.lines('InfluxDB 3.x has none')), 1)


class HealthOnMetricsAndPage(unittest.TestCase):

    METRICS = {'capture_errors': 0, 'backends': {
        'influx': {'added': 100, 'written': 22, 'rejected': 78, 'dropped': 0, 'retries': 0,
                   'pending': 0, 'limit_rejected': 78, 'series': 25, 'series_limit': 25,
                   'build_number_values': 9, 'values_per_tag_limit': 100000,
                   'series_limit_warning': 1},
        'sqlite': {'added': 100, 'written': 100, 'rejected': 0, 'dropped': 0, 'retries': 0,
                   'pending': 0}}}

    def test_metrics_families(self):
        families = {f.name: f for f in healthFamilies(self.METRICS)}
        samples = {(s.name, tuple(s.labels.items())): s.value
                   for f in families.values() for s in f.samples}
        self.assertEqual(samples[('buildbot_stats_points_rejected_by_limit_total',
                                  (('backend', 'influx'),))], 78)
        self.assertEqual(samples[('buildbot_stats_series', (('backend', 'influx'),))], 25)
        self.assertEqual(samples[('buildbot_stats_series_limit', (('backend', 'influx'),))], 25)
        self.assertEqual(samples[('buildbot_stats_series_limit_warning',
                                  (('backend', 'influx'),))], 1)
        # a backend that meets no limit has none of them; nothing is exported twice
        self.assertNotIn(('buildbot_stats_series', (('backend', 'sqlite'),)), samples)
        self.assertFalse([n for n in families if n.startswith('buildbot_stats_backend_')])

    def test_page_notices(self):
        notices = seriesNotices(self.METRICS)
        self.assertEqual(len(notices), 1)
        self.assertIn("Storage backend 'influx': the database holds 25 series, 100% of its "
                      "limit of 25", notices[0])
        self.assertIn("InfluxDB refused 78 points", notices[0])
        self.assertIn("StatsService(build_number='field')", notices[0])
        self.assertNotIn("build_number='field'", seriesNotices(self.METRICS, 'field')[0])
        quiet = {'backends': {'influx': dict(self.METRICS['backends']['influx'], series=10,
                                             limit_rejected=0)}}
        self.assertEqual(seriesNotices(quiet), [])
        self.assertEqual(seriesFacts(quiet), ["The database of 'influx' holds 10 series of "
                                              "its limit of 25 (40%), checked hourly."])
        unlimited = {'backends': {'influx': {'series': 10, 'series_limit': 0}, 'sqlite': {}}}
        self.assertEqual(seriesFacts(unlimited), ["The database of 'influx' holds 10 series "
                                                  "(no series limit), checked hourly."])


T0 = datetime.datetime(2024, 5, 1, 12, 0, 0)


class SeedCapturesInTheFieldForm(ConfigErrorsMixin, unittest.TestCase):
    """StatsService(build_number='field'): where the build number goes, and the times."""

    def test_the_options_are_checked(self):
        with self.assertRaisesConfigError("build_number must be 'tag' (Buildbot's layout"):
            stats.StatsService(build_number='fields')
        stats.StatsService(build_number='field')
        # the rules of every option (buildbot_stats.checks): a count, a duration
        with self.assertRaisesConfigError("max_series must be a positive integer or None "
                                          "(the limit the database reports), got 0"):
            stats.InfluxStorageService('localhost', None, None, None, 'db', [], max_series=0)
        with self.assertRaisesConfigError("series_check_interval must be a duration of 0 or "
                                          "more (a number of seconds or a duration such as "
                                          "30m, 12h, 90d, 2w) or None (no checks), got "
                                          "'hourly'"):
            stats.InfluxStorageService('localhost', None, None, None, 'db', [],
                                       series_check_interval='hourly')
        stats.InfluxStorageService('localhost', None, None, None, 'db', [], max_series=5,
                                   series_check_interval=None)
        backend = stats.InfluxStorageService('localhost', None, None, None, 'db', [],
                                             series_check_interval='2h')
        backend.reconfigService('localhost', None, None, None, 'db', [],
                                series_check_interval='2h')
        self.assertEqual(backend.series_check_interval, 7200.0)

    def points(self, capture, builds, form):
        backend = stats.InMemoryStorageService([capture])
        policy = TagPolicy(build_number=form)
        capture.attach(None, [backend], time_offset=2e-6)
        capture._own_tag_policy = policy
        for build in builds:
            capture._consumeOf('alpha', build)
        return backend.points

    def builds(self, numbers):
        # every build ends in the same second
        return [{'number': n, 'buildid': n, 'builderid': 1, 'started_at': T0,
                 'complete_at': T0 + datetime.timedelta(seconds=30)} for n in numbers]

    def test_build_times_apart_in_the_field_form_unchanged_in_the_tag_form(self):
        end = T0.replace(tzinfo=datetime.timezone.utc).timestamp() + 30
        tagged = self.points(stats.CaptureBuildDuration('alpha'), self.builds([7, 8]), 'tag')
        self.assertEqual([(p.tags, p.fields) for p in tagged],
                         [({'builder_name': 'alpha', 'build_number': '7'}, {'duration': 30.0}),
                          ({'builder_name': 'alpha', 'build_number': '8'}, {'duration': 30.0})])
        self.assertEqual([round(p.time - end, 6) for p in tagged], [2e-6, 2e-6])
        fielded = self.points(stats.CaptureBuildDuration('alpha'), self.builds([7, 8, 1007]),
                              'field')
        self.assertEqual([(p.tags, p.fields) for p in fielded],
                         [({'builder_name': 'alpha'}, {'duration': 30.0, 'build_number': n})
                          for n in (7, 8, 1007)])
        # 1 ms per build number (mod 1000), plus the capture's microseconds
        self.assertEqual([round(p.time - end, 6) for p in fielded], [0.007002, 0.008002, 0.007002])

    def test_properties_and_data(self):
        prop = stats.CaptureProperty('alpha', 'warnings')
        backend = stats.InMemoryStorageService([prop])
        prop.attach(None, [backend], 0.0)
        prop._own_tag_policy = TagPolicy(build_number='field')
        prop._capture({'warnings': (3, 'x')}, self.builds([5])[0], 'alpha')
        (p,) = backend.points
        self.assertEqual((p.series, p.tags, p.fields),
                         ('alpha-warnings', {'builder_name': 'alpha'},
                          {'name': 'warnings', 'value': 3, 'build_number': 5}))
        data = stats.CaptureData('coverage', 'alpha')
        backend = stats.InMemoryStorageService([data])
        data.attach(None, [backend], 0.0)
        data._own_tag_policy = TagPolicy(build_number='field')
        msg = {'post_data': {'percent': 81.5}, 'build_data': self.builds([5])[0],
               'timestamp': 1700000000.25}
        data._consumeOf('alpha', msg)
        (p,) = backend.points
        self.assertEqual((p.tags, p.fields, p.time),
                         ({'builder_name': 'alpha'}, {'percent': 81.5, 'build_number': 5},
                          1700000000.25))  # yieldMetricsValue times are apart already

    def test_other_tags_pass_the_cardinality_guard_in_the_field_form(self):
        policy = TagPolicy(max_tag_values=2, build_number='field')
        seen = [policy.seedPoint('alpha-x', {'builder_name': 'alpha', 'build_number': str(n),
                                             'revision': f'r{n}'}, {'v': 1})
                for n in range(3)]
        self.assertEqual(seen[2], ({'builder_name': 'alpha'},
                                   {'v': 1, 'build_number': 2, 'revision': 'r2'}))
        self.assertEqual(TagPolicy().seedPoint('m', {'build_number': '1'}, {'v': 1}),
                         ({'build_number': '1'}, {'v': 1}))

    def test_the_other_backends_read_the_field_form(self):
        # the embedded store's build number, from the tag or the field (its reader, and the
        # build_number column of its documented views)
        import sqlite3
        import tempfile

        from buildbot_stats.reading.sqlite import openStore
        from buildbot_stats.storage.sqlite.writer import StoreWriter

        path = os.path.join(tempfile.mkdtemp(), 'stats.sqlite')
        writer = StoreWriter(5.0)
        writer.write(path, [
            encodeRow('alpha-x', {'builder_name': 'alpha'}, {'v': 1, 'build_number': 9}, 1.0),
            encodeRow('alpha-x', {'builder_name': 'alpha', 'build_number': '8'}, {'v': 1}, 2.0)])
        writer.close()
        with openStore(path) as reader:
            self.assertEqual([(b, n) for _, b, n, _ in reader.customSeries()['alpha-x']],
                             [('alpha', 9), ('alpha', 8)])
        conn = sqlite3.connect(path)
        self.assertEqual(conn.execute("SELECT builder, build_number FROM points_json"
                                      " ORDER BY time_us").fetchall(), [('alpha', 9), ('alpha', 8)])
        conn.close()
        # Prometheus: the build number is neither a gauge nor a label
        backend = stats.PrometheusStorageService(port=None, captures=[])
        backend.postStatsValue({'name': 'warnings', 'value': 3, 'build_number': 9},
                               'alpha-warnings', {'builder_name': 'alpha'})
        backend.postStatsValue({'percent': 80.0, 'build_number': 9}, 'alpha-coverage',
                               {'builder_name': 'alpha'})
        backend.postStatsValue({'duration': 5.0, 'build_number': 9}, 'alpha-build-times',
                               {'builder_name': 'alpha'})
        self.assertEqual(sorted(backend.gauges.gauges),
                         ['buildbot_build_property', 'buildbot_data_coverage_percent',
                          'buildbot_last_build_duration_seconds'])
        self.assertEqual(backend.counters.written, 3)

    def test_one_form_per_build(self):
        items = [('a', 1, True), ('a', 1, False), ('a', 2, False), ('b', None, False)]
        kept = oneFormPerBuild(items, lambda i: None if i[1] is None else i[:2],
                               lambda i: i[2])
        self.assertEqual(kept, [('a', 1, True), ('a', 2, False), ('b', None, False)])
