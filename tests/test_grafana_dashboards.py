"""The Grafana dashboards of dashboards/grafana, and the Statistics page reading InfluxDB:
a real InfluxDB 1.x (tests/servers.py) filled by a real master's builds, every panel's and
every template variable's query run with Grafana's macros expanded as Grafana's InfluxDB
data source expands them; each must run and return data."""

from __future__ import annotations

import glob
import json
import os
import re
import time

from twisted.internet import defer
from twisted.trial.unittest import SkipTest

from buildbot_stats import stats
from buildbot_stats.reading.influxdb import InfluxReader
from tests.servers import INFLUXD
from tests.servers import InfluxDB1Server
from tests.test_www_page import VIEW
from tests.test_www_page import figures
from tests.www_master import PageMasterMixin
from tests.www_master import RunMasterBase
from tests.www_master import captures

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DASHBOARDS = sorted(glob.glob(os.path.join(ROOT, 'dashboards', 'grafana', '*.json')))


def regexValues(values):
    """A multi-value variable in a regex, as Grafana's InfluxDB data source writes it."""
    escaped = [re.sub(r'([\\^$*+?.()|{}\[\]/-])', r'\\\1', v) for v in values]
    return escaped[0] if len(escaped) == 1 else '(' + '|'.join(escaped) + ')'


def expand(query, variables, time_filter='time >= now() - 1h', interval='10s'):
    """Grafana's macros: ``$timeFilter``, ``$__interval`` and the template variables."""
    query = query.replace('$timeFilter', time_filter)
    query = query.replace('$__interval', interval)
    for name in sorted(variables, key=len, reverse=True):
        query = query.replace('$' + name, regexValues(variables[name]))
    assert '$' not in query.replace('$/', '').replace('$builder', ''), query
    return query


def variableValues(reader, var, variables):
    """What Grafana lists for a query variable (the ``value`` column of SHOW TAG VALUES,
    else the first), through its regex."""
    rows = reader.query(expand(var['query'], variables))
    values = []
    for s in rows:
        column = s['columns'].index('value') if 'value' in s['columns'] else 0
        values.extend(v[column] for v in s['values'])
    if var.get('regex'):
        pattern = re.compile(var['regex'].strip('/'))
        values = [v for v in values if pattern.search(v)]
    return sorted(set(values))


