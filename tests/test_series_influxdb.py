"""InfluxDB's series limit on a real InfluxDB 1.6 and a real master with a real worker.

* Past ``max-series-per-database``: one clear error, the refused points counted apart, the
  warning on the page and on /metrics, and every point of the build statistics still lands
  (InfluxDB 1.6 drops the wrong points of such a partial write: the writer makes up for it).
* ``StatsService(build_number='field')``: 500 builds (a few real ones, the rest history in
  the master's own database replayed by the backfill's reader and replayer through the live
  service) keep a fixed number of series per builder, and the readers, the page, the report,
  the dashboards' queries and a second backfill give the numbers of the tag form.
* A database with old points in the tag form and new ones in the field form (and a build in
  both, as the catch-up after the switch writes it): one continuous history.
"""

from __future__ import annotations

import html
import json
import os
import re
import time
import urllib.request

import sqlalchemy as sa
from twisted.internet import defer
from twisted.internet import threads
from twisted.python import log
from twisted.trial.unittest import SkipTest

from buildbot_stats import stats
from buildbot_stats.cli import report
from buildbot_stats.history.reader import BuildReader
from buildbot_stats.history import builddata
from buildbot_stats.history.replay import Replayer
from buildbot_stats.reading.influxdb import InfluxReader
from buildbot_stats.reading.sqlite import openStore
from buildbot_stats.www import page
from tests.servers import INFLUXD
from tests.servers import InfluxDB1Server
from tests.servers import free_port
from tests.test_grafana_dashboards import DASHBOARDS
from tests.test_grafana_dashboards import expand
from tests.test_grafana_dashboards import variableValues
from tests.test_series_limit import Logged
from tests.test_www_page import VIEW
from tests.test_www_page import figures
from tests.www_master import PageMasterMixin
from tests.www_master import RunMasterBase
from tests.www_master import captures

DAY = 86400


def allCaptures():
    """The page's captures (duration, build statistics, two yieldMetricsValue series) and
    the rest of the seed's: start and end times, the ``warnings`` property."""
    return captures() + [stats.CaptureBuildStartTimeAllBuilders(),
                         stats.CaptureBuildEndTimeAllBuilders(),
                         stats.CapturePropertyAllBuilders('warnings')]


def influxBackend(url, db, name='influx'):
    return stats.InfluxStorageService(url, None, None, None, db, allCaptures(),
                                      create_database=True, flush_interval=0.05, name=name)


