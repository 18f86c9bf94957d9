"""Regressions (the master's change detection) over a real SQLite store: the full analysis,
the analysis after a build, what is kept and withdrawn, a restart, backfilled history, the
attribution from Buildbot's data API (fake master), the configuration; and the readers'
queries of it (the SQLite reader, v3 layout: change points as raw points, never rolled
up)."""

from __future__ import annotations

import os

import numpy as np

from twisted.internet import defer
from twisted.python import log
from twisted.trial import unittest
from twisted.trial.unittest import SkipTest

from buildbot.test import fakedb
from buildbot.test.util.config import ConfigErrorsMixin

from benchmarks.regressions import noisy
from buildbot_stats import stats
from buildbot_stats.analysis import changepoints
from buildbot_stats.reading import changes as kept_changes
from buildbot_stats.reading.sqlite import openStore
from buildbot_stats.history.attribution import attribute
from buildbot_stats.reading.changes import logLine
from buildbot_stats.reading.changes import openWorse
from buildbot_stats.regressions import Regressions
from buildbot_stats.regressions import Stopped
from buildbot_stats.storage.sqlite.values import encodeRow
from buildbot_stats.storage.sqlite.writer import StoreWriter
from tests.fakes import MASTERID
from tests.fakes import FakeMasterMixin

T0 = 1_700_000_000.0


class Store:
    """An SQLite store written as a master's backends write it."""

    def __init__(self, path):
        self.path = path
        self.writer = StoreWriter(5.0)

    def builds(self, builder, values, first=1, steps=None):
        """Builds ``first``, ``first + 1``...: their duration, and the steps' durations
        (``steps``: ``{name: values}``), a build a minute."""
        rows = []
        for i, v in enumerate(values):
            number = first + i
            tags = {'builder_name': builder, 'build_number': str(number)}
            when = T0 + 60 * number
            rows.append(encodeRow(f"{builder}-build-times", tags, {'duration': float(v)}, when))
            for name, runs in (steps or {}).items():
                rows.append(encodeRow('steps', dict(tags, step_name=name),
                                      {'duration': float(runs[i]), 'build_number': number},
                                      when - 1))
        self.write(rows)

    def write(self, rows):
        self.writer.write(self.path, rows)
        self.writer.close()


class Service:
    """What Regressions uses of a StatsService: its backends and its master."""

    def __init__(self, path, master=None):
        backend = stats.SQLiteStorageService(path)
        backend.path = path
        backend.configured = True
        # not started: the store is written by the test (Kept)
        backend.keepsPoints = False
        self.backends = [backend]
        self.master = master


class Kept:
    """A backend keeping what Regressions writes into the store (as the SQLite backend does,
    without its writer thread)."""

    keepsPoints = True

    def __init__(self, store):
        self.store = store
        self.points = []

    def postStatsValue(self, fields, series, tags, time):
        self.points.append((series, tags, fields, time))
        self.store.write([encodeRow(series, tags, fields, time)])


def steady(seed, n, level=100.0):
    return noisy([(n, level)], np.random.default_rng(seed))


def stepped(seed, n_before, n_after, before=100.0, after=150.0):
    return noisy([(n_before, before), (n_after, after)], np.random.default_rng(seed))


