"""The page's view cache and the SQLite reader's queries behind it: a view is used again only
while the store holds the same points (v1 files and v2's ``INSERT OR REPLACE`` alike), and the
indexed queries answer as the plain ones did."""

from __future__ import annotations

import os
import sqlite3
import tempfile

from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from twisted.trial import unittest

from buildbot_stats.reading.mirror import StoreMirror
from buildbot_stats.reading.sqlite import openStore
from buildbot_stats.storage.sqlite.schema import SCHEMA_VERSION
from buildbot_stats.storage.sqlite.schema import migrate
from buildbot_stats.storage.sqlite.values import encodeRow
from buildbot_stats.www import page
from buildbot_stats.www.cache import ViewCache

NOW = 1_800_000_000.0
INSERT = ("INSERT INTO points (series, time_us, builder, build_number, tags, fields)"
          " VALUES (?, ?, ?, ?, ?, ?)")


def duration(builder, number, seconds, t):
    return encodeRow(series=f'{builder}-build-times', fields={'duration': seconds},
                     tags={'builder_name': builder, 'build_number': str(number)}, time=t)


class StoreCase(unittest.TestCase):
    version = SCHEMA_VERSION  # of the store file; the V1 subclasses: a file not migrated yet

    def setUp(self):
        fd, self.path = tempfile.mkstemp(suffix='.sqlite')
        os.close(fd)
        os.unlink(self.path)
        self.addCleanup(lambda: os.path.exists(self.path) and os.unlink(self.path))
        self.conn = sqlite3.connect(self.path, isolation_level=None)
        self.addCleanup(self.conn.close)
        migrate(self.conn, target=self.version)

    def write(self, *rows, sql=INSERT):
        self.conn.executemany(sql, rows)

    def stateKey(self):
        with openStore(self.path) as reader:
            return reader.stateKey()


class StateKeyTest(StoreCase):

    def test_every_change_of_the_points_changes_the_key(self):
        self.write(duration('alpha', 1, 10.0, NOW - 300), duration('alpha', 2, 12.0, NOW - 200))
        first = self.stateKey()
        self.assertEqual(self.stateKey(), first)  # read twice, same points
        self.write(duration('alpha', 3, 11.0, NOW - 100))
        added = self.stateKey()
        self.assertNotEqual(added, first)
        # schema v2 replaces a point of the same series, time and tags: the count stays,
        # the replaced row's id goes and the new one is the highest (v1: one more point)
        self.write(duration('alpha', 3, 99.0, NOW - 100),
                   sql=INSERT.replace("INSERT", "INSERT OR REPLACE"))
        replaced = self.stateKey()
        self.assertEqual(replaced[4], added[4] + (0 if self.version >= 2 else 1))
        self.assertNotEqual(replaced, added)
        self.conn.execute("DELETE FROM points WHERE id = (SELECT MIN(id) FROM points)")
        self.assertNotEqual(self.stateKey(), replaced)

    def test_another_file_at_the_same_path_is_another_state(self):
        self.write(duration('alpha', 1, 10.0, NOW - 300))
        before = self.stateKey()
        self.conn.close()
        os.unlink(self.path)
        self.conn = sqlite3.connect(self.path, isolation_level=None)
        migrate(self.conn, target=self.version)
        self.write(duration('alpha', 1, 10.0, NOW - 300))
        # same count and ids, a new file (which may well get the inode of the deleted one)
        self.assertNotEqual(self.stateKey(), before)


