"""The page's view cache and the SQLite reader's queries behind it: a view is used again only
while the store holds the same points (whoever wrote them), and the raw queries answer as
documented."""

from __future__ import annotations

import os
import sqlite3
import tempfile

from twisted.trial import unittest

from buildbot_stats.reading.sqlite import openStore
from buildbot_stats.storage.sqlite.values import encodeRow
from buildbot_stats.storage.sqlite.writer import StoreWriter
from buildbot_stats.www import page
from buildbot_stats.www.cache import ViewCache

NOW = 1_800_000_000.0


def duration(builder, number, seconds, t):
    return encodeRow(series=f'{builder}-build-times', fields={'duration': seconds},
                     tags={'builder_name': builder, 'build_number': str(number)}, time=t)


class StoreCase(unittest.TestCase):

    def setUp(self):
        self.dir = tempfile.mkdtemp()
        self.path = os.path.join(self.dir, 'stats.sqlite')
        self.writer = StoreWriter(5.0)
        self.addCleanup(self.writer.close)

    def write(self, *rows):
        """As the master's writer thread does (here, in this thread)."""
        self.writer.write(self.path, list(rows))

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
        # a point of the same series, time and tags replaces the one stored
        self.write(duration('alpha', 3, 99.0, NOW - 100))
        replaced = self.stateKey()
        self.assertNotEqual(replaced, added)
        # another program changing the file (no generation of ours): its size or the time
        # of its log change
        other = sqlite3.connect(self.path, isolation_level=None)
        self.addCleanup(other.close)
        other.execute("DELETE FROM points WHERE id = (SELECT MIN(id) FROM points)")
        self.assertNotEqual(self.stateKey(), replaced)
        # the maintenance of the rollups is a change too
        gone = self.stateKey()
        self.writer.maintain(self.path, NOW + 86400)
        self.assertNotEqual(self.stateKey(), gone)

    def test_another_file_at_the_same_path_is_another_state(self):
        self.write(duration('alpha', 1, 10.0, NOW - 300))
        before = self.stateKey()
        self.writer.close()
        for suffix in ('', '-wal', '-shm'):
            if os.path.exists(self.path + suffix):
                os.unlink(self.path + suffix)
        self.write(duration('alpha', 1, 10.0, NOW - 300))
        # the same points, a new file (which may well get the inode of the deleted one)
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
            # a build-times series carrying another builder's tag is not its durations
            encodeRow(series='alpha-build-times', fields={'duration': 7.0},
                      tags={'builder_name': 'gamma', 'build_number': '2'}, time=NOW - 20),
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
                'coverage': [(NOW - 10, 'alpha', None, {'percent': 81.5})],
                'no-builder': [(NOW - 5, None, None, {'n': 3.0})]})
            self.assertEqual(list(reader.customSeries('alpha')), ['coverage'])
            # builds is not a custom series; its build number is a field
            self.assertEqual(reader.buildResults(), {'delta': [(NOW - 5, 1, 'success')]})

    def test_an_empty_store(self):
        self.writer.open(self.path)
        with openStore(self.path) as reader:
            self.assertEqual(reader.builderNames(), [])
            self.assertEqual(reader.buildDurations(), {})
            self.assertEqual(reader.customSeries(), {})
            self.assertEqual(reader.summarize('durations'), {})
            self.assertEqual(reader.firstTime(), None)
            self.assertEqual(page.collect(reader, None, None, None, NOW)['durations'], [])