@defer.inlineCallbacks
def insertHistory(master, n, end):
    """``n`` finished builds (alpha and beta in turn) in the master's own database, the
    last ending ``end`` (epoch seconds), one a minute before: the rows the backfill reads.
    The first two builds of alpha end in the same second. Each build has two steps, a test
    result set, the property ``warnings``; alpha's a ``stats.coverage`` value. Returns the
    build ids."""
    builders = {b['name']: b['builderid'] for b in (yield master.data.get(('builders',)))}
    workers = yield master.data.get(('workers',))
    workerid = workers[0]['workerid']
    masterid = master.masterid
    model = master.db.model

    def thd(conn):
        base = conn.execute(sa.select(sa.func.max(model.builds.c.id))).scalar() or 0
        base += 1000
        rows = {name: [] for name in ('sourcestamps', 'buildsets', 'buildset_sourcestamps',
                                      'buildrequests', 'builds', 'build_properties', 'steps',
                                      'test_result_sets', 'build_data')}
        numbers = {'alpha': 0, 'beta': 0}
        ids = []
        for i in range(n):
            name = ('alpha', 'beta')[i % 2]
            numbers[name] += 1
            bid = base + i
            done = end - (n - 1 - i) * 60
            if i == 2:
                done = end - (n - 1) * 60  # alpha's first two builds end in one second
            # (and last as long: their order in one second is no matter)
            started = done - 30 - (i % 7 if i != 2 else 0)
            submitted = started - 5
            rows['sourcestamps'].append(dict(
                id=bid, ss_hash=f'{bid:040x}', branch='main', revision=f'{bid:x}',
                repository='https://example.org/repo.git', codebase='', project='p',
                created_at=submitted))
            rows['buildsets'].append(dict(id=bid, reason='history', submitted_at=submitted,
                                          complete=1, complete_at=done, results=0))
            rows['buildset_sourcestamps'].append(dict(id=bid, buildsetid=bid, sourcestampid=bid))
            rows['buildrequests'].append(dict(id=bid, buildsetid=bid, builderid=builders[name],
                                              priority=0, complete=1, results=2 if i % 3 == 0 else 0,
                                              submitted_at=submitted, complete_at=done,
                                              waited_for=0))
            rows['builds'].append(dict(
                id=bid, number=numbers[name], builderid=builders[name], buildrequestid=bid,
                workerid=workerid, masterid=masterid, started_at=started, complete_at=done,
                locks_duration_s=0, state_string='finished', results=2 if i % 3 == 0 else 0))
            rows['build_properties'].append(dict(buildid=bid, name='warnings',
                                                 value=json.dumps(i % 11), source='history'))
            for s in range(2):
                rows['steps'].append(dict(
                    id=bid * 2 + s, number=s, name=f'step{s}', buildid=bid,
                    started_at=started + 15 * s, complete_at=started + 15 * (s + 1),
                    state_string='done', results=0, urls_json='[]', hidden=0))
            rows['test_result_sets'].append(dict(
                id=bid, builderid=builders[name], buildid=bid, stepid=bid * 2 + 1,
                description='unit', category='pass_fail', value_unit='boolean',
                tests_passed=90 + i % 10, tests_failed=i % 3, complete=1))
            if name == 'alpha':
                # yieldMetricsValue times of one master are 1 ms apart at least (DataClock)
                # the build's one build-data row, as the recorder writes it
                value = builddata.encodeRecord({'coverage': [builddata.encodeEntry(
                    started + 10.25 + i / 1000, {'percent': 70.0 + i % 20})]})
                rows['build_data'].append(dict(
                    buildid=bid, name=builddata.RECORD_NAME, value=value, length=len(value),
                    source=builddata.SOURCE))
            ids.append(bid)
        for table, values in rows.items():
            conn.execute(model.metadata.tables[table].insert(), values)
        conn.commit()
        return ids

    ids = yield master.db.pool.do(thd)
    return ids


def panelQueries(influx_reader):
    """``{(board, panel, target, repeated value): query}`` of every panel of the dashboards,
    the variables as Grafana fills them from this database, over all time and in one
    interval (so that the answers do not depend on the points' milliseconds)."""
    out = {}
    for path in DASHBOARDS:
        with open(path, encoding='utf-8') as f:
            board = json.load(f)
        variables = {}
        for var in board['templating']['list']:
            if var['type'] == 'query':
                variables[var['name']] = variableValues(influx_reader, var, variables)
        for panel in board['panels']:
            for n, t in enumerate(panel.get('targets', [])):
                repeat = panel.get('repeat')
                for value in (variables[repeat] if repeat else [None]):
                    chosen = dict(variables, **({repeat: [value]} if repeat else {}))
                    out[(os.path.basename(path), panel['title'], n, value)] = expand(
                        t['query'], chosen, time_filter='time > 0', interval='100000d')
    return out


def panelAnswer(influx_reader, q):
    """What a panel shows of an answer: per result series (name, tags), its rows without
    their time, the build number merged from its two columns, in a stable order."""
    out = {}
    for s in influx_reader.query(q):
        rows = []
        for values in s['values']:
            row = dict(zip(s['columns'], values))
            row.pop('time', None)
            tag, field = row.pop('build (tag)', None), row.pop('build (field)', None)
            if tag is not None or field is not None:
                row['build'] = int(tag if tag is not None else field)
            rows.append(tuple(sorted(row.items())))
        key = (s.get('name'), tuple(sorted((s.get('tags') or {}).items())))
        out[key] = sorted(rows, key=repr)
    return out