class ViewCacheTest(StoreCase):

    def view(self, cache, now=NOW, builder=None, range_name='all'):
        with openStore(self.path) as reader:
            return page.view(reader, builder, range_name, None, None, {'alpha': 1},
                             '../../../', None, 'store', now, cache=cache)

    def test_a_view_is_kept_until_the_store_changes(self):
        self.write(duration('alpha', 1, 10.0, NOW - 300), duration('alpha', 2, 12.0, NOW - 200))
        cache = ViewCache()
        first = self.view(cache)
        self.assertIn('alpha build #2: duration 12.00s', first)
        self.assertEqual((cache.hits, cache.misses), (0, 1))
        self.assertEqual(self.view(cache, now=NOW + 30), first)
        self.assertEqual((cache.hits, cache.misses), (1, 1))
        # another builder or range is another view
        self.view(cache, builder='alpha')
        self.assertEqual((cache.hits, cache.misses), (1, 2))
        # a new build: read again, the new build is on the page
        self.write(duration('alpha', 3, 14.0, NOW - 100))
        after = self.view(cache, now=NOW + 31)
        self.assertEqual((cache.hits, cache.misses), (1, 3))
        self.assertIn('alpha build #3: duration 14.00s', after)
        # the store unchanged but the entry older than max_age: read again (the window of a
        # range moves with the clock)
        self.view(cache, now=NOW + 31 + cache.max_age)
        self.assertEqual((cache.hits, cache.misses), (1, 4))

    def test_a_reader_without_state_is_not_cached(self):
        self.write(duration('alpha', 1, 10.0, NOW - 300))
        cache = ViewCache()
        with openStore(self.path) as reader:
            reader.stateKey = lambda: None  # as InfluxReader: the server does the work
            for _ in range(2):
                text = page.view(reader, None, 'all', None, None, {}, '', None, 'x', NOW,
                                 cache=cache)
                self.assertIn('alpha build #1', text)
        self.assertEqual((cache.hits, cache.misses, len(cache.entries)), (0, 0, 0))

    def test_the_least_recently_used_view_goes_first(self):
        cache = ViewCache(max_entries=2)
        cache.put('a', NOW, 'A')
        cache.put('b', NOW, 'B')
        self.assertEqual(cache.get('a', NOW), 'A')
        cache.put('c', NOW, 'C')
        self.assertEqual([cache.get(k, NOW) for k in 'abc'], ['A', None, 'C'])


class IndexedQueriesTest(StoreCase):
    """The queries that read through the indexes answer as a scan of every point would."""

    def test_builders_series_durations_and_custom_series(self):
        self.write(
            duration('beta', 1, 5.0, NOW - 50),
            duration('alpha', 1, 10.0, NOW - 40),
            # a second point of the same build: the first one counts
            duration('alpha', 1, 30.0, NOW - 30),
            # a build-times series carrying another builder's tag is a custom series
            duration('alpha', 2, 7.0, NOW - 20)[:2] + ('gamma', 2) + duration(
                'alpha', 2, 7.0, NOW - 20)[4:],
            encodeRow(series='coverage', fields={'percent': 81.5, 'note': 'x'},
                      tags={'builder_name': 'alpha'}, time=NOW - 10),
            encodeRow(series='no-builder', fields={'n': 3}, tags={}, time=NOW - 5),
            encodeRow(series='builds', fields={'build_number': 1}, tags={
                'builder_name': 'delta', 'result': 'success'}, time=NOW - 5),
        )
        with openStore(self.path) as reader:
            self.assertEqual(reader.builderNames(), ['alpha', 'beta', 'delta', 'gamma'])
            self.assertEqual(reader.buildDurations(), {
                'alpha': [(NOW - 40, 1, 10.0)], 'beta': [(NOW - 50, 1, 5.0)]})
            self.assertEqual(reader.buildDurations('beta', NOW - 45), {})
            self.assertEqual(reader.buildDurations('nobody'), {})
            self.assertEqual(reader.customSeries(), {
                'alpha-build-times': [(NOW - 20, 'gamma', 2, {'duration': 7.0})],
                'coverage': [(NOW - 10, 'alpha', None, {'percent': 81.5})],
                'no-builder': [(NOW - 5, None, None, {'n': 3.0})]})
            self.assertEqual(list(reader.customSeries('alpha')), ['coverage'])

    def test_an_empty_store(self):
        with openStore(self.path) as reader:
            self.assertEqual(reader.builderNames(), [])
            self.assertEqual(reader.buildDurations(), {})
            self.assertEqual(reader.customSeries(), {})
            # no point, no test run
            self.assertEqual(reader.stateKey()[4:], (0, None, (0, None)))


# -- the mirror: the reader's answers from memory, through every kind of write ------------------

BUILDERS = ('alpha', 'beta')