class Analyses(unittest.TestCase):

    def setUp(self):
        if not changepoints.available():
            raise SkipTest("needs apache-otava (pip install 'buildbot_stats[regressions]')")
        self.path = os.path.abspath(self.mktemp())
        self.store = Store(self.path)

    def regressions(self, **kwargs):
        r = Regressions(**kwargs)
        service = Service(self.path)
        r.attach(service)
        kept = Kept(self.store)
        service.backends.append(kept)
        return r, kept

    def keep(self, r, new, gone=()):
        """What the reactor does with a round's result, without the attribution."""
        for record in new:
            r.keep(dict(record))
        for record in gone:
            r.keep(dict(record, withdrawn=True))

    def test_the_full_analysis_finds_each_change_once(self):
        self.store.builds('alpha', stepped(1, 120, 80), steps={
            'compile': steady(2, 200, 30.0), 'test': stepped(3, 150, 50, 40.0, 30.0)})
        self.store.builds('beta', steady(4, 200, 600.0))
        r, kept = self.regressions()
        new, gone = r.analyseAll()
        self.assertEqual(gone, [])
        got = sorted((c['builder'], c['series'], c['direction'], c['build_number'],
                      c['last_build_number'], c['worse']) for c in new)
        self.assertEqual(len(got), 2, got)
        self.assertEqual(got[0][:3], ('alpha', 'duration', 'up'))
        self.assertLessEqual(abs(got[0][3] - 121), 2)
        self.assertEqual(got[0][4], got[0][3] - 1)
        self.assertTrue(got[0][5])
        self.assertEqual(got[1][:3], ('alpha', 'step:test', 'down'))
        self.assertFalse(got[1][5])  # faster: for the better
        self.assertEqual(sorted(r.windows), [('alpha', 'duration'), ('alpha', 'step:compile'),
                                             ('alpha', 'step:test'), ('beta', 'duration')])
        self.assertEqual(len(r.windows[('alpha', 'duration')].values), 200)
        self.assertEqual(r.openSlowdowns(), {('alpha', 'duration'): 1})

        # kept, then found again (a restart): nothing new, nothing withdrawn
        self.keep(r, new)
        with openStore(self.path) as reader:
            stored = reader.changePoints()
            self.assertEqual([c['series'] for c in stored], ['step:test', 'duration'])
            self.assertEqual(stored, reader.changePoints(start=T0))  # newest first
            measured = reader.measuredSeries()
        # the hours roll up (long closed): the change points stay raw points, read the same,
        # and no rollup row is theirs
        while self.store.writer.maintain(self.path, T0 + 86400):
            pass
        self.store.writer.close()
        with openStore(self.path) as reader:
            self.assertGreater(reader.rollupState()[0], T0 + 60 * 200)
            self.assertEqual(reader.changePoints(), stored)
            self.assertEqual(reader.measuredSeries(), measured)
            self.assertEqual(reader.summarize('custom'), {})
            self.assertEqual(reader._one(
                "SELECT COUNT(*) FROM rollups r JOIN series s ON s.id = r.series"
                " WHERE s.name = ?", (kept_changes.CHANGE_POINTS,))[0], 0)
        again, _ = Regressions(), None
        again.attach(Service(self.path))
        self.assertEqual(again.analyseAll(), ([], []))
        self.assertEqual(again.openSlowdowns(), {('alpha', 'duration'): 1})
        # change points are no custom series
        with openStore(self.path) as reader:
            self.assertEqual(reader.customSeries(), {})

    def test_after_a_build_only_its_builders_series_then_a_fix_and_a_withdrawal(self):
        self.store.builds('alpha', steady(5, 100, 20.0))
        self.store.builds('beta', steady(6, 100, 20.0))
        r, kept = self.regressions()
        self.assertEqual(r.analyseAll(), ([], []))
        analyses = r.analyses
        # 5 slow builds of alpha: announced as a slowdown at build 101
        self.store.builds('alpha', [30.0] * 5, first=101)
        new, gone = r.analyseBuilders(['alpha'])
        self.assertEqual(r.analyses, analyses + 1)  # alpha's duration only
        [change] = new
        self.assertEqual((change['builder'], change['build_number'], change['before'],
                          change['after']), ('alpha', 101, 20.0, 30.0))
        self.keep(r, new)
        self.assertEqual(r.openSlowdowns(), {('alpha', 'duration'): 1})
        # a build of beta: alpha's series are not looked at
        self.store.builds('beta', [20.0], first=101)
        self.assertEqual(r.analyseBuilders(['beta']), ([], []))
        self.assertEqual(r.analyses, analyses + 2)
        # five builds back at 20 s: the fix, a change for the better
        self.store.builds('alpha', [20.0] * 5, first=106)
        new, gone = r.analyseBuilders(['alpha'])
        self.assertEqual([(c['build_number'], c['direction'], c['worse']) for c in new],
                         [(106, 'down', False)])
        self.keep(r, new, gone)
        self.assertEqual(r.openSlowdowns(), {})
        # a change kept at build 80 (an earlier analysis saw one): this one does not, it is
        # withdrawn, once
        r.keep({'time': T0 + 60 * 80, 'builder': 'alpha', 'series': 'duration',
                'direction': 'up', 'build_number': 80, 'last_build_number': 79,
                'before': 20.0, 'after': 22.0, 'size': 0.1, 'confidence': 0.9999,
                'worse': True, 'withdrawn': False})
        self.store.builds('alpha', [20.0], first=111)
        new, gone = r.analyseBuilders(['alpha'])
        self.assertEqual((new, [g['build_number'] for g in gone]), ([], [80]))
        self.keep(r, new, gone)
        self.store.builds('alpha', [20.0], first=112)
        self.assertEqual(r.analyseBuilders(['alpha']), ([], []))
        with openStore(self.path) as reader:
            stored = {c['build_number']: c['withdrawn'] for c in reader.changePoints()}
        self.assertEqual(stored, {80: True, 101: False, 106: False})

    def test_a_slowdown_then_its_fix_close_it(self):
        self.store.builds('alpha', stepped(7, 100, 60, 50.0, 75.0))
        r, kept = self.regressions()
        new, _ = r.analyseAll()
        self.keep(r, new)
        self.assertEqual(r.openSlowdowns(), {('alpha', 'duration'): 1})
        self.store.builds('alpha', steady(8, 10, 50.0), first=161)
        new, _ = r.analyseBuilders(['alpha'])
        self.assertEqual([(c['direction'], c['worse']) for c in new], [('down', False)])
        self.assertEqual(r.openSlowdowns(), {})

    def test_backfilled_history_is_analysed_like_live_history(self):
        values = noisy([(60, 30.0), (40, 45.0), (50, 30.0)], np.random.default_rng(9))
        # live: build after build
        live, _ = self.regressions()
        self.store.builds('alpha', values[:20])
        live.analyseAll()
        found_live = []
        for number in range(21, len(values) + 1):
            self.store.builds('alpha', values[number - 1:number], first=number)
            new, gone = live.analyseBuilders(['alpha'])
            self.assertEqual(gone, [])
            self.keep(live, new)
            found_live.extend(new)
        # the same builds backfilled into another store, analysed once
        self.path = os.path.abspath(self.mktemp())
        self.store = Store(self.path)
        self.store.builds('alpha', values)
        backfilled, _ = self.regressions()
        found_once, _ = backfilled.analyseAll()

        def key(c):
            return (c['builder'], c['series'], c['direction'], c['build_number'])
        self.assertEqual(sorted(map(key, found_once)), sorted(map(key, found_live)))
        self.assertEqual(sorted((c[3], c[2]) for c in map(key, found_once)),
                         [(61, 'up'), (101, 'down')])

    def test_a_stop_leaves_the_analysis(self):
        self.store.builds('alpha', steady(10, 100, 20.0))
        r, _ = self.regressions()
        r._stopping = True
        with self.assertRaises(Stopped):
            r.analyseAll()
        self.assertEqual((r.windows, r.open), ({}, {}))

    def test_higher_is_better(self):
        r = Regressions(higher_is_better=['coverage.*', 'tests'])
        self.assertTrue(r.isWorse('duration', 'up'))
        self.assertFalse(r.isWorse('step:x', 'down'))
        self.assertTrue(r.isWorse('coverage.percent', 'down'))
        self.assertFalse(r.isWorse('tests', 'up'))
        self.assertEqual(openWorse([{'time': 1, 'worse': True}, {'time': 2, 'worse': True}]), 2)
        self.assertEqual(openWorse([{'time': 2, 'worse': False}, {'time': 1, 'worse': True}]),
                         0)