def readerAnswers(reader):
    """The readers' answers without the points' times (the field form moves them by the
    build number: a few milliseconds)."""
    return {
        'durations': {b: sorted((n, d) for _, n, d in v)
                      for b, v in reader.buildDurations().items()},
        'custom': {s: sorted((b, n, sorted(f.items())) for _, b, n, f in v)
                   for s, v in reader.customSeries().items()},
        'results': {b: sorted((n, r) for _, n, r in v)
                    for b, v in reader.buildResults().items()},
        'steps': reader.summarize('steps'),
    }


def markers(body, kind):
    """``{name: number of point markers}`` of every chart of ``kind``, whatever its lines."""
    return {name: chart.count('<circle') for name, chart in re.findall(
        r'<figure class="chart" data-kind="%s" data-name="([^"]*)">(.*?)</figure>' % kind,
        body, re.S)}


def pageParts(open_reader, now):
    """The page's tables and the point markers of its charts, from the reader
    ``open_reader()`` opens (in the calling thread: an SQLite connection stays in its own)."""
    with open_reader() as reader:
        body = page.view(reader, None, 'all', None, None, {'alpha': 1, 'beta': 2}, '',
                         None, 'test', now)
    return (re.findall(r'<table.*?</table>', body, re.S), figures(body, 'duration'),
            markers(body, 'series'))


def answersOf(open_reader):
    with open_reader() as reader:
        return readerAnswers(reader)


def reportParts(path):
    """The report's builders table and its custom series' numbers per field."""
    with openStore(path) as store:
        data = report.collect(store)
    return ({row['builder']: row for row in data['builders'] or []},
            {s['series']: dict(s['stats']) for s in data['custom'] or []})