def pointRows(draw_ints, t):
    """The rows of one build of every kind the page reads, from a few integers."""
    b = BUILDERS[draw_ints[0] % 2]
    n = draw_ints[1] % 5 + 1
    ok = draw_ints[2] % 3 != 0
    base = {'builder_name': b}
    dur = float(draw_ints[2] % 7) + 0.5
    rows = [duration(b, n, dur, t),
            encodeRow(series='builds', fields={'build_number': n, 'duration': dur},
                      tags=dict(base, result='success' if ok else 'failure'), time=t),
            encodeRow(series='build_requests', fields={'queue_time': draw_ints[1] % 4,
                                                       'build_number': n}, tags=base, time=t),
            encodeRow(series='tests', fields={'passed': 10, 'failed': int(not ok),
                                              'build_number': n}, tags=base, time=t),
            encodeRow(series='steps', fields={'duration': dur / 2, 'build_number': n},
                      tags=dict(base, step_name=('compile', 'test')[draw_ints[1] % 2]),
                      time=t),
            encodeRow(series=f'{b}-coverage', fields={'percent': 50 + draw_ints[2] % 50,
                                                      'label': 'x'},
                      tags=dict(base, build_number=str(n)), time=t)]
    if draw_ints[0] % 4 == 3:  # a field of the wrong type: left out by every query
        rows.append(encodeRow(series='steps', fields={'duration': 'slow'},
                              tags=dict(base, step_name='odd'), time=t))
    return rows


QUERIES = ('builderNames', 'buildDurations', 'buildResults', 'queueTimes', 'stepDurations',
           'testCounts', 'stepSummary', 'customSeries')