class Attribution(FakeMasterMixin, unittest.TestCase):
    """The first build after a change, its revision and the changes of Buildbot."""

    @defer.inlineCallbacks
    def setUp(self):
        yield self.setUpFakeMaster()
        yield self.master.db.insert_test_data([
            fakedb.SourceStamp(id=1, revision='rev1', branch='main'),
            fakedb.SourceStamp(id=2, revision='rev2', branch='main'),
            fakedb.Change(changeid=1, author='bob', comments='refactor', revision='rev1',
                          branch='main', sourcestampid=1),
            fakedb.Change(changeid=2, author='alice <a@example.org>', parent_changeids=1,
                          comments='Sleep longer\n\nThe details.', revision='rev2',
                          branch='main', sourcestampid=2),
            fakedb.Buildset(id=101, results=0, reason='change'),
            fakedb.BuildsetSourceStamp(buildsetid=101, sourcestampid=1),
            fakedb.Buildset(id=102, results=0, reason='change'),
            fakedb.BuildsetSourceStamp(buildsetid=102, sourcestampid=2),
            fakedb.BuildRequest(id=301, buildsetid=101, builderid=79),
            fakedb.BuildRequest(id=302, buildsetid=102, builderid=79),
            fakedb.Build(id=401, number=15, builderid=79, buildrequestid=301, workerid=13,
                         masterid=MASTERID, results=0, started_at=1, complete_at=2),
            fakedb.Build(id=402, number=16, builderid=79, buildrequestid=302, workerid=13,
                         masterid=MASTERID, results=0, started_at=3, complete_at=9),
            fakedb.BuildProperty(buildid=402, name='got_revision', value='rev2'),
            fakedb.BuildProperty(buildid=402, name='branch', value='main'),
        ])
        self.master.config.buildbotURL = 'http://ci.example.org/'

    @defer.inlineCallbacks
    def test_the_first_build_after_and_its_changes(self):
        record = {'builder': 'alpha', 'series': 'duration', 'direction': 'up',
                  'build_number': 16, 'last_build_number': 15, 'before': 1.0, 'after': 3.0,
                  'size': 2.0, 'confidence': 0.99999, 'worse': True}
        yield attribute(self.master, record)
        self.assertEqual(record['url'], 'http://ci.example.org/#/builders/79/builds/16')
        self.assertEqual((record['revision'], record['branch']), ('rev2', 'main'))
        self.assertEqual(record['changes'], 1)
        self.assertEqual(record['authors'], ['alice <a@example.org>'])
        self.assertEqual(record['comments'], ['Sleep longer\n\nThe details.'])
        self.assertEqual(logLine(record),
                         "alpha: build duration +200% slower (1.00s -> 3.00s) since build #16 "
                         "(revision rev2; branch main; 1 change by alice <a@example.org>), "
                         "confidence >99.99%: http://ci.example.org/#/builders/79/builds/16")