class GrafanaDashboardsTest(PageMasterMixin, RunMasterBase):
    timeout = 120

    def setUp(self):
        if not os.path.exists(INFLUXD):
            raise SkipTest(f"needs {INFLUXD} (Debian package influxdb)")
        self.influx = InfluxDB1Server.shared()
        self.db = f"g{int(time.time() * 1000) % 10**9}"
        self.influx.create_database(self.db)

    @defer.inlineCallbacks
    def test_every_panel_query_returns_data_and_the_page_reads_influxdb(self):
        self.assertEqual(len(DASHBOARDS), 2)
        spec = [stats.CaptureBuildStartTimeAllBuilders(), stats.CaptureBuildEndTimeAllBuilders(),
                stats.CapturePropertyAllBuilders('warnings')]
        backend = stats.InfluxStorageService(self.influx.url, None, None, None, self.db,
                                             captures() + spec, flush_interval=0.05,
                                             name='influx')
        yield self.startMaster(backends=[backend])
        builds = yield self.runBuilds([('alpha', False), ('alpha', True), ('beta', False)])
        # a change point kept as the master's change detection keeps one (three builds are
        # too few to find one)
        svc = self.master.service_manager.namedServices['StatsService']
        alpha = [b for b in builds if b['number'] == 2 and b['builderid'] == builds[0]['builderid']]
        kept = dict(time=alpha[0]['complete_at'].timestamp(), builder='alpha',
                    series='duration', direction='up', build_number=2, last_build_number=1,
                    before=1.0, after=3.0, size=2.0, confidence=0.99999, worse=True,
                    withdrawn=False, revision='abc123', branch='main', url=None,
                    authors=['alice'], comments=['slower'], changes=1, found_at=1.0)
        svc.regressions.keep(dict(kept))
        yield backend.flush(30)

        reader = InfluxReader(self.influx.url, self.db)
        [found] = reader.changePoints()
        self.assertEqual({k: found[k] for k in kept}, kept)
        self.assertEqual(found['summary'], "alpha: build duration +200% slower (1.00s -> "
                         "3.00s) since build #2 (revision abc123; branch main; 1 change by "
                         "alice), confidence >99.99%")
        checked = 0
        for path in DASHBOARDS:
            with open(path, encoding='utf-8') as f:
                board = json.load(f)
            variables = {}
            for var in board['templating']['list']:
                if var['type'] != 'query':
                    continue
                values = variableValues(reader, var, variables)
                self.assertTrue(values, f"{os.path.basename(path)}: variable {var['name']}")
                variables[var['name']] = values
            self.assertEqual(variables['builder'], ['alpha', 'beta'])
            # the change points kept are no custom series (the page's readers agree)
            self.assertNotIn('change_points', variables.get('series', []))
            for panel in board['panels']:
                for t in panel.get('targets', []):
                    # a repeated panel runs once per value of its variable
                    repeat = panel.get('repeat')
                    for value in (variables[repeat] if repeat else [None]):
                        chosen = dict(variables, **({repeat: [value]} if repeat else {}))
                        q = expand(t['query'], chosen)
                        series = reader.query(q)  # StoreError on a query InfluxDB refuses
                        self.assertTrue(any(s['values'] for s in series),
                                        f"{os.path.basename(path)}: {panel['title']}: {q}")
                        checked += 1
            # the annotation of the change points
            for annotation in board['annotations']['list']:
                rows = reader.query(expand(annotation['query'], variables))
                columns = rows[0]['columns']
                self.assertEqual([dict(zip(columns, v))[annotation['textColumn']]
                                  for v in rows[0]['values']], [found['summary']])
                checked += 1
        self.assertGreaterEqual(checked, 17)
        # a builder name is a quoted string in InfluxQL, whatever it holds
        tricky = "alpha' OR \"builder_name\" =~ /.*/ OR 'x"
        self.assertEqual(reader.buildResults(builder=tricky), {})
        self.assertEqual(sorted(reader.buildResults(builder='alpha')), ['alpha'])
        # the page's steps: as the SQLite reader's, without the hidden step (hideStepIf,
        # a tag InfluxDB has on its points only) and Buildbot's worker_preparation
        shown = {('alpha', 'shell'), ('alpha', 'maybe-fail'), ('alpha', 'unit-tests'),
                 ('beta', 'shell')}
        self.assertEqual(set(reader.summarize('steps')), shown)
        self.assertEqual(set(reader.summarize('steps', period=86400)), shown)
        self.assertEqual(set(reader.stepDurations()), shown)
        hidden = reader.query('SELECT count("duration") FROM "steps" WHERE "hidden" = \'true\'')
        self.assertEqual(hidden[0]['values'][0][1], 2)  # alpha's SetProperty, both builds

        # the same database through the page (the StatsService's InfluxDB backend)
        status, body, _ = yield self.get(VIEW + '?range=all')
        self.assertEqual(status, 200, body)
        self.assertEqual(figures(body, 'duration'), {'alpha': 2, 'beta': 1}, body[-3000:])
        self.assertIn('InfluxStorageService', body)
        self.assertNotIn('class="missing"', body)
        self.assertIn('data-name="alpha-coverage"', body)
        self.assertIn('<td>alpha</td><td>2</td><td>1</td><td>1</td><td>0</td>', body)
        # the change point, read from InfluxDB: in the Changes panel, on alpha's chart
        self.assertIn('<td>alpha</td><td>build duration</td><td><span class="worse">', body)
        self.assertIn('since build #2, revision abc123</title>', body)
        # the builder filter on InfluxDB: beta's build only, no alpha series
        status, body, _ = yield self.get(VIEW + '?range=all&builder=beta')
        self.assertEqual(figures(body, 'duration'), {'beta': 1})
        self.assertNotIn('alpha-coverage', body)
        self.assertIn('data-panel="tests"', body)  # beta runs no tests
        yield self.tested_master.shutdown()