class SeriesOnARealInfluxDB(PageMasterMixin, RunMasterBase):
    timeout = 240

    def setUp(self):
        if not os.path.exists(INFLUXD):
            raise SkipTest(f"needs {INFLUXD} (Debian package influxdb)")

    @property
    def service(self):
        return self.master.service_manager.namedServices['StatsService']

    def backend(self, name):
        return next(b for b in self.service.backends if b.name == name)

    def replay(self, **kwargs):
        """The backfill's reader and replayer over the master's database, through the live
        service (what ``buildbot-stats backfill`` and the catch-up do)."""
        reader = BuildReader(self.master.db, **kwargs)
        return Replayer(self.service, reader, self.master.reactor).run()

    @defer.inlineCallbacks
    def flushAll(self):
        for b in self.service.backends:
            ok = yield b.flush(60)
            self.assertTrue(ok, b.name)

    def scrape(self, port):
        def fetch():
            with urllib.request.urlopen(f'http://127.0.0.1:{port}/metrics', timeout=30) as r:
                return r.read().decode()
        return threads.deferToThread(fetch)

    # -- past the limit --------------------------------------------------------------------

    @defer.inlineCallbacks
    def test_past_the_limit_one_error_counted_apart_shown_and_nothing_else_lost(self):
        influx = InfluxDB1Server.start_new()
        self.addCleanup(influx.cleanup)
        db = 'limited'
        port = free_port()
        # the memory backend gets the points InfluxDB should hold
        mem = stats.InMemoryStorageService(allCaptures(), name='mem')
        logged = Logged(self)
        yield self.startMaster(backends=[
            influxBackend(influx.url, db), mem,
            stats.PrometheusStorageService(port=port, interface='127.0.0.1', name='prom')])
        yield self.runBuilds([('alpha', False)])
        first_series = yield threads.deferToThread(influx.series_count, db)
        # no new series from now on: InfluxDB refuses every series a build adds
        influx.config = {'data': {'max-series-per-database': first_series}}
        yield threads.deferToThread(influx.restart)
        before = len(mem.points)
        yield self.runBuilds([('alpha', False), ('alpha', False), ('alpha', False)])
        yield self.flushAll()
        later = mem.points[before:]
        per_build = [p for p in later if 'build_number' in p.tags]
        self.assertEqual(len(per_build), 3 * 6)  # build times (3), warnings, 2 data series

        m = self.backend('influx').metrics()
        self.assertEqual((m['limit_rejected'], m['rejected'], m['dropped'], m['pending']),
                         (len(per_build), len(per_build), 0, 0), m)
        self.assertEqual(m['written'], m['added'] - len(per_build))
        # every point of the build statistics landed, in batches InfluxDB refused in part
        stored = {}
        for measurement in ('builds', 'build_requests', 'steps', 'tests'):
            rows = yield threads.deferToThread(influx.points, db, measurement)
            stored[measurement] = len(rows)
        expected = {}
        for p in mem.points:
            if p.series in stored:
                expected[p.series] = expected.get(p.series, 0) + 1
        self.assertEqual(stored, expected)
        rows = yield threads.deferToThread(influx.points, db, 'alpha-build-times')
        self.assertEqual({r['build_number'] for r in rows}, {'1'})

        errors = logged.lines('InfluxDB refused')
        self.assertEqual(len(errors), 1, errors)
        self.assertIn(f"its limit max-series-per-database ({first_series}) is reached", errors[0])
        # the series of the first refused batch, and the captures that write them
        self.assertRegex(errors[0], r"Each build adds a new series to alpha-\S+ \(written by "
                         r"Capture\w+\(.*; for example the series alpha-\S+,build_number=2,"
                         r"builder_name=alpha\)")
        self.assertIn("StatsService(build_number='field')", errors[0])
        self.assertEqual(logged.lines('rejected by the server'), [])

        # the refusal taught the limit; the check it started read the series
        yield self.backend('influx').series_watch._checking
        m = self.backend('influx').metrics()
        self.assertEqual((m['series'], m['series_limit'], m['series_limit_warning']),
                         (first_series, first_series, 1))
        status, body, _ = yield self.get(VIEW + '?range=all')
        self.assertEqual(status, 200)
        warning = re.findall(r'<p class="warning" data-warning="series-limit">(.*?)</p>', body)
        self.assertEqual(len(warning), 1, body[:3000])
        self.assertIn(f"the database holds {first_series} series, 100% of its limit", warning[0])
        self.assertIn(f"InfluxDB refused {len(per_build)} points", warning[0])
        self.assertIn(f"The database of 'influx' holds {first_series} series of its limit of "
                      f"{first_series} (100%), checked hourly.", html.unescape(body))
        metrics = yield self.scrape(port)
        self.assertIn(f'buildbot_stats_points_rejected_by_limit_total{{backend="influx"}} '
                      f'{len(per_build)}.0', metrics)
        self.assertIn('buildbot_stats_series_limit_warning{backend="influx"} 1.0', metrics)
        self.assertIn(f'buildbot_stats_series_limit{{backend="influx"}} {first_series}.0',
                      metrics)

    # -- the field form --------------------------------------------------------------------

    @defer.inlineCallbacks
    def test_field_form_keeps_series_per_builder_and_gives_the_numbers_of_the_tag_form(self):
        influx = InfluxDB1Server.shared()
        tag_db, field_db = (f"{form}{int(time.time() * 1000) % 10**9}"
                            for form in ('t', 'f'))
        field_store, tag_store = 'field.sqlite', 'tag.sqlite'

        def backends(db, store, suffix):
            return [influxBackend(influx.url, db, 'influx' + suffix),
                    stats.SQLiteStorageService(path=store, captures=allCaptures(),
                                               flush_interval=0.1, name='sqlite' + suffix)]

        yield self.startMaster(backends=backends(field_db, field_store, ''),
                               service_options={'build_number': 'field'})
        now = time.time()
        # the history first: the real builds get the next numbers
        yield insertHistory(self.master, 496, end=int(now) - 2 * DAY)
        yield self.runBuilds([('alpha', False), ('beta', False), ('alpha', True),
                              ('beta', False)])

        def seriesOf(db, builder):
            return influx.series_count(db, f"\"builder_name\" = '{builder}'")

        def perBuilder(db):
            return threads.deferToThread(
                lambda: {b: seriesOf(db, b) for b in ('alpha', 'beta')})
        # a fixed number per builder: each seed measurement one series, the build
        # statistics one per combination of their tags (result, step...), whatever the
        # number of builds: as many after 500 builds as after 300
        self.assertEqual(self.service.tag_policy.build_number, 'field')
        middle = int(now) - 2 * DAY - 195.5 * 60  # 300 builds end before it, 196 after
        first = yield self.replay(until=middle)
        self.assertEqual((first.builds, first.capture_errors), (300, 0))
        yield self.flushAll()
        after_300 = yield perBuilder(field_db)
        history = yield self.replay(since=middle, until=now - DAY)
        self.assertEqual((history.builds, history.capture_errors), (196, 0))
        yield self.flushAll()
        per_builder = yield perBuilder(field_db)
        self.assertEqual(per_builder, after_300)
        self.assertLessEqual(max(per_builder.values()), 30, per_builder)
        seed = yield threads.deferToThread(
            influx.series_count, field_db,
            "\"builder_name\" = 'alpha' AND build_number != ''")
        self.assertEqual(seed, 0)  # no series carries a build number
        stored = yield threads.deferToThread(influx.points, field_db, 'alpha-build-times')
        self.assertEqual(len(stored), 3 * 250)  # no two builds' points collided

        # a second backfill of the same builds adds nothing
        again = yield self.replay(until=now - DAY)
        self.assertEqual(again.backends['influx']['rejected'], 0)
        yield self.flushAll()
        self.assertEqual((yield threads.deferToThread(
            lambda: {b: seriesOf(field_db, b) for b in ('alpha', 'beta')})), per_builder)
        self.assertEqual(len((yield threads.deferToThread(
            influx.points, field_db, 'alpha-build-times'))), 3 * 250)

        # the same builds in Buildbot's layout: the service reconfigured, every build
        # replayed (the real ones too) into another database and store
        yield self.service.reconfigServiceWithSibling(stats.StatsService(
            storage_backends=backends(tag_db, tag_store, '-tag'), name='StatsService'))
        self.assertEqual(self.service.tag_policy.build_number, 'tag')
        replayed = yield self.replay()
        self.assertEqual(replayed.builds, 500)
        yield self.flushAll()
        tagged = yield threads.deferToThread(seriesOf, tag_db, 'alpha')
        self.assertGreater(tagged, 3 * 250)  # a series per build and seed measurement

        field_reader = InfluxReader(influx.url, field_db)
        tag_reader = InfluxReader(influx.url, tag_db)
        field_path = os.path.join(self.master.basedir, field_store)
        tag_path = os.path.join(self.master.basedir, tag_store)
        for open_field, open_tag in (
                (lambda: InfluxReader(influx.url, field_db),
                 lambda: InfluxReader(influx.url, tag_db)),
                (lambda: openStore(field_path), lambda: openStore(tag_path))):
            answers = yield threads.deferToThread(answersOf, open_field)
            self.assertEqual(sum(len(v) for v in answers['durations'].values()), 500)
            self.assertEqual(len(answers['custom']['alpha-coverage']), 250)
            self.assertEqual(answers, (yield threads.deferToThread(answersOf, open_tag)))
            # the page
            field_page = yield threads.deferToThread(pageParts, open_field, now)
            # 250 builds a builder: drawn per period, not one by one; the table has them
            self.assertEqual(field_page[1], {'alpha': 0, 'beta': 0})
            self.assertIn('>alpha</a></td><td>250</td>', field_page[0][0])
            self.maxDiff = None
            self.assertEqual(field_page, (yield threads.deferToThread(pageParts, open_tag,
                                                                      now)), open_field)
        # the report
        field_report = yield threads.deferToThread(reportParts, field_path)
        self.assertEqual(field_report[0]['alpha']['builds'], 250)
        self.assertEqual(field_report, (yield threads.deferToThread(reportParts, tag_path)))
        # the dashboards' queries
        queries = yield threads.deferToThread(panelQueries, field_reader)
        self.assertEqual(queries, (yield threads.deferToThread(panelQueries, tag_reader)))
        self.assertGreaterEqual(len(queries), 15)
        for key, q in sorted(queries.items()):
            field_answer = yield threads.deferToThread(panelAnswer, field_reader, q)
            tag_answer = yield threads.deferToThread(panelAnswer, tag_reader, q)
            self.assertTrue(field_answer, f"{key}: {q}")
            self.assertEqual(field_answer, tag_answer, f"{key}: {q}")

    # -- both forms in one database ------------------------------------------------------------

    @defer.inlineCallbacks
    def test_old_points_in_the_tag_form_new_ones_in_the_field_form_one_history(self):
        influx = InfluxDB1Server.shared()
        db = f"m{int(time.time() * 1000) % 10**9}"
        store = 'mixed.sqlite'

        def backends():
            return [influxBackend(influx.url, db),
                    stats.SQLiteStorageService(path=store, captures=allCaptures(),
                                               flush_interval=0.1, name='sqlite')]

        dashboard = stats.statsDashboard(influxdb={'url': influx.url, 'db': db})
        yield self.startMaster(backends=backends(), dashboard=dashboard)
        now = time.time()
        yield insertHistory(self.master, 60, end=int(now) - 2 * DAY)
        history = yield self.replay(until=now - DAY)
        self.assertEqual(history.builds, 60)
        first = yield self.runBuilds([('alpha', False), ('beta', False)])
        yield self.flushAll()
        # the switch: a reconfig, the backends unchanged
        yield self.service.reconfigServiceWithSibling(stats.StatsService(
            storage_backends=backends(), name='StatsService', build_number='field'))
        self.assertEqual([b.name for b in self.service.backends], ['influx', 'sqlite'])
        yield self.runBuilds([('alpha', False), ('beta', False)])
        # the catch-up after a restart replays the builds around the switch in the new form:
        # the first real builds are then in both forms
        overlap = yield self.replay(since=min(b['complete_at'] for b in first).timestamp())
        self.assertEqual(overlap.builds, 4)
        yield self.flushAll()
        rows = yield threads.deferToThread(influx.read_points, db, 'alpha-build-times')
        forms = {('tag' if 'build_number' in r['tags'] else 'field') for r in rows}
        self.assertEqual(forms, {'tag', 'field'})

        numbers = {'alpha': list(range(1, 33)), 'beta': list(range(1, 33))}
        path = os.path.join(self.master.basedir, store)
        for open_reader in (lambda: InfluxReader(influx.url, db), lambda: openStore(path)):
            answers = yield threads.deferToThread(answersOf, open_reader)
            self.assertEqual({b: [n for n, _ in v] for b, v in answers['durations'].items()},
                             numbers)
            coverage = answers['custom']['alpha-coverage']
            # the history's 30 values, then the 2 of each real build's RunTests, once each
            self.assertEqual([n for _, n, _ in coverage], list(range(1, 31)) + [31, 32])
            self.assertFalse([f for _, _, f in coverage if 'build_number' in dict(f)])
        # the page (reading InfluxDB) and the report (the embedded store)
        status, body, _ = yield self.get(VIEW + '?range=all')
        self.assertEqual(status, 200)
        self.assertEqual(figures(body, 'duration'), {'alpha': 32, 'beta': 32})
        self.assertEqual(markers(body, 'series')['alpha-coverage'], 32)
        self.assertNotIn('data-warning', body)
        builders, series = yield threads.deferToThread(reportParts, path)
        self.assertEqual({b: st['builds'] for b, st in builders.items()},
                         {'alpha': 32, 'beta': 32})
        self.assertEqual(series['alpha-coverage']['percent'].count, 32)
        self.assertNotIn('build_number', series['alpha-warnings'])