class Configuration(ConfigErrorsMixin, unittest.TestCase):

    def test_bad_values_are_named(self):
        with self.assertRaisesConfigError("Regressions: max_pvalue must be a positive number "
                                          "below 1, got 2"):
            stats.Regressions(max_pvalue=2)
        with self.assertRaisesConfigError("Regressions: min_builds must be a positive integer, "
                                          "got 2.5"):
            stats.Regressions(min_builds=2.5)
        with self.assertRaisesConfigError("Regressions: higher_is_better must be a list of "
                                          "series names or patterns, got 'tests'"):
            stats.Regressions(higher_is_better='tests')
        with self.assertRaisesConfigError("StatsService: regressions must be True, False or "
                                          "stats.Regressions(...), got 'yes'"):
            stats.StatsService(regressions='yes')

    def test_same_settings_compare_equal(self):
        self.assertEqual(stats.Regressions(min_size=0.2), stats.Regressions(min_size=0.2))
        self.assertNotEqual(stats.Regressions(min_size=0.2), stats.Regressions())


class Off(FakeMasterMixin, unittest.TestCase):
    """Without a store to read, or with regressions=False: no consumer for it, and why."""

    @defer.inlineCallbacks
    def setUp(self):
        yield self.setUpFakeMaster()

    @defer.inlineCallbacks
    def test_no_store_to_read(self):
        logged = []
        log.addObserver(logged.append)
        self.addCleanup(log.removeObserver, logged.append)
        svc = yield self.startStats([stats.InMemoryStorageService([], name='mem')])
        # registered, but wanting no message while it cannot run
        self.assertIn(svc.regressions, svc._components)
        self.assertEqual(svc.regressions.subscriptions(), [])
        if changepoints.available():
            self.assertEqual(svc.regressions.whyOff(), "the StatsService has no SQLite or "
                             "InfluxDB 1.x backend to read the series from")
        text = ' '.join(' '.join(map(str, e.get('message') or ())) for e in logged)
        self.assertIn("buildbot_stats: regressions: change detection is off: ", text)

    @defer.inlineCallbacks
    def test_regressions_false(self):
        self.svc = stats.StatsService(storage_backends=[stats.SQLiteStorageService(
            os.path.abspath(self.mktemp()))], regressions=False)
        yield self.svc.setServiceParent(self.master)
        yield self.master.startService()
        self.addCleanup(self.master.stopService)
        self.assertIsNone(self.svc.regressions)
        self.assertFalse([c for c in self.svc._components if isinstance(c, Regressions)])

    def test_without_otava(self):
        from buildbot_stats.www.page import Page

        self.patch(changepoints, 'TTestSignificanceTester', None)
        self.assertFalse(changepoints.available())
        r = Regressions()
        r.attach(Service('x.sqlite'))
        why = r.whyOff()
        self.assertEqual(why, "the apache-otava package is not installed (pip install "
                         "'buildbot_stats[regressions]')")
        with self.assertRaises(ImportError):
            changepoints.findChanges([1.0] * 20)
        # the page's Changes panel says which package to install
        from buildbot_stats.www.panels import PANELS

        # every panel's model empty, the Changes panel's without a change
        data = dict({panel.id: None for panel in PANELS}, builder_names=[], period=3600,
                    changes={'changes': []})
        text = Page(data, None, '7d', {}, '../../../', None, 'store', T0, detection=why).render()
        self.assertIn('<p class="none" data-panel="changes">Change detection is off: the '
                      'apache-otava package is not installed (pip install '
                      '&#x27;buildbot_stats[regressions]&#x27;).</p>', text)
        # a store shown without a service (statsDashboard(store=...)): the same advice
        text = Page(data, None, '7d', {}, '../../../', None, 'store', T0).render()
        self.assertIn('Change detection needs the apache-otava package: <code>pip install '
                      '&#x27;buildbot_stats[regressions]&#x27;</code>.', text)