class MirrorTest(StoreCase):

    def assertSameAnswers(self, snapshot):
        with openStore(self.path) as reader:
            for builder in (None, 'alpha', 'nobody'):
                for start, end in ((None, None), (NOW - 500, None), (NOW - 900, NOW - 300)):
                    for name in QUERIES:
                        args = () if name == 'builderNames' else (builder, start, end)
                        self.assertEqual(getattr(snapshot, name)(*args),
                                         getattr(reader, name)(*args),
                                         (name, builder, start, end))

    def sync(self, mirror):
        with openStore(self.path) as reader:
            return mirror.sync(reader, background=False)

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(st.tuples(st.sampled_from(['add', 'late', 'replace', 'delete', 'sync']),
                              st.lists(st.integers(0, 1000), min_size=3, max_size=3)),
                    max_size=12))
    def test_the_mirror_answers_as_the_reader(self, steps):
        # a fresh store per example (setUp runs once per test)
        self.conn.close()
        if os.path.exists(self.path):
            os.unlink(self.path)
        self.conn = sqlite3.connect(self.path, isolation_level=None)
        # schema v2: the same series, time and tags replace a point; v1: one more row
        migrate(self.conn, target=self.version)
        mirror = StoreMirror()
        t = NOW - 1000
        for action, ints in steps:
            if action == 'add':
                t += 10 + ints[0] % 50
                self.write(*pointRows(ints, t), sql=INSERT.replace("INSERT", "INSERT OR IGNORE"))
            elif action == 'late':  # a spool replayed: older than what the mirror holds
                self.write(*pointRows(ints, NOW - 1000 + ints[1] % 400),
                           sql=INSERT.replace("INSERT", "INSERT OR IGNORE"))
            elif action == 'replace':  # the newest build again, other values
                self.write(*pointRows(ints, t), sql=INSERT.replace("INSERT", "INSERT OR REPLACE"))
            elif action == 'delete':
                self.conn.execute("DELETE FROM points WHERE id IN (SELECT id FROM points"
                                  " ORDER BY time_us LIMIT ?)", (ints[0] % 5,))
            else:
                self.assertSameAnswers(self.sync(mirror))
        self.assertSameAnswers(self.sync(mirror))

    def test_only_what_was_written_since_is_read(self):
        mirror = StoreMirror()
        self.write(*pointRows([0, 1, 2], NOW - 900))
        self.sync(mirror)
        self.write(*pointRows([1, 2, 3], NOW - 800))
        snapshot = self.sync(mirror)
        self.assertEqual((mirror.full_reads, mirror.updates), (1, 1))
        self.assertEqual(snapshot.buildDurations(), {'alpha': [(NOW - 900, 2, 2.5)],
                                                     'beta': [(NOW - 800, 3, 3.5)]})
        # nothing written: the same snapshot, nothing read
        self.assertIs(self.sync(mirror), snapshot)
        self.assertEqual((mirror.full_reads, mirror.updates), (1, 1))
        # a point deleted: everything is read again
        self.conn.execute("DELETE FROM points WHERE id = 1")
        self.assertEqual(self.sync(mirror).buildDurations(), {'beta': [(NOW - 800, 3, 3.5)]})
        self.assertEqual((mirror.full_reads, mirror.updates), (2, 1))

    def test_the_page_reads_the_store_while_the_mirror_loads(self):
        self.write(*pointRows([0, 1, 2], NOW - 900))
        mirror, cache = StoreMirror(), ViewCache()

        def view():
            with openStore(self.path) as reader:
                return page.view(reader, None, 'all', None, None, {'alpha': 1}, '', None,
                                 'store', NOW, cache=cache, mirror=mirror)

        first = view()  # answered from the store; the mirror reads it in its own thread
        self.assertIn('alpha build #2: duration 2.50s', first)
        self.assertTrue(mirror.idle.wait(60))
        self.assertEqual((mirror.full_reads, mirror.updates), (1, 0))
        self.write(*pointRows([1, 2, 3], NOW - 800))
        second = view()  # from the mirror, with the build written since
        self.assertEqual((mirror.full_reads, mirror.updates), (1, 1))
        self.assertIn('alpha build #2: duration 2.50s', second)
        self.assertIn('beta build #3: duration 3.50s', second)
        # the same page as without a mirror
        with openStore(self.path) as reader:
            self.assertEqual(second, page.view(reader, None, 'all', None, None, {'alpha': 1},
                                               '', None, 'store', NOW))

    def test_a_store_gone_before_the_full_read_leaves_the_mirror_usable(self):
        self.write(*pointRows([0, 1, 2], NOW - 900))
        mirror = StoreMirror()
        with openStore(self.path) as reader:
            self.assertIsNone(mirror.sync(reader))  # a full read is due
            self.assertIsNone(mirror.sync(reader))  # and stays due until started
        os.unlink(self.path)
        mirror.startLoading()
        self.assertTrue(mirror.idle.wait(60))
        self.assertEqual((mirror.loading, mirror.full_reads), (False, 0))
        # the store back: the next view finds the full read due again, and it runs
        self.conn.close()
        self.conn = sqlite3.connect(self.path, isolation_level=None)
        migrate(self.conn, target=self.version)
        self.write(*pointRows([1, 2, 3], NOW - 800))
        with openStore(self.path) as reader:
            self.assertIsNone(mirror.sync(reader))
        mirror.startLoading()
        self.assertTrue(mirror.idle.wait(60))
        with openStore(self.path) as reader:
            self.assertEqual(mirror.sync(reader).buildDurations(),
                             {'beta': [(NOW - 800, 3, 3.5)]})


class StateKeyV1Test(StateKeyTest):
    version = 1


class MirrorV1Test(MirrorTest):
    version = 1


class MirrorLimitTest(StoreCase):

    def test_a_store_over_the_limit_is_not_mirrored(self):
        self.write(*pointRows([0, 1, 2], NOW - 900))  # 6 points
        mirror = StoreMirror(max_points=6)
        with openStore(self.path) as reader:
            self.assertIsNotNone(mirror.sync(reader, background=False))
        self.write(*pointRows([1, 2, 3], NOW - 800))
        with openStore(self.path) as reader:
            self.assertIsNone(mirror.sync(reader, background=False))
            self.assertIsNone(mirror.sync(reader))
            mirror.startLoading()  # nothing is due
            self.assertEqual((mirror.loading, mirror.rows), (False, None))
            # the page reads the view from the store
            text = page.view(reader, None, 'all', None, None, {}, '', None, 'store', NOW,
                             mirror=mirror)
        self.assertIn('beta build #3: duration 3.50s', text)