class Subscribed(FakeMasterMixin, unittest.TestCase):
    """Regressions is a component of the service's subscription table: the builds' end
    under the one consumer of its key, after the captures; swapped on a reconfig."""

    @defer.inlineCallbacks
    def setUp(self):
        if not changepoints.available():
            raise SkipTest(changepoints.INSTALL)
        yield self.setUpFakeMaster()

    @defer.inlineCallbacks
    def test_after_the_captures_one_consumer_swapped_on_reconfig(self):
        seen = []
        mem = stats.InMemoryStorageService([stats.CaptureBuildDuration('alpha')], name='mem')

        class Watching(Regressions):
            def buildFinished(self, routingKey, msg):
                # the capture has written the build's point already
                seen.append((self.min_size, msg['buildid'], len(mem.points)))
                return super().buildFinished(routingKey, msg)

        def backends():
            return [stats.SQLiteStorageService(os.path.abspath('s.sqlite'), name='sqlite'), mem]

        self.svc = stats.StatsService(storage_backends=backends(), regressions=Watching())
        yield self.svc.setServiceParent(self.master)
        yield self.master.startService()
        self.addCleanup(self.master.stopService)
        key = ('builders', None, 'builds', None, 'finished')

        def consumers():
            return len([q for q in self.master.mq.qrefs if tuple(q.filter) == key])
        self.assertEqual(consumers(), 1)
        build = yield self.insertBuild()
        yield self.finishBuild(build)
        self.assertEqual(seen, [(0.1, build['buildid'], 1)])
        # other settings: the new one replaces the old, under the same one consumer
        yield self.svc.reconfigServiceWithSibling(stats.StatsService(
            storage_backends=backends(), regressions=Watching(min_size=0.2)))
        self.assertEqual(consumers(), 1)
        build2 = yield self.insertBuild()
        yield self.finishBuild(build2)
        self.assertEqual(seen[1:], [(0.2, build2['buildid'], 2)])
        self.assertEqual(len([c for c in self.svc._components
                              if isinstance(c, Regressions)]), 1)
        # off: unsubscribed; the key stays consumed for the captures
        yield self.svc.reconfigServiceWithSibling(stats.StatsService(
            storage_backends=backends(), regressions=False))
        yield self.finishBuild((yield self.insertBuild()))
        self.assertEqual(len(seen), 2)
        self.assertEqual(consumers(), 1)
        self.assertEqual(len(mem.points), 3)


class Records(unittest.TestCase):

    def test_fields_and_back(self):
        record = dict(time=T0, builder='a', series='step:x', direction='down',
                      build_number=3, last_build_number=2, before=2.0, after=1.0, size=-0.5,
                      confidence=0.999, worse=False, withdrawn=True, revision='r',
                      branch=None, url=None, authors=['x', 'y'], comments=['a\nb'], changes=2,
                      found_at=T0 + 5, summary='s')
        fields = kept_changes.changeFields(record)
        self.assertEqual(fields['authors'], '["x", "y"]')
        self.assertEqual((fields['worse'], fields['withdrawn']), (0, 1))
        self.assertNotIn('branch', fields)
        back = kept_changes.changeRecord(T0, kept_changes.changeTags(record), fields)
        self.assertEqual(back, record)
        self.assertIsNone(kept_changes.changeRecord(T0, {'series': 'x'}, fields))
